"""Learning quality vs privacy: accuracy of the global model at ε ∈ {1, 3, 8} (δ = 1e-5) after R rounds.

For each target ε the noise multiplier σ is the smallest opacus's `get_noise_multiplier` finds for what R
rounds release (docs/security.md): plant-level DP (local, central) is one Gaussian release per round (q = 1);
sample-level DP (DP-SGD) is E·b noisy steps per round at q = 1/b, b = batches per epoch of the smallest
plant (the plant that spends ε fastest). Then one `plantfed simulate` run per row (the built-in synthetic
bearing data unless --data-option says otherwise), all with the same training settings, reports the final
federated test accuracy and the ε the hub's ledger actually charged. A no-DP row is the reference.

    .venv/bin/python bench/bench_privacy.py [--rounds 10] [--plants 3] [--mode sample|local|central|all] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opacus.accountants.utils import get_noise_multiplier

DELTA = 1e-5


def sigma_for(epsilon: float, steps: int, sample_rate: float = 1.0) -> float:
    return get_noise_multiplier(
        target_epsilon=epsilon,
        target_delta=DELTA,
        sample_rate=sample_rate,
        steps=steps,
        accountant="rdp",
        epsilon_tolerance=0.005,
    )


def smallest_plant(plants: int, options: dict[str, str]) -> int:
    """Training records of the smallest plant, as `plantfed train` will load them."""
    from plantfed.tasks.sdk import DataSpec, dataset_size, load_task

    task = load_task("bearing")
    return min(
        dataset_size(
            task.load_data(DataSpec(plant=f"plant-{i + 1}", plant_index=i, num_plants=plants, options=options)).train
        )
        for i in range(plants)
    )


def reusable(out: Path, expected: dict[str, object]) -> dict | None:
    """A finished run's report under `out` if its settings are `expected` (for --reuse), else None."""
    try:
        report = json.loads((out / "report.json").read_text())
    except FileNotFoundError:
        return None
    config = {**report["config"], **report["config"]["strategy"]}
    if any(config.get(k) != v for k, v in expected.items()):
        return None
    report["wall_seconds"] = report["seconds"]
    return report


