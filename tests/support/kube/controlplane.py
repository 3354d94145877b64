"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) running as local processes on free loopback ports.

Each instance lives in its own directory (PKI, etcd data, logs, kubeconfigs), so several can
run side by side. Tuned for a small shared box: etcd skips fsync, leader election is off and
only the controllers the tests need run.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .audit import write_policy
from .cluster import KubeCluster
from .kubeconfig import write_kubeconfig
from .pki import CertFiles, CertificateAuthority, write_service_account_keys
from .ports import free_ports
from .processes import signal_group, spawn, terminate
from .testbin import testbin_dir
from .wait import ConditionTimeout

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Controllers the test suite relies on (IPAM, CSR signing, HPA, quota... are left out). Node
# lifecycle lifts the not-ready taint admission puts on new nodes; its grace period is raised
# so that a heartbeat delayed on an overloaded box does not mark a node NotReady.
CONTROLLERS = (
    "node-lifecycle-controller",
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "replicaset-controller",
    "deployment-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "endpointslice-controller",
    "disruption-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "ephemeral-volume-controller",
)


class ControlPlaneError(RuntimeError):
    """Start-up failed; the message carries the failing component's log tail."""


class _PortInUse(ControlPlaneError):
    pass


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen
    log: Path
    argv: tuple[str, ...] = ()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is None:
            return
        tail = self.log_tail()
        error = _PortInUse if "address already in use" in tail else ControlPlaneError
        raise error(f"{self.name} exited with {code} during start-up; log {self.log}:\n{tail}")


