"""kopf registrations: each handler names the object and hands it to the `Reconciler`.

Rounds and models are reconciled on creation, on operator start (resume) and on a timer while
they can still change (the exchange is polled, deadlines pass); participants on every watch
event (a heartbeat makes a plant Ready at once) and on a timer (a missing heartbeat makes it
stale). kopf puts a finalizer on every object it runs a timer for; the operator takes them off
when it stops, as they guard nothing of ours and, left on, an uninstalled hub's objects could
never be deleted. Handlers are synchronous: kopf runs them in its thread pool, where the blocking
gRPC and Kubernetes clients belong. kopf passes every handler its kwargs by name (`meta`,
`status`, `type`, ...); a handler takes the ones it uses, typed with kopf's own types, and `**_`
for the rest.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from plantfed.contract.naming import GROUP, VERSION
from plantfed.hub.observe import MODELS, PARTICIPANTS, ROUNDS
from plantfed.hub.reconciler import Reconciler

_FINISHED = ("Succeeded", "Failed")


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in _FINISHED


def _key(meta: kopf.Meta) -> tuple[str, str]:
    """(namespace, name) of the object; kopf types the namespace as optional, for cluster-scoped kinds."""
    if meta.namespace is None:
        raise kopf.PermanentError(f"{meta.name} has no namespace; plantfed's resources are namespaced")
    return meta.namespace, meta.name


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A copy of the object kopf's watch holds, as the API client returns objects (plain dicts and lists)."""
    return copy.deepcopy(dict(body))


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler, poll_seconds: float) -> None:
    # A registry of our own gets no implicit login: use the pod's ServiceAccount (or the kubeconfig).
    @kopf.on.login(registry=registry)
    def login(logger: kopf.Logger, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(logger=logger, settings=settings)

    @kopf.on.resume(GROUP, VERSION, ROUNDS, registry=registry, backoff=poll_seconds)
    @kopf.on.create(GROUP, VERSION, ROUNDS, registry=registry, backoff=poll_seconds)
    def round_changed(meta: kopf.Meta, **_: Any) -> None:
        reconciler.round(*_key(meta))

    @kopf.timer(
        GROUP, VERSION, ROUNDS, interval=poll_seconds, when=_unfinished, registry=registry, backoff=poll_seconds
    )
    def round_tick(meta: kopf.Meta, **_: Any) -> None:
        reconciler.round(*_key(meta))

    @kopf.on.resume(GROUP, VERSION, MODELS, registry=registry, backoff=poll_seconds)
    @kopf.on.create(GROUP, VERSION, MODELS, registry=registry, backoff=poll_seconds)
    @kopf.on.update(GROUP, VERSION, MODELS, field="spec", registry=registry, backoff=poll_seconds)
    def model_changed(meta: kopf.Meta, **_: Any) -> None:
        reconciler.model(*_key(meta))

    @kopf.timer(GROUP, VERSION, MODELS, interval=poll_seconds, registry=registry, backoff=poll_seconds)
    def model_tick(meta: kopf.Meta, **_: Any) -> None:
        reconciler.model(*_key(meta))

    @kopf.on.event(GROUP, VERSION, PARTICIPANTS, registry=registry)
    def participant_event(type: str | None, body: kopf.Body, meta: kopf.Meta, **_: Any) -> None:
        if type != "DELETED":
            reconciler.participant(*_key(meta), seen=_plain(body))

    @kopf.timer(GROUP, VERSION, PARTICIPANTS, interval=poll_seconds, registry=registry, backoff=poll_seconds)
    def participant_tick(body: kopf.Body, meta: kopf.Meta, **_: Any) -> None:
        reconciler.participant(*_key(meta), seen=_plain(body))

    @kopf.on.cleanup(registry=registry)
    def release_finalizers(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
        kinds = (ROUNDS, MODELS, PARTICIPANTS)
        released = reconciler.kube.release_finalizers(kinds, reconciler.cfg.namespace, settings.persistence.finalizer)
        logger.info("released kopf's finalizer from %d objects", released)
