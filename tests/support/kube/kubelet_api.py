"""The one kubelet endpoint the API server proxies that tests need: container logs.

With it, ``kubectl logs`` and ``read_namespaced_pod_log`` work against fake nodes. The API
server dials the node's InternalIP (127.0.0.1) on its kubeletEndpoint port over TLS, checks
our serving certificate against ``--kubelet-certificate-authority`` and presents its
kubelet-client certificate, which we verify against the cluster CA.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .pki import CertFiles

# (namespace, pod, container, previous) -> log path; raises FileNotFoundError/ValueError
LogLocator = Callable[[str, str, str | None, bool], Path]
# (namespace, pod, container) -> whether that container may still write (for follow)
StillRunning = Callable[[str, str, str | None], bool]


def _tail(data: bytes, lines: int) -> bytes:
    if lines < 0:
        return data
    kept = data.splitlines(keepends=True)
    return b"".join(kept[-lines:]) if lines else b""


class KubeletLogServer:
    """Listens on a kernel-chosen 127.0.0.1 port (``port``) from construction on."""

    def __init__(self, serving: CertFiles, client_ca: Path, locate: LogLocator, running: StillRunning) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(serving.cert), str(serving.key))
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        handler = _handler(locate, running)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port: int = self._server.server_address[1]
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, name="kubelet-api", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(locate: LogLocator, running: StillRunning) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/{namespace}/{pod}/{container} is served")
                return
            _, namespace, pod, container = parts
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            previous = query.get("previous") == "true"
            try:
                path = locate(namespace, pod, container, previous)
            except (FileNotFoundError, ValueError) as exc:
                self.send_error(404, str(exc))
                return
            data = _tail(path.read_bytes(), int(query.get("tailLines", -1)))
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(data)
            if query.get("follow") != "true" or previous:
                return
            self._follow(path, path.stat().st_size, lambda: running(namespace, pod, container))

        def _follow(self, path: Path, offset: int, alive: Callable[[], bool]) -> None:
            with open(path, "rb") as f:
                f.seek(offset)
                while True:
                    chunk = f.read()
                    if chunk:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    elif not alive():
                        return
                    else:
                        time.sleep(0.2)

    return Handler
