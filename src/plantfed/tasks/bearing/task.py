"""`BearingTask`: bearing-fault classification from drive-end vibration, the built-in plantfed task."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from plantfed.contract.api.common import MetricGoal
from plantfed.contract.plant_metrics import ACCURACY
from plantfed.contract.scores import Pooling, Score, confusion
from plantfed.tasks.bearing.labels import CLASSES
from plantfed.tasks.bearing.model import BearingCNN
from plantfed.tasks.bearing.sources import locate, read_source
from plantfed.tasks.bearing.windows import WindowOptions, build_plant_data
from plantfed.tasks.sdk import ACCURACY_SCORE, Accumulator, BatchResult, DataSpec, PlantData, Task, confusion_counts

MACRO_F1 = "macro_f1"


class BearingTask(Task):
    """Classify a vibration window as normal / ball / inner-race / outer-race fault."""

    name: ClassVar[str] = "bearing"
    variants: ClassVar[tuple[str, ...]] = ("full", "light")
    scores: ClassVar[tuple[Score, ...]] = (
        ACCURACY_SCORE,
        Score(MACRO_F1, MetricGoal.MAXIMIZE, Pooling.MACRO_F1, unit_interval=True, description="mean F1 over classes"),
    )
    primary: ClassVar[str] = ACCURACY

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
        predicted = logits.argmax(dim=1)
        stats = {ACCURACY: float((predicted == y).sum()), **confusion_counts(MACRO_F1, y, predicted, CLASSES)}
        return BatchResult(loss=loss, count=int(y.numel()), stats=stats)

    def local_parameter_patterns(self) -> tuple[str, ...]:
        return ("light_head.*",)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], device: torch.device) -> dict[str, float]:
        """The declared scores, plus per-class recall and balanced accuracy (fault classes are imbalanced)."""
        model.eval()
        totals = Accumulator()
        for batch in loader:
            totals.add(self.batch_loss(model, batch, device))
        metrics = totals.scores(self)
        recalls = {
            name: c["tp"] / (c["tp"] + c["fn"])
            for name, c in confusion(totals.stats, MACRO_F1).items()
            if c["tp"] + c["fn"] > 0
        }
        if recalls:
            metrics["balanced_accuracy"] = sum(recalls.values()) / len(recalls)
        for name in CLASSES:
            if name in recalls:
                metrics[f"recall_{name}"] = recalls[name]
        return metrics
