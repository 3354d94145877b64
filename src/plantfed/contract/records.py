"""Durable records shared by the exchange, the store, aggregation and the operator.

They are plain pydantic models so they serialise to the JSON files the model store keeps on disk
(no truth lives only in memory) and validate whatever is read back.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from plantfed.contract.naming import DNS_LABEL, MAX_LABEL_LENGTH, METRIC_NAME

MAX_MAGNITUDE = 1e15
"""The largest magnitude any reported number (metric, seconds, DP parameter) may have.

Far beyond any loss, norm or duration a plant or an aggregation measures, and small enough that any sum or
sample-weighted total of such values stays finite, so no statistic derived from accepted records can overflow into one
the store cannot read back. The store reads with these same models, so what is accepted is what can be read.
"""
MAX_SAMPLES = 10**12
"""The most samples a plant may declare: a count stays exact as a float64 weight and within MAX_MAGNITUDE."""

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
"""A reported number: finite (JSON has no NaN or Infinity) and bounded by MAX_MAGNITUDE."""
NonNegative = Annotated[float, Field(allow_inf_nan=False, ge=0, le=MAX_MAGNITUDE)]
Samples = Annotated[int, Field(ge=1, le=MAX_SAMPLES)]
Measured = Annotated[float, Field(allow_inf_nan=False)]
"""A number the hub measured itself (an update's norm, cosine, weight): finite, so its record reads back, but not
bounded by MAX_MAGNITUDE, since a plant's finite yet huge update must still aggregate (and show up as an outlier)."""
MAX_METRICS = 128
"""The most metrics one record may carry: a task's scores on three splits plus their sufficient statistics
(`plantfed.contract.scores`; the bearing task's macro-F1 alone needs 12 confusion counts per split)."""
MetricKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL_LENGTH, pattern=METRIC_NAME)]
Metrics = Annotated[dict[MetricKey, Finite], Field(max_length=MAX_METRICS)]
"""A plant's (or an aggregation's) named numbers: bounded in count, each named like a metric and `Finite`."""


class Codec(str, Enum):
    """How an update's tensors were compressed on the plant before upload."""

    NONE = "none"
    FP16 = "fp16"
    INT8 = "int8"


class DPMode(str, Enum):
    """What a differential-privacy release protects, and so how the accountant composes it.

    LOCAL: the plant clips its whole update and adds noise once (protects the plant's round of data).
    SAMPLE: DP-SGD on the plant, per-example clipping and noise on every Poisson-sampled batch (protects
    each record). CENTRAL: the hub noises the aggregate (a plant never declares it).
    """

    LOCAL = "local"
    CENTRAL = "central"
    SAMPLE = "sample"


class DPParams(BaseModel):
    """Differential-privacy parameters a plant applied to its update (zero means off).

    Under LOCAL, `steps` and `sample_rate` are informational: the hub charges one release of the whole
    update. Under SAMPLE they are what DP-SGD did (`steps` noisy batches drawn with probability
    `sample_rate` per record) and are exactly what the hub charges, so they must be present.
    """

    mode: DPMode = DPMode.LOCAL
    clip_norm: NonNegative = 0.0
    noise_multiplier: NonNegative = 0.0
    steps: int = Field(0, ge=0, le=MAX_SAMPLES)
    sample_rate: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _declarable(self) -> DPParams:
        if self.mode is DPMode.CENTRAL:
            raise ValueError("central DP is added by the hub; a plant's update cannot declare it")
        if self.noise_multiplier > 0 and self.clip_norm <= 0:
            raise ValueError(
                "noise without a clipping bound has unbounded sensitivity (no DP at all): set clip_norm > 0"
            )
        if self.mode is DPMode.SAMPLE and (self.clip_norm <= 0 or self.steps < 1 or self.sample_rate <= 0):
            raise ValueError(
                "a DP-SGD (mode sample) update must declare clip_norm > 0, steps >= 1 and sample_rate > 0; got "
                f"clip_norm={self.clip_norm}, steps={self.steps}, sample_rate={self.sample_rate}"
            )
        return self


