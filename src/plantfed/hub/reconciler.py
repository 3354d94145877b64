"""One reconcile pass per object: read fresh → observe → decide (pure) → patch status → act.

This is everything the kopf handlers do, minus kopf, so it runs the same from a handler, a timer
or a test. Passes over one object are serialised by a per-object lock (kopf may run a change
handler and a timer of the same object at once); the status patch carries the resourceVersion
it was decided from, and a 409 re-reads and decides again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound
from plantfed.contract.metrics import Metrics
from plantfed.exchange import AdminClient
from plantfed.hub.config import OperatorConfig
from plantfed.hub.execute import EventSink, Executor, kopf_event
from plantfed.hub.jobs import init_job_name
from plantfed.hub.kube import Kube
from plantfed.hub.observe import (
    MODELS,
    PARTICIPANTS,
    ROUNDS,
    job_failure,
    observe_round,
    participants,
    promoted_version,
)
from plantfed.hub.reconcile import (
    InitializeModel,
    reconcile_model,
    reconcile_participant,
    reconcile_round,
    status_patch,
)
from plantfed.hub.reconcile.actions import EmitEvent, EventType
from plantfed.hub.reconcile.readiness import significant_change
from plantfed.hub.telemetry import Telemetry

log = logging.getLogger(__name__)

_CONFLICT_RETRIES = 3


def _now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        cfg: OperatorConfig,
        kube: Kube,
        admin: AdminClient,
        metrics: Metrics,
        emit: EventSink = kopf_event,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.cfg, self.kube, self.admin, self.clock = cfg, kube, admin, clock
        self.executor = Executor(cfg, kube, admin, emit)
        self.emit = emit
        self.telemetry = Telemetry(metrics)
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._reported_init_failures: set[str] = set()

    def _lock(self, kind: str, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((kind, namespace, name), threading.Lock())

    def _retrying(self, kind: str, namespace: str, name: str, one_pass: Callable[[], None]) -> None:
        with self._lock(kind, namespace, name), self.telemetry.m.reconcile_duration.labels(kind).time():
            for attempt in range(_CONFLICT_RETRIES):
                try:
                    return one_pass()
                except ApiException as exc:
                    if exc.status != 409 or attempt == _CONFLICT_RETRIES - 1:
                        raise
                    log.debug("%s %s/%s changed while deciding; deciding again", kind, namespace, name)

    # -- FederatedRound ----------------------------------------------------------------------------
    def round(self, namespace: str, name: str) -> None:
        self._retrying(ROUNDS, namespace, name, lambda: self._round(namespace, name))

    def _round(self, namespace: str, name: str) -> None:
        body = self.kube.get(ROUNDS, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        fr = FederatedRound.from_object(body)
        observed = observe_round(self.kube, self.admin, fr)
        plants = participants(self.kube, namespace)
        decision = reconcile_round(fr, plants, observed, self.clock(), self.cfg.heartbeat_timeout)
        if decision.labels:  # before the status that assigns the plants, so no agent misses its round
            body = self.kube.patch_labels(ROUNDS, body, dict(decision.labels))
        patch = status_patch(fr.status, decision.status)
        if patch:
            body = self.kube.patch_status(ROUNDS, body, patch)
            self.telemetry.round_transition(fr.spec.model_ref, name, fr.status, decision.status, observed.candidate)
        self.executor.run(body, decision.actions)
        self.telemetry.privacy_spent(fr.spec.model_ref, decision.epsilon)

    # -- FederatedModel ----------------------------------------------------------------------------
    def model(self, namespace: str, name: str) -> None:
        self._retrying(MODELS, namespace, name, lambda: self._model(namespace, name))

    def _model(self, namespace: str, name: str) -> None:
        body = self.kube.get(MODELS, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        fm = FederatedModel.from_object(body)
        rounds = [FederatedRound.from_object(r) for r in self.kube.list(ROUNDS, namespace)]
        decision = reconcile_model(fm, rounds, self.clock(), promoted_version(self.admin, fm.name))
        patch = status_patch(fm.status, decision.status)
        if patch:
            body = self.kube.patch_status(MODELS, body, patch)
        self.executor.run(body, decision.actions)
        if any(isinstance(a, InitializeModel) for a in decision.actions):
            self._report_init_failure(body, namespace, fm.name)
        self.telemetry.model_state(fm.model_copy(update={"status": decision.status}))

    def _report_init_failure(self, body: dict[str, Any], namespace: str, model: str) -> None:
        """The init Job's failure is not part of the model's status; say it once as an Event."""
        job = init_job_name(model)
        reason = job_failure(self.kube.read_job(namespace, job))
        key = f"{namespace}/{job}"
        if reason is None or key in self._reported_init_failures:
            return
        self._reported_init_failures.add(key)
        message = f"Job {job} failed ({reason}); delete it to retry once the cause is fixed"
        log.warning("FederatedModel %s/%s: %s", namespace, model, message)
        self.emit(body, EmitEvent(EventType.WARNING, "InitializationFailed", message))

    # -- PlantParticipant --------------------------------------------------------------------------
    def participant(self, namespace: str, name: str, seen: dict[str, Any] | None = None) -> None:
        """`seen`: the body kopf's watch last delivered, decided from on the first pass instead of a GET (at 100
        plants the heartbeats and ticks were 20 GETs a second); a stale one is refused with 409 and re-read."""
        first = [seen] if seen is not None else []
        self._retrying(
            PARTICIPANTS, namespace, name, lambda: self._participant(namespace, name, first.pop() if first else None)
        )

    def _participant(self, namespace: str, name: str, seen: dict[str, Any] | None) -> None:
        body = seen if seen is not None else self.kube.get(PARTICIPANTS, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        pp = PlantParticipant.from_object(body)
        now = self.clock()
        decision = reconcile_participant(pp, now, self.cfg.heartbeat_timeout)
        if significant_change(pp.status, decision.status):
            self.kube.patch_status(PARTICIPANTS, body, status_patch(pp.status, decision.status))
        self.telemetry.heartbeat(pp, now)
