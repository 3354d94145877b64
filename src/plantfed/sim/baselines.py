"""The two baselines federated training must be judged against, trained with the same compute budget.

- centralised: one model on the pooled training data of every training plant (what you would do if data
  could leave the plants — the upper bound federated learning aims for);
- siloed: one model per plant on its own data only (what each plant can do alone).

Budget: in R rounds of E local epochs every plant makes R·E passes over its own data, so each baseline model
gets R·E epochs over its training set, from the same initial weights and with the same optimiser settings.
Every model is scored on every plant's test split, including a hold-out plant that never trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import ConcatDataset, Dataset

from plantfed.plant.training import LocalTrainingConfig, evaluate, train_local
from plantfed.tasks.partition import label_skewed
from plantfed.tasks.sdk import DataSpec, PlantData, Task


@dataclass
class BaselineReport:
    #: model name ("centralised", "siloed:<plant>") -> plant -> test metrics
    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    epochs: int = 0


def _train_set(data: PlantData, spec: DataSpec, alpha: float, seed: int) -> Dataset:
    if alpha <= 0:
        return data.train
    return label_skewed(data.train, alpha, seed=seed, plant_index=spec.plant_index, num_plants=spec.num_plants)


def run_baselines(
    task: Task,
    initial_state: dict[str, torch.Tensor],
    train_specs: list[DataSpec],
    eval_specs: list[DataSpec],
    cfg: LocalTrainingConfig,
    *,
    rounds: int,
    seed: int,
    device: torch.device,
    label_skew_alpha: float = 0.0,
) -> BaselineReport:
    """Train the centralised and siloed models and score each on every plant in `eval_specs`."""
    loaded = {spec.plant: task.load_data(spec) for spec in {s.plant: s for s in train_specs + eval_specs}.values()}
    budget = LocalTrainingConfig(**{**cfg.__dict__, "epochs": cfg.epochs * rounds})
    report = BaselineReport(epochs=budget.epochs)

    def fit(datasets: list[Dataset]) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = task.build_model("full")
        model.load_state_dict(initial_state)
        train_local(task, model, ConcatDataset(datasets), budget, device, seed=seed)
        return model

    def score(name: str, model: torch.nn.Module) -> None:
        report.scores[name] = {
            spec.plant: evaluate(task, model, loaded[spec.plant].test, device) for spec in eval_specs
        }

    train_sets = {s.plant: _train_set(loaded[s.plant], s, label_skew_alpha, seed) for s in train_specs}
    score("centralised", fit(list(train_sets.values())))
    for plant, dataset in train_sets.items():
        score(f"siloed:{plant}", fit([dataset]))
    return report
