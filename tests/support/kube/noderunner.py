"""A fake kubelet for one or more nodes: pods the scheduler binds to them run as local
processes. See docs/development.md ("Fake GPU nodes") for what is and is not emulated.

In-process: ``NodeRunner(cluster, nodes, workdir).start()``. In a separate process (so the
nodes outlive, or are independent of, the test process):
``python -m support.kube.noderunner --kubeconfig K --workdir D --nodes JSON``
or ``NodeRunnerProcess.start(...)`` from Python.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.informer import ADDED, DELETED, MODIFIED, SharedInformer

from .cluster import KubeCluster
from .controlplane import ControlPlane
from .hosts import HostsFiles
from .informers import stop_informer
from .kubelet_api import KubeletLogServer
from .nodes import NodeHeart, NodeSpec
from .pki import CertFiles
from .podenv import Pod, decode_object_data
from .pods import NodeContext, PodWorker
from .processes import spawn, terminate
from .provisioner import DirectoryProvisioner
from .wait import wait_for

HEARTBEAT_SECONDS = 10.0
NODE_STATUS_SECONDS = 60.0
STOP_GRACE_SECONDS = 5.0
KUBELET_DEFAULT_PORT = 10250  # advertised when the log endpoint is off; nothing listens

log = logging.getLogger(__name__)


def log_file(logs_dir: Path, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> Path:
    """Where a container's output is kept by a runner whose log directory is ``logs_dir``.

    The newest pod of that name is used; ``container`` may be omitted for one-container pods;
    ``previous`` is the run before the latest restart.
    """
    pod_dir = logs_dir / namespace / pod
    runs = sorted(p for p in pod_dir.glob("*") if p.is_dir()) if pod_dir.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"no logs for pod {namespace}/{pod} under {logs_dir}")
    latest = runs[-1]
    containers = sorted(p.name for p in latest.iterdir() if p.is_dir())
    if container is None:
        if len(containers) != 1:
            raise ValueError(f"pod {namespace}/{pod} has containers {containers}; name one")
        container = containers[0]
    runs_of_container = (
        sorted((int(p.stem) for p in (latest / container).glob("*.log")), reverse=True)
        if (latest / container).is_dir()
        else []
    )
    if len(runs_of_container) < (2 if previous else 1):
        what = "previous " if previous else ""
        raise FileNotFoundError(f"no {what}log for container {container!r} of pod {namespace}/{pod}")
    return latest / container / f"{runs_of_container[1 if previous else 0]}.log"


def read_log(logs_dir: Path, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
    """A container's output, as ``kubectl logs`` prints it (see ``log_file``)."""
    return log_file(logs_dir, namespace, pod, container, previous).read_text(errors="replace")


