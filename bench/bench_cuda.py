"""Local-training throughput on a plant's GPU against the same machine's CPU, in one run.

A plant's edge server trains through `plantfed.plant.training.train_local`, the loop the training pod
runs, so that is what is timed: the bearing task's full and light models on one plant's synthetic train split,
at two batch sizes, on CUDA and on every CPU core of the same machine (the anchor). A second figure times
the model step alone with the batches already resident on the device, which shows how much of the loop the
DataLoader costs. Then one short `plantfed simulate` run proves the whole engine trains on CUDA: every plant's
report must say its training ran on a cuda device.

    python bench/bench_cuda.py --out DIR [--seconds 4] [--rounds 3]

Writes DIR/cuda.json and DIR/cuda.md; exits non-zero when CUDA is absent or a plant trained elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from plantfed.plant.training import LocalTrainingConfig, train_local
from plantfed.tasks.bearing.task import BearingTask
from plantfed.tasks.sdk import DataSpec, dataset_size


def loop_throughput(task: BearingTask, variant: str, data, batch: int, device: torch.device, seconds: float) -> dict:
    """Samples per second through train_local, repeated until `seconds` of training have been timed."""
    model = task.build_model(variant)
    cfg = LocalTrainingConfig(epochs=1, batch_size=batch, learning_rate=1e-3, optimizer="adam")
    train_local(task, model, data, LocalTrainingConfig(batch_size=batch, max_steps=5), device)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    samples = spent = 0.0
    while spent < seconds:
        result = train_local(task, model, data, cfg, device)
        samples += result.samples_seen
        spent += result.seconds
    out = {"samples_per_second": samples / spent, "timed_seconds": spent}
    if device.type == "cuda":
        out["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def resident_throughput(
    task: BearingTask, variant: str, data, batch: int, device: torch.device, seconds: float
) -> float:
    """Samples per second of forward + backward + Adam step alone, every batch already on `device`."""
    model = task.build_model(variant).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [tuple(t.to(device) for t in b) for b in DataLoader(data, batch_size=batch, drop_last=True)]

    def one_pass() -> int:
        n = 0
        for b in batches:
            optimiser.zero_grad(set_to_none=True)
            task.batch_loss(model, b, device).loss.backward()
            optimiser.step()
            n += len(b[1])
        return n

    one_pass()
    if device.type == "cuda":
        torch.cuda.synchronize()
    samples, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        samples += one_pass()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return samples / (time.perf_counter() - started)


def simulate_on_cuda(out: Path, rounds: int) -> dict:
    """One real `plantfed simulate` (gRPC on loopback, a process per plant) and the device each plant used."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "plantfed", "simulate", "--plants", "3", "--rounds", str(rounds), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    devices = {
        p.name: json.loads((p / "report.json").read_text()).get("device") for p in sorted((out / "plants").iterdir())
    }
    return {
        "rounds": rounds,
        "wall_seconds": time.perf_counter() - started,
        "final_accuracy": report["rounds"][-1]["global_accuracy"],
        "plant_devices": devices,
    }


def markdown(result: dict) -> str:
    lines = [
        f"GPU: {result['gpu']}; CPU anchor: {result['cpu_threads']} threads on the same machine; "
        f"torch {result['torch']}.",
        "",
        "| model | batch | CUDA samples/s (train_local) | CPU samples/s (train_local) | CUDA / CPU "
        "| CUDA samples/s (batches resident) | CUDA peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["cases"]:
        cuda, cpu = row["cuda"], row["cpu"]
        lines.append(
            f"| {row['variant']} | {row['batch']} | {cuda['samples_per_second']:,.0f} "
            f"| {cpu['samples_per_second']:,.0f} "
            f"| {cuda['samples_per_second'] / cpu['samples_per_second']:.1f}× | {row['cuda_resident']:,.0f} "
            f"| {cuda['peak_memory_mib']:.0f} |"
        )
    sim = result["simulate"]
    lines += [
        "",
        f"`plantfed simulate --plants 3 --rounds {sim['rounds']}` on the GPU machine: plants trained on "
        f"{sorted(set(sim['plant_devices'].values()))}, final accuracy {sim['final_accuracy']:.3f}, "
        f"{sim['wall_seconds']:.0f} s wall.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=4.0, help="timed training per case and device")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the end-to-end simulate run")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA device visible to torch", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    task = BearingTask()
    data = task.load_data(DataSpec("plant-1", plant_index=0, num_plants=3, seed=0)).train
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    result: dict = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "train_windows": dataset_size(data),
        "cases": [],
    }
    for variant in ("full", "light"):
        for batch in (64, 256):
            row: dict[str, Any] = {"variant": variant, "batch": batch}
            row["cuda"] = loop_throughput(task, variant, data, batch, cuda, args.seconds)
            row["cpu"] = loop_throughput(task, variant, data, batch, cpu, args.seconds)
            row["cuda_resident"] = resident_throughput(task, variant, data, batch, cuda, args.seconds / 2)
            result["cases"].append(row)
            print(json.dumps(row), flush=True)
    result["simulate"] = simulate_on_cuda(args.out / "simulate", args.rounds)
    (args.out / "cuda.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "cuda.md").write_text(markdown(result))
    print(markdown(result))
    if any(not str(d).startswith("cuda") for d in result["simulate"]["plant_devices"].values()):
        print(f"bench_cuda: a plant did not train on CUDA: {result['simulate']['plant_devices']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
