"""The hub of a simulation: the operator's own reconcilers over in-memory objects, in virtual time.

`LocalOperator` does what `plantfed.hub.reconciler.Reconciler` does for a cluster, minus the API server:
observe (the exchange through an `AdminClient` over loopback gRPC, the aggregation Job from its local run),
decide with the same pure functions (`reconcile_model`, `reconcile_round`, `reconcile_participant`), write the
decided status as the merge patch the operator would send, then carry out the same typed actions:

* OpenExchangeRound / CloseExchangeRound / Promote: through the admin API, as the operator does;
* CreateAggregationJob / InitializeModel: the Job manifest is built by `plantfed.hub.jobs` and its container
  command is run here, in process, by the same entry points the Job's container runs (`plantfed aggregate`,
  `plantfed init-model`), with the store path the Job mounts replaced by the local store;
* CreateRound, RecordPrivacySpend: on the in-memory objects; EmitEvent: collected for the report.

Time is virtual: every call takes `now`, and what the plants did is only observed once its virtual arrival
has passed (the `Visibility` callbacks), so an upload that arrives after the cutoff is never aggregated.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from plantfed.contract.api.base import KubeModel
from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound
from plantfed.engine import aggregate_cli
from plantfed.exchange import AdminClient
from plantfed.hub import init_model
from plantfed.hub.config import STORE_MOUNT, OperatorConfig
from plantfed.hub.jobs import aggregation_job, init_model_job
from plantfed.hub.observe import observe_exchange, promoted_version
from plantfed.hub.reconcile import (
    Action,
    CloseExchangeRound,
    CreateAggregationJob,
    CreateRound,
    DeleteRound,
    EmitEvent,
    InitializeModel,
    JobObservation,
    JobState,
    OpenExchangeRound,
    Promote,
    RecordPrivacySpend,
    apply_merge_patch,
    reconcile_model,
    reconcile_participant,
    reconcile_round,
    status_patch,
)
from plantfed.hub.reconcile.readiness import significant_change
from plantfed.hub.telemetry import Telemetry

_Obj = TypeVar("_Obj", FederatedModel, FederatedRound, PlantParticipant)

NAMESPACE = "plantfed-simulate"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event the operator would have posted, at its virtual time."""

    time: datetime
    kind: str
    name: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class LocalJob:
    """A Job run locally: finished at virtual `done`, with its outcome and what it printed as a result."""

    name: str
    done: datetime
    succeeded: bool
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Visibility:
    """Which plant results the hub may see at virtual `now` (their virtual arrival has passed)."""

    upload: Callable[[str, str, datetime], bool]
    evaluation: Callable[[str, str, datetime], bool]


def local_command(job: dict[str, Any], store: Path) -> tuple[str, list[str]]:
    """(subcommand, arguments) of a Job's `plantfed` container command, with the store mount made local."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    command: list[str] = list(container["command"])
    if command[0] != "plantfed" or len(command) < 2:
        raise ValueError(f"not a plantfed command: {command}")
    args = [f"--store={store}" if a == f"--store={STORE_MOUNT}" else a for a in command[2:]]
    return command[1], args


def run_aggregation(job: dict[str, Any], store: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run an aggregation Job's command as its container would (`plantfed aggregate ...`); its result."""
    sub, args = local_command(job, store)
    if sub != "aggregate":
        raise ValueError(f"not an aggregation Job: plantfed {sub}")
    return aggregate_cli.main([*args, *extra])


def run_init(job: dict[str, Any], store: Path) -> None:
    """Run an init Job's command (`plantfed init-model ...`) as its container would."""
    sub, args = local_command(job, store)
    if sub != "init-model":
        raise ValueError(f"not an init Job: plantfed {sub}")
    parser = argparse.ArgumentParser(prog="plantfed init-model")
    init_model.add_arguments(parser)
    with contextlib.redirect_stdout(io.StringIO()):
        init_model.run(parser.parse_args(args))


def _patched(obj: _Obj, after: KubeModel) -> tuple[_Obj, bool]:
    """`obj` with its status patched to `after` exactly as the API server applies the operator's merge patch."""
    patch = status_patch(obj.status, after)
    if not patch:
        return obj, False
    body = obj.to_dict()
    body["status"] = apply_merge_patch(body.get("status", {}), patch)
    return type(obj).from_object(body), True