class NodeRunner:
    """Registers ``nodes`` in the cluster and runs the pods bound to them."""

    def __init__(
        self,
        cluster: KubeCluster | Path | str,
        nodes: Sequence[NodeSpec],
        workdir: Path,
        *,
        provision_volumes: bool = True,
        kubelet_serving: CertFiles | None = None,
        client_ca: Path | None = None,
    ) -> None:
        """``kubelet_serving`` + ``client_ca`` (a ControlPlane supplies both) enable the
        kubelet log endpoint behind ``kubectl logs``; without them only ``logs()`` works.
        """
        if not nodes:
            raise ValueError("a NodeRunner needs at least one NodeSpec")
        if os.geteuid() != 0:
            raise PermissionError("fake nodes bind-mount pod volumes in private mount namespaces, which needs root")
        self.kubeconfig = Path(cluster.kubeconfig if isinstance(cluster, KubeCluster) else cluster)
        self.nodes = list(nodes)
        self.workdir = Path(workdir)
        self.logs_dir = self.workdir / "logs"
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        endpoint = configuration.host.split("://", 1)[1].rstrip("/")
        self._api_host, _, port = endpoint.rpartition(":")
        self._api_port = port or "443"
        self._path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        # The source tree under test, when the suite runs from one (PYTHONPATH=src, a worktree beside a shared
        # venv whose editable install points elsewhere): pods must run the same code as the test process.
        tests_dir = str(Path(__file__).resolve().parents[2])
        self._pythonpath = os.pathsep.join(
            p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != tests_dir
        )
        self._hosts = HostsFiles(self.workdir / "hosts")
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        if isinstance(cluster, ControlPlane):
            kubelet_serving = kubelet_serving or cluster.kubelet_serving
            client_ca = client_ca or cluster.ca_file
        self._kubelet_api = (
            KubeletLogServer(kubelet_serving, client_ca, self._log_file, self._container_running)
            if kubelet_serving is not None and client_ca is not None
            else None
        )
        kubelet_port = self._kubelet_api.port if self._kubelet_api is not None else KUBELET_DEFAULT_PORT
        leases = client.CoordinationV1Api(self.api)
        self._hearts = [NodeHeart(self.core, leases, spec, kubelet_port) for spec in self.nodes]
        self._node_names = {spec.name for spec in self.nodes}
        self._contexts = {spec.name: self._context(spec) for spec in self.nodes}
        self._pods = SharedInformer(self.core.list_pod_for_all_namespaces, resync_period=60)
        self._services = SharedInformer(self.core.list_service_for_all_namespaces, resync_period=60)
        self._provisioner = DirectoryProvisioner(self.api, self.workdir / "volumes") if provision_volumes else None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> NodeRunner:
        if self._kubelet_api is not None:
            self._kubelet_api.start()
        for heart in self._hearts:
            heart.register()
        threading.Thread(target=self._beat, name="node-heartbeat", daemon=True).start()
        for event in (ADDED, MODIFIED, DELETED):
            self._services.add_event_handler(event, self._on_service)
        self._services.start()
        if self._provisioner is not None:
            self._provisioner.start()
        self._pods.add_event_handler(ADDED, self._on_pod)
        self._pods.add_event_handler(MODIFIED, self._on_pod)
        self._pods.add_event_handler(DELETED, self._on_pod_deleted)
        self._pods.start()
        return self

    def stop(self, deregister: bool = True) -> None:
        """Stop every container (SIGTERM, then SIGKILL), the watches and heartbeats."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        stop_informer(self._pods)
        stop_informer(self._services)
        if self._provisioner is not None:
            self._provisioner.stop()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop(STOP_GRACE_SECONDS)
        for worker in workers:
            worker.join(timeout=STOP_GRACE_SECONDS + 10)
        if self._kubelet_api is not None:
            self._kubelet_api.stop()
        if deregister:
            for heart in self._hearts:
                try:
                    heart.deregister()
                except Exception as exc:  # the API server may already be gone
                    log.info("deregistering %s: %s", heart.spec.name, exc)
        self.api.close()

    def __enter__(self) -> NodeRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _beat(self) -> None:
        last_full = time.monotonic()
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            full = time.monotonic() - last_full >= NODE_STATUS_SECONDS
            for heart in self._hearts:
                try:
                    heart.heartbeat(full=full)
                except Exception as exc:
                    log.warning("heartbeat of %s failed: %s", heart.spec.name, exc)
            if full:
                last_full = time.monotonic()

    # -- logs -----------------------------------------------------------------------------

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        """What ``kubectl logs`` prints, read straight from the runner's log files."""
        return read_log(self.logs_dir, namespace, pod, container, previous)

    def _log_file(self, namespace: str, pod: str, container: str | None, previous: bool) -> Path:
        return log_file(self.logs_dir, namespace, pod, container, previous)

    def _container_running(self, namespace: str, pod: str, container: str | None) -> bool:
        with self._lock:
            workers = [w for w in self._workers.values() if (w.namespace, w.pod_name) == (namespace, pod)]
        return any(
            c.running and (container is None or c.name == container)
            for w in workers
            for c in w.init_containers + w.containers
        )

    # -- pods -----------------------------------------------------------------------------

    def _context(self, spec: NodeSpec) -> NodeContext:
        return NodeContext(
            node_name=spec.name,
            core=self.core,
            sandboxes=self.workdir / "pods",
            logs=self.logs_dir,
            lookup=self._lookup,
            allocatable=spec.capacity(),
            base_env=self._base_env,
            hosts_file=self._hosts.path,
            finished=self._worker_finished,
        )

    def _on_pod(self, model: client.V1Pod) -> None:
        if self._stopping.is_set():
            return
        pod: Pod = self.api.sanitize_for_serialization(model)
        node = pod.get("spec", {}).get("nodeName")
        if node not in self._node_names:
            return
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            if uid in self._finished:
                return
            worker = PodWorker(pod, self._contexts[node])
            self._workers[uid] = worker
        worker.start()

    def _on_pod_deleted(self, model: client.V1Pod) -> None:
        with self._lock:
            worker = self._workers.get(model.metadata.uid)
        if worker is not None:
            worker.gone()

    def _worker_finished(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)
            self._finished.add(uid)

    def _lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, str] | None:
        read = self.core.read_namespaced_secret if kind == "Secret" else self.core.read_namespaced_config_map
        try:
            obj = read(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return decode_object_data(kind, self.api.sanitize_for_serialization(obj))

    def _base_env(self, pod: Pod) -> dict[str, str]:
        """What the kubelet and runtime put in every container's environment."""
        home = self.workdir / "pods" / pod["metadata"]["uid"] / "home"
        home.mkdir(parents=True, exist_ok=True)
        host, port = self._api_host, self._api_port
        env = {
            "PATH": self._path,
            "HOME": str(home),
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }
        if self._pythonpath:
            env["PYTHONPATH"] = self._pythonpath
        # Every pod of every fake node shares this machine's few cores; a thread pool per pod sized to all of
        # them (torch's default) oversubscribes it many times over. A container's own env still wins.
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        if pod["spec"].get("enableServiceLinks", True):
            env.update(self._service_links(pod["metadata"]["namespace"]))
        return env

    def _service_links(self, namespace: str) -> dict[str, str]:
        """Docker-link style variables for the namespace's Services, pointing at 127.0.0.1."""
        env: dict[str, str] = {}
        for svc in self._services.cache.list():
            if svc.metadata.namespace != namespace or svc.metadata.name == "kubernetes":
                continue
            if not svc.spec.cluster_ip or svc.spec.cluster_ip == "None" or not svc.spec.ports:
                continue
            prefix = svc.metadata.name.upper().replace("-", "_")
            first = svc.spec.ports[0]
            env[f"{prefix}_SERVICE_HOST"] = "127.0.0.1"
            env[f"{prefix}_SERVICE_PORT"] = str(first.port)
            env[f"{prefix}_PORT"] = f"{first.protocol.lower()}://127.0.0.1:{first.port}"
            for p in svc.spec.ports:
                if p.name:
                    env[f"{prefix}_SERVICE_PORT_{p.name.upper().replace('-', '_')}"] = str(p.port)
        return env

    def _on_service(self, _: Any) -> None:
        self._hosts.set_services((s.metadata.namespace, s.metadata.name) for s in self._services.cache.list())


class NodeRunnerProcess:
    """A NodeRunner in its own process (``python -m support.kube.noderunner``)."""

    def __init__(self, proc: subprocess.Popen, workdir: Path, log: Path) -> None:
        self.proc = proc
        self.workdir = workdir
        self.log = log
        self.logs_dir = workdir / "logs"

    @classmethod
    def start(
        cls, cluster: KubeCluster, nodes: Sequence[NodeSpec], workdir: Path, timeout: float = 60.0
    ) -> NodeRunnerProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "noderunner.log"
        tests_dir = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tests_dir), env.get("PYTHONPATH")]))
        nodes_json = json.dumps([_spec_to_json(n) for n in nodes])
        argv = [
            sys.executable,
            "-m",
            "support.kube.noderunner",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--workdir",
            str(workdir),
            "--nodes",
            nodes_json,
        ]
        if isinstance(cluster, ControlPlane):
            argv += [
                "--kubelet-cert",
                str(cluster.kubelet_serving.cert),
                "--kubelet-key",
                str(cluster.kubelet_serving.key),
                "--client-ca",
                str(cluster.ca_file),
            ]
        proc = spawn(argv, log=log, env=env)
        runner = cls(proc, workdir, log)
        names = {n.name for n in nodes}

        def registered() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"node runner exited {proc.returncode}:\n{log.read_text()}")
            with cluster.api_client() as api:
                ready = {
                    n.metadata.name
                    for n in client.CoreV1Api(api).list_node().items
                    if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                }
            return names <= ready and (workdir / "ready").exists()

        try:
            wait_for(registered, timeout=timeout, what=f"nodes {sorted(names)} Ready")
        except BaseException:
            runner.stop()
            raise
        return runner

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        return read_log(self.logs_dir, namespace, pod, container, previous)

    def stop(self) -> None:
        terminate(self.proc, grace=STOP_GRACE_SECONDS + 20)


