"""Issue 20, item 2: an evaluation cannot be weighted at will.

A plant's score of the round's candidate weighs the promotion decision by its sample count, so it is bounded by
what the plant declared in its update (its validation split's size, the scores it measured there), values are
in range, and only plants whose update made the candidate may report. Each refusal is INVALID_ARGUMENT (or
FAILED_PRECONDITION for a plant not asked) with the reason, and nothing is kept.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from support.exchange import Hub
from support.updates import update_meta, write_good_update

from plantfed.contract.plant_metrics import BASE_VAL_SAMPLES, VAL_ACCURACY, VAL_LOSS, base_key
from plantfed.contract.records import MAX_METRICS, EvaluationRecord
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.exchange import ExchangeError

DECLARED_VAL = 50
DECLARED = {
    BASE_VAL_SAMPLES: float(DECLARED_VAL),
    base_key("val", "accuracy"): 0.5,
    base_key("val", "loss"): 1.2,
    base_key("val", "balanced_accuracy"): 0.4,
    base_key("val", "rmse.sumsq"): 2.0,
}


@pytest.fixture
def candidate(strict_hub: Hub) -> int:
    """r1's candidate, aggregated from plant-a's update alone (plant-b is assigned but sent none)."""
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", path, metrics=DECLARED), path)
    strict_hub.store.close_round("r1")
    return aggregate_round(strict_hub.store, "r1", StrategyConfig()).version.version


def _submit(hub: Hub, candidate: int, plant: str = "plant-a", **fields: Any) -> EvaluationRecord:
    values: dict[str, Any] = {"num_samples": DECLARED_VAL, "metrics": {VAL_ACCURACY: 0.75, VAL_LOSS: 0.6}}
    values.update(fields)
    # model_construct: the plant's own client would refuse these; the hub must not rely on that.
    report = EvaluationRecord.model_construct(plant=plant, round_id="r1", version=candidate, **values)
    kept, _ = hub.plant(plant).submit_evaluation(report)
    return kept


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"num_samples": 2**62}, ["num_samples"]),
        ({"num_samples": DECLARED_VAL + 1}, [f"num_samples {DECLARED_VAL + 1}", f"{DECLARED_VAL} validation samples"]),
        ({"metrics": {VAL_ACCURACY: 1e300}}, [VAL_ACCURACY]),
        ({"metrics": {VAL_ACCURACY: 1.5}}, [f"{VAL_ACCURACY} = 1.5 is outside [0, 1]"]),
        ({"metrics": {VAL_ACCURACY: -0.1}}, ["outside [0, 1]"]),
        ({"metrics": {VAL_LOSS: -3.0}}, [f"{VAL_LOSS} = -3.0 is negative"]),
        ({"metrics": {VAL_ACCURACY: float("nan")}}, [VAL_ACCURACY, "finite"]),
        ({"metrics": {f"val_k{i}": 0.5 for i in range(MAX_METRICS + 1)}}, ["metrics"]),
        ({"metrics": {VAL_ACCURACY: 0.7, "val_weight": 9.0}}, ["not declared for this split: val_weight"]),
        ({"metrics": {VAL_ACCURACY: 0.7, "val_rmse.sumsq": -1.0}}, ["val_rmse.sumsq = -1.0 is negative"]),
    ],
    ids=[
        "2^62-samples",
        "more-than-declared",
        "1e300",
        "accuracy>1",
        "accuracy<0",
        "negative-loss",
        "nan",
        "too-many-keys",
        "undeclared-key",
        "negative-sum-of-squares",
    ],
)
def test_an_evaluation_beyond_what_the_plant_declared_is_refused(
    strict_hub: Hub, candidate: int, fields: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ExchangeError) as refused:
        _submit(strict_hub, candidate, **fields)
    assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in refused.value.details
    assert strict_hub.admin().list_evaluations("r1") == []

    kept = _submit(strict_hub, candidate, metrics={VAL_ACCURACY: 0.75, "val_balanced_accuracy": 0.7})
    assert strict_hub.admin().list_evaluations("r1") == [kept]


def test_a_plant_whose_update_is_not_in_the_candidate_cannot_evaluate_it(strict_hub: Hub, candidate: int) -> None:
    with pytest.raises(ExchangeError) as refused:
        _submit(strict_hub, candidate, plant="plant-b")
    assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "only the plants it was aggregated from evaluate it" in refused.value.details
    assert strict_hub.admin().list_evaluations("r1") == []
