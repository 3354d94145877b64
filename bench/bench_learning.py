"""Learning-quality tables: federated vs centralised vs siloed, non-IID strategies, compression.

Every row is the same `plantfed simulate` run repeated with `--seed` 0, 1, 2 (initial weights, synthetic data and
training order change with it), reported as mean ± sample standard deviation over the seeds: one run's number
moves by a point or more from seed to seed, more than some of the differences the tables compare. Writes a
markdown report (default bench/learning.md) that bench/RESULTS.md quotes.

    .venv/bin/python bench/bench_learning.py [--rounds 20] [--only cwru,synthetic,noniid,codecs]
        [--alphas 0.3,1.0] [--seeds 0,1,2] [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from plantfed.sim.campaign import plant_label

CWRU = Path(__file__).resolve().parents[2] / "shared" / "data" / "cwru"
MIN_SEEDS = 3
"""A table's default: fewer seeds only when asked for (the tiny test), never silently."""


#: `--data-option KEY=VALUE` arguments every simulate run gets (main's --data-option).
DATA_OPTIONS: list[str] = []


def simulate(out: Path, *args: str) -> dict:
    cmd = [sys.executable, "-m", "plantfed", "simulate", "--out", str(out), *args, *DATA_OPTIONS]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    report["wall_seconds"] = time.perf_counter() - started
    return report


class Runs:
    """Every (row, seed) simulate run of a table, `jobs` at a time."""

    def __init__(self, out: Path, seeds: Sequence[int], jobs: int) -> None:
        self.out, self.seeds, self.jobs = out, list(seeds), jobs

    def __call__(self, rows: dict[str, list[str]]) -> dict[str, list[dict]]:
        """Row name -> simulate arguments, to row name -> one report per seed (in seed order)."""
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {
                (row, seed): pool.submit(simulate, self.out / f"{row}-s{seed}", *args, "--seed", str(seed))
                for row, args in rows.items()
                for seed in self.seeds
            }
            return {row: [futures[(row, seed)].result() for seed in self.seeds] for row in rows}


def spread(values: Sequence[float | None], digits: int = 3) -> str:
    """`mean ± sd` over seeds (sample standard deviation); one value alone; – when a run had none."""
    if not values or any(v is None for v in values):
        return "–"
    numbers = [float(v) for v in values if v is not None]
    mean = f"{statistics.fmean(numbers):.{digits}f}"
    return mean if len(numbers) == 1 else f"{mean} ± {statistics.stdev(numbers):.{digits}f}"


def seeds_note(seeds: Sequence[int]) -> str:
    if len(seeds) == 1:
        return f"one seed ({seeds[0]}): no spread"
    return f"mean ± sample standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))})"


def command(args: Sequence[str], seeds: Sequence[int]) -> str:
    return "plantfed simulate " + " ".join(args) + f" --seed <{','.join(map(str, seeds))}>"


# -- what one report says (the metric every table compares) ----------------------------------------------------


def accuracy_curve(report: dict) -> list[float | None]:
    return [r["global_accuracy"] for r in report["rounds"]]


def final(report: dict) -> float | None:
    curve = accuracy_curve(report)
    return curve[-1] if curve else None


def best(report: dict) -> float | None:
    values = [a for a in accuracy_curve(report) if a is not None]
    return max(values) if values else None


def rounds_to_95(report: dict) -> float | None:
    return report["quality"]["rounds_to_95pct_of_final"]


def mb_up(report: dict) -> float:
    return sum(r["bytes_up"] for r in report["rounds"]) / 1e6


def over(reports: Sequence[dict], value: Callable[[dict], float | None], digits: int = 3) -> str:
    return spread([value(r) for r in reports], digits)


# -- tables ------------------------------------------------------------------------------------------------------


def baseline_table(title: str, args: list[str], reports: list[dict], seeds: Sequence[int]) -> list[str]:
    first = reports[0]
    comparison = [r["quality"]["comparison"] for r in reports]
    models = list(next(iter(comparison[0].values())))
    names = first.get("plant_names") or {}
    lines = [f"### {title}", "", f"`{command(args, seeds)}`; {seeds_note(seeds)}", ""]
    lines.append("| plant | trained | " + " | ".join(models) + " |")
    lines.append("|---" * (len(models) + 2) + "|")
    for plant in comparison[0]:
        trained = "hold-out" if plant in first["holdout"] else "yes"
        cells = [spread([c[plant][m] for c in comparison]) for m in models]
        lines.append(f"| {plant_label(plant, names)} | {trained} | " + " | ".join(cells) + " |")
    rounds = len(first["rounds"])
    lines += [
        "",
        "- federated accuracy as a share of centralised (training plants): "
        f"**{over(reports, lambda r: r['quality']['federated_share_of_centralised'])}**",
        f"- rounds to reach 95 % of the final accuracy: **{over(reports, rounds_to_95, 1)}** of {rounds}",
    ]
    for plant in first["holdout"]:
        rows = [c[plant] for c in comparison]
        silos = [m for m in models if m.startswith("siloed:")]
        beaten = [sum(row["federated"] > row[m] for m in silos) for row in rows]
        lines.append(
            f"- hold-out plant {plant_label(plant, names)}: federated {spread([row['federated'] for row in rows])} "
            f"beats {spread(beaten, 1)} of {len(silos)} siloed models (best siloed "
            f"{spread([max(row[m] for m in silos) for row in rows])}), centralised "
            f"{spread([row['centralised'] for row in rows])}"
        )
    wall = over(reports, lambda r: r["wall_seconds"], 0)
    lines.append(
        f"- baseline budget: {first['quality'].get('baseline_epochs')} epochs each; wall time {wall} s per run"
    )
    return lines + [""]


