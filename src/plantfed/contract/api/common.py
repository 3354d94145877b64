"""Types shared by the three CRDs: conditions, label selectors, tolerations, object metadata."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, ClassVar, Self

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from plantfed.contract.api.base import (
    CAMEL_REASON,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    LONG_TEXT,
    SHORT_TEXT,
    KubeModel,
    Rule,
)
from plantfed.contract.naming import API_VERSION as API_VERSION  # defined with the other names, see naming
from plantfed.contract.naming import GROUP as GROUP
from plantfed.contract.naming import MAX_LABEL_LENGTH, METRIC_NAME
from plantfed.contract.naming import VERSION as VERSION

MAX_PLANTS = 256
"""Upper bound on plants per round; bounds list sizes so CEL rules stay within cost limits."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH, pattern=DNS_LABEL)]
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=SHORT_TEXT, pattern=DNS_SUBDOMAIN)]
ShortText = Annotated[str, StringConstraints(max_length=SHORT_TEXT)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317)]
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_LENGTH)]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH, pattern=METRIC_NAME)]


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """The Kubernetes API conventions' condition: one observation of one aspect of the object.

    `lastTransitionTime` changes only when `status` changes, so watchers can tell how long an
    object has been (not) Ready without diffing history.
    """

    type: Annotated[str, StringConstraints(min_length=1, max_length=316, pattern=CAMEL_REASON)]
    status: ConditionStatus
    observed_generation: int | None = Field(None, ge=0)
    last_transition_time: datetime
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=CAMEL_REASON)]
    message: Annotated[str, StringConstraints(max_length=LONG_TEXT)] = ""


def conditions_field(description: str) -> Any:
    """A `conditions` list as the conventions want it: a map keyed by `type` for server-side apply."""
    return Field(
        default_factory=list,
        max_length=16,
        description=description,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class SelectorOperator(str, Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(KubeModel):
    """One set-based label requirement, with the same meaning as in `metav1.LabelSelector`."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0"
            " : !has(self.values) || size(self.values) == 0",
            "values must be non-empty for In/NotIn and empty for Exists/DoesNotExist",
        ),
    )

    key: LabelKey
    operator: SelectorOperator
    values: list[LabelValue] = Field(default_factory=list, max_length=64)


class LabelSelector(KubeModel):
    """Which PlantParticipants (by their metadata labels) a round may draw from.

    An empty selector matches every plant, as in Kubernetes.
    """

    match_labels: dict[str, LabelValue] = Field(default_factory=dict, json_schema_extra={"maxProperties": 32})
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=16)


class TolerationOperator(str, Enum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(str, Enum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(KubeModel):
    """A pod toleration, so training can land on tainted GPU nodes at the plant."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty when operator is Exists",
        ),
    )

    key: LabelKey | None = None
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: LabelValue | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = Field(None, ge=0)


class MetricGoal(str, Enum):
    """Whether a larger value of a metric is better (accuracy) or a smaller one (loss)."""

    MAXIMIZE = "Maximize"
    MINIMIZE = "Minimize"

    def better(self, candidate: float, incumbent: float, min_delta: float = 0.0) -> bool:
        if self is MetricGoal.MAXIMIZE:
            return candidate > incumbent + min_delta
        return candidate < incumbent - min_delta


GOAL_DOC = (
    "Whether larger or smaller values of `metric` are better. Unset: the task's own direction when `metric` is "
    "its primary score (e.g. val_rmse of a regression task: Minimize), Minimize for a loss, else Maximize."
)


class StatusModel(KubeModel):
    """Base of the three `status` models: fields written by other parties are ignored, not fatal.

    Status is shared: kopf may keep its own bookkeeping there and a plant's agent may be a newer
    version than the hub's operator; neither should make the operator unable to read the object.
    """

    model_config = ConfigDict(extra="ignore")


class ObjectMeta(KubeModel):
    """The part of `metadata` the operator reads; everything else the server sends is ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(KubeModel):
    """A custom resource as the API server returns it; subclasses add `spec` and `status`.

    The ClassVars describe the CRD around the schema (names, scope, printer columns) so the
    generator needs nothing but the class.
    """

    kind_name: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    printer_columns: ClassVar[tuple[dict[str, Any], ...]] = ()
    root_rules: ClassVar[tuple[Rule, ...]] = ()

    api_version: str = API_VERSION
    kind: str = ""
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _check_kind(self) -> Self:
        if not self.kind:
            self.kind = self.kind_name
        if self.kind != self.kind_name or self.api_version != API_VERSION:
            raise ValueError(f"expected {API_VERSION} {self.kind_name}, got {self.api_version} {self.kind}")
        return self

    @classmethod
    def from_object(cls, body: Any) -> Self:
        """Validate an object as kopf hands it to a handler (any mapping, e.g. `kopf.Body`)."""
        return cls.model_validate(_plain(body))

    @property
    def name(self) -> str:
        return self.metadata.name


def _plain(value: Any) -> Any:
    """Deep-convert mapping/sequence views (kopf bodies) into dicts and lists pydantic accepts."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
