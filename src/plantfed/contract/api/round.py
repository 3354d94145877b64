"""FederatedRound: one round of federated training, from plant assignment to promotion.

The spec is immutable once created: plants train against exactly the hyperparameters they were
assigned, and a restarted operator must see the same round it started.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints
from pydantic.json_schema import JsonDict

from plantfed.contract import strategies
from plantfed.contract.api.base import QUANTITY, SHORT_TEXT, KubeModel, Rule
from plantfed.contract.api.common import (
    GOAL_DOC,
    MAX_PLANTS,
    Condition,
    LabelSelector,
    MetricGoal,
    MetricName,
    Name,
    ObjectName,
    Resource,
    StatusModel,
    Toleration,
    conditions_field,
)
from plantfed.contract.records import MAX_METRICS, Codec, Finite
from plantfed.contract.strategies import StrategyName

Quantity = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=QUANTITY)]
Metrics = dict[str, float]
METRICS_EXTRA: JsonDict = {"maxProperties": MAX_METRICS}


class Optimizer(str, Enum):
    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"


class Training(KubeModel):
    """Local training each plant runs on its own data before uploading its update."""

    epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65536)
    learning_rate: float = Field(0.01, gt=0, le=10)
    fed_prox_mu: float = Field(0.0, ge=0, le=100, description="FedProx proximal term; 0 disables it.")
    optimizer: Optimizer = Optimizer.SGD
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of the plants' local SGD (optimizer sgd only).")


def _parameter(name: str) -> Any:
    """A CRD field for one strategy parameter: bounds and description from the one vocabulary."""
    p = strategies.PARAMETERS[name]
    return Field(None, description=strategies.describe(name), ge=p.ge, gt=p.gt, le=p.le, lt=p.lt)


class Strategy(KubeModel):
    """How the hub combines plant updates (the vocabulary is plantfed.contract.strategies).

    An unset parameter takes the strategy's default; parameters a strategy does not use are ignored.
    """

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.name != 'trimmedMean' || !has(self.trimFraction) || self.trimFraction > 0.0",
            "trimmedMean needs trimFraction > 0",
            ".trimFraction",
        ),
    )

    name: StrategyName = StrategyName.FEDAVG
    server_learning_rate: float | None = _parameter("server_learning_rate")
    beta1: float | None = _parameter("beta1")
    beta2: float | None = _parameter("beta2")
    tau: float | None = _parameter("tau")
    momentum: float | None = _parameter("momentum")
    trim_fraction: float | None = _parameter("trim_fraction")
    norm_bound: float | None = _parameter("norm_bound")

    def parameters(self) -> dict[str, strategies.Value | None]:
        """The parameters as set in the manifest (None: unset)."""
        return {p.name: getattr(self, p.name) for p in strategies.CRD_PARAMETERS}

    def resolved(self) -> dict[str, strategies.Value | None]:
        """Every parameter this strategy uses, with its default where unset (None: off)."""
        return strategies.resolve(self.name, self.parameters())


_declared = set(Strategy.model_fields) - {"name"}
if _declared != {p.name for p in strategies.CRD_PARAMETERS}:
    raise TypeError(f"Strategy declares {sorted(_declared)}; the vocabulary's CRD parameters differ")


class PrivacyMode(str, Enum):
    """What differential privacy protects and where its noise is added.

    local: each plant clips its whole update to clipNorm and noises it (protects a plant's round of data).
    central: the hub clips each update and noises the aggregate once (same unit; the hub is trusted).
    sample: DP-SGD on each plant, each record's gradient clipped to clipNorm and noised on every batch
    (protects each record; far less noise for the same epsilon, so the usual choice for a few plants).
    """

    OFF = "off"
    LOCAL = "local"
    CENTRAL = "central"
    SAMPLE = "sample"


class Privacy(KubeModel):
    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.mode == 'off' || self.noiseMultiplier > 0.0",
            "noiseMultiplier must be > 0 when privacy is on",
            ".noiseMultiplier",
        ),
    )

    mode: PrivacyMode = PrivacyMode.OFF
    clip_norm: float = Field(
        1.0,
        gt=0,
        le=1e6,
        description="L2 bound C: of each update (local, central) or of each record's gradient (sample).",
    )
    noise_multiplier: float = Field(
        1.0,
        ge=0,
        le=1e3,
        description="Gaussian noise std as a multiple of clipNorm (sigma).",
    )
    delta: float = Field(1e-5, gt=0, lt=1)
    epsilon_budget: float | None = Field(
        None,
        gt=0,
        description="Leave a plant out of a round that would take its epsilon in this model's lineage"
        " (at delta) above this; the reason is PrivacyBudgetExhausted.",
    )


class PodSettings(KubeModel):
    """Resources of the training pod each plant's agent creates next to the plant's data."""

    gpus: int = Field(1, ge=0, le=16)
    cpu: Quantity = "2"
    memory: Quantity = "8Gi"
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 32}
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)


class PromotionPolicy(str, Enum):
    ALWAYS = "Always"
    IF_BETTER = "IfBetter"


class Promotion(KubeModel):
    """Whether the aggregated model replaces the promoted one, and on what evidence.

    Before deciding, the plants whose updates went into the candidate score it on their own validation
    splits (`val_accuracy`, `val_loss`, ... in the round's status.metrics); each of them scored the base
    version on the same split before training. IfBetter with a `val_*` metric compares the two on exactly
    the same plants and samples. Any other metric compares the candidate's training-time aggregate with the
    promoted version's. A candidate without the metric is never promoted under IfBetter.
    """

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("self.policy != 'IfBetter' || has(self.metric)", "IfBetter needs a metric", ".metric"),
    )

    policy: PromotionPolicy = PromotionPolicy.ALWAYS
    metric: MetricName | None = None
    goal: MetricGoal | None = Field(None, description=GOAL_DOC)
    min_delta: float = Field(0.0, ge=0, description="Improvement smaller than this does not count as better.")
    evaluation_timeout_seconds: int = Field(
        600,
        ge=0,
        le=24 * 3600,
        description="How long contributing plants get to score the candidate; 0 skips plant-side evaluation.",
    )


class LateUploadPolicy(str, Enum):
    """What happens to updates that arrive after the round stopped waiting for plants.

    Either way a late update is never aggregated and the plant is marked Late. Reject closes the
    exchange round at the cutoff so the upload is refused and no bytes are stored; Record keeps it
    open until the round finishes so the late update's metrics are kept for inspection.
    """

    REJECT = "Reject"
    RECORD = "Record"


class RoundTemplate(KubeModel):
    """Everything about a round except which model and base version it trains.

    Candidates are the plants named in `plants` (all plants when unset), narrowed to those whose
    labels match `plantSelector` (when set); at least one of the two is required.
    """

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("has(self.plantSelector) || has(self.plants)", "set plantSelector, plants, or both"),
        Rule(
            "!has(self.plants) || self.minParticipants <= size(self.plants)",
            "minParticipants cannot exceed the number of plants listed",
            ".minParticipants",
        ),
        Rule(
            "self.strategy.name != 'fedprox' || self.training.fedProxMu > 0.0",
            "strategy fedprox needs training.fedProxMu > 0",
            ".training.fedProxMu",
        ),
        Rule(
            "self.privacy.mode != 'sample' || self.training.fedProxMu == 0.0",
            "privacy mode sample (DP-SGD) cannot be combined with training.fedProxMu: the proximal term would "
            "escape per-record clipping",
            ".training.fedProxMu",
        ),
    )

    plant_selector: LabelSelector | None = None
    plants: list[Name] | None = Field(
        None, min_length=1, max_length=MAX_PLANTS, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    min_participants: int = Field(2, ge=1, le=MAX_PLANTS, description="Quorum: uploads needed to aggregate.")
    deadline_seconds: int = Field(
        3600, ge=60, le=7 * 24 * 3600, description="How long after the round starts plants may upload."
    )
    training: Training = Training()
    strategy: Strategy = Strategy()
    compression: Codec = Codec.NONE
    privacy: Privacy = Privacy()
    pod: PodSettings = PodSettings()
    promotion: Promotion = Promotion()
    late_upload_policy: LateUploadPolicy = LateUploadPolicy.REJECT


class FederatedRoundSpec(RoundTemplate):
    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("self == oldSelf", "a FederatedRound's spec is immutable; create a new round instead"),
    )

    model_ref: Name = Field(description="Name of the FederatedModel (same namespace) this round trains.")
    base_version: int | None = Field(
        None, ge=0, description="Model version plants start from; unset means the latest promoted."
    )


class RoundPhase(str, Enum):
    PENDING = "Pending"
    TRAINING = "Training"
    AGGREGATING = "Aggregating"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RoundPhase.SUCCEEDED, RoundPhase.FAILED)


class PlantRoundState(str, Enum):
    ASSIGNED = "Assigned"
    TRAINING = "Training"
    UPLOADED = "Uploaded"
    LATE = "Late"
    FAILED = "Failed"
    EXCLUDED = "Excluded"


class PlantRoundStatus(KubeModel):
    """One plant's part in the round; `reason` says why it was excluded, late or failed."""

    plant: Name
    state: PlantRoundState
    progress: float | None = Field(None, ge=0, le=1)
    samples: int | None = Field(None, ge=0)
    bytes: int | None = Field(None, ge=0)
    metrics: Metrics = Field(default_factory=dict, json_schema_extra=METRICS_EXTRA)
    reason: Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Z][A-Za-z0-9]*$")] | None = None
    message: Annotated[str, StringConstraints(max_length=SHORT_TEXT * 4)] = ""
    evaluation: Metrics = Field(
        default_factory=dict,
        json_schema_extra=METRICS_EXTRA,
        description="The plant's score of the candidate on its validation split.",
    )


class RoundEvaluation(KubeModel):
    """Plant-side evaluation of the candidate: who scored it, and candidate vs base on those same plants."""

    version: int = Field(ge=0, description="The candidate version being scored.")
    start_time: datetime
    expected: int = Field(ge=0, description="Plants asked to score it (those whose updates it aggregates).")
    reported: int = Field(0, ge=0)
    samples: int = Field(0, ge=0, description="Validation samples behind the candidate's scores.")
    candidate: Metrics = Field(default_factory=dict, json_schema_extra=METRICS_EXTRA)
    base: Metrics = Field(
        default_factory=dict,
        json_schema_extra=METRICS_EXTRA,
        description="The base version's scores on the same plants' validation splits, measured before training.",
    )


class RoundScore(KubeModel):
    """The round's headline score (`kubectl get` shows it): the promotion metric when the round names one,
    else the task's primary score as the plants declared it (`val_<primary>`, or `local_val_<primary>` when the
    candidate was not scored by the plants)."""

    metric: MetricName
    goal: MetricGoal
    value: Finite


class FederatedRoundStatus(StatusModel):
    phase: RoundPhase | None = None
    base_version: int | None = Field(None, ge=0, description="Resolved base version the plants train from.")
    plants: list[PlantRoundStatus] = Field(
        default_factory=list,
        max_length=MAX_PLANTS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["plant"]},
    )
    assigned: int | None = Field(None, ge=0)
    uploaded: int | None = Field(None, ge=0)
    aggregation_job: ObjectName | None = None
    candidate_version: int | None = Field(None, ge=0, description="Version the aggregation Job produced.")
    result_version: int | None = Field(None, ge=0, description="Version promoted by this round, if any.")
    evaluation: RoundEvaluation | None = None
    metrics: Metrics = Field(default_factory=dict, json_schema_extra=METRICS_EXTRA)
    score: RoundScore | None = None
    start_time: datetime | None = None
    cutoff_time: datetime | None = Field(None, description="When the round stopped accepting updates for aggregation.")
    completion_time: datetime | None = None
    conditions: list[Condition] = conditions_field("Succeeded (summary), QuorumMet, Aggregated, Evaluated, Promoted.")
    observed_generation: int | None = Field(None, ge=0)


