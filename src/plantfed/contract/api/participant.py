"""PlantParticipant: one plant's membership in the federation, written by the plant's agent.

The hub reads it to decide whom to assign to a round (heartbeat freshness, paused flag,
maintenance windows, capacity); the plant's agent writes only its own object and status.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, StringConstraints, field_validator

from plantfed.contract.api.base import SHORT_TEXT, KubeModel, Rule, immutable
from plantfed.contract.api.common import (
    Condition,
    Name,
    ObjectName,
    Resource,
    ShortText,
    StatusModel,
    conditions_field,
)

CRON = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})$"
"""Five-field cron or a macro; the full grammar is checked by croniter in Python."""

Cron = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=CRON)]
TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def check_cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"not a valid five-field cron expression: {value!r}")
    return value


def check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA time zone: {value!r}") from err
    return value


class ModelVariant(str, Enum):
    """Which size of the task's model the plant's hardware can train."""

    FULL = "full"
    LIGHT = "light"


class Capacity(KubeModel):
    """What the plant can give a round; a round needing more GPUs excludes the plant."""

    gpus: int = Field(1, ge=0, le=64)
    model_variant: ModelVariant = ModelVariant.FULL


class PvcSource(KubeModel):
    claim_name: ObjectName


class HostPathSource(KubeModel):
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/")]


class DataSource(KubeModel):
    """Where the plant's training data lives; the agent mounts it read-only into the training pod.

    The data never leaves the plant: only this reference is visible to the hub.
    """

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.pvc) ? 1 : 0) + (has(self.hostPath) ? 1 : 0) == 1",
            "exactly one of pvc or hostPath must be set",
        ),
        Rule("!self.subPath.contains('..')", "subPath must not contain '..'", ".subPath"),
    )

    pvc: PvcSource | None = None
    host_path: HostPathSource | None = None
    sub_path: Annotated[str, StringConstraints(max_length=1024, pattern=r"^([^/].*)?$")] = Field(
        "", description="Relative path inside the volume; the agent mounts only this part."
    )
    format: Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z0-9][a-z0-9._-]*$")] | None = Field(
        None, description="Data layout the task's loader expects (task-defined, e.g. npz, parquet, imagefolder)."
    )


class MaintenanceWindow(KubeModel):
    """A recurring period in which the plant must not train (line changeover, shift handover).

    The window opens at each firing of `schedule` in `timeZone` and lasts `durationMinutes`.
    """

    schedule: Cron = Field(description="Cron expression for when the window opens, e.g. '0 22 * * 5'.")
    duration_minutes: int = Field(ge=1, le=7 * 24 * 60)
    time_zone: TimeZone = "UTC"

    _cron = field_validator("schedule")(check_cron)
    _tz = field_validator("time_zone")(check_time_zone)


class PlantParticipantSpec(KubeModel):
    plant_id: Name = Field(
        description="Identity of the plant in the exchange and model store; equals metadata.name.",
        json_schema_extra=immutable("plantId"),
    )
    display_name: ShortText | None = None
    site: ShortText | None = Field(None, description="Where the plant is, for people reading dashboards.")
    capacity: Capacity = Capacity()
    data: DataSource
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list, max_length=16)
    paused: bool = Field(False, description="Stop assigning new rounds to this plant; running work finishes.")


class AssignmentState(str, Enum):
    """Where the plant's agent is with its current round, as the agent reports it."""

    PENDING = "Pending"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    FAILED = "Failed"


class Assignment(KubeModel):
    round: ObjectName
    state: AssignmentState
    progress: float = Field(0.0, ge=0.0, le=1.0)
    message: Annotated[str, StringConstraints(max_length=SHORT_TEXT * 4)] = ""


class PlantParticipantStatus(StatusModel):
    conditions: list[Condition] = conditions_field("Ready: the agent heartbeats within the timeout.")
    observed_generation: int | None = Field(None, ge=0)
    last_heartbeat_time: datetime | None = None
    agent_version: ShortText | None = None
    assignment: Assignment | None = None
    model_version: int | None = Field(None, ge=0, description="Model version held in the plant's cache.")
    dp_epsilon: float | None = Field(
        None,
        ge=0,
        description="Differential-privacy epsilon the plant has spent in the lineage of the last DP round"
        " that aggregated its update (at that round's delta), from the hub's privacy ledger; set by the operator.",
    )


class PlantParticipant(Resource):
    """A manufacturing plant that trains locally and sends only weight updates to the hub."""

    kind_name: ClassVar = "PlantParticipant"
    plural: ClassVar = "plantparticipants"
    short_names: ClassVar = ("pp",)
    root_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.metadata.name == self.spec.plantId",
            "metadata.name must equal spec.plantId, so agent RBAC by resource name covers exactly one plant",
        ),
    )
    printer_columns: ClassVar = (
        {"name": "Plant", "type": "string", "jsonPath": ".spec.plantId", "priority": 1},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"},
        {"name": "GPUs", "type": "integer", "jsonPath": ".spec.capacity.gpus"},
        {"name": "Round", "type": "string", "jsonPath": ".status.assignment.round"},
        {"name": "State", "type": "string", "jsonPath": ".status.assignment.state"},
        {"name": "Progress", "type": "number", "jsonPath": ".status.assignment.progress", "priority": 1},
        {"name": "Model", "type": "integer", "jsonPath": ".status.modelVersion"},
        {"name": "Heartbeat", "type": "date", "jsonPath": ".status.lastHeartbeatTime"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )

    spec: PlantParticipantSpec
    status: PlantParticipantStatus = Field(default_factory=PlantParticipantStatus)
