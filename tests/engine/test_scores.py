"""Task scores pool from sufficient statistics: one definition (`plantfed.contract.scores`) for plant and hub."""

from __future__ import annotations

import math

import pytest
import torch

from plantfed.contract.api.common import MetricGoal
from plantfed.contract.api.round import Promotion, PromotionPolicy, RoundScore
from plantfed.contract.scores import (
    Pooling,
    Score,
    goal_for,
    macro_f1,
    objective_entry,
    objective_of,
    pool,
    scores_only,
)
from plantfed.hub.reconcile.round import Incumbent, promotion_verdict, round_score
from plantfed.sim.baselines import BaselineReport
from plantfed.sim.simulate import RoundReport, goal_of, quality_summary
from plantfed.tasks.sdk import ACCURACY_SCORE, Accumulator, BatchResult, Task, TaskError, check_scores

RMSE = Score("rmse", MetricGoal.MINIMIZE, Pooling.RMS)


def test_pooled_rmse_is_the_rmse_of_all_samples_not_a_mean_of_rmses():
    errors = {"a": [1.0, 1.0, 1.0], "b": [10.0]}
    rows = []
    for errs in errors.values():
        sumsq = sum(e * e for e in errs)
        rows.append(({"val_rmse": math.sqrt(sumsq / len(errs)), "val_rmse.sumsq": sumsq, "val_samples": len(errs)}, 1))
    pooled = pool(rows)
    everything = [e for errs in errors.values() for e in errs]
    assert pooled["val_rmse"] == pytest.approx(math.sqrt(sum(e * e for e in everything) / len(everything)))
    assert pooled["val_rmse"] != pytest.approx((1.0 + 10.0) / 2)
    assert pooled["val_samples"] == 4 and pooled["val_rmse.sumsq"] == 103


def test_accuracy_pools_from_counts_by_its_splits_samples_not_the_rows_weight():
    rows = [({"test_accuracy": 0.5, "test_samples": 100.0}, 1), ({"test_accuracy": 1.0, "test_samples": 300.0}, 1000)]
    assert pool(rows)["test_accuracy"] == pytest.approx((50 + 300) / 400)


def test_a_score_without_split_samples_is_weighted_by_the_row():
    assert pool([({"train_loss": 1.0}, 1), ({"train_loss": 4.0}, 3)]) == {"train_loss": pytest.approx(3.25)}


def test_macro_f1_pools_from_summed_confusion_counts():
    a = {"val_f1": 1.0, "val_f1.tp.x": 2.0, "val_f1.fp.x": 0.0, "val_f1.fn.x": 0.0}
    b = {"val_f1": 0.0, "val_f1.tp.x": 0.0, "val_f1.fp.x": 0.0, "val_f1.fn.x": 0.0, "val_f1.fp.y": 2.0}
    b |= {"val_f1.tp.y": 0.0, "val_f1.fn.y": 0.0}
    a |= {"val_f1.tp.y": 0.0, "val_f1.fp.y": 0.0, "val_f1.fn.y": 0.0}
    # x: tp 2, fn 0, fp 0 -> F1 1; y: only 2 false positives -> F1 0; macro = 0.5
    assert pool([(a, 1), (b, 1)])["val_f1"] == pytest.approx(0.5)
    assert math.isnan(macro_f1({"never": {"tp": 0, "fp": 0, "fn": 0}}))


def test_keys_some_row_lacks_are_dropped_and_objectives_kept_only_when_they_agree():
    rows = [
        ({"val_loss": 1.0, "objective.rmse": -1.0, "extra": 1.0}, 1),
        ({"val_loss": 2.0, "objective.rmse": -1.0}, 1),
    ]
    assert pool(rows) == {"objective.rmse": -1.0, "val_loss": 1.5}
    assert objective_of(pool(rows)) == ("rmse", MetricGoal.MINIMIZE)
    assert "objective.rmse" not in pool([({"objective.rmse": -1.0}, 1), ({"objective.rmse": 1.0}, 1)])


def test_objective_round_trips_and_defaults_to_accuracy():
    assert objective_of(objective_entry(RMSE)) == ("rmse", MetricGoal.MINIMIZE)
    assert objective_of({}) == ("accuracy", MetricGoal.MAXIMIZE)