class ControlPlane(KubeCluster):
    """Use ``ControlPlane.start(directory)``; ``stop()`` (or ``with``) tears it down."""

    def __init__(self, name: str, directory: Path, audit: bool = False) -> None:
        self.name = name
        self.directory = directory
        self._components: list[_Component] = []
        self._stopped = False
        self.startup_seconds = 0.0
        self.audit_log = directory / "logs" / "audit.log" if audit else None

    @classmethod
    def start(
        cls, directory: Path | None = None, *, name: str = "cluster", timeout: float = 240.0, audit: bool = False
    ) -> ControlPlane:
        """Start a control plane in a fresh subdirectory of ``directory`` and wait until ready.

        Retries with new ports if one was taken between choosing and binding it. With ``audit`` the API
        server writes every request at the Metadata level to ``audit_log`` (see ``support.kube.audit``).
        """
        binaries = testbin_dir()
        parent = Path(directory) if directory is not None else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
            plane = cls(name, workdir, audit)
            try:
                plane._boot(binaries, timeout)
                return plane
            except _PortInUse:
                plane.stop()
                if attempt == 2:
                    raise
            except BaseException:
                plane.stop()
                raise
        raise AssertionError("unreachable")

    # -- start-up -------------------------------------------------------------------------

    def _boot(self, binaries: Path, timeout: float) -> None:
        began = time.monotonic()
        deadline = began + timeout
        pki = self.directory / "pki"
        logs = self.directory / "logs"
        logs.mkdir(parents=True)
        ca = self._ca = CertificateAuthority(pki, common_name=f"{self.name}-ca")
        sa_keys = write_service_account_keys(pki)
        etcd_port, peer_port, api_port, kcm_port, sched_port = free_ports(5)

        self.server = f"https://127.0.0.1:{api_port}"
        self.ca_file = ca.cert_file
        admin = ca.issue("admin", common_name="plantfed-test-admin", groups=("system:masters",))
        self.kubeconfig = self._kubeconfig("admin", "plantfed-test-admin", admin)

        self._spawn(
            "etcd",
            logs,
            [
                str(binaries / "etcd"),
                "--name=default",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )
        self._await("etcd", deadline, lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health", None))

        serving = ca.issue(
            "apiserver",
            common_name="kube-apiserver",
            client=False,
            server_hosts=(
                "127.0.0.1",
                "localhost",
                "10.0.0.1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        kubelet_client = ca.issue(
            "apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            groups=("system:masters",),
        )
        # The aggregation-layer front proxy gets its own CA, as in kubeadm clusters; without
        # it every component logs a missing requestheader CA bundle.
        front_proxy = CertificateAuthority(pki / "front-proxy", common_name=f"{self.name}-front-proxy-ca")
        proxy_client = front_proxy.issue("front-proxy-client", common_name="front-proxy-client")
        self.kubelet_serving = ca.issue(
            "kubelet", common_name="fake-kubelet", client=False, server_hosts=("127.0.0.1", "localhost")
        )
        audit_flags = []
        if self.audit_log is not None:
            audit_flags = [
                f"--audit-policy-file={write_policy(self.directory)}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
            ]
        self._spawn(
            "kube-apiserver",
            logs,
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_file}",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-certificate-authority={ca.cert_file}",
                f"--requestheader-client-ca-file={front_proxy.cert_file}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={proxy_client.cert}",
                f"--proxy-client-key-file={proxy_client.key}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa_keys.cert}",
                f"--service-account-signing-key-file={sa_keys.key}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--event-ttl=1h",
                *audit_flags,
            ],
        )
        context = _tls_context(ca.cert_file, admin)
        self._await("kube-apiserver", deadline, lambda: _http_ok(f"{self.server}/readyz", context))

        kcm_identity = ca.issue("kube-controller-manager", common_name="system:kube-controller-manager")
        kcm_kubeconfig = self._kubeconfig("kube-controller-manager", "system:kube-controller-manager", kcm_identity)
        self._spawn(
            "kube-controller-manager",
            logs,
            [
                str(binaries / "kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={self.directory / 'kcm'}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={sa_keys.key}",
                f"--root-ca-file={ca.cert_file}",
                "--use-service-account-credentials=true",
                "--node-monitor-grace-period=120s",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
            ],
        )
        sched_identity = ca.issue("kube-scheduler", common_name="system:kube-scheduler")
        sched_kubeconfig = self._kubeconfig("kube-scheduler", "system:kube-scheduler", sched_identity)
        self._spawn(
            "kube-scheduler",
            logs,
            [
                str(binaries / "kube-scheduler"),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                f"--cert-dir={self.directory / 'scheduler'}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        self._await(
            "kube-scheduler",
            deadline,
            lambda: _http_ok(f"https://127.0.0.1:{sched_port}/healthz", insecure),
        )
        self._await(
            "kube-controller-manager",
            deadline,
            lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure),
        )
        # Controllers are running once they have done their first work: the default
        # ServiceAccount and the CA bundle that pods mount are both made by controllers.
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            self._await(
                "kube-controller-manager",
                deadline,
                lambda: (
                    _exists(lambda: core.read_namespaced_service_account("default", "default"))
                    and _exists(lambda: core.read_namespaced_config_map("kube-root-ca.crt", "default"))
                ),
            )
        self.startup_seconds = time.monotonic() - began

    def _kubeconfig(self, name: str, user: str, identity: CertFiles) -> Path:
        return write_kubeconfig(
            self.directory / f"{name}.kubeconfig",
            server=self.server,
            ca_file=self.ca_file,
            user=user,
            client_cert=identity.cert,
            client_key=identity.key,
        )

    def _spawn(self, name: str, logs: Path, argv: list[str]) -> _Component:
        log = logs / f"{name}.log"
        component = _Component(name, spawn(argv, log=log, cwd=self.directory), log, tuple(argv))
        self._components.append(component)
        return component

    def _await(self, waiting_for: str, deadline: float, ready: Callable[[], bool]) -> None:
        """Poll ``ready`` until true; fail fast if any component has died."""
        while True:
            for component in self._components:
                component.check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                logs = "\n\n".join(f"== {c.name} ==\n{c.log_tail(15)}" for c in self._components)
                raise ConditionTimeout(f"{self.name}: {waiting_for} not ready in time\n{logs}")
            time.sleep(0.25)

    # -- faults ---------------------------------------------------------------------------

    def restart_etcd(self, down_seconds: float = 2.0, timeout: float = 60.0) -> None:
        """SIGKILL etcd, keep it down for `down_seconds`, start it again on the same data and ports.

        The API server stays up and reconnects on its own: what a crashed etcd member looks like to clients.
        """
        (old,) = [c for c in self._components if c.name == "etcd"]
        signal_group(old.proc, signal.SIGKILL)
        old.proc.wait(timeout=10)
        time.sleep(down_seconds)  # the outage itself, not a wait for a condition
        self._components.remove(old)
        fresh = _Component("etcd", spawn(list(old.argv), log=old.log, cwd=self.directory), old.log, old.argv)
        self._components.insert(0, fresh)
        health = next(a for a in old.argv if a.startswith("--listen-client-urls=")).split("=", 1)[1] + "/health"
        self._await("etcd after a restart", time.monotonic() + timeout, lambda: _http_ok(health, None))

    # -- identities -----------------------------------------------------------------------

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for a client-certificate identity (RBAC decides what it may do)."""
        identity = self._ca.issue(f"user-{user}", common_name=user, groups=groups)
        return self._kubeconfig(f"user-{user}", user, identity)

    # -- shutdown -------------------------------------------------------------------------

    def log(self, component: str) -> Path:
        """Path of a component's log (etcd, kube-apiserver, kube-controller-manager, ...)."""
        return self.directory / "logs" / f"{component}.log"

    def stop(self) -> None:
        """SIGTERM every component at once (the cluster is discarded), SIGKILL stragglers."""
        if self._stopped:
            return
        self._stopped = True
        for component in self._components:
            signal_group(component.proc, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for component in reversed(self._components):
            terminate(component.proc, grace=max(0.0, deadline - time.monotonic()))

    def remove(self) -> None:
        """Stop and delete the instance's directory (keep it to read logs after a failure)."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_many(
    directory: Path, names: list[str], timeout: float = 300.0, audit: Collection[str] = ()
) -> list[ControlPlane]:
    """Start several independent control planes concurrently (start-up is mostly waiting).

    Those named in ``audit`` write the API server's audit log.
    """
    results: dict[str, ControlPlane | BaseException] = {}

    def boot(name: str) -> None:
        try:
            results[name] = ControlPlane.start(directory, name=name, timeout=timeout, audit=name in audit)
        except BaseException as exc:
            results[name] = exc

    threads = [threading.Thread(target=boot, args=(n,), name=f"start-{n}") for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = [r for r in results.values() if isinstance(r, BaseException)]
    if failures:
        for r in results.values():
            if isinstance(r, ControlPlane):
                r.stop()
        raise failures[0]
    return [results[n] for n in names]  # type: ignore[misc]


def _tls_context(ca_file: Path, identity: CertFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


def _http_ok(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False


def _exists(read: Callable[[], object]) -> bool:
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