def curve_row(name: str, reports: list[dict]) -> str:
    cells = [over(reports, final), over(reports, best), over(reports, rounds_to_95, 1), over(reports, mb_up, 2)]
    return f"| {name} | " + " | ".join(cells) + " |"


NONIID_STRATEGIES = (
    ("FedAvg", ["--strategy", "fedavg"]),
    ("FedProx (mu 0.01)", ["--strategy", "fedprox", "--fedprox-mu", "0.01"]),
    ("FedAdam (server lr 0.01)", ["--strategy", "fedadam"]),
)


def noniid_tables(runs: Runs, rounds: str, alphas: list[float]) -> list[str]:
    """One row per (alpha, strategy) plus an IID FedAvg reference, all 3 synthetic plants."""
    rows: dict[str, tuple[str, str, list[str]]] = {"iid-fedavg": ("none (IID)", "FedAvg", ["--strategy", "fedavg"])}
    for alpha in alphas:
        for name, extra in NONIID_STRATEGIES:
            rows[f"noniid-a{alpha:g}-{extra[1]}"] = (
                f"α = {alpha:g}",
                name,
                ["--label-skew-alpha", f"{alpha:g}", *extra],
            )
    reports = runs({key: ["--plants", "3", "--rounds", rounds, *args] for key, (_, _, args) in rows.items()})
    lines = [
        f"### Non-IID: Dirichlet label skew across 3 synthetic plants, {rounds} rounds",
        "",
        seeds_note(runs.seeds),
        "",
        "| label skew | strategy | final accuracy | best | rounds to 95 % of final | MB uploaded |",
        "|---|---|---|---|---|---|",
    ]
    for key, (skew, name, _) in rows.items():
        lines.append(f"| {skew} " + curve_row(name, reports[key]))
    args = ["--plants", "3", "--rounds", rounds, "--label-skew-alpha", "<α>", "--strategy", "<s>"]
    return lines + ["", f"`{command(args, runs.seeds)}`", ""]


def seeds_type(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds wants comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds wants distinct integers, got {text!r}")
    return seeds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--noniid-rounds", type=int, default=20)
    p.add_argument("--alphas", default="0.3,1.0", help="Dirichlet label-skew alphas of the non-IID table")
    p.add_argument(
        "--seeds",
        type=seeds_type,
        default=list(range(MIN_SEEDS)),
        help=f"simulate --seed of every row's runs (default 0..{MIN_SEEDS - 1}; fewer only for smoke tests)",
    )
    p.add_argument("--jobs", type=int, default=1, help="simulate runs at once")
    p.add_argument("--only", default="cwru,synthetic,noniid,codecs")
    p.add_argument("--codecs", default="none,fp16,int8", help="rows of the compression table")
    p.add_argument("--out", type=Path, default=Path("runs/bench-learning"))
    p.add_argument("--report", type=Path, default=Path("bench/learning.md"))
    p.add_argument("--data-option", action="append", default=[], help="task data option KEY=VALUE for every run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    DATA_OPTIONS[:] = [arg for option in args.data_option for arg in ("--data-option", option)]
    only = set(args.only.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    runs = Runs(args.out, args.seeds, args.jobs)
    lines = ["# Learning quality (generated by bench/bench_learning.py)", ""]
    r = str(args.rounds)

    if "cwru" in only and CWRU.exists():
        cwru = ["--data", str(CWRU), "--plants", "4", "--holdout", "1", "--rounds", r, "--baselines"]
        title = "Real CWRU data: 3 plants train (0-2 HP), the 3 HP plant never trains"
        lines += baseline_table(title, cwru, runs({"cwru": cwru})["cwru"], args.seeds)
    if "synthetic" in only:
        synthetic = ["--plants", "4", "--holdout", "1", "--rounds", r, "--baselines"]
        title = "Synthetic fleet (4 vendors, speeds +15 % per plant): 3 plants train, one never does"
        lines += baseline_table(title, synthetic, runs({"synthetic": synthetic})["synthetic"], args.seeds)

    nr = str(args.noniid_rounds)
    if "noniid" in only:
        lines += noniid_tables(runs, nr, [float(a) for a in args.alphas.split(",")])
    if "codecs" in only:
        codecs = args.codecs.split(",")
        reports = runs({f"codec-{c}": ["--plants", "3", "--rounds", nr, "--codec", c] for c in codecs})
        lines += [
            "### Compression: accuracy and bytes per codec (synthetic, 3 plants)",
            "",
            seeds_note(args.seeds),
            "",
            "| codec | final accuracy | best | rounds to 95 % of final | MB uploaded |",
            "|---|---|---|---|---|",
        ]
        lines += [curve_row(c, reports[f"codec-{c}"]) for c in codecs]
        lines += ["", f"`{command(['--plants', '3', '--rounds', nr, '--codec', '<codec>'], args.seeds)}`", ""]

    args.report.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(args.report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
