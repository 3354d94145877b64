"""Aggregation benchmark: plantfed's streaming FedAvg vs Flower's `aggregate` / `aggregate_inplace` vs a bare loop.

Manual, not part of CI. Every contender aggregates the same K update files (safetensors, fp32) from disk
and writes the result, each in its own subprocess so its peak RSS (`ru_maxrss`) is its own. The page cache
is warmed before every contender so none pays the disk and the comparison is memory, not I/O. Contenders:

* `plantfed`          `plantfed.engine.aggregation.aggregate` (fedavg, default single torch thread): header
                      validation, then per tensor one read that checks NaN/Inf, takes the norm and
                      accumulates, and a second read for the per-plant cosine similarity; streamed output;
* `torch-add`         a bare loop: one float32 accumulator per tensor, every update read tensor by tensor
                      and `add_`ed in: the memory-bandwidth bound over the same bytes;
* `flwr-aggregate`    `flwr.server.strategy.aggregate.aggregate(list[(NDArrays, num_examples)])`, with all
                      updates loaded as numpy arrays as a Flower server holds them;
* `flwr-inplace`      `flwr.server.strategy.aggregate.aggregate_inplace(list[(ClientProxy, FitRes)])`, with
                      every update held as serialised `Parameters` (what arrives over Flower's wire);
* optional `plantfed-median` / `flwr-median` (coordinate-wise median).

Flower pins protobuf < 7 and this project's venv has protobuf 7, so Flower runs from its own venv:

    python3.11 -m venv /tmp/flwr-bench-venv && /tmp/flwr-bench-venv/bin/pip install flwr==1.42.0 safetensors==0.8.0
    .venv/bin/python bench/bench_aggregate.py --plants 17 --size-mb 400 --flwr-python /tmp/flwr-bench-venv/bin/python

A quick run: `--plants 4 --size-mb 20`. On a shared machine use `--repeat 3`: contenders run round robin
and the table keeps each one's fastest wall time (the least disturbed) and its highest peak RSS. Each
contender's address space is capped (`--mem-limit-gb`) so a contender that does not fit fails with
MemoryError instead of pushing a shared machine into the OOM killer; that failure is reported as a result.
The data directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_CONTENDERS = ("plantfed", "torch-add", "flwr-aggregate", "flwr-inplace")
FLOWER = {"flwr-aggregate", "flwr-inplace", "flwr-median"}


# ------------------------------------------------------------------------------------------------- data


def layer_shapes(size_bytes: int) -> list[tuple[int, ...]]:
    """Square linear layers (+ bias) of a transformer-ish width until the model reaches `size_bytes`."""
    width = 2048 if size_bytes >= 200 * 2**20 else 512
    shapes: list[tuple[int, ...]] = []
    total = 0
    while total + 4 * width * width <= size_bytes:
        shapes += [(width, width), (width,)]
        total += 4 * (width * width + width)
    rest = (size_bytes - total) // 4
    if rest >= width:
        shapes.append((rest // width, width))
    return shapes


def make_data(directory: Path, plants: int, size_mb: int) -> dict:
    import torch

    from plantfed.contract.records import Codec
    from plantfed.formats import codecs

    shapes = layer_shapes(size_mb * 2**20)
    names = [f"layers.{i // 2}.{'weight' if i % 2 == 0 else 'bias'}" for i in range(len(shapes))]
    base = {n: torch.zeros(s) for n, s in zip(names, shapes, strict=True)}
    codecs.save_state(base, directory / "base.safetensors")
    del base
    gen = torch.Generator().manual_seed(0)
    updates = []
    for k in range(plants):
        tensors = {n: torch.randn(s, generator=gen) * 0.01 for n, s in zip(names, shapes, strict=True)}
        path = directory / f"plant-{k:02d}.safetensors"
        codecs.write_update(tensors, path, Codec.NONE)
        del tensors
        updates.append({"plant": f"plant-{k:02d}", "path": str(path), "num_samples": 100 + 37 * k})
    model_bytes = sum(4 * torch.Size(s).numel() for s in shapes)
    return {
        "base": str(directory / "base.safetensors"),
        "updates": updates,
        "model_bytes": model_bytes,
        "tensors": len(shapes),
    }


def warm_cache(spec: dict) -> None:
    for path in [spec["base"], *(u["path"] for u in spec["updates"])]:
        with open(path, "rb") as handle:
            while handle.read(64 << 20):
                pass


# ---------------------------------------------------------------------------------------------- workers


def rss_now() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """The larger of `ru_maxrss` and this address space's VmHWM.

    Linux carries `ru_maxrss` across `execve`, so a worker forked from a big parent would report the
    parent's RSS; the driver therefore stays small (data generation runs in its own subprocess) and
    VmHWM, which belongs to the new address space, is read as a cross-check.
    """
    hwm = 0
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return max(hwm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def run_plantfed(spec: dict, out: Path, strategy: str) -> dict:
    from plantfed.engine.aggregation import StrategyConfig, UpdateInput, aggregate

    inputs = [
        UpdateInput(plant=u["plant"], path=Path(u["path"]), num_samples=u["num_samples"]) for u in spec["updates"]
    ]
    result = aggregate(spec["base"], inputs, StrategyConfig(name=strategy), out)
    return {"tracked_peak_bytes": result.peak_bytes}


def run_torch_add(spec: dict, out: Path) -> dict:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.set_num_threads(1)  # like plantfed's default and numpy's element-wise ops
    total = sum(u["num_samples"] for u in spec["updates"])
    with safe_open(spec["base"], "pt", backend="pread") as base:
        acc = {name: base.get_tensor(name).float() for name in base.keys()}
    for update in spec["updates"]:
        with safe_open(update["path"], "pt", backend="pread") as f:
            for name in f.keys():
                acc[name].add_(f.get_tensor(name), alpha=update["num_samples"] / total)
    save_file(acc, str(out))
    return {}


def _load_numpy(path: str) -> list:
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        return [f.get_tensor(name) for name in sorted(f.keys())]


def run_flower(spec: dict, out: Path, kind: str) -> dict:
    import numpy as np
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.server.strategy.aggregate import aggregate, aggregate_inplace, aggregate_median
    from safetensors.numpy import save_file

    started = time.perf_counter()
    results: list[Any]
    if kind == "flwr-inplace":
        results = [
            (None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(_load_numpy(u["path"])), u["num_samples"], {}))
            for u in spec["updates"]
        ]
    else:
        results = [(_load_numpy(u["path"]), u["num_samples"]) for u in spec["updates"]]
    loaded = time.perf_counter()
    if kind == "flwr-inplace":
        arrays = aggregate_inplace(results)
    elif kind == "flwr-median":
        arrays = aggregate_median(results)
    else:
        arrays = aggregate(results)
    aggregated = time.perf_counter()
    base = _load_numpy(spec["base"])
    with_base = {
        f"t{i}": np.ascontiguousarray(b + a, dtype=np.float32)
        for i, (b, a) in enumerate(zip(base, arrays, strict=True))
    }
    save_file(with_base, str(out))
    return {"load_s": loaded - started, "aggregate_s": aggregated - loaded}


def worker(args: argparse.Namespace) -> None:
    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.out)
    if args.worker in FLOWER:
        import flwr.server.strategy.aggregate  # noqa: F401  (import cost is not aggregation memory)
        import safetensors.numpy
    else:
        import safetensors.torch  # noqa: F401
        import torch  # noqa: F401

        import plantfed.engine.aggregation  # noqa: F401
    imported_rss = rss_now()
    started = time.perf_counter()
    try:
        if args.worker.startswith("plantfed"):
            extra = run_plantfed(spec, out, "median" if args.worker == "plantfed-median" else "fedavg")
        elif args.worker == "torch-add":
            extra = run_torch_add(spec, out)
        else:
            extra = run_flower(spec, out, args.worker)
        status = "ok"
    except MemoryError:
        extra, status = {}, "MemoryError (did not fit under the address-space cap)"
    print(
        json.dumps(
            {
                "status": status,
                "wall_s": time.perf_counter() - started,
                "peak_rss": peak_rss(),
                "import_rss": imported_rss,
                **extra,
            }
        )
    )


# ----------------------------------------------------------------------------------------------- driver


def run_contender(name: str, args: argparse.Namespace, spec_path: Path, work: Path) -> dict:
    python = args.flwr_python if name in FLOWER else sys.executable
    if name in FLOWER and not python:
        return {"status": "skipped (no --flwr-python)"}
    limit = int(args.mem_limit_gb * 2**30)

    def cap() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = work / f"out-{name}.safetensors"
    cmd = [python, __file__, "--worker", name, "--spec", str(spec_path), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap, env=_env())
    out.unlink(missing_ok=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"status": f"failed rc={proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def codec_sizes(work: Path) -> list[tuple[str, int]]:
    """Bytes of one update of the bearing task's conv1d model under each codec."""
    import torch

    from plantfed.contract.records import Codec
    from plantfed.formats import codecs
    from plantfed.tasks.bearing.task import BearingTask

    torch.manual_seed(0)
    base = {k: v.clone() for k, v in BearingTask().build_model().state_dict().items()}
    local = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in base.items()}
    sizes = []
    for codec in Codec:
        path = work / f"codec-{codec.value}.safetensors"
        codecs.write_update(codecs.encode_update(base, local, codec), path, codec)
        sizes.append((codec.value, path.stat().st_size))
        path.unlink()
    return sizes