def test_scores_only_leaves_out_statistics_samples_and_the_objective():
    metrics = {"val_rmse": 2.0, "val_rmse.sumsq": 8.0, "val_samples": 2.0, "objective.rmse": -1.0, "train_loss": 1.0}
    assert scores_only(metrics) == {"val_rmse": 2.0, "train_loss": 1.0}


@pytest.mark.parametrize("name", ["", "a.b", "samples", "with space"])
def test_a_score_name_that_would_clash_with_keys_is_refused(name):
    with pytest.raises(ValueError, match="score name"):
        Score(name, MetricGoal.MAXIMIZE)


class _Regression(Task):
    name = "regression"
    scores = (RMSE, Score("mae", MetricGoal.MINIMIZE))
    primary = "rmse"


def test_accumulated_batches_give_the_scores_and_their_statistics():
    acc = Accumulator()
    acc.add(BatchResult(loss=torch.tensor(2.0), count=2, stats={"rmse": 8.0, "mae": 4.0}))
    acc.add(BatchResult(loss=torch.tensor(0.0), count=2, stats={"rmse": 0.0, "mae": 0.0}))
    assert acc.scores(_Regression()) == {
        "loss": 1.0,
        "samples": 4.0,
        "rmse": pytest.approx(math.sqrt(2.0)),
        "rmse.sumsq": 8.0,
        "mae": 1.0,
    }


def test_a_batch_without_a_declared_statistic_names_the_task_and_the_score():
    acc = Accumulator()
    acc.add(BatchResult(loss=torch.tensor(1.0), count=1, stats={"rmse": 1.0}))
    with pytest.raises(TaskError, match="task 'regression'.*'mae'"):
        acc.scores(_Regression())


def test_the_older_correct_field_still_counts_hits_and_the_positional_form_is_refused():
    assert BatchResult(loss=torch.tensor(1.0), correct=3, count=4).stats == {"accuracy": 3.0}
    with pytest.raises(TypeError, match="positional form"):
        BatchResult(torch.tensor(1.0), 3, 4)  # type: ignore[arg-type]  # what a task written for 0.x passes


def test_non_finite_or_missing_scores_fail_naming_task_split_and_key():
    task = _Regression()
    with pytest.raises(TaskError, match="task 'regression': split 'val': score 'rmse' is nan"):
        check_scores(task, {"loss": 1.0, "samples": 3.0, "rmse": math.nan, "mae": 1.0}, "val")
    with pytest.raises(TaskError, match="split 'test': evaluate returned no 'mae'"):
        check_scores(task, {"loss": 1.0, "samples": 3.0, "rmse": 1.0}, "test")
    check_scores(task, {"loss": math.nan, "samples": 0.0, "rmse": math.nan, "mae": math.nan}, "val")  # empty split
    check_scores(task, {"loss": math.nan, "samples": 3.0, "rmse": math.nan, "mae": 1.0}, "val", finite=False)


def test_an_undeclared_primary_score_is_a_task_error():
    class Broken(Task):
        name = "broken"
        primary = "f1"

    with pytest.raises(TaskError, match="task 'broken' declares no score 'f1'"):
        Broken().primary_score()


def _rounds(values: list[float], name: str) -> list[RoundReport]:
    return [
        RoundReport(i + 1, f"m-r{i + 1}", i + 1, i + 2, 0.0, 0.0, 0, 0, {}, global_scores={name: v})
        for i, v in enumerate(values)
    ]


def test_rounds_to_95_percent_and_swing_follow_the_direction_of_the_score():
    up = quality_summary(_rounds([0.5, 0.9, 0.96, 1.0], "accuracy"), {}, [], [], None, ACCURACY_SCORE)
    assert up["rounds_to_95pct_of_final"] == 3 and not up["swing"]["flagged"]
    down = quality_summary(_rounds([50.0, 12.0, 10.4, 10.0], "rmse"), {}, [], [], None, RMSE)
    assert down["rounds_to_95pct_of_final"] == 3  # 10.4 <= 10 / 0.95; 12 is not
    swung = quality_summary(_rounds([50.0, 10.0, 30.0], "rmse"), {}, [], [], None, RMSE)
    assert swung["swing"] | {"rule": ""} == {
        "flagged": True,
        "final": 30.0,
        "best": 10.0,
        "best_round": 2,
        "gap": 20.0,
        "rule": "",
    }
    steady = quality_summary(_rounds([0.9, 0.88], "accuracy"), {}, [], [], None, ACCURACY_SCORE)
    assert not steady["swing"]["flagged"]  # 0.02 below the best is within 5 % of it


