"""Learning-quality tables: federated vs centralised vs siloed, non-IID strategies, compression.

Every row is one `plantfed simulate` run with fixed seeds, so the numbers reproduce. Writes a markdown report
(default bench/learning.md) that bench/RESULTS.md quotes.

    .venv/bin/python bench/bench_learning.py [--rounds 20] [--only cwru,synthetic,noniid,codecs]
        [--alphas 0.3,1.0] [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CWRU = Path(__file__).resolve().parents[2] / "shared" / "data" / "cwru"


#: `--data-option KEY=VALUE` arguments every simulate run gets (main's --data-option).
DATA_OPTIONS: list[str] = []


def simulate(out: Path, *args: str) -> dict:
    cmd = [sys.executable, "-m", "plantfed", "simulate", "--out", str(out), *args, *DATA_OPTIONS]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    report["wall_seconds"] = time.perf_counter() - started
    report["command"] = "plantfed simulate " + " ".join(args)
    return report


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def baseline_table(title: str, report: dict) -> list[str]:
    q = report["quality"]
    models = list(next(iter(q["comparison"].values())))
    lines = [f"### {title}", "", f"`{report['command']}`", ""]
    lines.append("| plant | trained | " + " | ".join(models) + " |")
    lines.append("|---" * (len(models) + 2) + "|")
    for plant, row in q["comparison"].items():
        trained = "hold-out" if plant in report["holdout"] else "yes"
        lines.append(f"| {plant} | {trained} | " + " | ".join(fmt(row[m]) for m in models) + " |")
    holdout = [q["comparison"][p] for p in report["holdout"]]
    lines += [
        "",
        "- federated accuracy as a share of centralised (training plants): "
        f"**{fmt(q['federated_share_of_centralised'])}**",
        f"- rounds to reach 95 % of the final accuracy: **{q['rounds_to_95pct_of_final']}** of {len(report['rounds'])}",
    ]
    for p, row in zip(report["holdout"], holdout, strict=True):
        silos = {m: v for m, v in row.items() if m.startswith("siloed:")}
        beaten = sum(row["federated"] > v for v in silos.values())
        lines.append(
            f"- hold-out plant {p}: federated {fmt(row['federated'])} beats {beaten} of {len(silos)} siloed models "
            f"(best siloed {fmt(max(silos.values()))}), centralised {fmt(row['centralised'])}"
        )
    lines.append(f"- baseline budget: {q.get('baseline_epochs')} epochs each; wall time {report['wall_seconds']:.0f} s")
    return lines + [""]


def curve_row(name: str, report: dict) -> str:
    accs = [r["global_accuracy"] for r in report["rounds"]]
    mb = sum(r["bytes_up"] for r in report["rounds"]) / 1e6
    best = max(a for a in accs if a is not None)
    rounds_to_95 = report["quality"]["rounds_to_95pct_of_final"]
    return f"| {name} | {fmt(accs[-1])} | {fmt(best)} | {rounds_to_95} | {mb:.2f} |"


NONIID_STRATEGIES = (
    ("FedAvg", ["--strategy", "fedavg"]),
    ("FedProx (mu 0.01)", ["--strategy", "fedprox", "--fedprox-mu", "0.01"]),
    ("FedAdam (server lr 0.01)", ["--strategy", "fedadam"]),
)


def noniid_tables(out: Path, rounds: str, alphas: list[float], jobs: int) -> list[str]:
    """One row per (alpha, strategy) plus an IID FedAvg reference, all 3 synthetic plants, run `jobs` at a time."""
    runs: dict[tuple[float | str, str], tuple[Path, list[str]]] = {
        ("IID", "FedAvg"): (out / "iid-fedavg", ["--strategy", "fedavg"])
    }
    for alpha in alphas:
        for name, extra in NONIID_STRATEGIES:
            runs[(alpha, name)] = (out / f"noniid-a{alpha:g}-{extra[1]}", ["--label-skew-alpha", f"{alpha:g}", *extra])
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            key: pool.submit(simulate, path, "--plants", "3", "--rounds", rounds, *extra)
            for key, (path, extra) in runs.items()
        }
        reports = {key: f.result() for key, f in futures.items()}
    lines = [
        f"### Non-IID: Dirichlet label skew across 3 synthetic plants, {rounds} rounds",
        "",
        "| label skew | strategy | final accuracy | best | rounds to 95 % of final | MB uploaded |",
        "|---|---|---|---|---|---|",
    ]
    for (skew_alpha, name), rep in reports.items():
        skew = "none (IID)" if isinstance(skew_alpha, str) else f"α = {skew_alpha:g}"
        lines.append(f"| {skew} " + curve_row(name, rep))
    return lines + ["", f"`plantfed simulate --plants 3 --rounds {rounds} --label-skew-alpha <α> --strategy <s>`", ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--noniid-rounds", type=int, default=20)
    p.add_argument("--alphas", default="0.3,1.0", help="Dirichlet label-skew alphas of the non-IID table")
    p.add_argument("--jobs", type=int, default=1, help="simulate runs at once (non-IID table)")
    p.add_argument("--only", default="cwru,synthetic,noniid,codecs")
    p.add_argument("--codecs", default="none,fp16,int8", help="rows of the compression table")
    p.add_argument("--out", type=Path, default=Path("runs/bench-learning"))
    p.add_argument("--report", type=Path, default=Path("bench/learning.md"))
    p.add_argument("--data-option", action="append", default=[], help="task data option KEY=VALUE for every run")
    args = p.parse_args(argv)
    DATA_OPTIONS[:] = [arg for option in args.data_option for arg in ("--data-option", option)]
    only = set(args.only.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Learning quality (generated by bench/bench_learning.py)", ""]
    r = str(args.rounds)

    if "cwru" in only and CWRU.exists():
        rep = simulate(
            args.out / "cwru", "--data", str(CWRU), "--plants", "4", "--holdout", "1", "--rounds", r, "--baselines"
        )
        lines += baseline_table("Real CWRU data: 3 plants train (0-2 HP), the 3 HP plant never trains", rep)
    if "synthetic" in only:
        rep = simulate(args.out / "synthetic", "--plants", "4", "--holdout", "1", "--rounds", r, "--baselines")
        lines += baseline_table(
            "Synthetic fleet (4 vendors, speeds +15 % per plant): 3 plants train, one never does", rep
        )

    nr = str(args.noniid_rounds)
    if "noniid" in only:
        lines += noniid_tables(args.out, nr, [float(a) for a in args.alphas.split(",")], args.jobs)
    if "codecs" in only:
        lines += [
            "### Compression: accuracy and bytes per codec (synthetic, 3 plants)",
            "",
            "| codec | final accuracy | best | rounds to 95 % of final | MB uploaded |",
            "|---|---|---|---|---|",
        ]
        for codec in args.codecs.split(","):
            rep = simulate(args.out / f"codec-{codec}", "--plants", "3", "--rounds", nr, "--codec", codec)
            lines.append(curve_row(codec, rep))
        lines += ["", f"`plantfed simulate --plants 3 --rounds {nr} --codec <codec>`", ""]

    args.report.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(args.report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
