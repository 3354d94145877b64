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

    Each split is a map-style dataset: indexable and sized (`dataset_size`).
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
    """Where a plant's data comes from.

    `path` is the plant's data directory (what the agent mounts), or None for the task's built-in synthetic
    data. `plant_index` and `num_plants` let a synthetic or partitioned source give each plant its own slice.
    """

    plant: str
    path: Path | None = None
    plant_index: int = 0
    num_plants: int = 1
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


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
        raise NotImplementedError

    def batch_loss(self, model: nn.Module, batch: Any, device: torch.device) -> BatchResult:
        """Loss on one batch, plus how many predictions were right (for accuracy)."""
        raise NotImplementedError

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
