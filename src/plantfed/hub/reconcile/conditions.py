"""Condition bookkeeping as the Kubernetes API conventions describe it.

`lastTransitionTime` moves only when `status` flips, so "Ready since 3h" stays true across the
many reconciles that merely refresh the message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from plantfed.contract.api.common import Condition, ConditionStatus

_CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def timestamp(now: datetime) -> datetime:
    """`now` as the API server stores times: timezone-aware, whole seconds."""
    if now.tzinfo is None:
        raise ValueError("reconcile functions need timezone-aware times")
    return now.replace(microsecond=0)


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = get_condition(conditions, type_)
    return found is not None and found.status is ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """A copy of `conditions` with `type_` set; other conditions and their order are kept."""
    if not _CAMEL.match(reason):
        raise ValueError(f"condition reason must be CamelCase, got {reason!r}")
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    previous = get_condition(conditions, type_)
    since = timestamp(now)
    if previous is not None and previous.status is status:
        since = previous.last_transition_time
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=observed_generation,
        last_transition_time=since,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]
