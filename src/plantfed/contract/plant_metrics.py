"""Names of the numbers plants report, defined once: the keys of `UpdateMeta.metrics`, `EvaluationRecord.metrics`
and a federated evaluation, which the plant runtime writes and the operator, telemetry and simulate read.

A key says which model was scored on which of the plant's splits:

* `<split>_<score>`: the model in question on `split` (`val_accuracy` in an evaluation of a round's candidate,
  `test_rmse` in a federated evaluation of a promoted version); a score's sufficient statistics follow it as
  `<split>_<score>.<statistic>` (`plantfed.contract.scores`);
* `global_<split>_<score>`: the round's base model (the global one the plant received), scored before training;
* `local_<split>_<score>`: the model the plant just trained, before it leaves the plant as an update;
* `train_<score>`: the plant's training itself.

The values on the wire and in the store are these strings; changing one is a protocol change.
"""

from __future__ import annotations

from collections.abc import Mapping

# --- what a task measures on a split (`Task.evaluate` returns these keys and the task's declared scores) --------

LOSS = "loss"
ACCURACY = "accuracy"
SAMPLES = "samples"
"""How many examples the split held; a weight, not a score."""

# --- the splits of a plant's data, and which model a score is about ---------------------------------------------

VAL = "val"
TEST = "test"
TRAIN = "train"

BASE_PREFIX = "global_"
"""The round's base model, as the plant received it."""
LOCAL_PREFIX = "local_"
"""The plant's locally trained model (its update's source)."""


def split_key(split: str, score: str) -> str:
    """`<split>_<score>`: a score of the model being evaluated (the candidate, or a promoted version)."""
    return f"{split}_{score}"


def base_key(split: str, score: str) -> str:
    """`global_<split>_<score>`: the round's base model scored on `split` before training."""
    return BASE_PREFIX + split_key(split, score)


def local_key(split: str, score: str) -> str:
    """`local_<split>_<score>`: the plant's trained model scored on `split`."""
    return LOCAL_PREFIX + split_key(split, score)


def split_scores(split: str, scores: Mapping[str, float]) -> dict[str, float]:
    """A task's scores on `split`, keyed as the model being evaluated."""
    return {split_key(split, k): v for k, v in scores.items()}


def base_scores(metrics: Mapping[str, float], split: str = VAL) -> dict[str, float]:
    """The base model's scores on `split` from an update's metrics, keyed like the candidate's (`val_*`).

    So the operator can compare a candidate's evaluation with the base on the same plants and split.
    """
    prefix = base_key(split, "")
    return {split_key(split, k.removeprefix(prefix)): v for k, v in metrics.items() if k.startswith(prefix)}


def is_split_key(key: str, split: str = VAL) -> bool:
    """Whether `key` is a score of the evaluated model on `split` (`val_*`), as opposed to the base's or training's."""
    return key.startswith(split_key(split, ""))


TRAIN_LOSS = split_key(TRAIN, LOSS)
SAMPLES_PER_SECOND = "samples_per_second"
"""Training throughput of the plant in its round."""

VAL_ACCURACY = split_key(VAL, ACCURACY)
"""With VAL_LOSS, what an evaluation may hold from a plant that declared no scores (older releases)."""
VAL_LOSS = split_key(VAL, LOSS)
VAL_SAMPLES = split_key(VAL, SAMPLES)
TEST_SAMPLES = split_key(TEST, SAMPLES)
BASE_VAL_SAMPLES = base_key(VAL, SAMPLES)

EVALUATED_VERSION = "version"
"""In a federated evaluation's result: the model version that was scored."""
