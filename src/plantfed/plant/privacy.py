"""Plant-side update privatisation: clip the whole delta to an L2 bound, then add Gaussian noise.

This is the mechanism only (local DP on the update); the ε accounting over a plant's participation
history is the hub's job and uses opacus's RDP accountant.
"""

from __future__ import annotations

import math

import torch

from plantfed.formats.numerics import dot


def global_l2_norm(tensors: dict[str, torch.Tensor]) -> float:
    """‖tensors‖₂ over the floating tensors: float32 chunks summed in float64, no float64 copy of any tensor."""
    return math.sqrt(sum(dot(t, t) for t in tensors.values() if t.is_floating_point()))


def clip_and_noise_(
    delta: dict[str, torch.Tensor], *, clip_norm: float, noise_multiplier: float, generator: torch.Generator
) -> float:
    """Scale `delta` in place so its global L2 norm is at most `clip_norm`, then add N(0, (σ·C)²) per coordinate.

    In place because an update is as large as the model: a privatised copy would hold it twice. Returns the
    norm before clipping (a useful drift signal on its own). Non-floating tensors are left as they are: they
    carry values, not gradients.
    """
    norm = global_l2_norm(delta)
    if clip_norm <= 0:
        if noise_multiplier > 0:
            raise ValueError("noise without a clipping bound has unbounded sensitivity: set clip_norm > 0")
        return norm
    scale = min(1.0, clip_norm / (norm + 1e-12))
    std = noise_multiplier * clip_norm
    for t in delta.values():
        if not t.is_floating_point():
            continue
        t.mul_(scale)
        if std > 0:
            t.add_(torch.randn(t.shape, generator=generator, dtype=t.dtype).mul_(std))
    return norm
