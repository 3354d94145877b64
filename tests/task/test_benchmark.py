"""`python -m plantfed.sim.bearing_benchmark`: centralised and siloed numbers for every plant."""

from __future__ import annotations

import json

import pytest
import torch

from plantfed.sim import bearing_benchmark as benchmark
from plantfed.tasks.sdk import DataSpec


def test_reports_centralised_and_siloed_scores_for_every_plant(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark.main(["--plants", "2", "--epochs", "1", "--option", "recordings_per_class=2", "--option", "seconds=2"])
    report = json.loads(capsys.readouterr().out)

    plants = ["plant0", "plant1"]
    assert len(report["train_windows"]) == 2 and min(report["train_windows"]) > 0
    for key in ["centralised", *(f"siloed_{p}" for p in plants)]:
        assert report[key]["seconds_per_epoch"] >= 0
        assert [t["plant"] for t in report[key]["test"]] == plants
        for scores in report[key]["test"]:
            assert set(scores) == {"plant", "accuracy", "balanced_accuracy"}
            assert 0.0 <= scores["balanced_accuracy"] <= 1.0


def test_training_is_repeatable_per_seed(task, small) -> None:
    """The seed fixes the initial weights and the shuffling, so a reported number can be reproduced."""
    data = [task.load_data(DataSpec("p0", options=small))]
    cpu = torch.device("cpu")
    (a, _), (b, _), (c, _) = (benchmark.train(task, "light", data, 1, seed, cpu) for seed in (0, 0, 1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
