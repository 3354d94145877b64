"""Accounting of the tensor buffers an aggregation holds, so its memory bound is measured, not assumed.

Process RSS is noisy (allocator caching, the interpreter, other threads), so aggregation declares each
buffer it allocates while the buffer is alive. Buffers are keyed by storage, so a tensor and its views,
or a decode that returns its input unchanged, are counted once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(eq=False)
class Window:
    """Peak of the bytes allocated on top of what was live when the window opened."""

    base: int
    peak: int = 0


class MemoryTracker:
    def __init__(self) -> None:
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._windows: list[Window] = []

    @contextmanager
    def live(self, *tensors: torch.Tensor) -> Iterator[None]:
        """Count each tensor's storage as held for the duration of the block."""
        added: list[int] = []
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in self._live or storage.nbytes() == 0:
                continue
            self._live[key] = storage.nbytes()
            self.current += storage.nbytes()
            added.append(key)
        self.peak = max(self.peak, self.current)
        for window in self._windows:
            window.peak = max(window.peak, self.current - window.base)
        try:
            yield
        finally:
            for key in added:
                self.current -= self._live.pop(key)

    @contextmanager
    def window(self) -> Iterator[Window]:
        """Measure the extra bytes a block holds at its peak (used to check the robust strategies' buffer)."""
        window = Window(base=self.current)
        self._windows.append(window)
        try:
            yield window
        finally:
            self._windows.remove(window)
