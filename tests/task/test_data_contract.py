"""The data contract of the bearing loader: one plant's directory is never every plant's, CWRU channels, plant names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plantfed.tasks.bearing.convert import convert_cwru, main
from plantfed.tasks.bearing.plant_files import write_recording
from plantfed.tasks.bearing.synthetic import synthetic_plant
from plantfed.tasks.sdk import DataSpec


def one_plant(directory: Path) -> Path:
    for recording in synthetic_plant(seed=0, plant_index=0):
        write_recording(directory, recording)
    return directory


def cwru_like(directory: Path, channel: str, loads: tuple[int, ...] = (0, 1)) -> Path:
    """Files named and keyed as CWRU's (`load0hp_1797rpm_FE.npz`, arrays `B_7`, `IR_7`, `OR@6_7`), short signals."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(channel))
    for load in loads:
        arrays = {key: rng.standard_normal(20_000).astype(np.float32) for key in ("B_7", "IR_7", "OR@6_7")}
        np.savez(directory / f"load{load}hp_{1797 - 25 * load}rpm_{channel}.npz", **arrays)  # type: ignore[arg-type]
    return directory


def test_one_plants_directory_is_refused_for_several_plants(task, tmp_path: Path) -> None:
    plant = one_plant(tmp_path / "press3")
    with pytest.raises(ValueError, match=r"press3 \(a directory of .npz recordings\) is one plant's data") as err:
        task.load_data(DataSpec("plant-2", path=plant, plant_index=1, num_plants=3))
    assert "num_plants=3" in str(err.value) and "--label-skew-alpha" in str(err.value)
    assert len(task.load_data(DataSpec("plant-1", path=plant)).train) > 0  # as the one plant it is, it loads


def test_one_dataset_split_by_label_skew_backs_every_plant(task, tmp_path: Path) -> None:
    """The runtime partitions the train split itself (`--label-skew-alpha`), so a shared dataset is fine there."""
    plant = one_plant(tmp_path / "shared")
    spec = DataSpec("plant-2", path=plant, plant_index=1, num_plants=3, runtime_partition=True)
    assert len(task.load_data(spec).train) > 0


def test_a_root_of_plant_directories_gives_each_plant_its_own(task, tmp_path: Path) -> None:
    for name, index in (("lyon", 1), ("brno", 2)):
        for recording in synthetic_plant(seed=0, plant_index=index):
            write_recording(tmp_path / name, recording)
    first, second = (task.load_data(DataSpec(f"p{i}", path=tmp_path, plant_index=i, num_plants=2)) for i in (0, 1))
    assert (first.info["plant"], second.info["plant"]) == ("brno", "lyon")
    assert not torch.equal(first.train[0][0], second.train[0][0])
    assert task.plant_name(DataSpec("plant-2", path=tmp_path, plant_index=1, num_plants=2)) == "lyon"


@pytest.mark.parametrize("channel", ["FE", "BA", "fe"])
def test_cwru_channel_option_picks_that_accelerometer(task, tmp_path: Path, channel: str) -> None:
    cwru_like(tmp_path, "DE")
    cwru_like(tmp_path, channel.upper())
    spec = DataSpec("plant-2", path=tmp_path, plant_index=1, num_plants=2, options={"channel": channel})
    data = task.load_data(spec)
    assert data.info["file"].endswith(f"load1hp_1772rpm_{channel.upper()}.npz") and data.info["plant"] == "load1hp"
    assert task.plant_name(spec) == "load1hp"
    drive_end = task.load_data(DataSpec("plant-2", path=tmp_path, plant_index=1, num_plants=2))
    assert drive_end.info["file"].endswith("_DE.npz")


def test_cwru_directory_without_the_asked_channel_says_which_it_has(task, tmp_path: Path) -> None:
    cwru_like(tmp_path, "FE")
    with pytest.raises(
        ValueError, match=r"channel\(s\) FE, none of channel DE; pick one with --data-option channel=FE"
    ):
        task.load_data(DataSpec("p", path=tmp_path))
    with pytest.raises(ValueError, match=r"option channel='XY': not a CWRU channel; use one of DE \(drive end\)"):
        task.load_data(DataSpec("p", path=tmp_path, options={"channel": "XY"}))


def test_converter_takes_a_channel(task, tmp_path: Path, capsys) -> None:
    src = cwru_like(tmp_path / "src", "FE", loads=(2,))
    cwru_like(src, "DE", loads=(2,))
    [plant_dir] = convert_cwru(src, tmp_path / "fe", channel_name="fe")
    converted = task.load_data(DataSpec("p", path=plant_dir))
    direct = task.load_data(DataSpec("p", path=src, options={"channel": "FE"}))
    assert plant_dir.name == "load2hp" and len(converted.test) == len(direct.test) > 0
    assert all(torch.equal(converted.test[i][0], direct.test[i][0]) for i in range(len(direct.test)))
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "fe"), str(tmp_path / "out"), "--channel", "BA"])
    assert exit_.value.code == 2 and "no CWRU load files of channel BA" in capsys.readouterr().err
