"""Wait-for-condition helpers: poll or watch until a predicate holds, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    """The condition did not hold before the deadline; says what was awaited and last seen."""


def _brief(last: object, limit: int = 3000) -> str:
    """The last observation, as name + status for API objects (managedFields are noise)."""
    status = getattr(last, "status", None)
    metadata = getattr(last, "metadata", None)
    text = f"{metadata.name}: status={status!r}" if status is not None and metadata is not None else repr(last)
    return text if len(text) <= limit else text[:limit] + " ..."


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``probe`` until it returns something truthy and return that value.

    Exceptions listed in ``ignore`` count as "not yet" (e.g. a 404 before creation).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {_brief(last)}")
        time.sleep(interval)


def watch_until(
    list_func: Callable[..., Any],
    predicate: Callable[[Any], bool],
    *,
    timeout: float,
    what: str,
    **list_kwargs: Any,
) -> Any:
    """Watch objects from ``list_func`` and return the first one satisfying ``predicate``.

    Lists first so that an object already in the wanted state is found without waiting, then
    watches from the list's resourceVersion so no change in between is missed.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        listing = list_func(**list_kwargs)
        for item in listing.items:
            last = item
            if predicate(item):
                return item
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConditionTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {_brief(last)}")
        stream = watch.Watch()
        try:
            for event in stream.stream(
                list_func,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=max(1, int(remaining)),
                **list_kwargs,
            ):
                last = event["object"]
                if event["type"] != "DELETED" and predicate(event["object"]):
                    return event["object"]
        except ApiException as exc:
            if exc.status != 410:  # 410: our resourceVersion expired, list again
                raise
        finally:
            stream.stop()


def wait_for_pod(
    core: Any,
    namespace: str,
    name: str,
    predicate: Callable[[Any], bool],
    *,
    timeout: float,
    what: str,
) -> Any:
    """Watch one pod until ``predicate(pod)`` holds."""
    return watch_until(
        core.list_namespaced_pod,
        predicate,
        timeout=timeout,
        what=f"pod {namespace}/{name}: {what}",
        namespace=namespace,
        field_selector=f"metadata.name={name}",
    )


def pod_phase_in(*phases: str) -> Callable[[Any], bool]:
    return lambda pod: pod.status is not None and pod.status.phase in phases


def wait_for_gone(read: Callable[[], Any], *, timeout: float, what: str) -> None:
    """Poll ``read`` until it raises 404."""

    def gone() -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_for(gone, timeout=timeout, what=what)
