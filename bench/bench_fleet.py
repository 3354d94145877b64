"""Fleet benchmark: `plantfed simulate` with warm plants vs fresh plant processes vs Flower's simulation.

Manual, not part of CI. Every contender federates the same job: the built-in bearing task on its synthetic
data, the same per-plant partition (`DataSpec(plant_index, num_plants, seed)`), the same model, FedAvg over every
plant every round, SGD 0.01 with momentum 0.9, batch 64, one local epoch, one torch thread per training plant:

* `warm`    `plantfed simulate --plant-processes warm`: one worker process per plant kept across rounds;
* `fresh`   `plantfed simulate --plant-processes fresh`: a new `plantfed train` process per plant per round,
            as pods run (the figure issue 15 starts from);
* `flower`  `flwr.simulation.run_simulation` (Ray backend, one CPU per client), a `NumPyClient` that trains
            with plantfed's own `train_local` and scores the aggregate on each plant's test split.

Each contender runs in its own process, one after the other in the same invocation, so the wall-time ratios
come from the same machine load; `uptime` is recorded before and after. The peak memory is the largest sum of
Pss (and of RSS, which counts the shared torch libraries once per process) over the contender's whole process
tree, sampled every 0.5 s. Accuracy per round is the test-sample-weighted
accuracy of the round's aggregate on every plant's test split (plantfed: `global_accuracy` in report.json).

Flower pins protobuf < 7 and this project's venv has protobuf 7, so Flower runs from its own venv; its Ray
actors import plantfed's task from `src/` with this venv's site-packages appended after Flower's own:

    python3.11 -m venv ~/.cache/plantfed/bench-flwr-1.42.0
    ~/.cache/plantfed/bench-flwr-1.42.0/bin/pip install "flwr[simulation]==1.42.0" safetensors==0.8.0
    .venv/bin/python bench/bench_fleet.py --plants 17 --rounds 10 --big-plants 100 --big-rounds 5 \\
        --flwr-python ~/.cache/plantfed/bench-flwr-1.42.0/bin/python

A quick run: `--plants 2 --rounds 1 --big-plants 0 --contenders warm,fresh --data-option recordings_per_class=1`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONTENDERS = ("warm", "fresh", "flower")
SEED = 0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _tree_memory(root: int) -> tuple[int, int]:
    """RSS and Pss (bytes) summed over `root` and all its descendants, from /proc.

    The RSS sum counts the torch libraries every plant process maps once per process; the Pss sum shares them out,
    so it is what the tree really holds.
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier += children
    rss = pss = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Rss:", "Pss:")):
                    value = int(line.split()[1]) * 1024
                    rss, pss = (rss + value, pss) if line.startswith("Rss:") else (rss, pss + value)
        except OSError:
            continue
    return rss, pss


