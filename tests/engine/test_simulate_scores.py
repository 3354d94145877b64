"""`plantfed simulate` on a task's own scores: a regression task end to end, and a task bug loses nothing.

Tiny campaigns of the built-in `rul` task (synthetic run-to-failure fleet, a small MLP): real plant
processes over real gRPC, a few seconds of training.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from support.paths import REPO

from plantfed.cli import main
from plantfed.contract.api.round import PromotionPolicy
from plantfed.sim.simulate import Simulation, SimulationConfig

pytestmark = pytest.mark.slow


def simulation(tmp_path: Path, **fields) -> Simulation:
    fields.setdefault("task", "rul")
    cfg = SimulationConfig(out=tmp_path / "run", plants=2, epochs=2, optimizer="adam", **fields)
    return Simulation(cfg, console=Console(file=io.StringIO(), width=200))


@pytest.fixture
def test_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))


def test_a_regression_task_minimises_its_pooled_rmse_under_if_better(tmp_path: Path) -> None:
    sim = simulation(tmp_path, rounds=2, promotion=PromotionPolicy.IF_BETTER)
    report = sim.run()
    promotion = yaml.safe_load((tmp_path / "run" / "campaign.yaml").read_text().split("---")[0])["spec"]
    written = promotion["roundTemplate"]["promotion"]
    assert (written["policy"], written["metric"], written["goal"]) == ("IfBetter", "val_rmse", "Minimize"), (
        "the task's primary score and its goal are the defaults"
    )
    assert report["objective"] == {
        "score": "rmse",
        "goal": "Minimize",
        "unit_interval": False,
        "scores": ["rmse", "mae"],
    }
    first = report["rounds"][0]
    assert first["promoted"], first["message"]
    promoted = [r for r in report["rounds"] if r["promoted"]][-1]  # a candidate IfBetter refused is never scored
    assert promoted["global_rmse"] < report["initial"]["rmse"] and promoted["global_mae"] < report["initial"]["mae"]
    # The fleet's RMSE is pooled from the plants' sums of squares, not a mean of their RMSEs.
    final = report["final_evaluation"].values()
    pooled = math.sqrt(sum(e["test_rmse.sumsq"] for e in final) / sum(e["test_samples"] for e in final))
    assert promoted["global_rmse"] == pytest.approx(pooled)
    assert report["quality"]["score"] == "rmse" and report["quality"]["rounds_to_95pct_of_final"] in (1, 2)
    assert "accuracy" not in json.dumps(report["rounds"])
    scored = [r for r in report["rounds"] if r["plants"]["plant-1"]["evaluation"]]
    assert scored and all("val_rmse" in r["plants"]["plant-1"]["evaluation"] for r in scored)


def test_a_task_whose_score_is_nan_stops_the_run_in_round_one_naming_task_key_and_split(
    tmp_path: Path, test_tasks: None
) -> None:
    report = simulation(tmp_path, rounds=5, task="support.sim_tasks:NanRulTask").run()
    assert [r["round"] for r in report["rounds"]] == [1]
    stopped = report["campaign"]["stopped_early"]
    assert "task bug" in stopped and "task 'rul': split 'val': score 'rmse' is nan" in stopped
    assert (tmp_path / "run" / "convergence.png").exists()


def test_a_run_failing_late_keeps_its_rounds_and_plot_and_the_report_says_what_is_missing(
    tmp_path: Path, test_tasks: None, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulation(tmp_path, rounds=2, baselines=True, task="support.sim_tasks:DiskGoneInBaselinesRulTask")
    with pytest.raises(OSError, match="data volume unreadable"):
        sim.run()
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2] and report["rounds"][-1]["global_rmse"] > 0
    assert "OSError" in report["failure"] and (run / "convergence.png").exists()
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "again.png")]) == 0
    err = capsys.readouterr().err
    assert "incomplete run: the run failed: OSError" in err and "baselines" in err
