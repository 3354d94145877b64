"""Local training on one plant: E epochs over the plant's own data, optionally with the FedProx term.

Kept free of networking and files so the same loop serves a training pod, `plantfed simulate` and the
siloed / centralised baselines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from plantfed.aggregation.fedprox import proximal_term
from plantfed_participant.sdk import Task


@dataclass(frozen=True)
class LocalTrainingConfig:
    """What a round asks a plant to do locally (mirrors FederatedRound.spec.training)."""

    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    fedprox_mu: float = 0.0
    max_steps: int = 0


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (a plant's GPU node), CPU everywhere else (CI, laptops)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=False)


def make_optimizer(model: nn.Module, cfg: LocalTrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: use sgd, adam or adamw")


@dataclass
class LocalTrainingResult:
    steps: int
    samples_seen: int
    train_loss: float
    train_accuracy: float
    seconds: float
    samples_per_second: float


def train_local(
    task: Task,
    model: nn.Module,
    dataset: Dataset,
    cfg: LocalTrainingConfig,
    device: torch.device,
    *,
    seed: int = 0,
    progress=None,
) -> LocalTrainingResult:
    """Train `model` in place. With `fedprox_mu > 0` the loss gains mu/2·||w − w_global||² (Li et al. 2020)."""
    torch.manual_seed(seed)
    model.to(device)
    global_params = (
        {n: p.detach().clone() for n, p in model.named_parameters()} if cfg.fedprox_mu > 0 else None
    )
    optimizer = make_optimizer(model, cfg)
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed)
    total_steps = cfg.epochs * len(loader)
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    steps = seen = correct = 0
    loss_sum = 0.0
    started = time.perf_counter()
    model.train()
    for _epoch in range(cfg.epochs):
        for batch in loader:
            if steps >= total_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            res = task.batch_loss(model, batch, device)
            loss = res.loss
            if global_params is not None:
                loss = loss + proximal_term(model, global_params, cfg.fedprox_mu)
            loss.backward()
            optimizer.step()
            steps += 1
            seen += res.count
            correct += res.correct
            loss_sum += float(res.loss.detach()) * res.count
            if progress is not None:
                progress(steps, total_steps)
    seconds = time.perf_counter() - started
    return LocalTrainingResult(
        steps=steps,
        samples_seen=seen,
        train_loss=loss_sum / max(seen, 1),
        train_accuracy=correct / max(seen, 1),
        seconds=seconds,
        samples_per_second=seen / seconds if seconds > 0 else 0.0,
    )


def evaluate(task: Task, model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 256) -> dict[str, float]:
    model.to(device)
    return task.evaluate(model, make_loader(dataset, batch_size, shuffle=False, seed=0), device)
