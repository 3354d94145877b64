"""Float64 reductions over float32 tensors in bounded chunks.

A float32 dot product over 10^8 coordinates loses digits; converting a whole tensor to float64 doubles
its memory. Chunking keeps both the precision and the bound (at most 2 × CHUNK float64 temporaries, small
enough to stay in cache).
"""

from __future__ import annotations

import torch

from plantfed.payload.memory import MemoryTracker

CHUNK = 1 << 16


def dot64(a: torch.Tensor, b: torch.Tensor, tracker: MemoryTracker | None = None) -> float:
    """<a, b> accumulated in float64; `a` and `b` must have the same number of elements."""
    x, y = a.reshape(-1), b.reshape(-1)
    if x.numel() != y.numel():
        raise ValueError(f"dot64: {x.numel()} vs {y.numel()} elements")
    total = 0.0
    for start in range(0, x.numel(), CHUNK):
        xs = x[start : start + CHUNK].double()
        ys = xs if b is a else y[start : start + CHUNK].double()
        if tracker is None:
            total += float(torch.dot(xs, ys))
        else:
            with tracker.live(xs, ys):
                total += float(torch.dot(xs, ys))
    return total