def _spec_to_json(spec: NodeSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "labels": dict(spec.labels),
        "gpus": spec.gpus,
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": spec.pods,
        "taints": [dict(t) for t in spec.taints],
    }


def _spec_from_json(data: Mapping[str, Any]) -> NodeSpec:
    known = {"name", "labels", "gpus", "cpu", "memory", "pods", "taints"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown node fields {sorted(unknown)}; known: {sorted(known)}")
    fields = dict(data)
    fields["taints"] = tuple(fields.get("taints") or ())
    return NodeSpec(**fields)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument(
        "--nodes",
        required=True,
        help='JSON list, e.g. [{"name": "plant-a-gpu-0", "labels": {"plantfed.dev/plant": "plant-a"}, "gpus": 1}]',
    )
    parser.add_argument("--kubelet-cert", type=Path, help="serving cert for the kubelet log endpoint")
    parser.add_argument("--kubelet-key", type=Path)
    parser.add_argument("--client-ca", type=Path, help="CA of the API server's kubelet-client cert")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        nodes = [_spec_from_json(n) for n in json.loads(args.nodes)]
    except (ValueError, TypeError) as exc:
        parser.error(f"--nodes: {exc}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serving = CertFiles(args.kubelet_cert, args.kubelet_key) if args.kubelet_cert and args.kubelet_key else None
    runner = NodeRunner(args.kubeconfig, nodes, args.workdir, kubelet_serving=serving, client_ca=args.client_ca).start()
    (args.workdir / "ready").touch()
    log.info("running nodes %s", [n.name for n in nodes])
    stop.wait()
    runner.stop()


if __name__ == "__main__":
    main()