class LocalOperator:
    """The operator's reconcile loop over in-memory FederatedModels, FederatedRounds and PlantParticipants."""

    def __init__(
        self,
        cfg: OperatorConfig,
        admin: AdminClient,
        store_root: Path,
        telemetry: Telemetry,
        visibility: Visibility,
        *,
        aggregate_args: tuple[str, ...] = (),
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.cfg, self.admin, self.store_root = cfg, admin, Path(store_root)
        self.telemetry, self.visibility = telemetry, visibility
        self.aggregate_args = aggregate_args
        self.on_event = on_event
        self.models: dict[str, FederatedModel] = {}
        self.rounds: dict[str, FederatedRound] = {}
        self.participants: dict[str, PlantParticipant] = {}
        self.jobs: dict[str, LocalJob] = {}
        self.events: list[Event] = []
        self.requeue: dict[tuple[str, str], datetime] = {}
        #: Finished rounds whose last pass changed nothing: nothing can move them again (the operator's
        #: handlers would not be called for them either), so they are not observed again.
        self._quiet: set[str] = set()
        #: Rounds the model's retention deleted: gone for the reconcilers, as on a cluster, but kept for the report.
        self.deleted_rounds: set[str] = set()

    # -- objects -------------------------------------------------------------------------------------------
    @staticmethod
    def created(obj: _Obj, now: datetime) -> _Obj:
        """`obj` as the API server stores it on create: namespace, uid, generation 1, creation time."""
        meta = obj.metadata.model_copy(
            update={
                "namespace": obj.metadata.namespace or NAMESPACE,
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creation_timestamp": now.replace(microsecond=0),
            }
        )
        return obj.model_copy(update={"metadata": meta})

    def add(self, obj: FederatedModel | FederatedRound | PlantParticipant, now: datetime) -> None:
        if isinstance(obj, FederatedModel):
            self.models[obj.name] = self.created(obj, now)
        elif isinstance(obj, FederatedRound):
            self.rounds[obj.name] = self.created(obj, now)
        else:
            self.participants[obj.name] = self.created(obj, now)

    def unfinished_rounds(self) -> list[FederatedRound]:
        return [fr for fr in self.rounds.values() if not (fr.status.phase is not None and fr.status.phase.finished)]

    def next_event(self, now: datetime) -> datetime | None:
        """The next time something here changes by itself: a requeue asked for, or a local Job finishing."""
        times = [*self.requeue.values(), *(j.done for j in self.jobs.values() if j.done > now)]
        return min((t for t in times if t > now), default=None)

    # -- one pass ------------------------------------------------------------------------------------------
    def reconcile(self, now: datetime) -> bool:
        """One pass over every object at virtual `now`; True when anything changed or any action ran."""
        changed = False
        for name in sorted(self.participants):
            changed |= self._participant(name, now)
        for name in sorted(self.models):
            changed |= self._model(name, now)
        for fr in sorted(self.rounds.values(), key=lambda r: (r.metadata.creation_timestamp or now, r.name)):
            if fr.name in self._quiet:
                continue
            moved = self._round(fr.name, now)
            changed |= moved
            phase = self.rounds[fr.name].status.phase
            if not moved and phase is not None and phase.finished:
                self._quiet.add(fr.name)
        return changed

    def _participant(self, name: str, now: datetime) -> bool:
        pp = self.participants[name]
        decision = reconcile_participant(pp, now, self.cfg.heartbeat_timeout)
        changed = significant_change(pp.status, decision.status)
        if changed:
            self.participants[name], _ = _patched(pp, decision.status)
        self.telemetry.heartbeat(self.participants[name], now)
        return changed

    def _model(self, name: str, now: datetime) -> bool:
        fm = self.models[name]
        rounds = [
            fr
            for fr in self.rounds.values()
            if fr.metadata.namespace == fm.metadata.namespace and fr.name not in self.deleted_rounds
        ]
        decision = reconcile_model(fm, rounds, now, promoted_version(self.admin, fm.name))
        self.models[name], changed = _patched(fm, decision.status)
        self._requeue("model", name, decision.requeue_at)
        self.execute(self.models[name], decision.actions, now)
        self.telemetry.model_state(self.models[name])
        return changed or bool(decision.actions)

    def _job(self, fr: FederatedRound, now: datetime) -> JobObservation | None:
        job = self.jobs.get(fr.status.aggregation_job or "")
        if job is None:
            return None
        if now < job.done:
            return JobObservation(job.name, JobState.RUNNING)
        return JobObservation(job.name, JobState.SUCCEEDED if job.succeeded else JobState.FAILED, job.message)

    def _round(self, name: str, now: datetime) -> bool:
        fr = self.rounds[name]
        observed = observe_exchange(self.admin, fr, self._job(fr, now))
        observed = replace(
            observed,
            uploads=tuple(u for u in observed.uploads if self.visibility.upload(name, u.plant, now)),
            evaluations=tuple(e for e in observed.evaluations if self.visibility.evaluation(name, e.plant, now)),
        )
        decision = reconcile_round(fr, list(self.participants.values()), observed, now, self.cfg.heartbeat_timeout)
        self.rounds[name], changed = _patched(fr, decision.status)
        if changed:
            self.telemetry.round_transition(fr.spec.model_ref, name, fr.status, decision.status, observed.candidate)
        self._requeue("round", name, decision.requeue_at)
        self.execute(self.rounds[name], decision.actions, now)
        self.telemetry.privacy_spent(fr.spec.model_ref, decision.epsilon)
        return changed or bool(decision.actions)

    def _requeue(self, kind: str, name: str, at: datetime | None) -> None:
        if at is None:
            self.requeue.pop((kind, name), None)
        else:
            self.requeue[(kind, name)] = at

    # -- actions -------------------------------------------------------------------------------------------
    def execute(self, obj: FederatedModel | FederatedRound, actions: tuple[Action, ...], now: datetime) -> None:
        """Carry out a decision's actions, as the operator's `Executor.run` does for a cluster."""
        body = obj.to_dict()
        for action in actions:
            match action:
                case OpenExchangeRound(record=record):
                    self.admin.open_round(record)
                case CloseExchangeRound(round_id=round_id):
                    self.admin.close_round(round_id)
                case CreateAggregationJob():
                    self._aggregate(action, body, now)
                case Promote(model=model, version=version):
                    self.admin.promote(model, version)
                case CreateRound(round=fr):
                    if fr.name not in self.rounds:
                        meta = fr.metadata.model_copy(update={"namespace": obj.metadata.namespace})
                        self.add(fr.model_copy(update={"metadata": meta}), now)
                case DeleteRound(name=name):
                    self.deleted_rounds.add(name)
                case InitializeModel():
                    job = init_model_job(
                        self.cfg, action.model, action.task, action.variant, action.initial_weights, body
                    )
                    run_init(job, self.store_root)
                case RecordPrivacySpend(plant=plant, epsilon=epsilon):
                    pp = self.participants.get(plant)
                    if pp is not None:
                        status = pp.status.model_copy(update={"dp_epsilon": epsilon})
                        self.participants[plant] = pp.model_copy(update={"status": status})
                case EmitEvent():
                    event = Event(now, obj.kind, obj.name, action.type.value, action.reason, action.message)
                    self.events.append(event)
                    if self.on_event is not None:
                        self.on_event(event)
                case _:
                    raise TypeError(f"unknown action {action!r}")

    def _aggregate(self, action: CreateAggregationJob, round_body: dict[str, Any], now: datetime) -> None:
        """Create the Job (a second create is the API server's 409: nothing happens) and run its command."""
        if action.name in self.jobs:
            return
        model = self.models.get(action.model)
        job = aggregation_job(self.cfg, action, round_body, model.spec.task if model is not None else None)
        started = time.perf_counter()
        try:
            result = run_aggregation(job, self.store_root, self.aggregate_args)
        except Exception as exc:  # the Job's pod would exit non-zero with this on its last log line
            seconds = time.perf_counter() - started
            message = f"BackoffLimitExceeded: {type(exc).__name__}: {exc}"
            self.jobs[action.name] = LocalJob(action.name, now + timedelta(seconds=seconds), False, message)
            return
        seconds = time.perf_counter() - started
        self.jobs[action.name] = LocalJob(action.name, now + timedelta(seconds=seconds), True, "", result, seconds)
