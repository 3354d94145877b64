"""Per-namespace /etc/hosts files that make Service names resolve to 127.0.0.1 in pods.

Pods share the host's loopback, so a Service is reached at 127.0.0.1 on the port its pod
listens on; these files let code keep using ``svc``, ``svc.ns`` and ``svc.ns.svc.cluster.local``
names (and getaddrinfo/c-ares both read /etc/hosts). Files are rewritten in place because
running pods have them bind-mounted.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from pathlib import Path

# Pods share the machine's hostname (no UTS namespace), so it must keep resolving.
_BASE = f"127.0.0.1\tlocalhost {socket.gethostname()}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


class HostsFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._services: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def path(self, namespace: str) -> Path:
        """The hosts file for pods of ``namespace`` (created on first use)."""
        with self._lock:
            path = self.directory / f"{namespace}.hosts"
            if not path.exists():
                path.write_text(self._render(namespace))
            return path

    def set_services(self, services: Iterable[tuple[str, str]]) -> None:
        """Replace the known (namespace, name) Services and rewrite every file."""
        with self._lock:
            self._services = set(services)
            for path in self.directory.glob("*.hosts"):
                content = self._render(path.name.removesuffix(".hosts"))
                with open(path, "r+") as f:
                    if f.read() != content:
                        f.seek(0)
                        f.write(content)
                        f.truncate()

    def _render(self, namespace: str) -> str:
        lines = [_BASE]
        for ns, name in sorted(self._services):
            names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
            if ns == namespace:
                names.insert(0, name)
            lines.append("127.0.0.1\t" + " ".join(names) + "\n")
        return "".join(lines)