def measured(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> dict[str, Any]:
    """Run `cmd`; its wall time, exit code and the peak RSS of its process tree."""
    began = time.perf_counter()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    peak = {"peak_rss_mib": 0.0, "peak_pss_mib": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss, pss = _tree_memory(proc.pid)
            peak["peak_rss_mib"] = max(peak["peak_rss_mib"], rss / 2**20)
            peak["peak_pss_mib"] = max(peak["peak_pss_mib"], pss / 2**20)
            if log:  # so far, for a run stopped before its end
                elapsed = time.perf_counter() - began
                log.with_suffix(".peak.json").write_text(json.dumps({"wall_s": elapsed, **peak}))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    if log:
        out.close()
    return {"rc": code, "wall_s": time.perf_counter() - began, **peak}


def run_plantfed(mode: str, plants: int, rounds: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out = work / f"{mode}-{plants}x{rounds}"
    cmd = [sys.executable, "-m", "plantfed", "simulate", "--plants", str(plants), "--rounds", str(rounds)]
    cmd += ["--out", str(out), "--plant-processes", mode, "--seed", str(SEED)]
    for option in args.data_option:
        cmd += ["--data-option", option]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    result = measured(cmd, env, work / f"{mode}-{plants}x{rounds}.log")
    if result["rc"] != 0:
        tail = (work / f"{mode}-{plants}x{rounds}.log").read_text(errors="replace").strip().splitlines()[-5:]
        return {**result, "status": "failed: " + " / ".join(tail)}
    report = json.loads((out / "report.json").read_text())
    return {
        **result,
        "status": "ok",
        "accuracy": [r["global_accuracy"] for r in report["rounds"]],
        "round_seconds": [r["seconds"] for r in report["rounds"]],
        "plant_processes": report["plant_processes"],
    }


def run_flower(plants: int, rounds: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    if not args.flwr_python:
        return {"status": "skipped (no --flwr-python)"}
    results = work / f"flower-{plants}x{rounds}.json"
    spec = {"plants": plants, "rounds": rounds, "options": args.data_option, "results": str(results)}
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO / "src"),
        PLANTFED_BENCH_SITE=sysconfig.get_paths()["purelib"],
        RAY_DEDUP_LOGS="0",
    )
    cmd = [args.flwr_python, __file__, "--flower-worker", json.dumps(spec)]
    result = measured(cmd, env, work / f"flower-{plants}x{rounds}.log")
    if result["rc"] != 0 or not results.exists():
        tail = (work / f"flower-{plants}x{rounds}.log").read_text(errors="replace").strip().splitlines()[-5:]
        return {**result, "status": f"failed rc={result['rc']}: " + " / ".join(tail)}
    return {**result, "status": "ok", "accuracy": json.loads(results.read_text())["accuracy"]}


# ------------------------------------------------------------------------------------------- flower side


def flower_worker(spec: dict[str, Any]) -> None:
    """Runs under Flower's venv: the same task, data split, model and training as `plantfed simulate`."""
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    plants, rounds = int(spec["plants"]), int(spec["rounds"])
    options = dict(o.split("=", 1) for o in spec["options"])

    def plantfed_modules() -> Any:
        site = os.environ["PLANTFED_BENCH_SITE"]
        if site not in sys.path:
            sys.path.append(site)  # after Flower's own packages: torch and pydantic from plantfed's venv
        import torch

        from plantfed.plant import training
        from plantfed.tasks.sdk import DataSpec, dataset_size, load_task

        torch.set_num_threads(1)
        return torch, training, DataSpec, dataset_size, load_task("bearing")

    torch, training, DataSpec, sizes, task = plantfed_modules()

    def weights(model: Any) -> list[Any]:
        return [v.detach().cpu().numpy() for v in model.state_dict().values()]

    def load(model: Any, arrays: list[Any]) -> None:
        keys = list(model.state_dict())
        model.load_state_dict({k: torch.from_numpy(a.copy()) for k, a in zip(keys, arrays, strict=True)})

    class Plant(NumPyClient):
        def __init__(self, index: int) -> None:
            spec = DataSpec(f"plant-{index + 1}", None, index, plants, SEED, options)
            self.index, self.data = index, task.load_data(spec)
            self.model = task.build_model("full")

        def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int, dict[str, Any]]:
            load(self.model, parameters)
            cfg = training.LocalTrainingConfig(epochs=1, batch_size=64, learning_rate=0.01, optimizer="sgd")
            seed = SEED * 1_000_003 + int(config.get("round", 0)) * 7919 + self.index
            training.train_local(task, self.model, self.data.train, cfg, torch.device("cpu"), seed=seed)
            return weights(self.model), sizes(self.data.train), {}

        def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
            load(self.model, parameters)
            scores = training.evaluate(task, self.model, self.data.test, torch.device("cpu"))
            n = sizes(self.data.test)
            return float(scores["loss"]), n, {"accuracy": float(scores["accuracy"])}

    def client_fn(context: Context) -> Any:
        plantfed_modules()
        return Plant(int(context.node_config["partition-id"])).to_client()

    accuracy: list[float] = []

    def weighted(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        total = sum(n for n, _ in metrics)
        accuracy.append(sum(n * m["accuracy"] for n, m in metrics) / total)
        Path(spec["results"]).write_text(json.dumps({"accuracy": accuracy}))
        return {"accuracy": accuracy[-1]}

    def server_fn(context: Context) -> ServerAppComponents:
        torch.manual_seed(SEED)  # the initial weights `plantfed init-model --seed 0` writes
        initial = ndarrays_to_parameters(weights(task.build_model("full")))
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=plants,
            min_evaluate_clients=plants,
            min_available_clients=plants,
            initial_parameters=initial,
            on_fit_config_fn=lambda r: {"round": r},
            evaluate_metrics_aggregation_fn=weighted,
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=plants,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )


# ----------------------------------------------------------------------------------------------- driver


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a.get("status") != "ok" or b.get("status") != "ok":
        return None
    return a["wall_s"] / b["wall_s"]


def table(results: dict[str, dict[str, Any]], plants: int, rounds: int) -> str:
    lines = [
        f"| {plants} plants × {rounds} rounds | wall s | ÷ warm | peak Pss / RSS MiB | accuracy per round | status |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        acc = ", ".join(f"{a:.3f}" for a in r.get("accuracy", []) if a is not None)
        rel = ratio(r, results["warm"]) if "warm" in results else None
        wall = f"{r['wall_s']:.1f}" if "wall_s" in r else "-"
        peak = f"{r['peak_pss_mib']:.0f} / {r['peak_rss_mib']:.0f}" if "peak_rss_mib" in r else "-"
        lines.append(f"| {name} | {wall} | {'-' if rel is None else f'{rel:.2f}'} | {peak} | {acc} | {r['status']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plants", type=int, default=17)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--big-plants", type=int, default=100, help="warm only, peak memory reported (0: skip)")
    parser.add_argument("--big-rounds", type=int, default=5)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--flwr-python", default="", help="python of a venv with flwr[simulation] installed")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", type=Path, help="keep every run's directory and log here")
    parser.add_argument("--flower-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flower_worker:
        flower_worker(json.loads(args.flower_worker))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    before = uptime()
    results: dict[str, dict[str, Any]] = {}
    for name in filter(None, args.contenders.split(",")):
        print(f"{name}: {args.plants} plants × {args.rounds} rounds ...", file=sys.stderr, flush=True)
        if name == "flower":
            results[name] = run_flower(args.plants, args.rounds, args, work)
        else:
            results[name] = run_plantfed(name, args.plants, args.rounds, args, work)
        print(f"  {results[name].get('wall_s', 0):.1f} s: {results[name]['status']}", file=sys.stderr, flush=True)
    big = None
    if args.big_plants:
        print(f"warm: {args.big_plants} plants × {args.big_rounds} rounds ...", file=sys.stderr, flush=True)
        big = run_plantfed("warm", args.big_plants, args.big_rounds, args, work)
    after = uptime()
    print(table(results, args.plants, args.rounds))
    if big is not None:
        print()
        print(table({"warm": big}, args.big_plants, args.big_rounds))
    summary = {
        "uptime_before": before,
        "uptime_after": after,
        "cpus": os.cpu_count(),
        "fleet": results,
        "ratios": {f"{n}_vs_warm": ratio(r, results["warm"]) for n, r in results.items() if "warm" in results},
        "big": big,
    }
    print(json.dumps(summary, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
