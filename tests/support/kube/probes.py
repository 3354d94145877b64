"""Container probes (startup, readiness, liveness) checked against 127.0.0.1, kubelet-style."""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _port(probe_port: int | str, container: Mapping[str, Any]) -> int:
    if isinstance(probe_port, int) or str(probe_port).isdigit():
        return int(probe_port)
    for port in container.get("ports") or []:
        if port.get("name") == probe_port:
            return int(port["containerPort"])
    raise ValueError(f"probe names port {probe_port!r}, which container {container['name']!r} does not declare")


def _http(handler: Mapping[str, Any], container: Mapping[str, Any], timeout: float) -> bool:
    scheme = (handler.get("scheme") or "HTTP").lower()
    url = f"{scheme}://127.0.0.1:{_port(handler['port'], container)}{handler.get('path') or '/'}"
    request = urllib.request.Request(url, headers={h["name"]: h["value"] for h in handler.get("httpHeaders") or []})
    context = None
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return 200 <= response.status < 400
    except urllib.error.HTTPError as exc:
        return 200 <= exc.code < 400
    except (urllib.error.URLError, OSError):
        return False


def _tcp(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def check(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    run_exec: Callable[[list[str], float], int],
) -> bool:
    """One probe attempt. gRPC probes are approximated by a TCP connect to their port."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if probe.get("httpGet"):
        return _http(probe["httpGet"], container, timeout)
    if probe.get("tcpSocket"):
        return _tcp(_port(probe["tcpSocket"]["port"], container), timeout)
    if probe.get("grpc"):
        return _tcp(int(probe["grpc"]["port"]), timeout)
    if probe.get("exec"):
        try:
            return run_exec(list(probe["exec"]["command"]), timeout) == 0
        except subprocess.TimeoutExpired:
            return False
    raise ValueError(f"probe has no handler: {sorted(probe)}")


@dataclass
class ProbeTracker:
    """Thresholds and timing for one probe of one running container."""

    spec: Mapping[str, Any]
    started: float
    successes: int = 0
    failures: int = 0
    passing: bool | None = None
    next_at: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.next_at = self.started + float(self.spec.get("initialDelaySeconds") or 0)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, ok: bool, now: float) -> None:
        self.next_at = now + float(self.spec.get("periodSeconds") or 10)
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold") or 1):
                self.passing = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold") or 3):
                self.passing = False
