"""`plantfed task check`: run a task on one plant's data and check what the runtime and the hub rely on.

A task that loads, trains and scores on a laptop can still fail a federation in ways that only show rounds later:
a loader that gives other samples on the next call (every round reloads), test samples also in train (scores
that flatter), a metric that is NaN (the hub refuses it), a model that cannot be exported for serving, a layer
DP-SGD cannot clip per sample (BatchNorm), or a variant whose parameter names do not line up with "full" (its
update would not average). Each check runs on the CPU, names the problem when it fails, and the command exits
non-zero when any did.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from plantfed.tasks.sdk import DataSpec, PlantData, Task, dataset_size

SPLITS = ("train", "val", "test")
FULL = "full"


@dataclass(frozen=True)
class Finding:
    """One check's outcome: `detail` says what was seen, or what is wrong and where."""

    check: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.check}: {self.detail}"


def _feed(digest: Any, value: Any) -> None:
    """Hash a sample's content (tensors, arrays, numbers, strings, nested containers), not its identity."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"t{flat.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(f"a{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"l{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def fingerprints(dataset: Dataset) -> list[bytes]:
    """One content digest per sample, in order."""
    out = []
    for i in range(dataset_size(dataset)):
        digest = hashlib.blake2b(digest_size=16)
        _feed(digest, dataset[i])
        out.append(digest.digest())
    return out


def _load(task: Task, spec: DataSpec) -> tuple[PlantData, dict[str, list[bytes]], float]:
    started = time.perf_counter()
    data = task.load_data(spec)
    seconds = time.perf_counter() - started
    return data, {split: fingerprints(getattr(data, split)) for split in SPLITS}, seconds


def check_deterministic(first: dict[str, list[bytes]], second: dict[str, list[bytes]]) -> Finding:
    name = "deterministic loading"
    for split in SPLITS:
        a, b = first[split], second[split]
        if len(a) != len(b):
            return Finding(name, False, f"two loads gave {len(a)} and {len(b)} {split} samples")
        differs = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)
        if differs is not None:
            return Finding(
                name,
                False,
                f"{split}[{differs}] differs between two loads of the same spec: load_data runs in every plant "
                "process every round, so it must not depend on randomness it does not seed from DataSpec.seed",
            )
    return Finding(name, True, f"two loads gave the same {sum(len(v) for v in first.values())} samples")


def check_disjoint(prints: dict[str, list[bytes]]) -> Finding:
    name = "splits disjoint"
    problems = []
    for i, a in enumerate(SPLITS):
        where = {digest: k for k, digest in enumerate(prints[a])}
        for b in SPLITS[i + 1 :]:
            shared = [(where[d], k) for k, d in enumerate(prints[b]) if d in where]
            if shared:
                first_a, first_b = shared[0]
                problems.append(f"{len(shared)} {b} samples also in {a} (first: {b}[{first_b}] = {a}[{first_a}])")
    if problems:
        return Finding(name, False, "; ".join(problems) + ": scores on them measure memory, not generalisation")
    return Finding(name, True, "no sample appears in two of train, val and test")


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def _nonfinite(metrics: Any) -> list[str]:
    if not isinstance(metrics, dict):
        return [f"evaluate returned {type(metrics).__name__}, not a dict of metric name -> number"]
    bad = []
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            bad.append(f"{key}={value!r} (not a number)")
            continue
        if not math.isfinite(number):
            bad.append(f"{key}={number}")
    return bad


def check_metrics(task: Task, model: nn.Module, data: PlantData, batch_size: int) -> Finding:
    """The untrained model's scores on val and test, as the hub receives them: every one a finite number."""
    name = "metrics finite"
    seen: list[str] = []
    for split in ("val", "test"):
        metrics = task.evaluate(model, _loader(getattr(data, split), batch_size), torch.device("cpu"))
        bad = _nonfinite(metrics)
        if bad:
            return Finding(
                name, False, f"evaluate on the {split} split: {', '.join(bad)}; the hub accepts finite numbers"
            )
        seen = sorted(metrics)
    return Finding(name, True, f"val and test: {', '.join(seen)}")


def check_training_step(task: Task, model: nn.Module, data: PlantData, batch_size: int) -> Finding:
    name = "training step"
    model.train()
    batch = next(iter(_loader(data.train, batch_size)))
    result = task.batch_loss(model, batch, torch.device("cpu"))
    loss = result.loss
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        return Finding(name, False, f"batch_loss's loss must be a scalar tensor, got {type(loss).__name__}")
    value = float(loss.detach())
    if not math.isfinite(value):
        return Finding(name, False, f"batch_loss on the first train batch is {value}")
    loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    without = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    if not trainable or len(without) == len(trainable):
        return Finding(name, False, "the loss has no gradient with respect to any parameter of the model")
    return Finding(name, True, f"first train batch: loss {value:.4g}, gradients for {len(trainable)} tensors")


def model_inputs(task: Task, model: nn.Module, batch: Any) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The arguments `batch_loss` calls the model with (captured by a forward pre-hook), or None if it never does."""
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not captured:
            captured.append((args, dict(kwargs)))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            task.batch_loss(model, batch, torch.device("cpu"))
    finally:
        handle.remove()
    return captured[0] if captured else None


def export_onnx(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Export with torch's TorchScript-based exporter (`dynamo=False`, no onnxscript); None if it worked, else why.

    Every operator is converted before the exporter needs the `onnx` package (only to write the file), so an
    export that gets that far without `onnx` installed has proven the model exports.
    """
    model.eval()
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, Path(scratch) / "model.onnx", kwargs=kwargs or None, dynamo=False)
    except Exception as exc:
        cause = exc.__cause__
        if isinstance(cause, ImportError) and cause.name == "onnx":
            return None
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def dp_problems(model: nn.Module) -> list[str]:
    """What opacus's validator refuses in the model (BatchNorm and other layers without per-sample gradients)."""
    from opacus.validators import ModuleValidator

    model.train()  # opacus validates a model as DP-SGD trains it
    return [str(error) for error in ModuleValidator.validate(model, strict=False)]


