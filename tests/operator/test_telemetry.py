"""What the operator tells Prometheus when a round finishes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plantfed.contract.api.common import MetricGoal
from plantfed.contract.api.round import FederatedRoundStatus, PlantRoundState, PlantRoundStatus, RoundPhase
from plantfed.contract.metrics import Metrics
from plantfed.hub.telemetry import Telemetry

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def finished(metrics: dict[str, float]) -> FederatedRoundStatus:
    return FederatedRoundStatus(
        phase=RoundPhase.SUCCEEDED,
        start_time=START,
        completion_time=START.replace(minute=5),
        result_version=4,
        assigned=2,
        metrics=metrics,
        plants=[
            PlantRoundStatus(
                plant="a",
                state=PlantRoundState.UPLOADED,
                metrics={"global_test_accuracy": 0.6, "global_test_samples": 10.0, "objective.accuracy": 1.0},
            ),
            PlantRoundStatus(plant="b", state=PlantRoundState.LATE),
        ],
    )


@pytest.mark.parametrize(
    ("metrics", "accuracy"),
    [
        ({"global_test_accuracy": 0.6, "val_accuracy": 0.8, "val_loss": 0.4, "global_test_loss": 1.0}, 0.8),
        ({"global_test_accuracy": 0.6, "global_test_loss": 1.0}, 0.6),  # plant-side evaluation off
    ],
)
def test_global_accuracy_is_the_promoted_models_own_score_when_plants_scored_it(metrics, accuracy):
    m = Metrics()
    Telemetry(m).round_transition(
        "bearing", "bearing-r3", FederatedRoundStatus(phase=RoundPhase.EVALUATING), finished(metrics)
    )
    value = m.registry.get_sample_value
    assert value("plantfed_global_score", {"model": "bearing", "score": "accuracy"}) == accuracy
    assert value("plantfed_global_score", {"model": "bearing", "score": "loss"}) == (0.4 if accuracy == 0.8 else 1.0)
    assert value("plantfed_plant_score", {"model": "bearing", "plant": "a", "score": "accuracy"}) == 0.6
    assert value("plantfed_plant_score", {"model": "bearing", "plant": "a", "score": "samples"}) is None
    assert value("plantfed_objective", {"model": "bearing", "score": "accuracy", "goal": "Maximize"}) == 1
    assert value("plantfed_promoted_version", {"model": "bearing"}) == 4
    assert value("plantfed_round_plants_late", {"model": "bearing"}) == 1
    assert value("plantfed_rounds_total", {"model": "bearing", "outcome": "succeeded"}) == 1


def test_the_objective_follows_the_task_a_lineage_trains():
    m = Metrics()
    m.set_objective("rul", "accuracy", MetricGoal.MAXIMIZE)
    m.set_objective("rul", "rmse", MetricGoal.MINIMIZE)
    value = m.registry.get_sample_value
    assert value("plantfed_objective", {"model": "rul", "score": "rmse", "goal": "Minimize"}) == 1
    assert value("plantfed_objective", {"model": "rul", "score": "accuracy", "goal": "Maximize"}) is None


def test_a_round_already_finished_counts_once():
    m = Metrics()
    done = finished({"val_accuracy": 0.8})
    Telemetry(m).round_transition("bearing", "bearing-r3", done, done)
    assert m.registry.get_sample_value("plantfed_rounds_total", {"model": "bearing", "outcome": "succeeded"}) is None
