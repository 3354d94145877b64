"""Warm plants in `plantfed simulate`: the same results as fresh processes, crashes and bounded memory.

Warm mode (the default) runs every plant's Jobs in one long-lived worker process per plant; fresh mode starts a
process per Job as a pod does. Both must give bit-identical models and metrics for the same seed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console
from support.paths import REPO

from plantfed.engine.store import ModelStore
from plantfed.sim.simulate import Simulation, SimulationConfig
from plantfed.sim.workers import MIB, Warm, worker_capacity

TINY = {"recordings_per_class": "1", "seconds": "2.0"}

pytestmark = pytest.mark.slow


def simulate(out: Path, **fields) -> tuple[Simulation, dict]:
    fields.setdefault("data_options", dict(TINY))
    sim = Simulation(SimulationConfig(out=out, epochs=1, **fields), console=Console(file=io.StringIO(), width=200))
    return sim, sim.run()


def untimed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k != "samples_per_second"}


def plant_round(p: dict) -> tuple:
    return p["state"], p["num_samples"], untimed(p["metrics"]), p["update_norm"], p["cosine"], p["evaluation"]


def learned(out: Path, report: dict) -> dict:
    """Everything a run learned, without its wall-clock times: models by digest, metrics, evaluations."""
    store = ModelStore(out / "hub" / "store")
    return {
        "models": [v.digest for v in store.versions("bearing")],
        "rounds": [
            (
                r["global_accuracy"],
                r["global_loss"],
                r["version"],
                r["promoted"],
                {name: plant_round(p) for name, p in r["plants"].items()},
            )
            for r in report["rounds"]
        ],
        "final": report["final_evaluation"],
    }


def test_warm_and_fresh_plants_learn_bit_identical_models(tmp_path: Path) -> None:
    runs = {}
    for mode in ("fresh", "warm"):
        out = tmp_path / mode
        _, report = simulate(out, plants=3, rounds=2, seed=7, plant_processes=mode)
        assert report["plant_processes"]["mode"] == mode
        assert all(r["phase"] == "Succeeded" for r in report["rounds"])
        runs[mode] = learned(out, report)
    assert runs["warm"] == runs["fresh"]
    assert len(runs["warm"]["models"]) == 3 and runs["warm"]["final"]


def test_a_worker_killed_mid_job_fails_that_job_and_the_next_round_gets_a_new_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    sim, report = simulate(
        tmp_path / "run",
        plants=2,
        rounds=2,
        min_participants=1,
        task="support.sim_tasks:CrashingBearingTask",
        data_options={**TINY, "crash": "plant-2", "crash_dir": str(tmp_path)},
        plant_processes="warm",
    )
    first, second = report["rounds"]
    crashed = first["plants"]["plant-2"]
    assert (crashed["state"], crashed["reason"]) == ("Failed", "TrainingFailed")
    assert "exit code -9" in crashed["message"]
    assert first["phase"] == "Succeeded" and first["plants"]["plant-1"]["state"] == "Uploaded"
    assert second["phase"] == "Succeeded"
    assert {p["state"] for p in second["plants"].values()} == {"Uploaded"}
    assert isinstance(sim.processes, Warm)
    assert [w.plant for w in sim.processes.started].count("plant-2") == 2  # the killed worker, and its successor
    assert [w.plant for w in sim.processes.started].count("plant-1") == 1  # warm across both rounds


def test_the_memory_budget_bounds_the_live_workers(tmp_path: Path) -> None:
    """A budget smaller than one worker: one alive at a time, the others queued, every plant still trains."""
    sim, report = simulate(
        tmp_path / "run", plants=3, rounds=2, parallel=3, plant_processes="warm", plant_memory_budget_mib=1
    )
    assert all({p["state"] for p in r["plants"].values()} == {"Uploaded"} for r in report["rounds"])
    assert report["plant_processes"]["max_alive"] == 1
    processes = report["plant_processes"]
    assert processes["worker_peak_rss_mib"] > processes["worker_pss_mib"] > 100  # measured, not the guess
    assert len(sim.processes.started) > 3  # evicted and started again: three plants shared one slot


def test_capacity_is_the_budget_over_a_worker_and_never_zero() -> None:
    assert worker_capacity(10 * 1024 * MIB, 955 * MIB) == 10
    assert worker_capacity(1 * MIB, 955 * MIB) == 1
