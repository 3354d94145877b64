"""What a round's aggregation is asked to do: the strategy and its hyper-parameters."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantfed.contract.records import Codec

DEFAULT_BUFFER_BYTES = 256 * 1024**2


class StrategyName(str, Enum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDADAM = "fedadam"
    FEDYOGI = "fedyogi"
    FEDAVGM = "fedavgm"
    TRIMMED_MEAN = "trimmed_mean"
    MEDIAN = "median"


ROBUST = frozenset({StrategyName.TRIMMED_MEAN, StrategyName.MEDIAN})
ADAPTIVE = frozenset({StrategyName.FEDADAM, StrategyName.FEDYOGI})


class StrategyConfig(BaseModel):
    """Strategy hyper-parameters; fields a strategy does not use are ignored by it.

    `server_lr` defaults to 1.0 (plain averaging) except for FedAdam/FedYogi, where it defaults to 0.01,
    a value in the range Reddi et al. tune over; an adaptive step of 1.0 would move every coordinate by
    about one unit per round.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrategyName = StrategyName.FEDAVG
    server_lr: float | None = Field(default=None, gt=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.99, ge=0, lt=1)
    tau: float = Field(default=1e-3, gt=0, description="adaptivity epsilon of FedAdam/FedYogi")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="FedAvgM server momentum")
    trim_fraction: float = Field(default=0.1, ge=0, lt=0.5, description="trimmed mean: fraction dropped at each end")
    norm_bound: float | None = Field(default=None, gt=0, description="clip each update's delta to this global L2 norm")
    buffer_bytes: int = Field(
        default=DEFAULT_BUFFER_BYTES, gt=0, description="trimmed mean/median coordinate-block budget"
    )
    central_noise_multiplier: float | None = Field(
        default=None, gt=0, description="central DP: σ; adds N(0, (σ·norm_bound·max weight)²) to the aggregate"
    )
    noise_seed: int | None = Field(default=None, description="central DP noise seed (default: OS randomness)")

    @model_validator(mode="after")
    def _central_dp_needs_clipping(self) -> StrategyConfig:
        if self.central_noise_multiplier is not None:
            if self.norm_bound is None:
                raise ValueError("central DP noise needs norm_bound: without clipping the sensitivity is unbounded")
            if self.name in ROBUST:
                raise ValueError(f"central DP noise is calibrated for a weighted mean, not {self.name.value}")
        return self

    @property
    def effective_server_lr(self) -> float:
        if self.server_lr is not None:
            return self.server_lr
        return 0.01 if self.name in ADAPTIVE else 1.0


class UpdateInput(BaseModel):
    """One plant's committed update as aggregation sees it."""

    model_config = ConfigDict(frozen=True)

    plant: str = Field(min_length=1)
    path: Path
    num_samples: int = Field(ge=1)
    codec: Codec = Codec.NONE
    partial: bool = Field(
        default=False,
        description="a lighter model variant's update: it may omit tensors, and counts only for those it carries",
    )


class PlantStats(BaseModel):
    """Per-plant diagnostics of one aggregation (drift and poisoning signals)."""

    plant: str
    num_samples: int
    weight: float = Field(description="share of the aggregate: num_samples share, or 1/K for median/trimmed mean")
    l2_norm: float = Field(description="L2 norm of the decoded delta (aggregated tensors only), before clipping")
    clipped: bool
    clip_factor: float
    cosine: float = Field(description="cosine similarity of the delta to the aggregate delta (0 if either is zero)")


class AggregationResult(BaseModel):
    strategy: StrategyName
    out_path: Path
    plants: list[PlantStats]
    aggregate_delta_norm: float = Field(description="L2 norm of the aggregated delta (the pseudo-gradient)")
    global_delta_norm: float = Field(description="L2 norm of new global model minus base, i.e. the step taken")
    peak_bytes: int = Field(description="peak of the tensor buffers the aggregation held (tracked accounting)")
    block_peak_bytes: int = Field(
        default=0, description="peak extra bytes of one coordinate block (median/trimmed mean)"
    )
    server_step: int | None = Field(default=None, description="server optimiser steps taken so far, if it keeps state")
    central_noise_std: float = Field(
        default=0.0, description="std of the central DP noise added per coordinate (0: off)"
    )
