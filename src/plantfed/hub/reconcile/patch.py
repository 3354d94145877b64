"""Turn a decision's new status into the JSON merge patch a handler sends.

Models serialise without unset optionals, so a field the reconcile cleared (e.g. a finished
`currentRound`) would simply be missing from `to_dict()`, and a merge patch without it leaves the
old value in place. The patch therefore sets removed keys to null explicitly.
"""

from __future__ import annotations

from typing import Any

from plantfed.contract.api.base import KubeModel


def merge_patch(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch that turns `before` into `after` (lists are replaced whole)."""
    patch: dict[str, Any] = {key: None for key in before if key not in after}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            nested = merge_patch(old, value)
            if nested:
                patch[key] = nested
        elif key not in before or old != value:
            patch[key] = value
    return patch


def status_patch(before: KubeModel, after: KubeModel) -> dict[str, Any]:
    """The `status` merge patch from the observed status to the decided one; {} when unchanged."""
    return merge_patch(before.to_dict(), after.to_dict())


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386: `target` with `patch` applied (null removes a key), as the API server applies a status patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = apply_merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = value
    return out


def finalizer_release(meta: dict[str, Any], finalizer: str) -> dict[str, Any] | None:
    """The metadata merge patch that removes `finalizer` from an object, or None when it does not carry it.

    kopf puts its finalizer on every object it runs timers for, only so it can stop those timers when the
    object goes; it guards no cleanup of ours. An operator that stops (e.g. `helm uninstall`, which deletes
    the operator before the chart's PlantParticipants) takes it off, or those objects and their namespace
    stay Terminating with no one left to finalize them. The resourceVersion makes a concurrent change a 409.
    """
    finalizers = list(meta.get("finalizers") or ())
    if finalizer not in finalizers:
        return None
    return {
        "metadata": {
            "resourceVersion": meta["resourceVersion"],
            "finalizers": [f for f in finalizers if f != finalizer] or None,
        }
    }
