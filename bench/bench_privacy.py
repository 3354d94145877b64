"""Learning quality vs privacy: accuracy of the global model at ε ∈ {1, 3, 8} (δ = 1e-5) after R rounds.

For each target ε the noise multiplier σ is the smallest opacus's `get_noise_multiplier` finds for R releases
with q = 1 (one Gaussian release per round per plant, the accounting of docs/security.md), then one
`plantfed simulate` run per row (synthetic bearing data by default) reports the final federated test
accuracy and the ε the ledger actually charged. A no-DP row is the reference.

    .venv/bin/python bench/bench_privacy.py [--rounds 5] [--plants 3] [--mode local|central|both] [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from opacus.accountants.utils import get_noise_multiplier

DELTA = 1e-5


def sigma_for(epsilon: float, rounds: int) -> float:
    return get_noise_multiplier(
        target_epsilon=epsilon, target_delta=DELTA, sample_rate=1.0, steps=rounds, epsilon_tolerance=0.005
    )


def run(out: Path, args: list[str]) -> dict:
    """One simulate run's report; a run that fails (heavy noise can make training diverge to NaN) is a row too."""
    cmd = [sys.executable, "-m", "plantfed", "simulate", "--out", str(out), *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"failed": last, "wall_seconds": time.perf_counter() - started}
    report = json.loads((out / "report.json").read_text())
    report["wall_seconds"] = time.perf_counter() - started
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--plants", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--clip-norm", type=float, default=1.0, help="C: local clip norm / central norm bound")
    p.add_argument("--mode", choices=("local", "central", "both"), default="both")
    p.add_argument("--epsilons", default="1,3,8")
    p.add_argument("--data-option", action="append", help="task data option (default recordings_per_class=3)")
    p.add_argument("--jobs", type=int, default=1, help="simulate runs at once")
    p.add_argument("--out", type=Path, default=Path("runs/bench-privacy"))
    p.add_argument("--report", type=Path, default=Path("bench/privacy.md"))
    a = p.parse_args()

    common = ["--plants", str(a.plants), "--rounds", str(a.rounds), "--epochs", str(a.epochs), "--seed", "0",
              "--learning-rate", "0.05", "--dp-delta", str(DELTA)]
    for option in a.data_option or ["recordings_per_class=3"]:
        common += ["--data-option", option]
    modes = ("local", "central") if a.mode == "both" else (a.mode,)
    plan = [("none", None, None, a.out / "no-dp", common)]
    for mode in modes:
        for eps in (float(e) for e in a.epsilons.split(",")):
            sigma = sigma_for(eps, a.rounds)
            if mode == "local":
                extra = ["--clip-norm", str(a.clip_norm), "--noise-multiplier", f"{sigma:.6g}"]
            else:
                extra = ["--norm-bound", str(a.clip_norm), "--central-noise-multiplier", f"{sigma:.6g}"]
            plan.append((mode, eps, sigma, a.out / f"{mode}-eps{eps:g}", common + extra))
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run, out, args) for *_, out, args in plan]
        rows = [(mode, eps, sigma, f.result()) for (mode, eps, sigma, _, _), f in zip(plan, futures)]

    lines = [
        f"# Accuracy vs ε (δ = {DELTA:g}), {a.plants} plants × {a.rounds} rounds, C = {a.clip_norm}, synthetic bearing data",
        "",
        "| DP | target ε | σ | ε charged (max over plants) | final accuracy | final loss | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, eps, sigma, rep in rows:
        head = [mode, "∞" if eps is None else f"{eps:g}", "–" if sigma is None else f"{sigma:.3f}"]
        if "failed" in rep:
            cells = [*head, "–", f"failed: {rep['failed'][:80]}", "–", f"{rep['wall_seconds']:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        last = rep["rounds"][-1]
        spent = max(rep["privacy"]["epsilon"].values()) if rep.get("privacy") else None
        cells = [*head, "–" if spent is None else f"{spent:.2f}", f"{last['global_accuracy']:.3f}",
                 f"{last['global_loss']:.3f}", f"{rep['wall_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    a.report.parent.mkdir(parents=True, exist_ok=True)
    a.report.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
