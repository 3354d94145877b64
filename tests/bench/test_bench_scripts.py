"""Every benchmark script runs, in a tiny mode that takes seconds, so `make bench` cannot rot unnoticed.

Each runs as `make bench` runs it (a process of its own, from the repository root) with small sizes; the test
checks it exits cleanly and reports what bench/RESULTS.md quotes. The figures themselves are not asserted: they
mean something only at full size, as ratios against an anchor of the same run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from support.kube.environment import require_control_planes
from support.paths import REPO

pytestmark = pytest.mark.slow

#: Small synthetic plants (as tests/support/plant_runtime.SMALL): a simulated round takes seconds.
TINY_DATA = ("--data-option", "recordings_per_class=2", "--data-option", "seconds=2")


def run_bench(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    if check and done.returncode:
        raise AssertionError(f"bench/{script} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


def last_json(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


def test_bench_upload() -> None:
    out = last_json(run_bench("bench_upload.py", "--size-mb", "4").stdout)
    for key in ("tcp_durable_s", "tls_durable_s", "exchange_format_s", "exchange_update_s"):
        assert out[key] > 0, key
    assert out["exchange_format_vs_tls_durable"] > 0
    assert out["exchange_update_paired_vs_tls_durable"].split(" ")[0] != "nan"
    assert out["cut_bytes_resent"] == 0 and out["cut_bytes_written_by_hub"] == out["size_bytes"]


def test_bench_plant_memory() -> None:
    out = last_json(run_bench("bench_plant_memory.py", "--size-mb", "4").stdout)
    assert out["model_bytes"] > 0
    for optimizer in ("sgd", "adam"):
        assert out[optimizer]["peak_rss_mib"] > out[optimizer]["rss_after_imports_mib"] > 0


def test_bench_aggregate(tmp_path: Path) -> None:
    done = run_bench("bench_aggregate.py", "--plants", "2", "--size-mb", "2", "--contenders", "plantfed,torch-add")
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| plantfed", "| torch-add"))]
    assert len(rows) == 2 and all("| ok |" in row for row in rows), done.stdout


def test_bench_learning(tmp_path: Path) -> None:
    report = tmp_path / "learning.md"
    run_bench(
        "bench_learning.py",
        "--only",
        "codecs",
        "--codecs",
        "int8",  # one simulate run: the row the test reads (each row is a run of its own)
        "--noniid-rounds",
        "1",
        "--seeds",
        "0",  # the tables' default is 3 seeds; one run is enough to see the script work
        "--out",
        str(tmp_path),
        "--report",
        str(report),
        *TINY_DATA,
    )
    assert "| int8 |" in report.read_text() and "one seed (0)" in report.read_text()


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report(seed: int, federated: float, names: dict[str, str]) -> dict:
    """The parts of a simulate report.json the learning tables read."""
    rounds = [{"global_accuracy": 0.5 + 0.1 * seed, "bytes_up": 1e6}, {"global_accuracy": federated, "bytes_up": 1e6}]
    comparison = {
        "plant-1": {"centralised": 0.9, "federated": federated, "siloed:plant-1": 0.95},
        "plant-2": {"centralised": 0.8, "federated": federated - 0.1, "siloed:plant-1": 0.5},
    }
    quality = {
        "comparison": comparison,
        "rounds_to_95pct_of_final": 2,
        "federated_share_of_centralised": federated / 0.9,
        "baseline_epochs": 2,
    }
    return {"rounds": rounds, "quality": quality, "holdout": ["plant-2"], "plant_names": names, "wall_seconds": 1.0}


def test_learning_tables_give_mean_and_spread_over_seeds_with_the_tasks_plant_names() -> None:
    bench = _bench_module("bench_learning")
    assert bench.parser().parse_args([]).seeds == [0, 1, 2]  # every table's default
    reports = [_report(seed, f, {"plant-1": "load0hp"}) for seed, f in enumerate((0.80, 0.90, 0.85))]
    assert bench.curve_row("int8", reports) == "| int8 | 0.850 ± 0.050 | 0.850 ± 0.050 | 2.0 ± 0.0 | 2.00 ± 0.00 |"
    table = "\n".join(bench.baseline_table("t", ["--plants", "2"], reports, [0, 1, 2]))
    assert "| plant-1 (load0hp) | yes | 0.900 ± 0.000 | 0.850 ± 0.050 | 0.950 ± 0.000 |" in table
    assert "hold-out plant plant-2: federated 0.750 ± 0.050 beats 1.0 ± 0.0 of 1 siloed models" in table
    assert "`plantfed simulate --plants 2 --seed <0,1,2>`; mean ± sample standard deviation over 3 seeds" in table


def test_bench_privacy(tmp_path: Path) -> None:
    report = tmp_path / "privacy.md"
    run_bench(
        "bench_privacy.py",
        "--mode",
        "sample",
        "--epsilons",
        "8",
        "--rounds",
        "1",
        "--plants",
        "2",
        "--out",
        str(tmp_path),
        "--report",
        str(report),
        *TINY_DATA,
    )
    assert "sample" in report.read_text()


def test_bench_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        done = run_bench("bench_cuda.py", "--out", str(tmp_path), check=False)
        assert done.returncode == 2 and "no CUDA device" in done.stderr  # says so instead of failing obscurely
        return
    run_bench("bench_cuda.py", "--out", str(tmp_path), "--seconds", "0.2", "--rounds", "1")
    assert json.loads((tmp_path / "cuda.json").read_text())["cases"]


def test_bench_fleet() -> None:
    done = run_bench(
        "bench_fleet.py",
        "--plants",
        "2",
        "--rounds",
        "1",
        "--big-plants",
        "0",
        "--contenders",
        "warm,flower",
        *TINY_DATA,
    )
    out = last_json(done.stdout)
    warm = out["fleet"]["warm"]
    assert warm["status"] == "ok" and warm["peak_rss_mib"] > warm["peak_pss_mib"] > 0 and len(warm["accuracy"]) == 1
    assert warm["plant_processes"]["mode"] == "warm"
    assert out["fleet"]["flower"]["status"].startswith("skipped")  # no --flwr-python: says so
    assert "| warm |" in done.stdout


@pytest.mark.controlplane
def test_bench_operator() -> None:
    require_control_planes()
    tiny = ("--plants", "3", "--idle-seconds", "2", "--heartbeat-seconds", "2", "--poll-seconds", "1")
    out = last_json(run_bench("bench_operator.py", *tiny).stdout)
    assert out["round_uploaded"] == 3 and out["heartbeats_failed"] == 0
    for window in ("idle", "round"):
        assert out[window]["operator_cpu_s"] > 0
        assert out[window]["reconcile"]["plantparticipants"]["passes"] > 0
    assert out["round"]["reconcile"]["federatedrounds"]["passes"] > 0
    assert out["exchange_peak_rss_mib"] >= out["exchange_rss_mib"] > 0
