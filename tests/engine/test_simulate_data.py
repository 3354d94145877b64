"""What `--data` gives each simulated plant: one shared dataset split by label skew, names from the task in plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plantfed.sim.report import convergence_from_report
from plantfed.tasks.bearing.plant_files import write_recording
from plantfed.tasks.bearing.synthetic import SyntheticSizes, synthetic_plant


@pytest.mark.slow
def test_one_dataset_split_by_label_skew_trains_and_scores_every_plant(tmp_path: Path) -> None:
    """The loader refuses one plant's directory for two plants, except when the runtime partitions it (label skew):
    training, the candidate's scoring and the final evaluation all load it, each as a plant process."""
    data = tmp_path / "one-dataset"
    for recording in synthetic_plant(seed=0, plant_index=0, sizes=SyntheticSizes(recordings_per_class=2, seconds=3)):
        write_recording(data, recording)
    out = tmp_path / "run"
    argv = ["--plants", "2", "--rounds", "1", "--data", str(data), "--label-skew-alpha", "0.5", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "plantfed", "simulate", *argv, "--promotion", "IfBetter"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    plants = report["rounds"][0]["plants"]
    assert all(p["ok"] and p["evaluation"] for p in plants.values())  # trained, then scored the candidate
    assert plants["plant-1"]["num_samples"] != plants["plant-2"]["num_samples"]  # each its own skewed part
    assert sorted(report["final_evaluation"]) == ["plant-1", "plant-2"]

    refused = subprocess.run(
        [sys.executable, "-m", "plantfed", "simulate", *argv[:-4], "--out", str(tmp_path / "refused")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0 and "is one plant's data, but num_plants=2" in refused.stderr
    assert not (tmp_path / "refused").exists()


def test_plots_name_each_plant_as_its_data_does() -> None:
    plant = {"ok": True, "metrics": {"global_test_accuracy": 0.5}}
    report = {
        "rounds": [{"round": 1, "plants": {"plant-1": plant, "plant-2": plant}, "bytes_up": 1, "bytes_down": 1}],
        "final_evaluation": {"plant-1": {"test_accuracy": 0.9}, "plant-2": {"test_accuracy": 0.8}},
        "plant_names": {"plant-1": "load0hp", "plant-2": "plant-2"},
    }
    assert sorted(convergence_from_report(report).plant_score) == ["plant-1 (load0hp)", "plant-2"]
