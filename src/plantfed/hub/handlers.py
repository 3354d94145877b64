"""kopf registrations: each handler names the object and hands it to the `Reconciler`.

Rounds and models are reconciled on creation, on operator start (resume) and on a timer while
they can still change (the exchange is polled, deadlines pass); participants on every watch
event (a heartbeat makes a plant Ready at once) and on a timer (a missing heartbeat makes it
stale). Handlers are synchronous: kopf runs them in its thread pool, where the blocking gRPC and
Kubernetes clients belong.
"""

from __future__ import annotations

from typing import Any

import kopf

from plantfed.contract.api.common import GROUP, VERSION
from plantfed.hub.observe import MODELS, PARTICIPANTS, ROUNDS
from plantfed.hub.reconciler import Reconciler

_FINISHED = ("Succeeded", "Failed")


def _unfinished(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") not in _FINISHED


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler, poll_seconds: float) -> None:
    common = {"registry": registry, "backoff": poll_seconds}

    # A registry of our own gets no implicit login: use the pod's ServiceAccount (or the kubeconfig).
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.resume(GROUP, VERSION, ROUNDS, **common)
    @kopf.on.create(GROUP, VERSION, ROUNDS, **common)
    def round_changed(namespace: str, name: str, **_: Any) -> None:
        reconciler.round(namespace, name)

    @kopf.timer(GROUP, VERSION, ROUNDS, interval=poll_seconds, when=_unfinished, **common)
    def round_tick(namespace: str, name: str, **_: Any) -> None:
        reconciler.round(namespace, name)

    @kopf.on.resume(GROUP, VERSION, MODELS, **common)
    @kopf.on.create(GROUP, VERSION, MODELS, **common)
    @kopf.on.update(GROUP, VERSION, MODELS, field="spec", **common)
    def model_changed(namespace: str, name: str, **_: Any) -> None:
        reconciler.model(namespace, name)

    @kopf.timer(GROUP, VERSION, MODELS, interval=poll_seconds, **common)
    def model_tick(namespace: str, name: str, **_: Any) -> None:
        reconciler.model(namespace, name)

    @kopf.on.event(GROUP, VERSION, PARTICIPANTS, registry=registry)
    def participant_event(type: str | None, namespace: str, name: str, **_: Any) -> None:
        if type != "DELETED":
            reconciler.participant(namespace, name)

    @kopf.timer(GROUP, VERSION, PARTICIPANTS, interval=poll_seconds, **common)
    def participant_tick(namespace: str, name: str, **_: Any) -> None:
        reconciler.participant(namespace, name)
