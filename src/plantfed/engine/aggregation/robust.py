"""Coordinate-wise median and trimmed mean (Yin et al. 2018) over K updates in a bounded buffer.

Both need every update's value of a coordinate at once, so a tensor is processed in coordinate blocks:
each block is read from each update with `safe_open(...).get_slice` (nothing else of the tensor is read),
stacked into a K × n float32 buffer, sorted in place along the update axis (numpy's in-place sort needs
no extra copy), and reduced.

Memory bound. With K updates and a budget B (`StrategyConfig.buffer_bytes`, default 256 MiB), a block has
`n = floor(B / (4 · (K + 2)))` coordinates: K rows of float32 plus room for the block's decoding
transient and its float64 reduction output (two more float32 rows' worth), so one block never holds more
than B bytes. Blocks follow the row-major order of the tensor, splitting the leading dimension first and
only descending into a single row when a row alone exceeds n. If K alone exceeds the budget
(`4 · (K + 2) > B`), aggregation refuses with an error naming the budget it needs instead of exceeding it.

Both statistics are unweighted (every plant has one vote): weighting by the plants' self-reported sample
counts would let one plant buy the majority that robustness relies on. The median of an even number of
values is the mean of the two middle ones; the trimmed mean drops `floor(trim_fraction · K)` values at
each end of every coordinate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from plantfed.engine.aggregation.config import StrategyName
from plantfed.engine.aggregation.reading import decoded
from plantfed.formats.codecs import UpdateReader
from plantfed.formats.memory import MemoryTracker
from plantfed.formats.stream_writer import TensorSpec

_FLOAT32 = 4


def block_elements(num_updates: int, buffer_bytes: int) -> int:
    """Coordinates per block so that one block's buffers fit in `buffer_bytes` (see the module docstring)."""
    per_coordinate = _FLOAT32 * (num_updates + 2)
    if per_coordinate > buffer_bytes:
        raise ValueError(
            f"coordinate-wise aggregation of {num_updates} updates needs a buffer of at least {per_coordinate} bytes; "
            f"buffer_bytes={buffer_bytes} is too small"
        )
    return buffer_bytes // per_coordinate


def coordinate_blocks(shape: Sequence[int], max_elements: int) -> Iterator[tuple[tuple[slice, ...], int]]:
    """Partition a tensor into row-major-contiguous blocks of at most `max_elements`: yields (index, size)."""
    total = math.prod(shape)
    if total == 0:
        return
    if total <= max_elements:
        yield tuple(slice(0, d) for d in shape), total
        return
    inner = math.prod(shape[1:])
    if inner <= max_elements:
        rows = max_elements // inner
        for start in range(0, shape[0], rows):
            stop = min(start + rows, shape[0])
            yield (slice(start, stop),) + tuple(slice(0, d) for d in shape[1:]), (stop - start) * inner
        return
    for row in range(shape[0]):
        for index, size in coordinate_blocks(shape[1:], max_elements):
            yield (slice(row, row + 1),) + index, size


def robust_aggregate(
    name: str,
    spec: TensorSpec,
    readers: Sequence[UpdateReader],
    clip_factors: Sequence[float],
    strategy: StrategyName,
    trim_fraction: float,
    buffer_bytes: int,
    tracker: MemoryTracker,
) -> tuple[torch.Tensor, int]:
    """The coordinate-wise median / trimmed mean of the (clipped) deltas of `name`, as float32.

    Also returns the peak bytes the block buffers held beyond the result tensor itself (≤ `buffer_bytes`).
    """
    count = len(readers)
    trim = math.floor(trim_fraction * count) if strategy is StrategyName.TRIMMED_MEAN else 0
    if count - 2 * trim < 1:
        raise ValueError(f"trim_fraction {trim_fraction} leaves nothing of {count} updates")
    result = torch.empty(spec.shape, dtype=torch.float32)
    flat = result.view(-1)
    width = min(block_elements(count, buffer_bytes), max(spec.numel, 1))
    with tracker.live(result), tracker.window() as window:
        buffer = torch.empty((count, width), dtype=torch.float32)
        with tracker.live(buffer):
            offset = 0
            for index, size in coordinate_blocks(spec.shape, width):
                rows = buffer[:, :size]
                for k, reader in enumerate(readers):
                    with decoded(reader, name, tracker, index) as block:
                        rows[k].copy_(block.reshape(-1))
                    if clip_factors[k] != 1.0:
                        rows[k].mul_(clip_factors[k])
                values = rows.numpy()
                values.sort(axis=0)
                if strategy is StrategyName.MEDIAN:
                    middle = count // 2
                    if count % 2:
                        reduced = values[middle]
                    else:
                        reduced = values[middle - 1] + values[middle]
                        reduced *= 0.5
                else:
                    reduced = values[trim : count - trim].mean(axis=0, dtype=np.float64)
                reduced_t = torch.from_numpy(np.ascontiguousarray(reduced))
                with tracker.live(reduced_t):
                    flat[offset : offset + size].copy_(reduced_t)
                offset += size
    return result, window.peak