class FederatedRound(Resource):
    """One round of federated training of a FederatedModel across plants."""

    kind_name: ClassVar = "FederatedRound"
    plural: ClassVar = "federatedrounds"
    short_names: ClassVar = ("fr",)
    printer_columns: ClassVar = (
        {"name": "Model", "type": "string", "jsonPath": ".spec.modelRef"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Base", "type": "integer", "jsonPath": ".status.baseVersion"},
        {"name": "Quorum", "type": "integer", "jsonPath": ".spec.minParticipants"},
        {"name": "Assigned", "type": "integer", "jsonPath": ".status.assigned"},
        {"name": "Uploaded", "type": "integer", "jsonPath": ".status.uploaded"},
        {"name": "Result", "type": "integer", "jsonPath": ".status.resultVersion"},
        {"name": "Metric", "type": "string", "jsonPath": ".status.score.metric"},
        {"name": "Value", "type": "number", "jsonPath": ".status.score.value"},
        {"name": "Goal", "type": "string", "priority": 1, "jsonPath": ".status.score.goal"},
        {
            "name": "Reason",
            "type": "string",
            "priority": 1,
            "jsonPath": '.status.conditions[?(@.type=="Succeeded")].reason',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )

    spec: FederatedRoundSpec
    status: FederatedRoundStatus = Field(default_factory=FederatedRoundStatus)
