"""`plantfed simulate` with DP: ε per plant after every round, the metrics, and the ε budget enforced."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opacus.accountants import RDPAccountant
from rich.console import Console

from plantfed.engine.privacy import DPMode, DPRelease, epsilon_for
from plantfed.formats import codecs
from plantfed.sim.simulate import Simulation, SimulationConfig

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
        plants=len(PLANTS),
        rounds=3,
        out=work / "run",
        epochs=1,
        data_options={"recordings_per_class": "2"},
        clip_norm=ONE_ROUND.clip_norm,
        noise_multiplier=ONE_ROUND.noise_multiplier,
        dp_delta=DELTA,
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
    # Round 2 would exceed the budget for every plant: the operator's selection excludes them, the round
    # cannot reach its quorum, and the rehearsal stops (the ledger only grows).
    assert [(r["round"], r["phase"]) for r in report["rounds"]] == [(1, "Succeeded"), (2, "Failed")]
    second = report["rounds"][1]
    assert second["reason"] == "QuorumUnreachable" and second["budget_exhausted"] == list(PLANTS)
    for plant in PLANTS:
        assert (second["plants"][plant]["state"], second["plants"][plant]["reason"]) == (
            "Excluded",
            "PrivacyBudgetExhausted",
        )
        assert "above the budget" in second["plants"][plant]["message"]
    assert report["campaign"]["stopped_early"] is not None
    for plant in PLANTS:
        assert report["rounds"][0]["plants"][plant]["epsilon"] == pytest.approx(EPS1)
        assert report["privacy"]["epsilon"][plant] == pytest.approx(EPS1)
        assert report["privacy"]["epsilon"][plant] <= BUDGET
        value = dp_run.sim.metrics.registry.get_sample_value(
            "plantfed_dp_epsilon_spent", {"model": "bearing", "plant": plant}
        )
        assert value == pytest.approx(EPS1)
    on_disk = json.loads((dp_run.out / "report.json").read_text())
    assert on_disk["privacy"]["rounds_charged"] == {"plant-1": 1, "plant-2": 1}
    assert "exceed" in dp_run.console


def test_the_exported_update_norm_is_the_norm_the_hub_received(dp_run: DPRun) -> None:
    """As on a cluster (the operator exports the aggregation's numbers), not the plant's norm before clipping."""
    round_ = dp_run.report["rounds"][0]
    for plant in PLANTS:
        exported = dp_run.sim.metrics.registry.get_sample_value(
            "plantfed_update_l2_norm", {"model": "bearing", "plant": plant}
        )
        received = received_norm(dp_run.sim, round_["round_id"], plant)
        assert exported == pytest.approx(received, rel=1e-4)
        assert round_["plants"][plant]["update_norm"] != pytest.approx(received, rel=1e-2), "noise changed nothing?"


def test_dp_sgd_plants_declare_what_they_ran_and_the_ledger_composes_it_like_opacus(tmp_path: Path) -> None:
    """Privacy mode sample end to end: real opacus in each plant process, real uploads, the hub's ledger."""
    cfg = SimulationConfig(
        plants=len(PLANTS),
        rounds=2,
        out=tmp_path / "run",
        epochs=1,
        batch_size=64,
        data_options={"recordings_per_class": "1", "seconds": "2.0"},
        clip_norm=1.0,
        noise_multiplier=1.2,
        dp_mode=DPMode.SAMPLE,
        dp_delta=DELTA,
    )
    with open(tmp_path / "console.txt", "w") as console:
        sim = Simulation(cfg, console=Console(file=console))
        report = sim.run()

    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for plant in PLANTS:
        declared = [u.meta for r in report["rounds"] for u in sim.store.updates(r["round_id"]) if u.meta.plant == plant]
        batches = math.ceil(declared[0].num_samples / 64)
        for meta in declared:
            assert meta.dp.mode is DPMode.SAMPLE
            assert (meta.dp.noise_multiplier, meta.dp.clip_norm) == (1.2, 1.0)
            assert (meta.dp.sample_rate, meta.dp.steps) == (pytest.approx(1 / batches), batches)
        history = sim.ledger.history(plant)
        assert [r.mode for r in history] == [DPMode.SAMPLE, DPMode.SAMPLE]
        reference = RDPAccountant()
        reference.history = [(1.2, 1 / batches, 2 * batches)]
        assert report["privacy"]["epsilon"][plant] == pytest.approx(reference.get_epsilon(DELTA))


def test_dp_sgd_with_fedprox_is_refused_before_anything_starts(tmp_path: Path) -> None:
    cfg = SimulationConfig(
        out=tmp_path / "run", clip_norm=1.0, noise_multiplier=1.0, dp_mode=DPMode.SAMPLE, fedprox_mu=0.01
    )
    with pytest.raises(ValueError, match="cannot be combined with --fedprox-mu"):
        Simulation(cfg)
    assert not (tmp_path / "run").exists()
