"""What every cluster the tests talk to offers, whether started here or pointed at.

``ControlPlane`` (a control plane this process runs) and ``ExistingCluster`` (a kind/k3d
cluster named by PLANTFED_TEST_KUBECONFIG) both derive from ``KubeCluster``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from kubernetes import client, config

from .kubeconfig import write_kubeconfig
from .testbin import kubectl, testbin_dir


class CommandFailed(RuntimeError):
    """A CLI tool exited non-zero; carries its output so the failure explains itself."""

    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"{' '.join(argv)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        self.result = result


def _run(argv: list[str], input: str | None, check: bool) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise CommandFailed(argv, result)
    return result


class KubeCluster:
    """A cluster reachable through an admin kubeconfig."""

    name: str
    kubeconfig: Path
    server: str
    ca_file: Path
    directory: Path
    audit_log: Path | None = None
    """The API server's audit log, when this process started it with one (`ControlPlane.start(audit=True)`)."""

    @property
    def host(self) -> str:
        """API server host as pods must dial it (KUBERNETES_SERVICE_HOST)."""
        return urlsplit(self.server).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.server).port or 443

    def api_client(self) -> client.ApiClient:
        """A fresh admin ApiClient; close it (or use it as a context manager) when done."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([kubectl(), "--kubeconfig", str(self.kubeconfig), *args], input, check)

    def helm(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run([str(testbin_dir() / "helm"), "--kubeconfig", str(self.kubeconfig), *args], input, check)

    def service_account_kubeconfig(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` (TokenRequest)."""
        with self.api_client() as api:
            token = client.CoreV1Api(api).create_namespaced_service_account_token(
                name,
                namespace,
                client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
                ),
            )
        return write_kubeconfig(
            self.directory / f"sa-{namespace}-{name}.kubeconfig",
            server=self.server,
            ca_file=self.ca_file,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token.status.token,
            namespace=namespace,
        )

    def stop(self) -> None:
        """Release what this object started (nothing, for a cluster it did not start)."""

    def __enter__(self) -> KubeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
