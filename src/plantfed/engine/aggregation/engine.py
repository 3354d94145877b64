"""Streaming aggregation of plant updates into a new global model.

Memory: tensor-major streaming. The outer loop runs over the base model's tensors; for each one, every
update's tensor is read and decoded one at a time (the `pread` backend of `safe_open` keeps nothing of a
file mapped), folded into a float32 accumulator, and the new global tensor is streamed straight to the
output file. So the buffers held at any moment are one accumulator, one decoded update tensor, the base
tensor and the optimiser's state for that tensor: a small multiple of the largest tensor, independent of
the number of plants and even of the model size. Every buffer is counted in a `MemoryTracker`; the peak
is reported as `AggregationResult.peak_bytes`. One file handle per update stays open (K + 3 descriptors).

Every update's header is checked against the base model before any tensor is read. Then:
  0. only with `norm_bound` or a robust strategy, a first pass over every update computes its delta's L2
     norm (and refuses NaN/Inf): clipping needs the factor min(1, bound / ‖Δ_k‖) before aggregating.
Per tensor:
  1. aggregation: weighted mean (weights num_samples / Σ num_samples) or, for median / trimmed mean,
     coordinate blocks (see `plantfed.engine.aggregation.robust`). Without pass 0 the norms and the NaN/Inf check
     are taken here, in the same read;
  2. diagnostics: each update's dot product with the aggregate delta of the same tensor, giving the
     cosine similarity of every plant's update to the aggregate (a drift / poisoning signal).
A refused update aborts the aggregation and, since the outputs are written atomically, leaves nothing.

Threads: aggregation is memory-bound (a few flops per byte read), so by default it runs torch on one
thread (`threads=1`) and restores the process setting afterwards. Extra intra-op threads buy little
bandwidth, and on a busy machine (a hub co-located with training, or `plantfed simulate`) OpenMP workers
that cannot be scheduled spin and wait: on a loaded 2-core machine element-wise ops ran up to ~100× slower
with 2 threads than with 1.

Partial updates (`UpdateInput.partial`, from a lighter model variant that shares a subset of the full
model's parameters) take part only in the tensors they carry: each tensor's weights are renormalised over
the updates that carry it, and a tensor no update carries keeps its base value.

Tensors matching `local_patterns` (plant-local, personalised) keep the base value and are never read from
updates. Non-floating tensors (counters such as BatchNorm's `num_batches_tracked`) are not averaged: the
new value is the maximum over the plants' values, which keeps a counter monotone.
"""

from __future__ import annotations

import math
import resource
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from plantfed.engine.aggregation.central_dp import CentralNoise
from plantfed.engine.aggregation.config import ROBUST, AggregationResult, PlantStats, StrategyConfig, UpdateInput
from plantfed.engine.aggregation.reading import decoded
from plantfed.engine.aggregation.robust import robust_aggregate
from plantfed.engine.aggregation.server_optim import ServerOptimizer
from plantfed.formats.codecs import (
    KIND_KEY,
    KIND_STATE,
    KIND_UPDATE,
    PayloadError,
    SafetensorsFile,
    UpdateReader,
    check_header,
    checked_squared_norm,
    matches_any,
)
from plantfed.formats.memory import MemoryTracker
from plantfed.formats.numerics import dot
from plantfed.formats.stream_writer import StreamingWriter, TensorSpec

_SPARE_DESCRIPTORS = 16


def _check_inputs(updates: Sequence[UpdateInput]) -> None:
    if not updates:
        raise ValueError("aggregation needs at least one update")
    seen: set[str] = set()
    for update in updates:
        if update.plant in seen:
            raise ValueError(f"plant {update.plant!r} has more than one update in this aggregation")
        seen.add(update.plant)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and len(updates) + _SPARE_DESCRIPTORS > soft:
        raise ValueError(
            f"{len(updates)} updates need {len(updates) + _SPARE_DESCRIPTORS} open files; the limit is {soft}"
        )


def _mean_delta(
    name: str,
    spec: TensorSpec,
    readers: Sequence[UpdateReader],
    alphas: Sequence[float],
    tracker: MemoryTracker,
    squared: list[float] | None,
) -> torch.Tensor:
    """Σ_k alpha_k Δ_k for one tensor; also adds each ‖Δ_k‖² into `squared` when given (pass 0 merged)."""
    accumulator = torch.zeros(spec.shape, dtype=torch.float32)
    with tracker.live(accumulator):
        for k, (reader, alpha) in enumerate(zip(readers, alphas, strict=True)):
            with decoded(reader, name, tracker) as delta:
                if squared is not None:
                    squared[k] += checked_squared_norm(reader, name, delta, tracker)
                accumulator.add_(delta, alpha=alpha)
    return accumulator


def _squared_norms(readers: Sequence[UpdateReader], names: Iterable[str], tracker: MemoryTracker) -> list[float]:
    squared = [0.0] * len(readers)
    for name in names:
        for k, reader in enumerate(readers):
            if name not in reader.names:
                continue
            with decoded(reader, name, tracker) as delta:
                squared[k] += checked_squared_norm(reader, name, delta, tracker)
    return squared


