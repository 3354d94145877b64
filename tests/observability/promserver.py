"""A real Prometheus server for tests: Debian's `prometheus` binary as a local process.

Started with its own config, TSDB directory and loopback port (never the Debian service), and
queried through the same HTTP API Grafana uses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support.kube.wait import wait_for

BINARY = Path(os.environ.get("PLANTFED_PROMETHEUS", "/usr/bin/prometheus"))


def require_prometheus() -> Path:
    """Skip without the binary, except under CI (CI=true), where `.ci/run` installs it: fail instead."""
    if BINARY.is_file() and os.access(BINARY, os.X_OK):
        return BINARY
    reason = f"{BINARY} not found (apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"Prometheus tests cannot run in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(
        cls, workdir: Path, job: str, target: str, labels: dict[str, str], scrape_interval: str = "1s"
    ) -> Prometheus:
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target], "labels": labels}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = workdir / "prometheus.log"
        process = subprocess.Popen(
            [
                str(require_prometheus()),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        prom = cls(f"http://127.0.0.1:{port}", process, log)
        wait_for(prom.ready, timeout=120, what=f"Prometheus ready on {prom.url} (log: {log})")
        return prom

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str | float | list[str]) -> object:
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"Prometheus refused {path} {params}: {exc.read().decode(errors='replace')}") from None
        assert body["status"] == "success", body
        return body["data"]

    def instant(self, expr: str, at: float | None = None) -> list[dict]:
        params: dict = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query (None when it returns nothing)."""
        result = self.instant(expr)
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
