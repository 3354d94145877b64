"""`plantfed simulate` with local DP: ε per plant after every round, the metric, and the ε budget enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from plantfed.privacy import DPMode, DPRelease, epsilon_for
from plantfed.simulate import Simulation, SimulationConfig

DELTA = 1e-5


@pytest.mark.slow
def test_epsilon_is_reported_per_round_and_the_budget_stops_training(tmp_path: Path) -> None:
    one_round = DPRelease(mode=DPMode.LOCAL, noise_multiplier=1.0, clip_norm=1.0)
    eps1, eps2 = (epsilon_for([one_round] * r, DELTA) for r in (1, 2))
    budget = (eps1 + eps2) / 2  # room for exactly one round
    cfg = SimulationConfig(
        plants=2, rounds=3, out=tmp_path / "run", epochs=1, data_options={"recordings_per_class": "2"},
        clip_norm=1.0, noise_multiplier=1.0, dp_delta=DELTA, epsilon_budget=budget,
    )
    sim = Simulation(cfg, console=Console(file=open(tmp_path / "console.txt", "w")))  # noqa: SIM115
    report = sim.run()

    assert [r["round"] for r in report["rounds"]] == [1]  # round 2 would exceed the budget for every plant
    for plant in ("plant-1", "plant-2"):
        assert report["rounds"][0]["plants"][plant]["epsilon"] == pytest.approx(eps1)
        assert report["privacy"]["epsilon"][plant] == pytest.approx(eps1)
        assert report["privacy"]["epsilon"][plant] <= budget
        value = sim.metrics.registry.get_sample_value("plantfed_dp_epsilon_spent", {"model": "bearing", "plant": plant})
        assert value == pytest.approx(eps1)
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk["privacy"]["rounds_charged"] == {"plant-1": 1, "plant-2": 1}
    assert "exceed" in (tmp_path / "console.txt").read_text()