def variant_problems(models: dict[str, nn.Module], local_patterns: tuple[str, ...]) -> list[str]:
    """Tensors of a variant that would not average with "full": shared (non-local) names missing from it or reshaped."""
    if FULL not in models:
        return [f"no {FULL!r} variant: every variant's tensors are aggregated by name against the full model"]
    full = {name: tuple(t.shape) for name, t in models[FULL].state_dict().items()}
    problems = []
    for variant, model in models.items():
        for name, tensor in model.state_dict().items():
            if any(fnmatch.fnmatchcase(name, p) for p in local_patterns):
                continue
            if name not in full:
                problems.append(f"{variant}: {name} is not in {FULL} (nor a local_parameter_patterns() name)")
            elif tuple(tensor.shape) != full[name]:
                problems.append(f"{variant}: {name} has shape {tuple(tensor.shape)}, {full[name]} in {FULL}")
    return problems


def _guard(name: str, run: Callable[[], Finding]) -> Finding:
    """A check that raised is a failed check, with the exception named."""
    try:
        return run()
    except Exception as exc:
        return Finding(name, False, f"raised {type(exc).__name__}: {exc}")


def check_task(task: Task, spec: DataSpec, *, batch_size: int = 32) -> list[Finding]:
    """Every check, in order; the model checks run even when the data does not load, where they can."""
    findings: list[Finding] = []
    data: PlantData | None = None
    try:
        data, first, seconds = _load(task, spec)
    except Exception as exc:
        findings.append(Finding("loads data", False, f"load_data raised {type(exc).__name__}: {exc}"))
    else:
        sizes = {split: len(first[split]) for split in SPLITS}
        empty = [split for split, n in sizes.items() if n == 0]
        summary = ", ".join(f"{split} {n}" for split, n in sizes.items())
        if empty:
            findings.append(Finding("loads data", False, f"{summary} samples: {', '.join(empty)} empty"))
        else:
            findings.append(Finding("loads data", True, f"{summary} samples in {seconds:.2f} s"))
        findings.append(_guard("deterministic loading", lambda: check_deterministic(first, _load(task, spec)[1])))
        findings.append(check_disjoint(first))

    models: dict[str, nn.Module] = {}
    for variant in task.variants:
        try:
            torch.manual_seed(spec.seed)
            models[variant] = task.build_model(variant)
        except Exception as exc:
            findings.append(
                Finding("builds models", False, f"build_model({variant!r}) raised {type(exc).__name__}: {exc}")
            )
    if len(models) == len(task.variants):
        findings.append(Finding("builds models", True, ", ".join(task.variants)))

    usable = data is not None and all(dataset_size(getattr(data, split)) for split in SPLITS)
    if data is not None and usable and FULL in models:
        plant_data = data
        findings.append(_guard("metrics finite", lambda: check_metrics(task, models[FULL], plant_data, batch_size)))
        findings.append(
            _guard("training step", lambda: check_training_step(task, models[FULL], plant_data, batch_size))
        )
        findings.append(_guard("ONNX export", lambda: _check_onnx(task, models, plant_data, batch_size)))
    else:
        for name in ("metrics finite", "training step", "ONNX export"):
            findings.append(Finding(name, False, "not run: needs loaded, non-empty splits and a 'full' model"))

    findings.append(_guard("DP-SGD compatible", lambda: _check_dp(models)))
    problems = variant_problems(models, tuple(task.local_parameter_patterns())) if models else ["no model built"]
    findings.append(
        Finding("variants share parameters", not problems, "; ".join(problems) or _shared_summary(models, task))
    )
    return findings


def _check_onnx(task: Task, models: dict[str, nn.Module], data: PlantData, batch_size: int) -> Finding:
    batch = next(iter(_loader(data.val, batch_size)))
    problems = []
    for variant, model in models.items():
        model.eval()
        inputs = model_inputs(task, model, batch)
        if inputs is None:
            problems.append(f"{variant}: batch_loss never calls the model itself, so its inputs are unknown")
            continue
        why = export_onnx(model, *inputs)
        if why:
            problems.append(f"{variant}: {why}")
    if problems:
        return Finding("ONNX export", False, "; ".join(problems))
    return Finding("ONNX export", True, f"{', '.join(models)} export (torch.onnx, dynamo=False)")


def _check_dp(models: dict[str, nn.Module]) -> Finding:
    problems = [f"{variant}: {p}" for variant, model in models.items() for p in dp_problems(model)]
    if problems:
        return Finding("DP-SGD compatible", False, "; ".join(problems) + " (for BatchNorm: use GroupNorm or LayerNorm)")
    return Finding("DP-SGD compatible", True, "opacus's validator accepts every variant")


def _shared_summary(models: dict[str, nn.Module], task: Task) -> str:
    if len(models) == 1:
        return "one variant"
    counts = {v: len(m.state_dict()) for v, m in models.items()}
    local = task.local_parameter_patterns()
    return ", ".join(f"{v} {n} tensors" for v, n in counts.items()) + (f"; local: {', '.join(local)}" if local else "")


def render(findings: Iterable[Finding]) -> tuple[str, bool]:
    """The report's lines and whether every check passed."""
    findings = list(findings)
    failed = [f for f in findings if not f.ok]
    lines = [f.line() for f in findings]
    lines.append(f"{len(failed)} of {len(findings)} checks failed" if failed else f"all {len(findings)} checks passed")
    return "\n".join(lines), not failed
