"""Plant-side evaluation of a round's candidate: only the contributing plants' numbers reach the hub, once each."""

from __future__ import annotations

import grpc
import pytest
from support.exchange import Hub
from support.plant_runtime import CFG, MODEL, runtime_for, seed_bearing

from plantfed.contract.records import EvaluationRecord
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.exchange.errors import ExchangeError
from plantfed.plant.runtime import RoundNotForThisPlant
from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.sdk import dataset_size


@pytest.fixture
def aggregated(hub: Hub) -> int:
    """Round r1 trained by plant-a and plant-b and aggregated into a candidate; returns its version."""
    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a", "plant-b"), model=MODEL)
    for i, plant in enumerate(("plant-a", "plant-b")):
        runtime_for(hub, plant, task, index=i).participate("r1", CFG)
    hub.store.close_round("r1")
    return aggregate_round(hub.store, "r1", StrategyConfig()).version.version


def test_a_plant_scores_the_candidate_on_its_validation_split_and_the_hub_keeps_it(hub: Hub, aggregated: int) -> None:
    runtime = runtime_for(hub, "plant-a", BearingTask())
    assert hub.plant("plant-a").get_round("r1").candidate_version == aggregated

    kept = runtime.evaluate_candidate("r1")

    assert (kept.plant, kept.round_id, kept.version) == ("plant-a", "r1", aggregated)
    assert kept.num_samples == dataset_size(BearingTask().load_data(runtime.data).val)
    assert {"val_accuracy", "val_loss", "val_balanced_accuracy"} <= set(kept.metrics)
    assert 0.0 <= kept.metrics["val_accuracy"] <= 1.0
    assert hub.admin().list_evaluations("r1") == [kept]


def test_a_repeated_evaluation_returns_the_first_one_and_changes_nothing(hub: Hub, aggregated: int) -> None:
    client = hub.plant("plant-a")
    first = EvaluationRecord(
        plant="plant-a", round_id="r1", version=aggregated, num_samples=10, metrics={"val_accuracy": 0.5}
    )
    kept, duplicate = client.submit_evaluation(first)
    assert not duplicate
    again, duplicate = client.submit_evaluation(first.model_copy(update={"metrics": {"val_accuracy": 0.99}}))
    assert duplicate and again == kept
    assert hub.admin().list_evaluations("r1") == [kept]


@pytest.mark.parametrize(
    ("caller", "changes", "code", "message"),
    [
        (
            "plant-b",
            {},
            grpc.StatusCode.PERMISSION_DENIED,
            "token belongs to plant 'plant-b', but the evaluation names plant 'plant-a'",
        ),
        (
            "plant-c",
            {"plant": "plant-c"},
            grpc.StatusCode.PERMISSION_DENIED,
            "plant 'plant-c' is not assigned to round 'r1'",
        ),
        ("plant-a", {"version": 1}, grpc.StatusCode.FAILED_PRECONDITION, "an evaluation of version 1 is not asked for"),
        (
            "plant-a",
            {"metrics": {"val_accuracy": float("nan")}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "metrics.val_accuracy: Input should be a finite number",
        ),
        ("plant-a", {"round_id": "r9"}, grpc.StatusCode.NOT_FOUND, "r9"),
    ],
)
def test_bad_evaluations_are_refused_with_the_reason_and_nothing_is_kept(
    hub: Hub, aggregated: int, caller: str, changes: dict, code: grpc.StatusCode, message: str
) -> None:
    report = EvaluationRecord(
        plant="plant-a", round_id="r1", version=aggregated, num_samples=10, metrics={"val_accuracy": 0.5}
    ).model_copy(update=changes)
    with pytest.raises(ExchangeError) as refused:
        hub.plant(caller).submit_evaluation(report)
    assert refused.value.code is code and message in str(refused.value)
    assert hub.admin().list_evaluations("r1") == []


def test_nothing_to_evaluate_before_aggregation(hub: Hub) -> None:
    seed_bearing(hub, BearingTask())
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    assert hub.plant("plant-a").get_round("r1").candidate_version is None
    with pytest.raises(RoundNotForThisPlant, match="no aggregated candidate to evaluate yet"):
        runtime_for(hub, "plant-a", BearingTask()).evaluate_candidate("r1")
