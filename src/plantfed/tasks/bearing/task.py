"""`BearingTask`: bearing-fault classification from drive-end vibration, the built-in plantfed task."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from plantfed.contract.plant_metrics import ACCURACY, LOSS, SAMPLES
from plantfed.tasks.bearing.labels import CLASSES
from plantfed.tasks.bearing.model import BearingCNN
from plantfed.tasks.bearing.sources import locate, read_source
from plantfed.tasks.bearing.windows import WindowOptions, build_plant_data
from plantfed.tasks.sdk import BatchResult, DataSpec, PlantData, Task


class BearingTask(Task):
    """Classify a vibration window as normal / ball / inner-race / outer-race fault."""

    name: ClassVar[str] = "bearing"
    variants: ClassVar[tuple[str, ...]] = ("full", "light")

    def build_model(self, variant: str = "full") -> nn.Module:
        return BearingCNN(variant)

    def load_data(self, spec: DataSpec) -> PlantData:
        source = read_source(spec)
        return build_plant_data(source.recordings, WindowOptions.from_options(spec.options), source.info)

    def plant_name(self, spec: DataSpec) -> str:
        """`load0hp` ... for CWRU, the sub-directory's name for a root of plant directories, else the plant's id."""
        return locate(spec).plant

    def batch_loss(self, model: nn.Module, batch: Any, device: torch.device) -> BatchResult:
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        correct = int((logits.argmax(dim=1) == y).sum())
        return BatchResult(loss=loss, correct=correct, count=int(y.numel()))

    def local_parameter_patterns(self) -> tuple[str, ...]:
        return ("light_head.*",)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], device: torch.device) -> dict[str, float]:
        """Loss and accuracy, plus per-class recall and balanced accuracy (fault classes are imbalanced)."""
        model.eval()
        total_loss, count = 0.0, 0
        hits = torch.zeros(len(CLASSES), dtype=torch.long)
        seen = torch.zeros(len(CLASSES), dtype=torch.long)
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            count += int(y.numel())
            y_cpu = y.cpu()
            seen += torch.bincount(y_cpu, minlength=len(CLASSES))
            hits += torch.bincount(y_cpu[logits.argmax(dim=1).cpu() == y_cpu], minlength=len(CLASSES))
        if count == 0:
            return {LOSS: float("nan"), ACCURACY: float("nan"), SAMPLES: 0.0}
        metrics = {LOSS: total_loss / count, ACCURACY: float(hits.sum()) / count, SAMPLES: float(count)}
        present = seen > 0
        recalls = hits[present].double() / seen[present].double()
        metrics["balanced_accuracy"] = float(recalls.mean())
        for c, name in enumerate(CLASSES):
            if seen[c] > 0:
                metrics[f"recall_{name}"] = float(hits[c]) / float(seen[c])
        return metrics
