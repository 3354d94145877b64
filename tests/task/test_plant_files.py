"""The plant-data format: what a plant writes is what the task reads, and bad files say what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from plantfed.tasks.bearing.convert import convert_cwru
from plantfed.tasks.bearing.plant_files import read_plant_dir, write_recording
from plantfed.tasks.bearing.recording import Recording
from plantfed.tasks.bearing.synthetic import synthetic_plant
from plantfed.tasks.sdk import DataSpec


def test_round_trip_gives_the_same_plant_data(task, tmp_path: Path) -> None:
    recordings = synthetic_plant(seed=3, plant_index=1)
    for r in recordings:
        write_recording(tmp_path, r)
    read = {r.name: r for r in read_plant_dir(tmp_path)}
    for r in recordings:
        assert read[r.name].label == r.label and read[r.name].fs == r.fs and read[r.name].rpm == pytest.approx(r.rpm)
        np.testing.assert_array_equal(read[r.name].signal, r.signal)

    from_files = task.load_data(DataSpec("plant-b", path=tmp_path))
    embedded = task.load_data(DataSpec("plant-b", plant_index=1, num_plants=2, seed=3))
    assert from_files.info["normalisation"] == embedded.info["normalisation"]
    for split in ("train", "val", "test"):
        a, b = getattr(from_files, split), getattr(embedded, split)
        assert len(a) == len(b) > 0 and a.spans == b.spans
        assert torch.equal(a.labels, b.labels)
        assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))


def test_other_sampling_rates_are_resampled_to_the_task_rate(task, tmp_path: Path) -> None:
    t = np.arange(48_000 * 3) / 48_000.0
    for label in ("normal", "outer"):
        write_recording(tmp_path, Recording(label, np.sin(2 * np.pi * 50 * t).astype(np.float32), 48_000.0, label))
    data = task.load_data(DataSpec("p", path=tmp_path))
    assert data.info["fs"] == 12_000.0
    span = data.train.spans[0]
    assert span.stop - span.start == data.info["window"]
    assert max(s.stop for s in data.test.spans) <= 3 * 12_000


def _write(path: Path, **fields: Any) -> Path:
    np.savez(path, **fields)
    return path


GOOD = {"signal": np.zeros(20_000, np.float32) + 1.0, "label": np.array("ball"), "fs": np.array(12_000.0)}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "label"}, "missing key"),
        ({**GOOD, "signal": np.zeros((2, 10_000), np.float32)}, "'signal' must be a 1-D float array"),
        ({**GOOD, "signal": np.arange(20_000)}, "'signal' must be a 1-D float array"),
        ({**GOOD, "label": np.array("cracked")}, "unknown label 'cracked'"),
        ({**GOOD, "label": np.array(2)}, "'label' must be a single string"),
        ({**GOOD, "fs": np.array(-1.0)}, "'fs' must be a positive number"),
        ({**GOOD, "signal": np.full(20_000, np.nan, np.float32)}, "NaN or infinite"),
        ({**GOOD, "signal": np.array([1.0, None], dtype=object)}, "pickled object array"),
    ],
)
def test_malformed_file_names_the_file_and_the_problem(task, tmp_path: Path, fields, message) -> None:
    bad = _write(tmp_path / "machine7.npz", **fields)
    with pytest.raises(ValueError, match=message) as err:
        task.load_data(DataSpec("p", path=tmp_path))
    assert str(bad) in str(err.value)


@pytest.mark.parametrize(
    "write", [lambda p: p.write_text("not a zip archive"), lambda p: np.save(p.open("wb"), np.ones(10))]
)
def test_a_file_that_is_not_npz_is_reported(task, tmp_path: Path, write) -> None:
    write(tmp_path / "notes.npz")
    with pytest.raises(ValueError, match=r"notes\.npz: not a(n .npz archive| readable \.npz file)"):
        task.load_data(DataSpec("p", path=tmp_path))


def test_a_recording_too_short_for_its_splits_is_reported(task, tmp_path: Path) -> None:
    _write(tmp_path / "short.npz", **{**GOOD, "signal": np.ones(5_000, np.float32)})
    with pytest.raises(ValueError, match=r"short\.npz: recording 'short' has 5000 samples"):
        task.load_data(DataSpec("p", path=tmp_path))


def test_a_directory_without_data_is_reported(task, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no CWRU load files, plant-data .npz files or plant directories"):
        task.load_data(DataSpec("p", path=tmp_path))


def test_converted_cwru_loads_exactly_like_the_original(task, cwru_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "load1hp_1772rpm_DE.npz").symlink_to(cwru_dir / "load1hp_1772rpm_DE.npz")
    [plant_dir] = convert_cwru(src, tmp_path / "plants")
    assert plant_dir.name == "load1hp"
    direct = task.load_data(DataSpec("p", path=src))
    converted = task.load_data(DataSpec("p", path=tmp_path / "plants"))
    assert converted.info["plant"] == direct.info["plant"] == "load1hp"
    assert converted.info["normalisation"] == direct.info["normalisation"]
    assert converted.info["class_counts"] == direct.info["class_counts"]
    assert torch.equal(converted.test[5][0], direct.test[5][0])


def test_synthetic_sizes_come_from_options(task, small) -> None:
    reduced = task.load_data(DataSpec("p", options=small))
    default = task.load_data(DataSpec("p"))
    assert reduced.info["recordings"] == 4 * small["recordings_per_class"]
    assert len(reduced.train) < len(default.train)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"overlap": 1.0}, r"overlap=1.0: must be in \[0, 1\)"),
        ({"eval_overlap": -0.5}, r"eval_overlap=-0.5: must be in \[0, 1\)"),
        ({"split": "0.5,0.5"}, "need three positive fractions summing to 1"),
        ({"window": 128}, "window=128: must be at least 256"),
    ],
)
def test_bad_window_options_are_reported(task, small, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        task.load_data(DataSpec("p", options={**small, **options}))


def test_window_options_shape_the_windows(task, small) -> None:
    options = {**small, "window": 1024, "overlap": "0.875", "eval_overlap": 0, "split": "0.6,0.2,0.2"}
    data = task.load_data(DataSpec("p", options=options))
    assert data.train[0][0].shape == (1, 1024)
    assert data.info["stride"] == {"train": 128, "val": 1024, "test": 1024}
    assert data.info["split_fractions"] == [0.6, 0.2, 0.2]
    assert data.test.spans[1].start - data.test.spans[0].start == 1024
