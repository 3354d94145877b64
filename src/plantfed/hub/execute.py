"""Carry out the typed actions a reconcile function returns, each idempotently.

Called only after the decision's status was patched, so a crash between two actions leaves a
status from which the next reconcile asks for the same (still idempotent) actions again:
re-opening an identical exchange round returns it, creating an existing Job or round answers
409, and promoting a promoted version changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from plantfed.exchange import AdminClient
from plantfed.hub.config import OperatorConfig
from plantfed.hub.jobs import aggregation_job, init_model_job, owner_reference
from plantfed.hub.kube import Kube
from plantfed.hub.observe import MODELS, PARTICIPANTS, ROUNDS
from plantfed.hub.reconcile.actions import (
    Action,
    CloseExchangeRound,
    CreateAggregationJob,
    CreateRound,
    DeleteRound,
    EmitEvent,
    InitializeModel,
    OpenExchangeRound,
    Promote,
    RecordPrivacySpend,
)

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any], EmitEvent], None]


def kopf_event(body: dict[str, Any], event: EmitEvent) -> None:
    """Post a Kubernetes Event on the object through kopf's event poster."""
    import kopf

    # kopf walks any mapping; its annotation names only its own Body view of one.
    kopf.event(body, type=event.type.value, reason=event.reason, message=event.message)  # type: ignore[arg-type]


class Executor:
    def __init__(self, cfg: OperatorConfig, kube: Kube, admin: AdminClient, emit: EventSink = kopf_event) -> None:
        self.cfg, self.kube, self.admin, self.emit = cfg, kube, admin, emit

    def run(self, body: dict[str, Any], actions: Iterable[Action]) -> None:
        for action in actions:
            self.one(body, action)

    def one(self, body: dict[str, Any], action: Action) -> None:
        where = f"{body['kind']} {body['metadata']['namespace']}/{body['metadata']['name']}"
        match action:
            case OpenExchangeRound(record=record):
                self.admin.open_round(record)
                log.info(
                    "%s: opened exchange round for %s from version %d",
                    where,
                    ",".join(record.plants),
                    record.base_version,
                )
            case CloseExchangeRound(round_id=round_id):
                self.admin.close_round(round_id)
                log.info("%s: closed exchange round %s", where, round_id)
            case CreateAggregationJob():
                model = self.kube.get(MODELS, body["metadata"]["namespace"], action.model)
                task = (model or {}).get("spec", {}).get("task")
                if task is None:
                    log.warning(
                        "%s: FederatedModel %s not found; aggregating without its task's local parameters",
                        where,
                        action.model,
                    )
                created = self.kube.create_job(aggregation_job(self.cfg, action, body, task))
                log.info("%s: aggregation Job %s %s", where, action.name, "created" if created else "exists")
            case Promote(model=model, version=version):
                self.admin.promote(model, version)
                log.info("%s: promoted %s version %d", where, model, version)
            case CreateRound(round=fr):
                manifest = fr.to_dict()
                manifest.pop("status", None)
                manifest["metadata"]["ownerReferences"] = [owner_reference(body)]
                created = self.kube.create(ROUNDS, body["metadata"]["namespace"], manifest)
                log.info("%s: round %s %s", where, fr.name, "created" if created else "exists")
            case DeleteRound(name=name, uid=uid):
                deleted = self.kube.delete(ROUNDS, body["metadata"]["namespace"], name, uid)
                outcome = "deleted" if deleted else "gone"
                log.info("%s: round %s %s (past the model's roundRetention)", where, name, outcome)
            case InitializeModel():
                job = init_model_job(self.cfg, action.model, action.task, action.variant, action.initial_weights, body)
                created = self.kube.create_job(job)
                log.info("%s: init Job %s %s", where, job["metadata"]["name"], "created" if created else "exists")
            case RecordPrivacySpend(plant=plant, epsilon=epsilon):
                found = self.kube.patch_status_fields(
                    PARTICIPANTS, body["metadata"]["namespace"], plant, {"dpEpsilon": epsilon}
                )
                log.info(
                    "%s: %s has spent epsilon %.4g%s", where, plant, epsilon, "" if found else " (participant gone)"
                )
            case EmitEvent():
                self.emit(body, action)
            case _:
                raise TypeError(f"unknown action {action!r}")