@pytest.mark.parametrize(
    ("score", "federated", "centralised", "share"),
    [(ACCURACY_SCORE, 0.8, 1.0, 0.8), (RMSE, 20.0, 10.0, 0.5)],  # below 1: federated is worse, either way
)
def test_share_of_centralised_reads_below_one_when_federated_is_worse(score, federated, centralised, share):
    final = {"a": {f"test_{score.name}": federated}}
    baselines = BaselineReport(scores={"centralised": {"a": {score.name: centralised}}}, epochs=2)
    quality = quality_summary(_rounds([federated], score.name), final, ["a"], [], baselines, score)
    assert quality["federated_share_of_centralised"] == pytest.approx(share)
    assert quality["comparison"] == {"a": {"federated": federated, "centralised": centralised}}


def test_a_metrics_goal_is_the_one_its_task_declares_for_the_score():
    task = _Regression()
    assert goal_of(task, "val_rmse") is goal_of(task, "local_val_mae") is MetricGoal.MINIMIZE
    assert goal_of(task, "train_loss") is MetricGoal.MINIMIZE
    with pytest.raises(ValueError, match="declares no score 'balanced_accuracy'.*--goal"):
        goal_of(task, "val_balanced_accuracy")


def test_a_rounds_headline_score_is_the_promotion_metric_else_the_declared_primary():
    metrics = {"val_rmse": 3.0, "local_val_rmse": 2.0, "val_mae": 1.0}
    minimize = ("rmse", MetricGoal.MINIMIZE)
    named = Promotion(policy=PromotionPolicy.IF_BETTER, metric="val_mae", goal=MetricGoal.MINIMIZE)
    assert round_score(named, metrics, minimize) == RoundScore(metric="val_mae", goal=MetricGoal.MINIMIZE, value=1.0)
    assert round_score(Promotion(), metrics, minimize) == RoundScore(
        metric="val_rmse", goal=MetricGoal.MINIMIZE, value=3.0
    )
    unscored = round_score(Promotion(), {"local_val_rmse": 2.0}, minimize)
    assert unscored is not None and unscored.metric == "local_val_rmse"
    assert round_score(Promotion(), {}, minimize) is None


RUL = ("rmse", MetricGoal.MINIMIZE)


@pytest.mark.parametrize(
    ("metric", "declared", "objective", "goal"),
    [
        ("val_rmse", None, RUL, MetricGoal.MINIMIZE),  # the task's primary score: its own direction
        ("local_val_rmse", None, RUL, MetricGoal.MINIMIZE),
        ("rmse", None, RUL, MetricGoal.MINIMIZE),
        ("val_loss", None, RUL, MetricGoal.MINIMIZE),
        ("train_loss", None, ("accuracy", MetricGoal.MAXIMIZE), MetricGoal.MINIMIZE),
        ("val_accuracy", None, ("accuracy", MetricGoal.MAXIMIZE), MetricGoal.MAXIMIZE),
        ("val_rmse", MetricGoal.MAXIMIZE, RUL, MetricGoal.MAXIMIZE),  # the spec's word wins
    ],
)
def test_an_unset_goal_follows_the_task_for_its_primary_score(metric, declared, objective, goal) -> None:
    assert goal_for(metric, declared, objective) is goal


def test_if_better_without_a_goal_promotes_a_lower_rmse_and_refuses_a_higher_one() -> None:
    policy = Promotion(policy=PromotionPolicy.IF_BETTER, metric="val_rmse")
    incumbent = Incumbent("version 4 on the same plants", {"val_rmse": 12.0})
    better = promotion_verdict(policy, 5, {"val_rmse": 9.5}, incumbent, RUL)
    worse = promotion_verdict(policy, 5, {"val_rmse": 14.0}, incumbent, RUL)
    assert (better.promote, better.reason) == (True, "Better")
    assert (worse.promote, worse.reason) == (False, "NotBetter") and "below" in worse.message
    assert round_score(policy, {"val_rmse": 9.5}, RUL) == RoundScore(
        metric="val_rmse", goal=MetricGoal.MINIMIZE, value=9.5
    )
