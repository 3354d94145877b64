"""Local training on one plant: E epochs over the plant's own data, optionally with the FedProx term or DP-SGD.

Kept free of networking and files so the same loop serves a training pod, `plantfed simulate` and the
siloed / centralised baselines.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from plantfed.contract.records import DPMode, DPParams
from plantfed.plant.fedprox import proximal_term
from plantfed.tasks.sdk import Accumulator, Task


@dataclass(frozen=True)
class SampleDP:
    """DP-SGD on the plant: clip each example's gradient to `clip_norm`, add N(0, (σ·clip_norm)²) per batch."""

    clip_norm: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        if self.clip_norm <= 0:
            raise ValueError(f"DP-SGD needs a per-example clip norm > 0, got {self.clip_norm}")
        if self.noise_multiplier < 0:
            raise ValueError(f"noise multiplier must be >= 0, got {self.noise_multiplier}")


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
    sample_dp: SampleDP | None = None


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
    #: the task's scores over what training saw (loss, samples, each declared score and its statistics)
    train_scores: dict[str, float]
    seconds: float
    samples_per_second: float
    #: what DP-SGD released (σ, q, steps as opacus's accountant recorded them); None without DP-SGD
    dp: DPParams | None = None


def unpredictable_generator(device: torch.device) -> torch.Generator:
    """A generator seeded from the OS's entropy, for DP noise and DP sampling.

    The hub knows a round's id and the fleet's seed; noise or batch membership derived from them could be
    recomputed and subtracted (or the amplification by sampling undone). Runs with DP are therefore not
    bit-reproducible, by design.
    """
    return torch.Generator(device=device).manual_seed(secrets.randbits(63))


Progress = Callable[[int, int], None]
"""Called after each optimiser step with (steps taken, steps planned)."""


class _Accountant(Protocol):
    """What is read of opacus's RDP accountant: its (noise multiplier, sample rate, steps) history."""

    history: list[tuple[float, float, int]]


@contextlib.contextmanager
def _private(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, dp: SampleDP, device: torch.device
) -> Iterator[tuple[torch.optim.Optimizer, DataLoader, _Accountant]]:
    """opacus's `PrivacyEngine` around the plant's own model: per-sample gradients, Poisson batches, noise.

    Hooks go on the model itself (no wrapper), so parameter names, and so the update's tensor names, do not
    change; they are removed on the way out. In-place activations are switched off because a per-sample
    gradient hook cannot see through them; that changes no parameter.
    """
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    model.train()  # the validator judges training-mode behaviour (e.g. dropout), which is what DP-SGD runs
    problems = ModuleValidator.validate(model, strict=False)
    if problems:
        raise ValueError(f"the model cannot be trained with DP-SGD: {'; '.join(str(p) for p in problems)}")
    for module in model.modules():
        if getattr(module, "inplace", False):
            # torch types Module attributes as tensors or modules; `inplace` is a plain flag (nn.ReLU etc.).
            module.inplace = False  # type: ignore[assignment]
    sampling = DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        shuffle=True,
        generator=unpredictable_generator(torch.device("cpu")),
    )
    with warnings.catch_warnings():
        # Known and accepted: noise and sampling come from `unpredictable_generator` (torchcsprng, which
        # opacus's secure mode needs, is not packaged for current torch), and the first layer's input
        # needs no gradient, which the full backward hook mentions on every backward pass.
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant="rdp")
        hooks, private_optimizer, private_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=sampling,
            noise_multiplier=dp.noise_multiplier,
            max_grad_norm=dp.clip_norm,
            poisson_sampling=True,
            wrap_model=False,
            noise_generator=unpredictable_generator(device),
        )
        try:
            yield private_optimizer, private_loader, engine.accountant
        finally:
            hooks.cleanup()
            for p in model.parameters():
                p.grad_sample = None  # type: ignore[attr-defined]  # opacus's hooks add it to every parameter


def _declared(accountant: _Accountant, dp: SampleDP) -> DPParams:
    """The release opacus's accountant recorded, as the update declares it (one (σ, q) for the whole round)."""
    history = accountant.history
    if len(history) != 1:
        raise RuntimeError(f"DP-SGD changed its noise or sampling rate within one round: {history}")
    sigma, sample_rate, steps = history[0]
    return DPParams(
        mode=DPMode.SAMPLE, clip_norm=dp.clip_norm, noise_multiplier=sigma, steps=steps, sample_rate=sample_rate
    )


def train_local(
    task: Task,
    model: nn.Module,
    dataset: Dataset,
    cfg: LocalTrainingConfig,
    device: torch.device,
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> LocalTrainingResult:
    """Train `model` in place. With `fedprox_mu > 0` the loss gains mu/2·||w − w_global||² (Li et al. 2020).

    With `sample_dp` every step is a DP-SGD step (Abadi et al. 2016) through opacus, and the result says
    exactly what was released so the hub can charge it.
    """
    if cfg.sample_dp is not None and cfg.fedprox_mu > 0:
        raise ValueError(
            "DP-SGD and FedProx do not combine: the proximal term's gradient would skip per-sample "
            "clipping and noise; set fedprox_mu to 0"
        )
    torch.manual_seed(seed)
    model.to(device)
    global_params = {n: p.detach().clone() for n, p in model.named_parameters()} if cfg.fedprox_mu > 0 else None
    optimizer = make_optimizer(model, cfg)
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed)
    with contextlib.ExitStack() as stack:
        accountant = None
        if cfg.sample_dp is not None:
            optimizer, loader, accountant = stack.enter_context(
                _private(model, optimizer, loader, cfg.sample_dp, device)
            )
        total_steps = cfg.epochs * len(loader)
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        steps = 0
        totals = Accumulator()
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
                totals.add(res)  # a Poisson-sampled DP batch can be empty (nothing added); it still costs its step
                if progress is not None:
                    progress(steps, total_steps)
        seconds = time.perf_counter() - started
        dp = None
        if accountant is not None and cfg.sample_dp is not None and steps:
            dp = _declared(accountant, cfg.sample_dp)
        # Gradients (and with the optimizer, its state) are as large as the model: gone before the delta.
        optimizer.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    del optimizer
    seen = totals.count
    return LocalTrainingResult(
        steps=steps,
        samples_seen=seen,
        train_loss=totals.loss / max(seen, 1),
        train_scores=totals.scores(task),
        seconds=seconds,
        samples_per_second=seen / seconds if seconds > 0 else 0.0,
        dp=dp,
    )


def evaluate(
    task: Task, model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 256
) -> dict[str, float]:
    model.to(device)
    return task.evaluate(model, make_loader(dataset, batch_size, shuffle=False, seed=0), device)
