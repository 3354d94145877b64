"""Cron arithmetic for maintenance windows and campaign cadence, evaluated at a given `now`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from plantfed.contract.api.participant import MaintenanceWindow


@dataclass(frozen=True)
class OpenWindow:
    window: MaintenanceWindow
    start: datetime
    end: datetime


def _last_fire(expr: str, at: datetime, tz: str) -> datetime:
    """The latest firing of `expr` at or before `at` (croniter's get_prev is strictly before)."""
    local = at.astimezone(ZoneInfo(tz)) + timedelta(seconds=1)
    return croniter(expr, local).get_prev(datetime).astimezone(UTC)


def next_fire(expr: str, after: datetime, tz: str = "UTC") -> datetime:
    """The first firing of `expr` strictly after `after`, in UTC."""
    return croniter(expr, after.astimezone(ZoneInfo(tz))).get_next(datetime).astimezone(UTC)


def open_window(windows: Sequence[MaintenanceWindow], now: datetime) -> OpenWindow | None:
    """The maintenance window `now` falls in, if any (the one ending last when several overlap).

    Durations are absolute minutes, so a window spanning a DST change lasts what it says.
    Only each window's latest opening needs checking: earlier openings of the same window end
    earlier.
    """
    found: OpenWindow | None = None
    for window in windows:
        start = _last_fire(window.schedule, now, window.time_zone)
        end = start + timedelta(minutes=window.duration_minutes)
        if start <= now < end and (found is None or end > found.end):
            found = OpenWindow(window, start, end)
    return found
