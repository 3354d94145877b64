"""Quick learning-quality numbers for the bearing task (not run in CI).

Centralised training on the pooled train splits of all plants, tested on each plant's test split; and
siloed training on each plant alone, tested on every plant (how well one plant's model transfers). Reports time
per epoch. `python -m plantfed_participant.tasks.bearing.benchmark [--data DIR] [--plants N] [--epochs E]`
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, DataLoader

from plantfed_participant.sdk import DataSpec, PlantData
from plantfed_participant.tasks.bearing.task import BearingTask


def train(task: BearingTask, variant: str, data: list[PlantData], epochs: int, seed: int,
          device: torch.device) -> tuple[torch.nn.Module, float]:
    """Adam on the pooled train splits of `data`; returns the model and mean seconds per epoch."""
    torch.manual_seed(seed)
    model = task.build_model(variant).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(ConcatDataset([d.train for d in data]), batch_size=32, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in loader:
            result = task.batch_loss(model, batch, device)
            optimiser.zero_grad()
            result.loss.backward()
            optimiser.step()
    return model, (time.perf_counter() - start) / epochs


def test_all(task: BearingTask, model: torch.nn.Module, data: list[PlantData], device: torch.device) -> list[dict]:
    return [{"plant": d.info["plant"], **{k: round(v, 4) for k, v in
             task.evaluate(model, DataLoader(d.test, batch_size=256), device).items()
             if k in ("accuracy", "balanced_accuracy")}} for d in data]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="CWRU or plant-data root (default: synthetic)")
    parser.add_argument("--plants", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--variant", default="full", choices=BearingTask.variants)
    parser.add_argument("--option", action="append", default=[], help="DataSpec option key=value")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    options = dict(o.split("=", 1) for o in args.option)
    task = BearingTask()
    data = [task.load_data(DataSpec(f"plant{i}", args.data, i, args.plants, args.seed, options))
            for i in range(args.plants)]
    model, epoch_s = train(task, args.variant, data, args.epochs, args.seed, device)
    report = {"train_windows": [len(d.train) for d in data], "centralised": {
        "seconds_per_epoch": round(epoch_s, 2), "test": test_all(task, model, data, device)}}
    for i, own in enumerate(data):
        silo, silo_s = train(task, args.variant, [own], args.epochs, args.seed, device)
        report[f"siloed_{own.info['plant']}"] = {"seconds_per_epoch": round(silo_s, 2),
                                                 "test": test_all(task, silo, data, device)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
