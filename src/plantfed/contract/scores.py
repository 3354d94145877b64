"""A task's scores: what each one means, which way is better, and how it pools from sufficient statistics.

Plants report finished scores (`val_rmse`) next to the sufficient statistics they were computed from, so the
hub (operator, aggregation Job, simulate) pools them across plants without loading the task, and every party
pools with this one definition. How a score pools is carried by its statistics' names:

* MEAN (loss, accuracy, MAE): a per-sample mean. Its statistic is the split's sample count `<scope>_samples`
  (value × samples is the sum: for accuracy, the count of hits). Pooled: Σ sum / Σ samples.
* RMS (RMSE): the root of a per-sample mean of squares. Statistic `<key>.sumsq`, the sum of squares. Pooled:
  sqrt(Σ sumsq / Σ samples), never a mean of the plants' RMSEs.
* MACRO_F1: the mean over classes of F1 = 2·tp / (2·tp + fp + fn). Statistics `<key>.tp.<class>`,
  `<key>.fp.<class>`, `<key>.fn.<class>`, counts. Pooled from the summed confusion counts; a class with no
  true, predicted or missed sample is left out, as scikit-learn's macro average over the labels present.

A task's own batch statistics (`BatchResult.stats`) use the score's bare name: the sum of per-sample values for
MEAN, the sum of squares for RMS, and `<name>.tp.<class>` etc. for MACRO_F1.

Statistics are sums, so they add across batches and plants; a pooled statistic too large for a record
(`MAX_MAGNITUDE`) is dropped and the score computed from it kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from plantfed.contract.api.common import MetricGoal
from plantfed.contract.plant_metrics import BASE_PREFIX, LOCAL_PREFIX, LOSS, SAMPLES, TEST, TRAIN, VAL
from plantfed.contract.records import MAX_MAGNITUDE

SUMSQ = "sumsq"
"""The statistic of an RMS score: its sum of squares."""
CONFUSION = ("tp", "fp", "fn")
"""The statistics of a MACRO_F1 score, one each per class."""
OBJECTIVE_PREFIX = "objective."
"""`objective.<name>` in an update's metrics: the task's primary score, +1 when larger is better, -1 when
smaller is (so the hub learns the objective from the plants, which run the task)."""


class Pooling(str, Enum):
    """How per-sample values make a score, and so how it pools across batches and plants."""

    MEAN = "mean"
    RMS = "rms"
    MACRO_F1 = "macro_f1"


@dataclass(frozen=True)
class Score:
    """One score a task declares: its name (`accuracy`, `rmse`), which way is better, how it pools.

    `unit_interval`: the score is a fraction in [0, 1] (a plot's axis, a plausibility check).
    """

    name: str
    goal: MetricGoal
    pooling: Pooling = Pooling.MEAN
    unit_interval: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or "." in self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"score name {self.name!r}: use letters, digits and '_' (no '.')")
        if self.name == SAMPLES:
            raise ValueError(f"score name {SAMPLES!r} is reserved for a split's sample count")

    def value(self, stats: Mapping[str, float], samples: float) -> float:
        """The score from a split's summed batch statistics (keyed as in `BatchResult.stats`) and sample count."""
        if self.pooling is Pooling.MACRO_F1:
            counts = confusion(stats, self.name)
            if not counts:
                raise KeyError(self.name)
            return macro_f1(counts)
        if self.name not in stats:
            raise KeyError(self.name)
        if samples <= 0:
            return math.nan
        mean = stats[self.name] / samples
        return math.sqrt(mean) if self.pooling is Pooling.RMS else mean

    def wire_statistics(self, stats: Mapping[str, float]) -> dict[str, float]:
        """The statistics reported next to the score (keyed under the bare name; `scoped` adds the split)."""
        if self.pooling is Pooling.RMS:
            return {f"{self.name}.{SUMSQ}": stats[self.name]}
        if self.pooling is Pooling.MACRO_F1:
            return {k: v for k, v in stats.items() if _is_confusion(k, self.name)}
        return {}

    def better(self, candidate: float, incumbent: float) -> bool:
        return self.goal.better(candidate, incumbent)


LOSS_SCORE = Score("loss", MetricGoal.MINIMIZE, description="the task's training loss, a per-sample mean")
"""Every task reports its loss: `BatchResult.loss` is the batch mean, so the sum is loss × count."""


def _is_confusion(key: str, name: str) -> bool:
    parts = key.split(".", 2)
    return len(parts) == 3 and parts[0] == name and parts[1] in CONFUSION


def confusion(stats: Mapping[str, float], name: str) -> dict[str, dict[str, float]]:
    """Class -> {tp, fp, fn} from statistics keyed `<name>.tp.<class>` etc."""
    out: dict[str, dict[str, float]] = {}
    for key, value in stats.items():
        if _is_confusion(key, name):
            _, which, cls = key.split(".", 2)
            out.setdefault(cls, dict.fromkeys(CONFUSION, 0.0))[which] = value
    return out


def macro_f1(counts: Mapping[str, Mapping[str, float]]) -> float:
    """Mean F1 over the classes that occur (as truth or prediction); NaN when none does."""
    f1 = []
    for c in counts.values():
        denominator = 2 * c.get("tp", 0.0) + c.get("fp", 0.0) + c.get("fn", 0.0)
        if denominator > 0:
            f1.append(2 * c.get("tp", 0.0) / denominator)
    return sum(f1) / len(f1) if f1 else math.nan


_SCOPES = tuple(
    sorted(
        (p + s + "_" for p in ("", BASE_PREFIX, LOCAL_PREFIX) for s in (VAL, TEST, TRAIN)),
        key=len,
        reverse=True,
    )
)


def scope_of(key: str) -> str | None:
    """`global_val_` for `global_val_rmse`: the part naming the model and split; None for an unscoped key."""
    return next((s for s in _SCOPES if key.startswith(s)), None)


def _sum(values: Sequence[float]) -> float:
    return math.fsum(values)


def pool(rows: Sequence[tuple[Mapping[str, float], float]]) -> dict[str, float]:
    """Pool plants' metrics (rows: (metrics, weight)) from their sufficient statistics.

    Keys every row has are pooled: statistics and `*_samples` summed; an RMS or MACRO_F1 score recomputed
    from the summed statistics; any other score as a MEAN, weighted by its split's samples when every row
    reports them, else by the row's weight (e.g. an update's training samples). `objective.*` keys are kept
    when the rows agree.
    """
    rows = [(m, w) for m, w in rows if w > 0]
    if not rows:
        return {}
    keys = set.intersection(*(set(m) for m, _ in rows))
    out: dict[str, float] = {}

    def column(key: str) -> list[float]:
        return [m[key] for m, _ in rows]

    summed = {k: _sum(column(k)) for k in keys if ("." in k and not k.startswith(OBJECTIVE_PREFIX))}
    for key in sorted(keys):
        if key.startswith(OBJECTIVE_PREFIX):
            values = set(column(key))
            if len(values) == 1:
                out[key] = values.pop()
            continue
        if "." in key:
            continue
        if key.endswith("_" + SAMPLES):
            out[key] = _sum(column(key))
            continue
        scope = scope_of(key)
        samples_key = (scope or "") + SAMPLES
        weights = column(samples_key) if scope and samples_key in keys else [w for _, w in rows]
        total = _sum(weights)
        if f"{key}.{SUMSQ}" in summed:
            out[key] = math.sqrt(summed[f"{key}.{SUMSQ}"] / total) if total > 0 else math.nan
        elif any(_is_confusion(k, key) for k in summed):
            out[key] = macro_f1(confusion(summed, key))
        elif total > 0:
            # Each value is scaled by its share before summing, so the mean stays within the values' range.
            out[key] = _sum([v * (w / total) for v, w in zip(column(key), weights, strict=True)])
        else:
            out[key] = math.nan
    out.update({k: v for k, v in summed.items() if abs(v) <= MAX_MAGNITUDE})
    return {k: v for k, v in sorted(out.items()) if math.isfinite(v)}


def is_count_statistic(key: str) -> bool:
    """A statistic that can never be negative: a sum of squares or a confusion count."""
    _, _, stat = key.partition(".")
    return stat == SUMSQ or stat.split(".", 1)[0] in CONFUSION


def scores_only(metrics: Mapping[str, float]) -> dict[str, float]:
    """The scores of a metrics map, without statistics, sample counts or the objective (for tables and status)."""
    return {k: v for k, v in metrics.items() if "." not in k and not k.endswith("_" + SAMPLES) and k != SAMPLES}


def objective_entry(score: Score) -> dict[str, float]:
    """What an update declares about the task's primary score (see OBJECTIVE_PREFIX)."""
    return {OBJECTIVE_PREFIX + score.name: 1.0 if score.goal is MetricGoal.MAXIMIZE else -1.0}


DEFAULT_OBJECTIVE = ("accuracy", MetricGoal.MAXIMIZE)
"""The objective of plants that declare none (older releases): the SDK's default task is scored on accuracy."""


def goal_for(metric: str, declared: MetricGoal | None, objective: tuple[str, MetricGoal]) -> MetricGoal:
    """Which way `metric` (a score key: `val_rmse`, `local_val_loss`, `rmse`) is better when a promotion or stop
    criterion names it: `declared` if the spec says; else the task's direction when the metric is its primary
    score (`objective`, as plants declare it); else Minimize for a loss and Maximize otherwise."""
    if declared is not None:
        return declared
    scope = scope_of(metric)
    name = metric.removeprefix(scope) if scope else metric
    if name == objective[0]:
        return objective[1]
    return MetricGoal.MINIMIZE if name == LOSS or name.endswith("_" + LOSS) else MetricGoal.MAXIMIZE


def objective_of(metrics: Mapping[str, float]) -> tuple[str, MetricGoal]:
    """The primary score's name and goal an update (or a pool of them) declares; DEFAULT_OBJECTIVE if none."""
    for key, value in metrics.items():
        if key.startswith(OBJECTIVE_PREFIX):
            return key.removeprefix(OBJECTIVE_PREFIX), MetricGoal.MAXIMIZE if value > 0 else MetricGoal.MINIMIZE
    return DEFAULT_OBJECTIVE
