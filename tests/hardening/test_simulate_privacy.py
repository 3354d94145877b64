"""`plantfed simulate` with local DP: ε per plant after every round, the metrics, and the ε budget enforced."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from plantfed import codecs
from plantfed.privacy import DPMode, DPRelease, epsilon_for
from plantfed.simulate import Simulation, SimulationConfig

DELTA = 1e-5
PLANTS = ("plant-1", "plant-2")
ONE_ROUND = DPRelease(mode=DPMode.LOCAL, noise_multiplier=1.0, clip_norm=1.0)
EPS1, EPS2 = (epsilon_for([ONE_ROUND] * r, DELTA) for r in (1, 2))
BUDGET = (EPS1 + EPS2) / 2
"""Room for exactly one round."""

pytestmark = pytest.mark.slow


@dataclass
class DPRun:
    sim: Simulation
    report: dict[str, Any]
    out: Path
    console: str


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> DPRun:
    """Two plants with local DP (clipping and noise), stopped by the ε budget after round 1."""
    work = tmp_path_factory.mktemp("simulate-dp")
    cfg = SimulationConfig(
        plants=len(PLANTS), rounds=3, out=work / "run", epochs=1, data_options={"recordings_per_class": "2"},
        clip_norm=ONE_ROUND.clip_norm, noise_multiplier=ONE_ROUND.noise_multiplier, dp_delta=DELTA,
        epsilon_budget=BUDGET,
    )
    with open(work / "console.txt", "w") as console:
        sim = Simulation(cfg, console=Console(file=console))
        report = sim.run()
    return DPRun(sim, report, cfg.out, (work / "console.txt").read_text())


def received_norm(sim: Simulation, round_id: str, plant: str) -> float:
    """The L2 norm of the plant's update as the hub stored it, over its float tensors (what is aggregated)."""
    (update,) = [u for u in sim.store.updates(round_id) if u.meta.plant == plant]
    delta = codecs.iter_update(sim.store.blob_path(update.digest))
    return math.sqrt(sum(float(t.double().pow(2).sum()) for _, t in delta if t.is_floating_point()))


def test_epsilon_is_reported_per_round_and_the_budget_stops_training(dp_run: DPRun) -> None:
    report = dp_run.report
    assert [r["round"] for r in report["rounds"]] == [1]  # round 2 would exceed the budget for every plant
    for plant in PLANTS:
        assert report["rounds"][0]["plants"][plant]["epsilon"] == pytest.approx(EPS1)
        assert report["privacy"]["epsilon"][plant] == pytest.approx(EPS1)
        assert report["privacy"]["epsilon"][plant] <= BUDGET
        value = dp_run.sim.metrics.registry.get_sample_value("plantfed_dp_epsilon_spent", {"model": "bearing", "plant": plant})
        assert value == pytest.approx(EPS1)
    on_disk = json.loads((dp_run.out / "report.json").read_text())
    assert on_disk["privacy"]["rounds_charged"] == {"plant-1": 1, "plant-2": 1}
    assert "exceed" in dp_run.console


def test_the_exported_update_norm_is_the_norm_the_hub_received(dp_run: DPRun) -> None:
    """As on a cluster (the operator exports the aggregation's numbers), not the plant's norm before clipping."""
    (round_,) = dp_run.report["rounds"]
    for plant in PLANTS:
        exported = dp_run.sim.metrics.registry.get_sample_value(
            "plantfed_update_l2_norm", {"model": "bearing", "plant": plant})
        received = received_norm(dp_run.sim, round_["round_id"], plant)
        assert exported == pytest.approx(received, rel=1e-4)
        assert round_["plants"][plant]["update_norm"] != pytest.approx(received, rel=1e-2), "noise changed nothing?"
