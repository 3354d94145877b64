"""Deploy the hub from its Helm chart into a namespace of the hub cluster, as a user would.

`helm template` renders exactly what `helm install` would create (CRDs aside, which the suite
applies once); the objects are then applied with kubectl. Only ports are rewritten: fake nodes
run every pod on this machine's loopback, so the exchange must listen on the Service's port (a
free one, not the chart's fixed 8443) and its metrics port must differ from the operator's.
Through the chart's values the operator polls every second and uses a short heartbeat timeout,
so tests run in seconds.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from plantfed.exchange import AdminClient
from support.kube.environment import ClusterWithNodes
from support.kube.ports import free_ports
from support.kube.provisioner import STORAGE_CLASS

ROOT = Path(__file__).resolve().parents[2]
HUB_CHART = ROOT / "charts" / "plantfed-hub"
CRDS = ROOT / "crds"
HEARTBEAT_TIMEOUT = 12
"""Seconds without a heartbeat before the operator takes a plant out of new rounds (chart: 90)."""
HEARTBEAT_EVERY = 2.0


@dataclass
class Hub:
    cluster: ClusterWithNodes
    namespace: str
    exchange_port: int
    metrics_port: int
    ca_pem: bytes
    admin_token: str
    plant_tokens: dict[str, str]
    manifests: list[dict[str, Any]]

    @property
    def exchange(self) -> str:
        """Where plants (other clusters, same loopback) dial the exchange; the certificate names 127.0.0.1."""
        return f"127.0.0.1:{self.exchange_port}"

    def admin(self) -> AdminClient:
        return AdminClient(self.exchange, self.admin_token, root_cert=self.ca_pem)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        with self.cluster.api_client() as api:
            return client.CustomObjectsApi(api).get_namespaced_custom_object(
                "plantfed.io", "v1alpha1", self.namespace, plural, name)

    def list(self, plural: str) -> list[dict[str, Any]]:
        with self.cluster.api_client() as api:
            return client.CustomObjectsApi(api).list_namespaced_custom_object(
                "plantfed.io", "v1alpha1", self.namespace, plural)["items"]

    def apply(self, *docs: dict[str, Any]) -> None:
        text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
        self.kubectl("apply", "-f", "-", input=text)

    def operator_pods(self) -> list[Any]:
        with self.cluster.api_client() as api:
            return client.CoreV1Api(api).list_namespaced_pod(
                self.namespace, label_selector="app.kubernetes.io/name=plantfed-operator").items


def apply_crds(cluster: ClusterWithNodes) -> None:
    """The generated CRDs, applied server-side (idempotent across tests sharing the cluster)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for path in sorted(CRDS.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


def _rewrite_exchange(container: dict[str, Any], port: int, metrics_port: int | None) -> None:
    command = []
    for arg in container["command"]:
        if arg.startswith("--listen="):
            arg = f"--listen=0.0.0.0:{port}"
        elif arg.startswith("--metrics-port="):
            if metrics_port is None:
                continue
            arg = f"--metrics-port={metrics_port}"
        command.append(arg)
    container["command"] = command
    for p in container.get("ports", []):
        if p["name"] == "grpc":
            p["containerPort"] = port
        elif p["name"] == "metrics" and metrics_port is not None:
            p["containerPort"] = metrics_port
    container["ports"] = [p for p in container["ports"] if p["name"] == "grpc" or metrics_port is not None]
    readiness = container.get("readinessProbe", {})
    if "exec" in readiness:
        readiness["exec"]["command"] = [re.sub(r"^--exchange=localhost:\d+$", f"--exchange=localhost:{port}", a)
                                        for a in readiness["exec"]["command"]]
        # `plantfed healthcheck` imports torch through the CLI (about 9 s on this shared 2-core box
        # under load); the chart's 8 s would keep a healthy exchange unready here.
        readiness["timeoutSeconds"] = 60


def _exchange_accepts_metrics_port() -> bool:
    from plantfed.cli import build_parser

    try:
        build_parser().parse_args(["exchange", "--store=x", "--tokens=x", "--admin-token-file=x", "--metrics-port=1"])
        return True
    except SystemExit:
        return False


def render(cluster: ClusterWithNodes, namespace: str, plants: list[dict[str, Any]], exchange_port: int,
           metrics_port: int, values: list[str]) -> list[dict[str, Any]]:
    out = cluster.helm(
        "template", "plantfed", str(HUB_CHART), "-n", namespace, "--kube-version", "1.37.0",
        "--api-versions", "plantfed.io/v1alpha1/PlantParticipant",
        "--set", "crds.enabled=false", "--set", "tests.enabled=false", "--set", "dashboards.enabled=false",
        "--set", f"exchange.service.port={exchange_port}", "--set", f"metrics.port={metrics_port}",
        "--set", f"exchange.store.storageClassName={STORAGE_CLASS}", "--set", "exchange.store.size=1Gi",
        "--set-json", f"plants={json.dumps(plants)}", *values,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    exchange_metrics = free_ports(1)[0] if _exchange_accepts_metrics_port() else None
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        container = doc["spec"]["template"]["spec"]["containers"][0]
        if container["name"] == "exchange":
            _rewrite_exchange(container, exchange_port, exchange_metrics)
    return docs


def _secret(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    doc = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name)
    return {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()} | dict(
        doc.get("stringData") or {})


def deploy_hub(cluster: ClusterWithNodes, namespace: str, plants: list[dict[str, Any]]) -> Hub:
    exchange_port, metrics_port, liveness_port = free_ports(3)
    docs = render(cluster, namespace, plants, exchange_port, metrics_port, [
        "--set", f"operator.livenessPort={liveness_port}", "--set", "operator.pollSeconds=1",
        "--set", f"operator.heartbeatTimeoutSeconds={HEARTBEAT_TIMEOUT}", "--set", "operator.logLevel=DEBUG",
    ])
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))
    tls = _secret(docs, "plantfed-exchange-tls")
    hub = Hub(
        cluster=cluster, namespace=namespace, exchange_port=exchange_port, metrics_port=metrics_port,
        ca_pem=tls["ca.crt"].encode(), admin_token=_secret(docs, "plantfed-admin-token")["token"].strip(),
        plant_tokens=_secret(docs, "plantfed-plant-tokens"), manifests=docs,
    )
    return hub


def wait_hub_ready(hub: Hub) -> None:
    for deployment in ("plantfed-exchange", "plantfed-operator"):
        hub.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout=300s")
    with hub.admin() as admin:
        admin.list_versions("e2e")  # waits for the exchange to answer (the client retries until ready)


def store_root(hub: Hub) -> Path:
    """The model store's directory on this machine (the PVC's hostPath volume)."""
    with hub.cluster.api_client() as api:
        core = client.CoreV1Api(api)
        pvc = core.read_namespaced_persistent_volume_claim("plantfed-store", hub.namespace)
        return Path(core.read_persistent_volume(pvc.spec.volume_name).spec.host_path.path)
