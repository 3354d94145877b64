"""The exchange as a separate process (`python -m plantfed.exchange`), so a test can kill and restart it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.exchange import port_accepts, wait_until
from support.paths import REPO


@dataclass
class ServerProcess:
    """The exchange on a fixed port, so a restarted process serves the same address."""

    store_dir: Path
    tokens_path: Path
    admin_file: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    #: More `plantfed exchange` flags (limits, --metrics-port, ...).
    args: tuple[str, ...] = ()

    def start(self) -> None:
        log = open(self.log_path, "ab")
        proc = self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantfed.exchange",
                "--store",
                str(self.store_dir),
                "--tokens",
                str(self.tokens_path),
                "--admin-token-file",
                str(self.admin_file),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--payload-check=format",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        wait_until(lambda: port_accepts(self.port) or proc.poll() is not None, what="exchange to listen")
        assert proc.poll() is None, self.log_path.read_text()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """The process's resident memory now (`VmRSS`) or at its peak so far (`VmHWM`), from /proc."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
