"""Is a plant's agent alive? Derived from heartbeat freshness alone, so any operator replica agrees."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from plantfed.contract.api.common import Condition, ConditionStatus
from plantfed.contract.api.participant import PlantParticipant, PlantParticipantStatus
from plantfed.hub.reconcile.conditions import get_condition, set_condition, timestamp

DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=90)
READY = "Ready"


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _ready_conditions(pp: PlantParticipant, now: datetime, timeout: timedelta) -> list[Condition]:
    beat = pp.status.last_heartbeat_time
    if beat is None:
        status, reason, message = ConditionStatus.UNKNOWN, "NoHeartbeat", "the plant's agent has never reported"
    elif now - beat <= timeout:
        status, reason = ConditionStatus.TRUE, "HeartbeatFresh"
        message = f"last heartbeat {_age((now - beat).total_seconds())} ago"
    else:
        status, reason = ConditionStatus.FALSE, "HeartbeatStale"
        message = f"last heartbeat {_age((now - beat).total_seconds())} ago, timeout is {_age(timeout.total_seconds())}"
    return set_condition(pp.status.conditions, READY, status, reason, message, now, pp.metadata.generation)


def plant_readiness(
    pp: PlantParticipant, now: datetime, heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT
) -> Condition:
    """The plant's `Ready` condition at `now`: True while the last heartbeat is within the timeout.

    Unknown until the first heartbeat. A heartbeat stamped in the future (clock skew between
    plant and hub) counts as fresh rather than taking a working plant out of rounds.
    """
    ready = get_condition(_ready_conditions(pp, now, heartbeat_timeout), READY)
    assert ready is not None
    return ready


@dataclass(frozen=True)
class ParticipantDecision:
    """The status to write back, and when to look again: the moment a fresh heartbeat goes stale."""

    status: PlantParticipantStatus
    requeue_at: datetime | None


def significant_change(before: PlantParticipantStatus, after: PlantParticipantStatus) -> bool:
    """Worth writing: conditions changed in more than their message (which only restates the heartbeat's age)."""

    def key(status: PlantParticipantStatus) -> list[tuple[str, ConditionStatus, str]]:
        return [(c.type, c.status, c.reason) for c in status.conditions]

    return key(before) != key(after) or before.observed_generation != after.observed_generation


def reconcile_participant(
    pp: PlantParticipant, now: datetime, heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT
) -> ParticipantDecision:
    conditions = _ready_conditions(pp, now, heartbeat_timeout)
    status = pp.status.model_copy(update={"conditions": conditions, "observed_generation": pp.metadata.generation})
    beat = pp.status.last_heartbeat_time
    ready = get_condition(conditions, READY)
    requeue_at = None
    if ready is not None and ready.status is ConditionStatus.TRUE and beat is not None:
        requeue_at = max(timestamp(now), beat + heartbeat_timeout) + timedelta(seconds=1)
    return ParticipantDecision(status, requeue_at)
