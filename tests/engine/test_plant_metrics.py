"""The keys plants report are protocol: the one definition builds exactly the strings on the wire and in the store."""

from __future__ import annotations

from plantfed.contract import plant_metrics as pm


def test_keys_keep_their_wire_values() -> None:
    assert (pm.TRAIN_LOSS, pm.SAMPLES_PER_SECOND) == ("train_loss", "samples_per_second")
    assert (pm.VAL_ACCURACY, pm.VAL_LOSS, pm.TEST_SAMPLES) == ("val_accuracy", "val_loss", "test_samples")
    assert pm.BASE_VAL_SAMPLES == "global_val_samples"
    assert pm.base_key(pm.TEST, "rmse") == "global_test_rmse"
    assert pm.local_key(pm.VAL, "balanced_accuracy") == "local_val_balanced_accuracy"
    assert pm.split_scores(pm.TEST, {"loss": 0.5}) == {"test_loss": 0.5}


def test_base_scores_are_keyed_like_the_candidates_evaluation() -> None:
    """The operator compares `val_*` of the candidate with the base's `global_val_*` from the same plants."""
    update = {
        "global_val_accuracy": 0.8,
        "global_val_recall_ball": 0.5,
        "global_test_accuracy": 0.7,
        "local_val_accuracy": 0.9,
        "train_loss": 0.1,
    }
    assert pm.base_scores(update) == {"val_accuracy": 0.8, "val_recall_ball": 0.5}
    assert pm.base_scores(update, pm.TEST) == {"test_accuracy": 0.7}
    assert pm.is_split_key("val_accuracy") and not pm.is_split_key("global_val_accuracy")
