"""Heterogeneity profiles: how each simulated plant differs from this machine (speed, schedule, link).

A plant's virtual duration for a round is what really happened on this machine, stretched by its profile:
`train_seconds × slowdown + bytes moved × 8 / bandwidth`. Maintenance windows are the PlantParticipant's own
(`spec.maintenanceWindows`), so the operator's real selection logic leaves a plant out while one is open;
`offline` windows stop the plant's heartbeats, so the operator sees it go NotReady after the heartbeat
timeout, as on a cluster. `dropout` is the chance (seeded) that a plant's training never returns in a round.

    start: "2025-01-06T06:00:00Z"      # when the virtual clock starts (cadence and windows are read from it)
    defaults: {slowdown: 1.0}
    plants:
      plant-2: {slowdown: 8.0, bandwidthMbps: 2}
      plant-3:
        dropout: 0.3
        maintenanceWindows: [{schedule: "0 12 * * *", durationMinutes: 120}]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from plantfed.contract.api.base import KubeModel
from plantfed.contract.api.participant import MaintenanceWindow

DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)
"""A Monday, 00:00 UTC: a fixed start makes cadence and windows reproducible run to run."""


class ProfileError(ValueError):
    """A profile (file or flags) that cannot be used; the message names the field and the plant."""


class PlantProfile(KubeModel):
    """How one plant differs from this machine; every field optional, so it can override `defaults`."""

    slowdown: float | None = Field(
        None, gt=0, le=10_000, description="Multiplies the measured training time (4 = four times slower)."
    )
    dropout: float | None = Field(
        None, ge=0, le=1, description="Chance per round that the plant's training never returns (seeded)."
    )
    bandwidth_mbps: float | None = Field(
        None, gt=0, description="Link speed in Mbit/s for model downloads and update uploads; unset: unlimited."
    )
    maintenance_windows: list[MaintenanceWindow] | None = Field(
        None, max_length=16, description="The PlantParticipant's maintenance windows: no rounds assigned then."
    )
    offline: list[MaintenanceWindow] | None = Field(
        None, max_length=16, description="Windows in which the plant's agent is down: no heartbeats."
    )

    def over(self, base: PlantProfile) -> PlantProfile:
        """This profile with `base`'s values where this one leaves a field unset."""
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})


class Resolved(KubeModel):
    """A plant's profile with every knob decided."""

    slowdown: float = 1.0
    dropout: float = 0.0
    bandwidth_mbps: float | None = None
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    offline: list[MaintenanceWindow] = Field(default_factory=list)

    def transfer_seconds(self, size: int) -> float:
        return 0.0 if self.bandwidth_mbps is None else size * 8 / (self.bandwidth_mbps * 1e6)


class FleetProfile(KubeModel):
    start: datetime = DEFAULT_START
    defaults: PlantProfile = PlantProfile()
    plants: dict[str, PlantProfile] = Field(default_factory=dict)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2025-01-06T06:00:00Z")
        return value.astimezone(UTC)

    def resolve(self, plant: str) -> Resolved:
        merged = self.plants.get(plant, PlantProfile()).over(self.defaults)
        return Resolved.model_validate({k: v for k, v in merged.model_dump().items() if v is not None})

    def check_plants(self, fleet: Iterable[str]) -> None:
        unknown = sorted(set(self.plants) - set(fleet))
        if unknown:
            raise ProfileError(
                f"the profile names {', '.join(unknown)}, which this simulation does not have "
                f"(plants: {', '.join(sorted(fleet))})"
            )


def _describe(err: ValidationError, where: str) -> str:
    causes = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        causes.append(f"{path}: {e['msg']}" if path else e["msg"])
    return f"{where}: " + "; ".join(causes)


def load_profile(path: Path) -> FleetProfile:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ProfileError(f"{path}: {err}") from None
    try:
        return FleetProfile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(_describe(err, str(path))) from None


FLAG_FIELDS = {"--plant-slowdown": "slowdown", "--plant-dropout": "dropout", "--plant-bandwidth": "bandwidth_mbps"}
"""`plantfed simulate` flags that set one profile field, uniformly (VALUE) or per plant (PLANT=VALUE)."""


def with_flags(profile: FleetProfile, flags: Mapping[str, Iterable[str]]) -> FleetProfile:
    """`profile` with the flags' values on top (flag → its values as typed, e.g. ["4", "plant-2=10"])."""
    defaults = profile.defaults.model_dump(exclude_unset=True)
    plants: dict[str, dict[str, Any]] = {p: v.model_dump(exclude_unset=True) for p, v in profile.plants.items()}
    for flag, values in flags.items():
        key = FLAG_FIELDS[flag]
        for text in values:
            plant, sep, value = text.rpartition("=")
            try:
                number = float(value)
            except ValueError:
                raise ProfileError(f"{flag} expects VALUE or PLANT=VALUE with a number, got {text!r}") from None
            if sep and not plant:
                raise ProfileError(f"{flag} {text!r}: name the plant before '='")
            (plants.setdefault(plant, {}) if sep else defaults)[key] = number
    try:
        return FleetProfile.model_validate(
            {"start": profile.start, "defaults": defaults, "plants": plants}, by_name=True
        )
    except ValidationError as err:
        raise ProfileError(_describe(err, "plant profile flags")) from None
