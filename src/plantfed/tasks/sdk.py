"""The bring-your-own-task API: what a plant's training code must provide.

A task is a small class: it builds the model, loads one plant's data, and says how to compute a loss on a
batch. The runtime owns everything else (device placement, the local epochs, FedProx, the delta, clipping,
compression, upload), so a task never touches the network or the hub.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from plantfed.contract.plant_metrics import ACCURACY, LOSS, SAMPLES


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


@dataclass
class BatchResult:
    loss: torch.Tensor
    correct: int
    count: int


class Task:
    """Base class for a federated task. Subclasses set `name` and implement the three abstract methods."""

    name: ClassVar[str] = "task"
    #: Model variants this task can build; all of them share parameter names with "full" for aggregation.
    variants: ClassVar[tuple[str, ...]] = ("full",)

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
        """Loss on one batch, plus how many predictions were right (for accuracy)."""
        raise NotImplementedError

    def plant_name(self, spec: DataSpec) -> str:
        """The plant's name as its data knows it (a site, a motor load), shown next to its id; cheap, reads no samples.

        `plantfed simulate` calls it once per plant before the first round, so a bad `--data` fails there.
        """
        return spec.plant

    def local_parameter_patterns(self) -> tuple[str, ...]:
        """Parameter-name globs that stay on the plant and are never aggregated (personalised layers)."""
        return ()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], device: torch.device) -> dict[str, float]:
        """Mean loss and accuracy over a loader; override for task-specific metrics.

        Keys `loss`, `accuracy` and `samples` (`plantfed.contract.plant_metrics`) are what the hub reads;
        a task may add its own, which plants report next to them.
        """
        model.eval()
        total_loss, correct, count = 0.0, 0, 0
        for batch in loader:
            res = self.batch_loss(model, batch, device)
            total_loss += float(res.loss) * res.count
            correct += res.correct
            count += res.count
        if count == 0:
            return {LOSS: float("nan"), ACCURACY: float("nan"), SAMPLES: 0.0}
        return {LOSS: total_loss / count, ACCURACY: correct / count, SAMPLES: float(count)}


BUILTIN_TASKS = {
    "bearing": "plantfed.tasks.bearing:BearingTask",
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
