"""Central differential privacy: Gaussian noise on the aggregate of clipped updates (the hub trusts itself).

With every update clipped to L2 norm C (`StrategyConfig.norm_bound`) and the aggregate a weighted mean
Σ_k c_k Δ_k with fixed coefficients, replacing one plant's update moves the aggregate by at most
max_k c_k · C in L2. Adding N(0, (σ · C · max_k c_k)²) to every coordinate is then the Gaussian mechanism
with noise multiplier σ for each plant; with uniform weights (c_k = 1/K) the std is σ·C/K. Coefficients
are renormalised per tensor when lighter variants leave tensors out, so the largest one over all tensors
is used. The accounting of σ per round is in `plantfed.engine.privacy.accounting`.

Noise is drawn per tensor from a generator keyed by (seed, tensor name), so the result does not depend on
the order tensors are streamed in and is reproducible under `noise_seed`. Without a seed the seed comes from
the OS's randomness: predictable noise would be no noise.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence

import torch

from plantfed.engine.aggregation.config import StrategyConfig
from plantfed.formats.memory import MemoryTracker


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """The generator for tensor `name`'s noise: independent across tensors, stable across runs."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class CentralNoise:
    """The noise one aggregation adds; `std` is 0 when central DP is off."""

    def __init__(self, std: float, seed: int) -> None:
        self.std = std
        self.seed = seed

    @classmethod
    def for_round(
        cls, config: StrategyConfig, weights: Sequence[float], carried: Mapping[str, Sequence[int]]
    ) -> CentralNoise:
        """`carried` maps each aggregated tensor to the indices of the updates that carry it."""
        sigma = config.central_noise_multiplier
        if sigma is None:
            return cls(0.0, 0)
        assert config.norm_bound is not None  # enforced by StrategyConfig
        largest = 0.0
        for present in carried.values():
            share = sum(weights[k] for k in present)
            if share > 0:
                largest = max(largest, max(weights[k] for k in present) / share)
        seed = config.noise_seed if config.noise_seed is not None else secrets.randbits(63)
        return cls(sigma * config.norm_bound * largest, seed)

    def add(self, name: str, delta: torch.Tensor, tracker: MemoryTracker) -> None:
        """Add this round's noise for tensor `name` to the aggregated `delta` in place."""
        if self.std > 0:
            noise = torch.randn(delta.shape, generator=tensor_generator(self.seed, name), dtype=torch.float32)
            with tracker.live(delta, noise):
                delta.add_(noise, alpha=self.std)
