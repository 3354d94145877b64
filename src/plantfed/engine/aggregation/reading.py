"""Reading one decoded update tensor (or block) while its buffers are counted as live."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from plantfed.formats.codecs import UpdateReader
from plantfed.formats.memory import MemoryTracker


@contextmanager
def decoded(
    reader: UpdateReader, name: str, tracker: MemoryTracker, index: tuple[slice, ...] | None = None
) -> Iterator[torch.Tensor]:
    """Yield the float32 delta of `name` (or of block `index`); stored and decoded buffers both count."""
    stored = reader.stored(name, index)
    with tracker.live(stored):
        delta = reader.decode(name, stored)
        with tracker.live(delta):
            yield delta
