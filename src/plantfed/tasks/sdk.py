"""The bring-your-own-task API: what a plant's training code must provide.

A task is a small class: it builds the model, loads one plant's data, and says how to compute a loss on a
batch. The runtime owns everything else (device placement, the local epochs, FedProx, the delta, clipping,
compression, upload), so a task never touches the network or the hub.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from plantfed.contract.api.common import MetricGoal
from plantfed.contract.plant_metrics import ACCURACY, LOSS, SAMPLES
from plantfed.contract.scores import CONFUSION, LOSS_SCORE, Score


@dataclass(frozen=True)
class PlantData:
    """One plant's splits. Splits never share samples; normalisation is computed inside the plant.

    Each split is a map-style dataset: indexable and sized (`dataset_size`). `info` describes the data (it never
    leaves the plant); `info["plant"]`, when set, is the plant's name as the data knows it (`Task.plant_name`).
    """

    train: Dataset
    val: Dataset
    test: Dataset
    info: dict[str, Any] = field(default_factory=dict)


def dataset_size(dataset: Dataset) -> int:
    """Number of samples in a map-style dataset (torch's `Dataset` does not promise `__len__`)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no length: a task's splits must be map-style datasets")
    return len(dataset)


@dataclass(frozen=True)
class DataSpec:
    """Where a plant's data comes from: the flags of `plantfed train`/`evaluate`/`simulate`/`task check`.

    `plant` is the plant's id (`--plant`; simulate: plant-1, plant-2, ...). `path` is `--data`: on a cluster the
    plant's mounted data volume, in simulate the one directory every plant is handed, None for the task's built-in
    synthetic data. `plant_index` and `num_plants` (`--plant-index`, `--num-plants`; simulate: the plant's place
    and `--plants`) let a synthetic or shared source give each plant its own slice. `options` are the
    `--data-option KEY=VALUE` pairs, values as strings. `runtime_partition` is set when the runtime itself gives
    each plant its own part of the train split (`--label-skew-alpha`), so one dataset may back every plant.
    See docs/tasks.md, "The data contract".
    """

    plant: str
    path: Path | None = None
    plant_index: int = 0
    num_plants: int = 1
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    runtime_partition: bool = False


def require_own_data(spec: DataSpec, source: str) -> None:
    """Refuse `source`, one plant's data, when `num_plants` plants would each load all of it as their own.

    A loader calls this for a directory that is itself one plant's data (not a root holding one entry per plant),
    so a simulation over one plant's volume fails at once instead of training every plant on the same samples.
    """
    if spec.num_plants > 1 and not spec.runtime_partition:
        raise ValueError(
            f"{source} is one plant's data, but num_plants={spec.num_plants}: every plant would train on the same "
            "samples. Give each plant its own data (a directory holding one sub-directory per plant, or on a "
            "cluster each plant's own volume), use one plant (--plants 1), or split this one with --label-skew-alpha"
        )


ACCURACY_SCORE = Score(ACCURACY, MetricGoal.MAXIMIZE, unit_interval=True, description="share of correct predictions")
"""The default score of a task that declares none: batch statistic `accuracy` is the number of hits."""


class TaskError(ValueError):
    """A task broke the SDK's contract (a score it declared but did not measure, a non-finite score ...)."""


@dataclass
class BatchResult:
    """One batch: the loss to minimise (the batch mean) and the sufficient statistics of the task's scores.

    `stats` holds sums over the batch, keyed by score name (see `plantfed.contract.scores`): for a MEAN score
    the sum of its per-sample values (`{"accuracy": hits}`, `{"mae": sum |error|}`), for an RMS score the sum of
    squared errors (`{"rmse": sum error**2}`), for MACRO_F1 confusion counts (`confusion_counts`).
    `correct` is the older way to report hits: it becomes `stats["accuracy"]`.
    """

    loss: torch.Tensor
    count: int
    stats: dict[str, float] = field(default_factory=dict)
    correct: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.stats, Mapping):
            raise TypeError(
                "BatchResult(loss, count, stats): the positional form BatchResult(loss, correct, count) is gone; "
                "pass BatchResult(loss=..., count=..., stats={'accuracy': hits}) (or correct=hits)"
            )
        if self.correct is not None:
            self.stats = {ACCURACY: float(self.correct), **self.stats}


def confusion_counts(
    name: str, target: torch.Tensor, predicted: torch.Tensor, classes: tuple[str, ...]
) -> dict[str, float]:
    """Per-class true positives, false positives and false negatives: the statistics of a MACRO_F1 score."""
    target, predicted = target.detach().cpu().long(), predicted.detach().cpu().long()
    n = len(classes)
    tp = torch.bincount(target[predicted == target], minlength=n)
    true = torch.bincount(target, minlength=n)
    pred = torch.bincount(predicted, minlength=n)
    out: dict[str, float] = {}
    for c, cls in enumerate(classes):
        for which, value in zip(CONFUSION, (tp[c], pred[c] - tp[c], true[c] - tp[c]), strict=True):
            out[f"{name}.{which}.{cls}"] = float(value)
    return out


