"""Dirichlet label skew: deterministic, per-plant, and really skewed for small alpha."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from plantfed_participant.partition import class_histogram, label_skewed


def balanced(classes: int = 4, per_class: int = 200) -> TensorDataset:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return TensorDataset(torch.zeros(len(labels), 1), labels)


def test_small_alpha_skews_each_plant_differently_and_reproducibly() -> None:
    data = balanced()
    hists = [class_histogram(label_skewed(data, 0.1, seed=0, plant_index=i), 4) for i in range(4)]
    assert hists == [class_histogram(label_skewed(data, 0.1, seed=0, plant_index=i), 4) for i in range(4)]
    assert len({tuple(h) for h in hists}) == 4
    for h in hists:
        assert max(h) == 200, "each plant keeps all of its dominant class"
        assert min(h) < 40, f"alpha=0.1 should nearly remove some class: {h}"


def test_large_alpha_keeps_plants_close_to_balanced() -> None:
    hist = class_histogram(label_skewed(balanced(), 1000.0, seed=0, plant_index=0), 4)
    assert min(hist) > 0.8 * max(hist)


def test_the_skewed_subset_only_holds_samples_of_the_original_split() -> None:
    data = balanced()
    subset = label_skewed(data, 0.3, seed=1, plant_index=2)
    assert set(subset.indices) <= set(range(len(data)))
    assert len(set(subset.indices)) == len(subset.indices)
