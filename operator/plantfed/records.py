"""Durable records shared by the exchange, the store, aggregation and the operator.

They are plain pydantic models so they serialise to the JSON files the model store keeps on disk
(no truth lives only in memory) and validate whatever is read back.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class Codec(str, Enum):
    """How an update's tensors were compressed on the plant before upload."""

    NONE = "none"
    FP16 = "fp16"
    INT8 = "int8"


class DPParams(BaseModel):
    """Differential-privacy parameters a plant applied to its update (zero means off)."""

    clip_norm: float = 0.0
    noise_multiplier: float = 0.0
    steps: int = 0
    sample_rate: float = 0.0


class UpdateMeta(BaseModel):
    """What a plant declares with one update; mirrored 1:1 by the wire's `UpdateMetadata`."""

    plant: str
    round_id: str
    base_version: int
    num_samples: int = Field(ge=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    train_seconds: float = 0.0
    codec: Codec = Codec.NONE
    dp: DPParams = Field(default_factory=DPParams)
    total_bytes: int = Field(ge=0)
    sha256: str
    variant: str = Field(default="full", min_length=1, max_length=63)

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


class AggregationSummary(BaseModel):
    """How a round's version was aggregated, kept with the version for the operator's metrics.

    The aggregation Job exits before any scrape and has no API credentials; the store is where the
    operator (through the exchange) can read what it measured.
    """

    strategy: str
    seconds: float
    peak_bytes: int
    #: plant -> every number the aggregation reported for it (l2_norm, cosine, weight, clip_factor, ...;
    #: epsilon when privacy accounting adds it). Names, not a fixed schema, so new numbers need no wire change.
    plants: dict[str, dict[str, float]] = Field(default_factory=dict)


class ModelVersion(BaseModel):
    """One version of a model lineage; `parent` and `round_id` make the lineage walkable."""

    model: str
    version: int
    digest: str
    size: int
    parent: int | None = None
    round_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
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
    num_samples: int = Field(ge=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    received_at: float = 0.0