class UpdateMeta(BaseModel):
    """What a plant declares with one update; mirrored 1:1 by the wire's `UpdateMetadata`."""

    plant: str
    round_id: str
    base_version: int
    num_samples: Samples
    metrics: Metrics = Field(default_factory=dict)
    train_seconds: NonNegative = 0.0
    codec: Codec = Codec.NONE
    dp: DPParams = Field(default_factory=DPParams)
    total_bytes: int = Field(ge=0)
    sha256: str
    variant: str = Field(default="full", min_length=1, max_length=MAX_LABEL_LENGTH, pattern=DNS_LABEL)

    @property
    def partial(self) -> bool:
        """A lighter variant's update carries only the parameters it shares with the full model."""
        return self.variant != "full"


class UpdateRecord(BaseModel):
    """An accepted (checksum-verified, committed) update: only these are visible to aggregation."""

    meta: UpdateMeta
    digest: str
    received_at: float
    #: Payload bytes the hub wrote for this update over all attempts (re-sent bytes count again).
    bytes_received: int | None = None
    #: From the first byte of the first upload attempt to the commit.
    upload_seconds: float | None = None


class RoundState(str, Enum):
    OPEN = "open"
    CLOSED = "closed"


class RoundRecord(BaseModel):
    """A round as the exchange knows it: who may upload, against which base version."""

    round_id: str
    model: str
    base_version: int
    plants: list[str]
    state: RoundState = RoundState.OPEN
    max_update_bytes: int = 8 * 1024**3
    opened_at: float | None = None
    closed_at: float | None = None
    #: plant -> digest of each update committed to the round, so a deleted or rewritten update record is detected
    #: (None: a round opened before the store kept this).
    committed: dict[str, str] | None = None


class AggregationSummary(BaseModel):
    """How a round's version was aggregated, kept with the version for the operator's metrics.

    The aggregation Job exits before any scrape and has no API credentials; the store is where the
    operator (through the exchange) can read what it measured.
    """

    strategy: str
    seconds: NonNegative
    peak_bytes: int
    #: plant -> every number the aggregation reported for it (l2_norm, cosine, weight, clip_factor, ...;
    #: epsilon when privacy accounting adds it). Names, not a fixed schema, so new numbers need no wire change.
    plants: dict[str, Annotated[dict[MetricKey, Measured], Field(max_length=MAX_METRICS)]] = Field(default_factory=dict)


class ModelVersion(BaseModel):
    """One version of a model lineage; `parent` and `round_id` make the lineage walkable."""

    model: str
    version: int
    digest: str
    size: int
    parent: int | None = None
    round_id: str | None = None
    metrics: Metrics = Field(default_factory=dict)
    created_at: float
    promoted: bool = False
    aggregation: AggregationSummary | None = None


class EvaluationRecord(BaseModel):
    """A plant's score of a round's candidate version on its own validation split: numbers only, no data.

    These are what a promotion decision rests on (docs/architecture.md, "Evaluation"): the same plants that
    trained the round also measured its base version on the same split, so candidate and incumbent are compared
    on identical data.
    """

    plant: str
    round_id: str
    version: int = Field(ge=1)
    num_samples: Samples
    metrics: Metrics = Field(default_factory=dict)
    received_at: float = 0.0


class DPRelease(BaseModel):
    """One accounted release: `steps` compositions of the subsampled Gaussian mechanism (σ, q)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: DPMode
    noise_multiplier: float = Field(
        ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False, description="σ: noise std as a multiple of the sensitivity C"
    )
    sample_rate: float = Field(default=1.0, gt=0, le=1, description="q: probability the plant takes part")
    steps: int = Field(default=1, ge=1)
    clip_norm: float = Field(
        default=0.0,
        ge=0,
        le=MAX_MAGNITUDE,
        allow_inf_nan=False,
        description="C, recorded for audit; ε does not depend on it",
    )


class LedgerEntry(BaseModel):
    round_id: str
    release: DPRelease


class PrivacyLedgerRecord(BaseModel):
    """A lineage's privacy ledger as the store keeps it: every plant's charged releases, in recording order."""

    plants: dict[str, list[LedgerEntry]] = Field(default_factory=dict)
