"""Plant-side update privatisation: clip the whole delta to an L2 bound, then add Gaussian noise.

This is the mechanism only (local DP on the update); the ε accounting over a plant's participation
history is the hub's job and uses opacus's RDP accountant.
"""

from __future__ import annotations

import math

import torch


def global_l2_norm(tensors: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors.values() if t.is_floating_point()))


def clip_and_noise(
    delta: dict[str, torch.Tensor], *, clip_norm: float, noise_multiplier: float, generator: torch.Generator
) -> tuple[dict[str, torch.Tensor], float]:
    """Scale `delta` so its global L2 norm is at most `clip_norm`, then add N(0, (σ·C)²) per coordinate.

    Returns the privatised delta and the norm before clipping (a useful drift signal on its own).
    Non-floating tensors pass through untouched: they carry values, not gradients.
    """
    norm = global_l2_norm(delta)
    if clip_norm <= 0:
        if noise_multiplier > 0:
            raise ValueError("noise without a clipping bound has unbounded sensitivity: set clip_norm > 0")
        return delta, norm
    scale = min(1.0, clip_norm / (norm + 1e-12))
    std = noise_multiplier * clip_norm
    out: dict[str, torch.Tensor] = {}
    for name, t in delta.items():
        if not t.is_floating_point():
            out[name] = t
            continue
        clipped = t * scale
        if std > 0:
            clipped = clipped + torch.randn(t.shape, generator=generator, dtype=t.dtype) * std
        out[name] = clipped
    return out, norm