def run(out: Path, args: list[str], expected: dict[str, object], reuse: bool) -> dict:
    """One simulate run's report; a run that fails (heavy noise can make training diverge to NaN) is a row too."""
    if reuse and (report := reusable(out, expected)) is not None:
        return report
    shutil.rmtree(out, ignore_errors=True)  # simulate refuses a directory that holds another run
    cmd = [sys.executable, "-m", "plantfed", "simulate", "--out", str(out), *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        # "RuntimeError: round bearing-r3: every plant failed; first error: ValueError: <why>" -> round and why
        where, _, why = last.partition("every plant failed; first error: ")
        return {
            "failed": f"{where.removeprefix('RuntimeError: ')}{why}" if why else last,
            "wall_seconds": time.perf_counter() - started,
        }
    report = json.loads((out / "report.json").read_text())
    report["wall_seconds"] = time.perf_counter() - started
    failed = [r for r in report["rounds"] if r.get("phase") == "Failed"]
    if failed:  # e.g. every plant's update diverged to NaN and the exchange refused it: QuorumUnreachable
        first = failed[0]
        why = next(
            (p["message"] for p in first["plants"].values() if p.get("state") == "Failed" and p.get("message")),
            first.get("message", ""),
        )
        return {"failed": f"round {first['round_id']}: {why}", "wall_seconds": report["wall_seconds"]}
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--plants", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.05, help="every DP row's (clipped steps stay small)")
    p.add_argument(
        "--reference-learning-rate",
        type=float,
        default=0.01,
        help="a second no-DP row at this rate (simulate's default): unclipped SGD diverges at DP's rate",
    )
    p.add_argument("--reuse", action="store_true", help="keep finished runs under --out whose settings match")
    p.add_argument("--clip-norm", type=float, default=1.0, help="C: per-record / local clip norm, central norm bound")
    p.add_argument("--mode", choices=("sample", "local", "central", "all"), default="all")
    p.add_argument("--epsilons", default="1,3,8")
    p.add_argument("--data-option", action="append", help="task data option KEY=VALUE (default: simulate's)")
    p.add_argument("--jobs", type=int, default=1, help="simulate runs at once")
    p.add_argument("--out", type=Path, default=Path("runs/bench-privacy"))
    p.add_argument("--report", type=Path, default=Path("bench/privacy.md"))
    a = p.parse_args()

    common = [
        "--plants",
        str(a.plants),
        "--rounds",
        str(a.rounds),
        "--epochs",
        str(a.epochs),
        "--seed",
        "0",
        "--batch-size",
        str(a.batch_size),
        "--dp-delta",
        str(DELTA),
    ]
    options = dict(o.split("=", 1) for o in a.data_option or [])
    for key, value in options.items():
        common += ["--data-option", f"{key}={value}"]
    batches = math.ceil(smallest_plant(a.plants, options) / a.batch_size)
    modes = ("sample", "local", "central") if a.mode == "all" else (a.mode,)
    same = {"rounds": a.rounds, "epochs": a.epochs, "batch_size": a.batch_size, "plants": a.plants}
    plan: list[tuple[str, float | None, float | None, float, Path, list[str], dict[str, Any]]] = []
    for lr in dict.fromkeys((a.learning_rate, a.reference_learning_rate)):
        name = "no-dp" if lr == a.learning_rate else f"no-dp-lr{lr:g}"
        expected = {**same, "learning_rate": lr, "noise_multiplier": 0.0, "central_noise_multiplier": None}
        plan.append(("none", None, None, lr, a.out / name, [*common, "--learning-rate", str(lr)], expected))
    for mode in modes:
        for eps in (float(e) for e in a.epsilons.split(",")):
            if mode == "sample":
                sigma = float(f"{sigma_for(eps, a.rounds * a.epochs * batches, 1 / batches):.6g}")
                extra = ["--dp-mode", "sample", "--clip-norm", str(a.clip_norm), "--noise-multiplier", f"{sigma:.6g}"]
                check = {"dp_mode": "sample", "noise_multiplier": sigma}
            elif mode == "local":
                sigma = float(f"{sigma_for(eps, a.rounds):.6g}")
                extra = ["--clip-norm", str(a.clip_norm), "--noise-multiplier", f"{sigma:.6g}"]
                check = {"dp_mode": "local", "noise_multiplier": sigma}
            else:
                sigma = float(f"{sigma_for(eps, a.rounds):.6g}")
                extra = ["--norm-bound", str(a.clip_norm), "--central-noise-multiplier", f"{sigma:.6g}"]
                check = {"central_noise_multiplier": sigma}
            args = [*common, "--learning-rate", str(a.learning_rate), *extra]
            expected = {**same, "learning_rate": a.learning_rate, **check}
            plan.append((mode, eps, sigma, a.learning_rate, a.out / f"{mode}-eps{eps:g}", args, expected))
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run, out, args, expected, a.reuse) for *_, out, args, expected in plan]
        rows = [(mode, eps, sigma, lr, f.result()) for (mode, eps, sigma, lr, *_), f in zip(plan, futures, strict=True)]

    lines = [
        f"# Accuracy vs ε (δ = {DELTA:g}), {a.plants} plants × {a.rounds} rounds × {a.epochs} epoch(s), "
        f"batch {a.batch_size}, SGD momentum 0.9, C = {a.clip_norm}",
        "",
        f"Data: {', '.join(f'{k}={v}' for k, v in options.items()) or 'simulate defaults (built-in synthetic)'}; "
        f"smallest plant {batches} batches per epoch. sample = DP-SGD (record-level); local, central = plant-level.",
        "",
        "| DP | unit | lr | target ε | σ | ε charged (max over plants) | final accuracy | final loss | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, target, noise, lr, rep in rows:
        unit = {"none": "–", "sample": "record"}.get(mode, "plant")
        head = [
            mode,
            unit,
            f"{lr:g}",
            "∞" if target is None else f"{target:g}",
            "–" if noise is None else f"{noise:.3f}",
        ]
        if "failed" in rep:
            cells = [*head, "–", f"failed: {rep['failed'][:160]}", "–", f"{rep['wall_seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        last = rep["rounds"][-1]
        spent = max(rep["privacy"]["epsilon"].values()) if rep.get("privacy") else None
        cells = [
            *head,
            "–" if spent is None else f"{spent:.2f}",
            f"{last['global_accuracy']:.3f}",
            f"{last['global_loss']:.3f}",
            f"{rep['wall_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
