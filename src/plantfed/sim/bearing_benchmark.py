"""Quick learning-quality numbers for the bearing task (not run in CI).

Centralised training on the pooled train splits of all plants, tested on each plant's test split; and
siloed training on each plant alone, tested on every plant (how well one plant's model transfers). Reports time
per epoch. `python -m plantfed.sim.bearing_benchmark [--data DIR] [--plants N] [--epochs E]`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset

from plantfed.plant.training import LocalTrainingConfig, evaluate, train_local
from plantfed.tasks.bearing.task import BearingTask
from plantfed.tasks.sdk import DataSpec, PlantData, dataset_size


def train(
    task: BearingTask, variant: str, data: list[PlantData], epochs: int, seed: int, device: torch.device
) -> tuple[torch.nn.Module, float]:
    """Adam on the pooled train splits of `data`; returns the model and mean seconds per epoch.

    Plants' own loop (`train_local`): these baselines and a federated run differ in data and settings, not in code.
    """
    torch.manual_seed(seed)
    model = task.build_model(variant)
    cfg = LocalTrainingConfig(epochs=epochs, batch_size=32, learning_rate=1e-3, optimizer="adam")
    result = train_local(task, model, ConcatDataset([d.train for d in data]), cfg, device, seed=seed)
    return model, result.seconds / epochs


def test_all(task: BearingTask, model: torch.nn.Module, data: list[PlantData], device: torch.device) -> list[dict]:
    return [
        {
            "plant": d.info["plant"],
            **{
                k: round(v, 4)
                for k, v in evaluate(task, model, d.test, device).items()
                if k in ("accuracy", "balanced_accuracy")
            },
        }
        for d in data
    ]


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
    data = [
        task.load_data(DataSpec(f"plant{i}", args.data, i, args.plants, args.seed, options)) for i in range(args.plants)
    ]
    model, epoch_s = train(task, args.variant, data, args.epochs, args.seed, device)
    report = {
        "train_windows": [dataset_size(d.train) for d in data],
        "centralised": {"seconds_per_epoch": round(epoch_s, 2), "test": test_all(task, model, data, device)},
    }
    for own in data:
        silo, silo_s = train(task, args.variant, [own], args.epochs, args.seed, device)
        report[f"siloed_{own.info['plant']}"] = {
            "seconds_per_epoch": round(silo_s, 2),
            "test": test_all(task, silo, data, device),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