def _max_value(name: str, readers: Sequence[UpdateReader], tracker: MemoryTracker) -> torch.Tensor:
    best: torch.Tensor | None = None
    for reader in readers:
        value = reader.read(name)
        with tracker.live(value, *(() if best is None else (best,))):
            best = value if best is None else torch.maximum(best, value)
    assert best is not None
    return best


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def aggregate(
    base_path: str | Path,
    updates: Iterable[UpdateInput],
    config: StrategyConfig,
    out_path: str | Path,
    *,
    local_patterns: Sequence[str] = (),
    state_dir: str | Path | None = None,
    threads: int = 1,
) -> AggregationResult:
    """Aggregate `updates` onto the base model at `base_path`; write the new global model to `out_path`.

    Raises `PayloadError` for an invalid update (nothing is written then) and `ValueError` for bad input.
    `state_dir` holds the server optimiser's state between rounds (FedAdam, FedYogi, FedAvgM need it).
    `threads` is torch's intra-op thread count while aggregating (see the module docstring).
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    with _torch_threads(threads):
        return _aggregate(Path(base_path), list(updates), config, Path(out_path), tuple(local_patterns), state_dir)


def _aggregate(
    base_path: Path,
    inputs: list[UpdateInput],
    config: StrategyConfig,
    out_path: Path,
    patterns: tuple[str, ...],
    state_dir: str | Path | None,
) -> AggregationResult:
    _check_inputs(inputs)
    tracker = MemoryTracker()
    robust = config.name in ROBUST
    prepass = robust or config.norm_bound is not None
    total_samples = sum(u.num_samples for u in inputs)
    weights = [1.0 / len(inputs)] * len(inputs) if robust else [u.num_samples / total_samples for u in inputs]
    dots = [0.0] * len(inputs)
    aggregate_sq = step_sq = 0.0
    block_peak = 0
    with ExitStack() as stack:
        base = stack.enter_context(SafetensorsFile(base_path, role="model"))
        if base.metadata.get(KIND_KEY) == KIND_UPDATE:
            raise PayloadError(f"base {base_path} is an update payload, not model weights")
        specs = base.specs
        aggregated = {n: s for n, s in specs.items() if s.dtype.is_floating_point and not matches_any(n, patterns)}
        readers = [stack.enter_context(UpdateReader(u.path, u.codec)) for u in inputs]
        for reader, update in zip(readers, inputs, strict=True):
            check_header(reader, specs, patterns, partial=update.partial)
        squared = _squared_norms(readers, aggregated, tracker) if prepass else [0.0] * len(inputs)
        carried = {n: [k for k, r in enumerate(readers) if n in r.names] for n in aggregated}
        noise = CentralNoise.for_round(config, weights, carried)
        bound = config.norm_bound
        clip = [min(1.0, bound / math.sqrt(s)) if bound is not None and s > 0 else 1.0 for s in squared]
        alphas = [w * c for w, c in zip(weights, clip, strict=True)]
        optimizer = stack.enter_context(
            ServerOptimizer(config, Path(state_dir) if state_dir else None, aggregated, tracker)
        )
        writer = stack.enter_context(
            StreamingWriter(out_path, specs, {KIND_KEY: KIND_STATE, "plantfed.strategy": config.name.value})
        )
        for name, spec in specs.items():
            base_value = base.tensor(name)
            with tracker.live(base_value):
                if matches_any(name, patterns):
                    writer.write(name, base_value)
                    continue
                present = [k for k, reader in enumerate(readers) if name in reader.names]
                carriers = [readers[k] for k in present]
                if name not in aggregated:
                    new_value = _max_value(name, carriers, tracker) if carriers else base_value
                    with tracker.live(new_value):
                        writer.write(name, new_value)
                    continue
                if not carriers:
                    delta = torch.zeros(spec.shape, dtype=torch.float32)
                elif robust:
                    delta, peak = robust_aggregate(
                        name,
                        spec,
                        carriers,
                        [clip[k] for k in present],
                        config.name,
                        config.trim_fraction,
                        config.buffer_bytes,
                        tracker,
                    )
                    block_peak = max(block_peak, peak)
                else:
                    share = sum(weights[k] for k in present)
                    partial_squared = None if prepass else [0.0] * len(present)
                    delta = _mean_delta(
                        name, spec, carriers, [alphas[k] / share for k in present], tracker, partial_squared
                    )
                    for k, value in zip(present, partial_squared or (), strict=False):
                        squared[k] += value
                    noise.add(name, delta, tracker)
                with tracker.live(delta):
                    aggregate_sq += dot(delta, delta, tracker)
                    for k in present:
                        with decoded(readers[k], name, tracker) as update_delta:
                            dots[k] += dot(update_delta, delta, tracker)
                    param = base_value.to(torch.float32)
                    with tracker.live(param):
                        step_sq += optimizer.apply(name, param, delta)
                        out = param.to(spec.dtype)
                        with tracker.live(out):
                            writer.write(name, out)

    aggregate_norm = math.sqrt(aggregate_sq)
    norms = [math.sqrt(s) for s in squared]
    stats = [
        PlantStats(
            plant=u.plant,
            num_samples=u.num_samples,
            weight=w,
            l2_norm=n,
            clipped=c < 1.0,
            clip_factor=c,
            cosine=d / (n * aggregate_norm) if n > 0 and aggregate_norm > 0 else 0.0,
        )
        for u, w, n, c, d in zip(inputs, weights, norms, clip, dots, strict=True)
    ]
    return AggregationResult(
        strategy=config.name,
        out_path=Path(out_path),
        plants=stats,
        aggregate_delta_norm=aggregate_norm,
        global_delta_norm=math.sqrt(step_sq),
        peak_bytes=tracker.peak,
        block_peak_bytes=block_peak,
        server_step=optimizer.step,
        central_noise_std=noise.std,
    )
