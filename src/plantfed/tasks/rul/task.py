"""`RulTask`: remaining useful life regression on a synthetic run-to-failure fleet (the built-in `rul` task).

RMSE in cycles is the primary score (smaller is better), MAE is reported next to it; both pool across plants
from sufficient statistics (sum of squared and of absolute errors), so the fleet's RMSE is the pooled one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from plantfed.contract.api.common import MetricGoal
from plantfed.contract.scores import Pooling, Score
from plantfed.tasks.rul.synthetic import CHANNELS, RulOptions, plant_units, read_units, windows
from plantfed.tasks.sdk import BatchResult, DataSpec, PlantData, Task

RMSE = "rmse"
MAE = "mae"


class RulModel(nn.Module):
    """Input `[B, CHANNELS, W]` sensor windows, output `[B]` RUL as a fraction of the cap. No BatchNorm (DP-SGD)."""

    def __init__(self, window: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(CHANNELS * window, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class RulTask(Task):
    """Predict how many cycles a unit has left from its last `window` cycles of sensor readings."""

    name: ClassVar[str] = "rul"
    scores: ClassVar[tuple[Score, ...]] = (
        Score(RMSE, MetricGoal.MINIMIZE, Pooling.RMS, description="root mean squared error, cycles"),
        Score(MAE, MetricGoal.MINIMIZE, Pooling.MEAN, description="mean absolute error, cycles"),
    )
    primary: ClassVar[str] = RMSE

    def __init__(self, options: RulOptions | None = None) -> None:
        self.options = options or RulOptions()

    def build_model(self, variant: str = "full") -> nn.Module:
        if variant != "full":
            raise ValueError(f"rul task: unknown model variant {variant!r}; it has only 'full'")
        return RulModel(self.options.window)

    def load_data(self, spec: DataSpec) -> PlantData:
        opts = RulOptions.from_options(spec.options)
        if opts.window != self.options.window:
            raise ValueError(
                f"rul task: option window={opts.window} differs from the model's {self.options.window}; "
                "the window fixes the model's input size"
            )
        if spec.path is None:
            units, source = plant_units(spec.seed, spec.plant_index, opts), "synthetic run-to-failure"
        else:
            own = spec.path / "rul"  # a plant volume holding several tasks' data keeps this one's here
            directory = own if own.is_dir() else spec.path
            units, source = read_units(directory, opts.window), str(directory)
            if len(units) < 3:
                raise ValueError(f"{directory}: {len(units)} unit(s); the train, val and test splits need 3 or more")
        n_val = n_test = max(1, len(units) // 6)
        parts = {"train": units[: -n_val - n_test], "val": units[-n_val - n_test : -n_test], "test": units[-n_test:]}
        train_x, _ = windows(parts["train"], opts.window, opts.cap)
        mean, std = train_x.mean(axis=(0, 2), keepdims=True), train_x.std(axis=(0, 2), keepdims=True) + 1e-6
        splits = {}
        for name, part in parts.items():
            x, y = windows(part, opts.window, opts.cap)
            splits[name] = TensorDataset(torch.from_numpy((x - mean) / std), torch.from_numpy(y))
        info = {"source": source, "units": {k: len(v) for k, v in parts.items()}}
        return PlantData(train=splits["train"], val=splits["val"], test=splits["test"], info=info)

    def batch_loss(self, model: nn.Module, batch: Any, device: torch.device) -> BatchResult:
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        cap = self.options.cap
        predicted = model(x)
        loss = F.mse_loss(predicted, y / cap)
        error = (predicted.detach() * cap - y).double()
        stats = {RMSE: float((error**2).sum()), MAE: float(error.abs().sum())}
        return BatchResult(loss=loss, count=int(y.numel()), stats=stats)


__all__ = ["RulModel", "RulTask"]
