"""What a round's aggregation is asked to do: the strategy and its hyper-parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantfed.contract import strategies
from plantfed.contract.records import Codec
from plantfed.contract.strategies import PARAMETERS, StrategyName

DEFAULT_BUFFER_BYTES = int(PARAMETERS["buffer_bytes"].default or 0)

ROBUST = frozenset(s.name for s in strategies.STRATEGIES.values() if s.robust)


def _parameter(name: str) -> Any:
    p = PARAMETERS[name]
    return Field(default=p.default, description=strategies.describe(name), ge=p.ge, gt=p.gt, le=p.le, lt=p.lt)


class StrategyConfig(BaseModel):
    """The strategy an aggregation runs, every parameter resolved (see plantfed.contract.strategies).

    Built from the same vocabulary as the CRD's `Strategy` and the `plantfed aggregate` flags: a parameter
    left out takes the strategy's default (so `StrategyConfig(name="fedadam")` has server_learning_rate 0.01),
    `norm_bound` 0 means off, and a parameter the strategy does not use keeps the parameter's own default
    and is ignored by it. The name may be given in snake_case (`trimmed_mean`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrategyName = StrategyName.FEDAVG
    server_learning_rate: float = _parameter("server_learning_rate")
    beta1: float = _parameter("beta1")
    beta2: float = _parameter("beta2")
    tau: float = _parameter("tau")
    momentum: float = _parameter("momentum")
    trim_fraction: float = _parameter("trim_fraction")
    norm_bound: float | None = _parameter("norm_bound")
    central_noise_multiplier: float | None = _parameter("central_noise_multiplier")
    noise_seed: int | None = _parameter("noise_seed")
    buffer_bytes: int = _parameter("buffer_bytes")

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        raw = data.get("name", StrategyName.FEDAVG)
        name = raw if isinstance(raw, StrategyName) else StrategyName.parse(str(raw))
        given = {k: v for k, v in data.items() if k in PARAMETERS}
        data.update(strategies.resolve(name, given), name=name)
        return data

    @model_validator(mode="after")
    def _central_dp_needs_clipping(self) -> StrategyConfig:
        if self.central_noise_multiplier is not None and self.norm_bound is None:
            raise ValueError("central DP noise needs norm_bound: without clipping the sensitivity is unbounded")
        return self

    @classmethod
    def from_arguments(cls, args: Any) -> StrategyConfig:
        """From a command line built by `plantfed.contract.strategies.add_arguments`."""
        return cls(name=args.strategy, **strategies.given_arguments(args))


_declared = set(StrategyConfig.model_fields) - {"name"}
if _declared != set(PARAMETERS):
    raise TypeError(f"StrategyConfig declares {sorted(_declared)}; the vocabulary's parameters differ")


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
