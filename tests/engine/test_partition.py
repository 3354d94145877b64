"""Dirichlet label skew: deterministic, per-plant, really skewed for small alpha, and no class lost to the fleet."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch.utils.data import TensorDataset

from plantfed.tasks.partition import class_histogram, label_skewed


def balanced(classes: int = 4, per_class: int = 200) -> TensorDataset:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return TensorDataset(torch.zeros(len(labels), 1), labels)


def fleet(alpha: float, plants: int = 4, seed: int = 0) -> list[Sequence[int]]:
    data = balanced()
    return [
        class_histogram(label_skewed(data, alpha, seed=seed, plant_index=i, num_plants=plants), 4)
        for i in range(plants)
    ]


def test_small_alpha_skews_each_plant_differently_and_reproducibly() -> None:
    hists = fleet(0.1)
    assert hists == fleet(0.1)
    assert len({tuple(h) for h in hists}) == 4
    for h in hists:
        assert min(h) < 40, f"alpha=0.1 should nearly remove some class at every plant: {h}"


def test_every_class_survives_whole_at_some_plant() -> None:
    for alpha in (0.1, 0.3, 1.0):
        for c, column in enumerate(zip(*fleet(alpha, plants=3, seed=7), strict=True)):
            assert max(column) == 200, f"alpha={alpha}: class {c} is not kept whole anywhere: {column}"


def test_large_alpha_keeps_plants_close_to_balanced() -> None:
    for h in fleet(1000.0):
        assert min(h) > 0.8 * max(h)


def test_the_skewed_subset_only_holds_samples_of_the_original_split() -> None:
    data = balanced()
    subset = label_skewed(data, 0.3, seed=1, plant_index=2, num_plants=3)
    assert set(subset.indices) <= set(range(len(data)))
    assert len(set(subset.indices)) == len(subset.indices)


def test_a_plant_index_outside_the_fleet_is_refused() -> None:
    with pytest.raises(ValueError, match="plant_index 3 is outside 0..2"):
        label_skewed(balanced(), 0.3, seed=0, plant_index=3, num_plants=3)