def _best(previous: dict | None, run: dict) -> dict:
    """Across repeats on a shared machine: the fastest wall time (least disturbed) and the highest peak RSS."""
    if previous is None or previous.get("status") != "ok":
        return run
    if run.get("status") != "ok":
        return previous
    best = dict(min(previous, run, key=lambda r: r["wall_s"]))
    best["peak_rss"] = max(previous["peak_rss"], run["peak_rss"])
    return best


def _helper(flags: list[str]) -> str:
    """Run a step that needs torch in a subprocess, so the driver stays small (see `peak_rss`)."""
    proc = subprocess.run([sys.executable, __file__, *flags], capture_output=True, text=True, env=_env(), check=True)
    return proc.stdout.strip().splitlines()[-1]


def _env() -> dict[str, str]:
    operator_dir = str(Path(__file__).resolve().parent.parent / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [operator_dir, os.environ.get("PYTHONPATH", "")]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plants", type=int, default=17)
    parser.add_argument("--size-mb", type=int, default=400, help="size of each plant's update")
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every contender N times (round robin); min wall, max RSS"
    )
    parser.add_argument("--flwr-python", default="", help="python of a venv with flwr installed")
    parser.add_argument("--mem-limit-gb", type=float, default=16.0, help="address-space cap per contender (0 = none)")
    parser.add_argument("--dir", default=None, help="where to put the data (default: a temp dir under /tmp)")
    parser.add_argument("--make-data", help=argparse.SUPPRESS)
    parser.add_argument("--codec-sizes", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.make_data:
        print(json.dumps(make_data(Path(args.make_data), args.plants, args.size_mb)))
        return
    if args.codec_sizes:
        print(json.dumps(codec_sizes(Path(args.codec_sizes))))
        return

    work = Path(tempfile.mkdtemp(prefix="plantfed-bench-", dir=args.dir))
    try:
        started = time.perf_counter()
        spec = json.loads(
            _helper(["--make-data", str(work), "--plants", str(args.plants), "--size-mb", str(args.size_mb)])
        )
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        gb = spec["model_bytes"] / 1e9
        print(
            f"data: {args.plants} updates × {spec['model_bytes'] / 2**20:.0f} MiB ({spec['tensors']} tensors), "
            f"{args.plants * gb:.2f} GB total, generated in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        results: dict[str, dict] = {}
        for attempt in range(args.repeat):
            for name in args.contenders.split(","):
                warm_cache(spec)
                run = run_contender(name, args, spec_path, work)
                print(f"  [{attempt + 1}/{args.repeat}] {name}: {json.dumps(run)}", flush=True)
                results[name] = _best(results.get(name), run)
        reference = results.get("torch-add", {})
        print()
        print(
            "| contender | status | wall s | peak RSS MiB | RSS after imports MiB | peak − imports MiB "
            "| (peak − imports) / update size | wall vs torch-add |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, r in results.items():
            if r.get("status") != "ok":
                print(f"| {name} | {r.get('status')} | | | | | | |")
                continue
            ratio = f"{r['wall_s'] / reference['wall_s']:.2f}×" if reference.get("status") == "ok" else "n/a"
            above = r["peak_rss"] - r["import_rss"]
            print(
                f"| {name} | ok | {r['wall_s']:.2f} | {r['peak_rss'] / 2**20:.0f} | {r['import_rss'] / 2**20:.0f} | "
                f"{above / 2**20:.0f} | {above / spec['model_bytes']:.2f} | {ratio} |"
            )
        print()
        sizes = json.loads(_helper(["--codec-sizes", str(work)]))
        print(
            "bearing conv1d update bytes per codec:",
            ", ".join(f"{c}={b} ({b / sizes[0][1]:.3f} of fp32)" for c, b in sizes),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