class Task:
    """Base class for a federated task. Subclasses set `name` and implement the three abstract methods.

    `scores` declares what the task measures (name, goal, pooling) and `primary` the one that judges a model:
    tables, plots, `--baselines`, promotion and stop defaults use it. The loss is always measured too.
    """

    name: ClassVar[str] = "task"
    #: Model variants this task can build; all of them share parameter names with "full" for aggregation.
    variants: ClassVar[tuple[str, ...]] = ("full",)
    scores: ClassVar[tuple[Score, ...]] = (ACCURACY_SCORE,)
    primary: ClassVar[str] = ACCURACY

    def build_model(self, variant: str = "full") -> nn.Module:
        raise NotImplementedError

    def load_data(self, spec: DataSpec) -> PlantData:
        """One plant's splits.

        Runs in the plant's process at every training and evaluation Job, so every round: it must be deterministic
        (the same spec gives the same samples, or scores of different rounds compare different data) and cheap,
        and it must refuse a spec it cannot honour (`require_own_data`).
        """
        raise NotImplementedError

    def batch_loss(self, model: nn.Module, batch: Any, device: torch.device) -> BatchResult:
        """Loss on one batch, plus the sums the task's scores need (`BatchResult.stats`)."""
        raise NotImplementedError

    def plant_name(self, spec: DataSpec) -> str:
        """The plant's name as its data knows it (a site, a motor load), shown next to its id; cheap, reads no samples.

        `plantfed simulate` calls it once per plant before the first round, so a bad `--data` fails there.
        """
        return spec.plant

    def local_parameter_patterns(self) -> tuple[str, ...]:
        """Parameter-name globs that stay on the plant and are never aggregated (personalised layers)."""
        return ()

    def primary_score(self) -> Score:
        """The declared score named `primary` (the loss if the task names it)."""
        return self.score(self.primary)

    def score(self, name: str) -> Score:
        """A declared score by name (`loss` always exists)."""
        for s in (*self.scores, LOSS_SCORE):
            if s.name == name:
                return s
        raise TaskError(
            f"task {self.name!r} declares no score {name!r} (declared: {', '.join(s.name for s in self.scores)})"
        )

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], device: torch.device) -> dict[str, float]:
        """The loss and every declared score over a loader, with their sufficient statistics.

        Keys: `loss`, `samples` and each score's name (`plantfed.contract.plant_metrics`), plus the statistics
        the hub pools them from (`plantfed.contract.scores`). A task overriding this may add its own keys.
        """
        model.eval()
        totals = Accumulator()
        for batch in loader:
            totals.add(self.batch_loss(model, batch, device))
        return totals.scores(self)


def check_scores(task: Task, scores: Mapping[str, float], split: str, *, finite: bool = True) -> None:
    """Refuse, naming the task, the split and the key, scores that lack a declared one or (with `finite`, on a
    non-empty split) hold a NaN or infinity: a task bug found in round 1 rather than a run lost at its end."""
    for name in (LOSS, SAMPLES, *(s.name for s in task.scores)):
        if name not in scores:
            raise TaskError(
                f"task {task.name!r}: split {split!r}: evaluate returned no {name!r} "
                f"(it returned {', '.join(sorted(scores)) or 'nothing'})"
            )
    if finite and scores[SAMPLES] > 0:
        for name in (LOSS, *(s.name for s in task.scores)):
            if not math.isfinite(scores[name]):
                raise TaskError(f"task {task.name!r}: split {split!r}: score {name!r} is {scores[name]}")


class Accumulator:
    """Sums batch results: the loss (times count), the count, every statistic."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.count = 0
        self.stats: dict[str, float] = {}

    def add(self, res: BatchResult) -> None:
        if not res.count:
            return
        self.loss += float(res.loss.detach()) * res.count
        self.count += res.count
        for key, value in res.stats.items():
            self.stats[key] = self.stats.get(key, 0.0) + float(value)

    def scores(self, task: Task) -> dict[str, float]:
        """The loss, sample count, every declared score and its reported statistics (NaN scores when empty)."""
        out = {LOSS: self.loss / self.count if self.count else math.nan, SAMPLES: float(self.count)}
        for score in task.scores:
            if not self.count:
                out[score.name] = math.nan
                continue
            try:
                out[score.name] = score.value(self.stats, self.count)
                out.update(score.wire_statistics(self.stats))
            except KeyError:
                raise TaskError(
                    f"task {task.name!r}: batch_loss returned no statistic for its score {score.name!r} "
                    f"(BatchResult.stats has {sorted(self.stats) or 'nothing'}; see plantfed.contract.scores)"
                ) from None
        return out


BUILTIN_TASKS = {
    "bearing": "plantfed.tasks.bearing:BearingTask",
    "rul": "plantfed.tasks.rul:RulTask",
}
"""Built-in tasks, by the short name a FederatedModel or `plantfed simulate --task` uses."""


def load_task(ref: str) -> Task:
    """Resolve a task reference: a built-in name ("bearing") or "package.module:ClassName"."""
    if ref in BUILTIN_TASKS:
        ref = BUILTIN_TASKS[ref]
    if ":" not in ref:
        raise ValueError(f"unknown task {ref!r}: use a built-in ({', '.join(BUILTIN_TASKS)}) or 'module:Class'")
    module_name, _, attr = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    task = cls()
    if not isinstance(task, Task):
        raise TypeError(f"{ref} is not a plantfed.tasks.Task")
    return task
