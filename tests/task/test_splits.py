"""Split hygiene: nothing a model is tested on was seen in training, and normalisation stays in the plant."""

from __future__ import annotations

import hashlib
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from plantfed.tasks.bearing.cwru import cwru_files, read_cwru_file
from plantfed.tasks.bearing.plant_files import write_recording
from plantfed.tasks.bearing.recording import Recording
from plantfed.tasks.bearing.synthetic import synthetic_plant
from plantfed.tasks.bearing.windows import segment_bounds
from plantfed.tasks.sdk import DataSpec, PlantData

SPLITS = ("train", "val", "test")


def _time_ranges(data: PlantData, split: str) -> dict[str, tuple[int, int]]:
    """Per recording, the [first sample, last sample + 1) a split's windows cover."""
    ranges: dict[str, tuple[int, int]] = {}
    for span in getattr(data, split).spans:
        lo, hi = ranges.get(span.recording, (span.start, span.stop))
        ranges[span.recording] = (min(lo, span.start), max(hi, span.stop))
    return ranges


def _assert_disjoint_splits(data: PlantData) -> None:
    ranges = {split: _time_ranges(data, split) for split in SPLITS}
    for a, b in combinations(SPLITS, 2):
        for name in ranges[a].keys() & ranges[b].keys():
            (a_lo, a_hi), (b_lo, b_hi) = ranges[a][name], ranges[b][name]
            assert a_hi <= b_lo or b_hi <= a_lo, f"{a} and {b} share samples of {name}"


def _window_hashes(data: PlantData, split: str) -> set[str]:
    ds = getattr(data, split)
    return {hashlib.sha256(ds[i][0].numpy().tobytes()).hexdigest() for i in range(len(ds))}


def test_cwru_splits_never_share_a_time_range(cwru_plants) -> None:
    for data in cwru_plants:
        _assert_disjoint_splits(data)


def test_synthetic_splits_never_share_a_time_range(task, small) -> None:
    _assert_disjoint_splits(task.load_data(DataSpec("p", options={**small, "overlap": 0.9})))


def test_windows_are_the_normalised_samples_their_spans_name(task, cwru_dir: Path, cwru_plants) -> None:
    data = cwru_plants[2]
    raw = {r.name: r.signal for r in read_cwru_file(cwru_files(cwru_dir)[2])}
    mean, std = data.info["normalisation"]["mean"], data.info["normalisation"]["std"]
    for split in SPLITS:
        ds = getattr(data, split)
        for i in range(0, len(ds), 97):
            span = ds.spans[i]
            expected = (raw[span.recording][span.start : span.stop] - mean) / std
            np.testing.assert_allclose(ds[i][0][0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_train_windows_overlap_each_other_but_not_other_splits(task, small) -> None:
    data = task.load_data(DataSpec("p", options=small))
    assert data.info["stride"]["train"] < data.info["window"]
    hashes = {split: _window_hashes(data, split) for split in SPLITS}
    for a, b in combinations(SPLITS, 2):
        assert not hashes[a] & hashes[b]


def test_no_window_is_shared_between_plants(task, small, cwru_plants) -> None:
    synthetic = [task.load_data(DataSpec(f"p{i}", None, i, 3, options=small)) for i in range(3)]
    for plants in (cwru_plants, synthetic):
        seen: set[str] = set()
        for data in plants:
            mine = set().union(*(_window_hashes(data, s) for s in SPLITS))
            assert not mine & seen
            seen |= mine


def test_normalisation_comes_from_the_plants_own_train_split(task, cwru_dir: Path, cwru_plants) -> None:
    stats = [(d.info["normalisation"]["mean"], d.info["normalisation"]["std"]) for d in cwru_plants]
    assert len(set(stats)) == 4
    for path, data in zip(cwru_files(cwru_dir), cwru_plants, strict=True):
        train = np.concatenate(
            [r.signal[: segment_bounds(len(r.signal), (0.7, 0.15, 0.15))[0][1]] for r in read_cwru_file(path)]
        ).astype(np.float64)
        assert data.info["normalisation"]["mean"] == pytest.approx(train.mean(), rel=1e-9)
        assert data.info["normalisation"]["std"] == pytest.approx(train.std(), rel=1e-9)


def test_changing_val_and_test_data_leaves_normalisation_unchanged(task, tmp_path: Path) -> None:
    recordings = synthetic_plant(seed=0, plant_index=0)
    for r in recordings:
        write_recording(tmp_path / "a", r)
        tampered = r.signal.copy()
        cut = segment_bounds(len(tampered), (0.7, 0.15, 0.15))[1][0]
        tampered[cut:] *= 50.0
        write_recording(tmp_path / "b", Recording(r.name, tampered, r.fs, r.label, r.rpm))
    a = task.load_data(DataSpec("p", path=tmp_path / "a"))
    b = task.load_data(DataSpec("p", path=tmp_path / "b"))
    assert a.info["normalisation"] == b.info["normalisation"]
    assert not np.array_equal(a.test[0][0].numpy(), b.test[0][0].numpy())


def test_synthetic_plants_get_their_own_statistics(task, small) -> None:
    stats = {
        task.load_data(DataSpec(f"p{i}", None, i, 3, options=small)).info["normalisation"]["std"] for i in range(3)
    }
    assert len(stats) == 3
