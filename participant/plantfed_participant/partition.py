"""Label skew across plants, for the harder non-IID benchmark setting.

Each plant draws its class proportions from Dirichlet(alpha) and keeps, per class, that share of its own
training samples (relative to its most frequent class). Small alpha means each plant sees mostly a few
classes — the situation where FedAvg drifts and FedProx / server optimisers earn their keep. Only the train
split is skewed: validation and test stay as they are, so every model is scored on the same footing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset


def sample_labels(dataset: Dataset) -> list[int]:
    labels = getattr(dataset, "labels_per_sample", None)
    if labels is not None:
        return [int(y) for y in labels]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def dirichlet_keep_fractions(num_classes: int, alpha: float, seed: int, plant_index: int) -> np.ndarray:
    """Per-class keep fractions for one plant; the largest is 1 so the plant keeps all of its main class."""
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be > 0, got {alpha}")
    rng = np.random.default_rng([seed, plant_index, 0x5EED])
    proportions = rng.dirichlet(np.full(num_classes, alpha))
    return proportions / proportions.max()


def label_skewed(dataset: Dataset, alpha: float, *, seed: int, plant_index: int, min_per_class: int = 0) -> Subset:
    """A deterministic Dirichlet-skewed subset of `dataset` for plant `plant_index`."""
    labels = np.asarray(sample_labels(dataset))
    classes = np.unique(labels)
    keep = dirichlet_keep_fractions(int(classes.max()) + 1, alpha, seed, plant_index)
    rng = np.random.default_rng([seed, plant_index, 0x5EED, 1])
    chosen: list[int] = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        count = max(min_per_class, int(round(keep[c] * len(members))))
        chosen.extend(rng.permutation(members)[: min(count, len(members))].tolist())
    return Subset(dataset, sorted(chosen))


def class_histogram(dataset: Dataset, num_classes: int) -> Sequence[int]:
    return np.bincount(np.asarray(sample_labels(dataset), dtype=np.int64), minlength=num_classes).tolist()
