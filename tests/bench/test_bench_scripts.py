"""Every benchmark script runs, in a tiny mode that takes seconds, so `make bench` cannot rot unnoticed.

Each runs as `make bench` runs it (a process of its own, from the repository root) with small sizes; the test
checks it exits cleanly and reports what bench/RESULTS.md quotes. The figures themselves are not asserted: they
mean something only at full size, as ratios against an anchor of the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
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
        "--out",
        str(tmp_path),
        "--report",
        str(report),
        *TINY_DATA,
    )
    assert "| int8 |" in report.read_text()


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
