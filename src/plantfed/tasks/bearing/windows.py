"""Turn a plant's recordings into leakage-free train / validation / test window datasets.

Each recording is first cut into contiguous time segments (train, then validation, then test), and windows
are taken inside a segment only, so no sample of a test window was ever seen in training. Normalisation
statistics come from the plant's own train segments only and are then applied to every split.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from plantfed.tasks.bearing.labels import CLASSES, class_index
from plantfed.tasks.bearing.recording import Recording
from plantfed.tasks.sdk import PlantData

SPLITS = ("train", "val", "test")
#: The full model halves the time axis 5 times after a stride-8 stem, so shorter windows leave nothing to pool.
MIN_WINDOW = 256


@dataclass(frozen=True)
class WindowOptions:
    """How recordings become windows; built from `DataSpec.options`.

    Train windows overlap more (more, shifted views of the same segment: cheap augmentation and more steps
    per local epoch) than validation and test windows, whose overlap would only repeat the same evidence.
    """

    window: int = 2048
    overlap: float = 0.75
    eval_overlap: float = 0.5
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    fs: float = 12_000.0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> WindowOptions:
        split = options.get("split", cls.fractions)
        fractions = tuple(float(f) for f in (split.split(",") if isinstance(split, str) else split))
        opts = cls(
            window=int(options.get("window", cls.window)),
            overlap=float(options.get("overlap", cls.overlap)),
            eval_overlap=float(options.get("eval_overlap", cls.eval_overlap)),
            fractions=fractions,  # type: ignore[arg-type]
            fs=float(options.get("fs", cls.fs)),
        )
        if opts.window < MIN_WINDOW:
            raise ValueError(f"option window={opts.window}: must be at least {MIN_WINDOW} samples")
        for name in ("overlap", "eval_overlap"):
            if not 0.0 <= getattr(opts, name) < 1.0:
                raise ValueError(f"option {name}={getattr(opts, name)}: must be in [0, 1)")
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"option split={list(fractions)}: need three positive fractions summing to 1")
        return opts

    def stride(self, split: str) -> int:
        overlap = self.overlap if split == "train" else self.eval_overlap
        return max(1, round(self.window * (1.0 - overlap)))


@dataclass(frozen=True)
class Span:
    """Where a window came from: recording name and its [start, stop) sample range at the task rate."""

    recording: str
    start: int
    stop: int


class WindowDataset(Dataset):
    """Normalised windows of one split; yields `(x: float32 [1, W], y: int64)`."""

    def __init__(
        self,
        segments: list[np.ndarray],
        labels: list[int],
        index: list[tuple[int, int]],
        spans: list[Span],
        window: int,
    ) -> None:
        self._segments = [torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)) for s in segments]
        self._index = index
        self.spans = spans
        self.window = window
        self.labels = torch.tensor([labels[seg] for seg, _ in index], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        seg, offset = self._index[i]
        x = self._segments[seg][offset : offset + self.window].unsqueeze(0)
        return x, self.labels[i]


def segment_bounds(length: int, fractions: tuple[float, float, float]) -> list[tuple[int, int]]:
    """Contiguous [start, stop) sample ranges of the train, val and test segments of one recording."""
    cut1 = round(length * fractions[0])
    cut2 = round(length * (fractions[0] + fractions[1]))
    return [(0, cut1), (cut1, cut2), (cut2, length)]


def build_plant_data(recordings: list[Recording], options: WindowOptions, info: dict[str, Any]) -> PlantData:
    """Split, normalise (with this plant's train statistics) and window a plant's recordings."""
    if not recordings:
        raise ValueError(f"no recordings for plant {info.get('plant', '?')} in {info.get('source', '?')}")
    names = Counter(r.name for r in recordings)
    duplicated = [n for n, c in names.items() if c > 1]
    if duplicated:
        raise ValueError(f"{info.get('source', '?')}: recording names must be unique, repeated: {duplicated}")
    recordings = [r.resampled(options.fs) for r in sorted(recordings, key=lambda r: r.name)]
    bounds = {}
    for r in recordings:
        bounds[r.name] = segment_bounds(len(r.signal), options.fractions)
        shortest = min(stop - start for start, stop in bounds[r.name])
        if shortest < options.window:
            raise ValueError(
                f"{r.source}: recording {r.name!r} has {len(r.signal)} samples at {options.fs:g} Hz; its "
                f"shortest split segment ({shortest}) is shorter than one window ({options.window})"
            )
    train = np.concatenate([r.signal[slice(*bounds[r.name][0])].astype(np.float64) for r in recordings])
    mean, std = float(train.mean()), float(train.std())
    if not np.isfinite(std) or std <= 0.0:
        raise ValueError(f"{info.get('source', '?')}: train signal is constant or not finite (std={std})")

    datasets = {}
    for split_id, split in enumerate(SPLITS):
        segments: list[np.ndarray] = []
        labels: list[int] = []
        index: list[tuple[int, int]] = []
        spans: list[Span] = []
        for r in recordings:
            start, stop = bounds[r.name][split_id]
            seg_id = len(segments)
            segments.append((r.signal[start:stop] - mean) / std)
            labels.append(class_index(r.label, r.source))
            for offset in range(0, stop - start - options.window + 1, options.stride(split)):
                index.append((seg_id, offset))
                spans.append(Span(r.name, start + offset, start + offset + options.window))
        datasets[split] = WindowDataset(segments, labels, index, spans, options.window)

    counts = {
        split: {CLASSES[c]: int(n) for c, n in sorted(Counter(datasets[split].labels.tolist()).items())}
        for split in SPLITS
    }
    info = {
        **info,
        "classes": list(CLASSES),
        "fs": options.fs,
        "window": options.window,
        "stride": {split: options.stride(split) for split in SPLITS},
        "split_fractions": list(options.fractions),
        "normalisation": {"mean": mean, "std": std, "computed_on": "train"},
        "recordings": len(recordings),
        "class_counts": counts,
    }
    return PlantData(train=datasets["train"], val=datasets["val"], test=datasets["test"], info=info)
