"""FederatedModel: a model lineage and the campaign of rounds that trains it.

The operator creates one FederatedRound at a time from `roundTemplate`, on `cadence`, until a
stop criterion holds; `status.history` records each promotion so the lineage is visible without
reading the model store.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, field_validator

from plantfed.contract.api.base import KubeModel, Rule, immutable
from plantfed.contract.api.common import (
    GOAL_DOC,
    Condition,
    MetricGoal,
    MetricName,
    Name,
    ObjectName,
    Resource,
    StatusModel,
    conditions_field,
)
from plantfed.contract.api.participant import CRON, TimeZone, check_cron, check_time_zone
from plantfed.contract.api.round import METRICS_EXTRA, Metrics, RoundTemplate

MAX_HISTORY = 50
DEFAULT_ROUND_RETENTION = 10
"""Finished campaign rounds a FederatedModel keeps by default (`spec.roundRetention`)."""

TaskRef = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.:-]+$")]


class PublishedVersion(KubeModel):
    """A version already in the model store (e.g. of another lineage) to start from."""

    model: Name
    version: int = Field(ge=0)


class InitialWeights(KubeModel):
    """Where version 0 of the lineage comes from: a seeded random init or a published version."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.seed) ? 1 : 0) + (has(self.fromVersion) ? 1 : 0) == 1",
            "exactly one of seed or fromVersion must be set",
        ),
    )

    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    from_version: PublishedVersion | None = None


class StopCriteria(KubeModel):
    """When the campaign stops creating rounds; any one criterion that holds stops it.

    `patience` counts completed rounds since the best value of `metric` last improved by more
    than `minDelta`; `target` stops as soon as a round's evaluated `metric` reaches it.
    """

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("!has(self.target) || has(self.metric)", "target needs metric", ".target"),
        Rule("!has(self.patience) || has(self.metric)", "patience needs metric", ".patience"),
    )

    max_rounds: int | None = Field(None, ge=1, le=100000)
    metric: MetricName | None = None
    goal: MetricGoal | None = Field(None, description=GOAL_DOC)
    target: float | None = None
    patience: int | None = Field(None, ge=1, le=1000)
    min_delta: float = Field(0.0, ge=0)


class FederatedModelSpec(KubeModel):
    task: TaskRef = Field(
        description="Task the plants train (e.g. bearing); fixes architecture and data loading.",
        json_schema_extra=immutable("task"),
    )
    variant: Name = Field("full", json_schema_extra=immutable("variant"))
    initial_weights: InitialWeights = Field(InitialWeights(seed=0), json_schema_extra=immutable("initialWeights"))
    round_template: RoundTemplate
    cadence: Annotated[str, StringConstraints(max_length=128, pattern=f"({CRON})|^$")] = Field(
        "",
        description="Cron schedule for starting rounds; a tick that falls while a round runs is skipped. "
        "Empty starts the next round as soon as the previous one finishes.",
    )
    time_zone: TimeZone = Field("UTC", description="IANA time zone the cadence is read in.")
    stop: StopCriteria = StopCriteria()
    suspend: bool = Field(False, description="Create no new rounds; a running round still finishes.")
    round_retention: int = Field(
        DEFAULT_ROUND_RETENTION,
        ge=1,
        le=MAX_HISTORY,
        description="Finished campaign rounds kept as objects, newest first; older ones are deleted once the "
        "model's status has recorded them (promotion history, rounds completed, best result). The newest is "
        "always kept: it times the next round.",
    )

    _tz = field_validator("time_zone")(check_time_zone)

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        return check_cron(value) if value else value


class HistoryEntry(KubeModel):
    version: int = Field(ge=0)
    round: ObjectName
    metrics: Metrics = Field(default_factory=dict, json_schema_extra=METRICS_EXTRA)
    promoted_at: datetime


class BestResult(KubeModel):
    """Best value of the stop metric so far and which round reached it (for patience)."""

    round: ObjectName
    round_number: int = Field(ge=1)
    value: float


class ModelPhase(str, Enum):
    INITIALIZING = "Initializing"
    TRAINING = "Training"
    WAITING = "Waiting"
    SUSPENDED = "Suspended"
    COMPLETED = "Completed"


class FederatedModelStatus(StatusModel):
    phase: ModelPhase | None = None
    promoted_version: int | None = Field(None, ge=0)
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description=f"Most recent promotions, oldest first (at most {MAX_HISTORY}).",
    )
    rounds_completed: int = Field(0, ge=0)
    current_round: ObjectName | None = None
    next_round_time: datetime | None = None
    best: BestResult | None = None
    conditions: list[Condition] = conditions_field("Ready (a promoted version exists), Converged.")
    observed_generation: int | None = Field(None, ge=0)


class FederatedModel(Resource):
    """A model lineage trained by successive federated rounds."""

    kind_name: ClassVar = "FederatedModel"
    plural: ClassVar = "federatedmodels"
    short_names: ClassVar = ("fm",)
    printer_columns: ClassVar = (
        {"name": "Task", "type": "string", "jsonPath": ".spec.task"},
        {"name": "Variant", "type": "string", "jsonPath": ".spec.variant", "priority": 1},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Promoted", "type": "integer", "jsonPath": ".status.promotedVersion"},
        {"name": "Rounds", "type": "integer", "jsonPath": ".status.roundsCompleted"},
        {"name": "Current", "type": "string", "jsonPath": ".status.currentRound"},
        {"name": "Converged", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Converged")].status'},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )

    spec: FederatedModelSpec
    status: FederatedModelStatus = Field(default_factory=FederatedModelStatus)
