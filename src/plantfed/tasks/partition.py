"""Label skew across plants, for the harder non-IID benchmark setting.

The partition follows the usual Dirichlet scheme of the FL literature (each class is spread over the clients
with proportions drawn from Dirichlet(alpha)), adapted to plants that each own their data: for class c the
plants' shares p_c ~ Dir(alpha) are drawn once, and plant k keeps p_c[k] / max_j p_c[j] of its own class-c
training samples. So every class survives in full at some plant (the federation as a whole still sees every
fault), while small alpha leaves each plant with mostly a few classes — the situation where FedAvg drifts and
FedProx / server optimisers earn their keep. Only the train split is skewed: validation and test stay as they
are, so every model is scored on the same footing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from plantfed.tasks.sdk import dataset_size


def sample_labels(dataset: Dataset) -> list[int]:
    labels = getattr(dataset, "labels_per_sample", None)
    if labels is not None:
        return [int(y) for y in labels]
    return [int(dataset[i][1]) for i in range(dataset_size(dataset))]


def dirichlet_keep_fractions(num_classes: int, num_plants: int, alpha: float, seed: int) -> np.ndarray:
    """Keep fractions, shape (plants, classes); each column's largest entry is 1 (that plant keeps the class whole).

    Every plant derives the same matrix from the shared seed, so plants agree on the partition without talking.
    """
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be > 0, got {alpha}")
    if num_plants < 1:
        raise ValueError(f"num_plants must be >= 1, got {num_plants}")
    rng = np.random.default_rng([seed, 0x5EED])
    shares = rng.dirichlet(np.full(num_plants, alpha), size=num_classes).T
    return shares / shares.max(axis=0, keepdims=True)


def label_skewed(
    dataset: Dataset, alpha: float, *, seed: int, plant_index: int, num_plants: int, min_per_class: int = 0
) -> Subset:
    """A deterministic Dirichlet-skewed subset of `dataset` for plant `plant_index` of `num_plants`."""
    if not 0 <= plant_index < num_plants:
        raise ValueError(f"plant_index {plant_index} is outside 0..{num_plants - 1}")
    labels = np.asarray(sample_labels(dataset))
    classes = np.unique(labels)
    keep = dirichlet_keep_fractions(int(classes.max()) + 1, num_plants, alpha, seed)[plant_index]
    rng = np.random.default_rng([seed, plant_index, 0x5EED, 1])
    chosen: list[int] = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        count = max(min_per_class, int(round(keep[c] * len(members))))
        chosen.extend(rng.permutation(members)[: min(count, len(members))].tolist())
    return Subset(dataset, sorted(chosen))


def class_histogram(dataset: Dataset, num_classes: int) -> Sequence[int]:
    return np.bincount(np.asarray(sample_labels(dataset), dtype=np.int64), minlength=num_classes).tolist()
