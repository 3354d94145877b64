"""Install the hub with `helm install` of its chart into a namespace of the hub cluster, as a user would.

The CRDs are applied by the suite (support.crds; `crds.enabled=false`, the documented mode for clusters where
another tool manages them: the session's clusters are shared by tests). A post-renderer
(`hub_postrender.py`) moves the exchange's fixed ports to free ones, because fake nodes run every pod
on this machine's loopback; everything else, including the Secrets Helm generates, is the chart's.
Through the chart's values the operator polls every second and uses a short heartbeat timeout, so
tests run in seconds.
"""

from __future__ import annotations

import base64
import builtins
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client

from plantfed.contract.naming import GROUP, VERSION
from plantfed.exchange import AdminClient
from support.kube.environment import ClusterWithNodes
from support.kube.ports import free_ports
from support.kube.provisioner import STORAGE_CLASS
from support.paths import REPO
from support.scrape import scrape

HUB_CHART = REPO / "charts" / "plantfed-hub"
RELEASE = "plantfed"
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
    admin_cert: tuple[bytes, bytes] | None = None
    """Under mutual TLS: the operator's client certificate and key, the only ones the admin token counts with."""
    exchange_metrics_port: int = 0
    """Where the exchange pod's /metrics answers on this machine."""

    @property
    def exchange(self) -> str:
        """Where plants (other clusters, same loopback) dial the exchange; the certificate names 127.0.0.1."""
        return f"127.0.0.1:{self.exchange_port}"

    @property
    def mutual_tls(self) -> bool:
        return self.admin_cert is not None

    def admin(self) -> AdminClient:
        crt, key = self.admin_cert or (None, None)
        return AdminClient(self.exchange, self.admin_token, root_cert=self.ca_pem, client_cert=crt, client_key=key)

    def plant_certificate(self, plant: str) -> dict[str, str]:
        """The client certificate Secret the chart issued the plant (tls.crt, tls.key, ca.crt), decoded."""
        return _secret(self.cluster, self.namespace, f"plantfed-plant-{plant}-tls")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True):
        return self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        with self.cluster.api_client() as api:
            found = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
            return cast(dict[str, Any], found)

    def list(self, plural: str) -> list[dict[str, Any]]:
        with self.cluster.api_client() as api:
            return client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)[
                "items"
            ]

    @property
    def manifests(self) -> builtins.list[dict[str, Any]]:  # `list` is a method of this class
        """What the hub's Helm release installed (`helm get manifest`), as documents."""
        text = self.cluster.helm("get", "manifest", RELEASE, "-n", self.namespace).stdout
        return [d for d in yaml.safe_load_all(text) if d]

    def apply(self, *docs: dict[str, Any]) -> None:
        text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
        self.kubectl("apply", "-f", "-", input=text)

    def operator_metrics(self) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
        """The operator's /metrics scraped now: sample name -> labels -> value."""
        return scrape(self.metrics_port)

    def operator_pods(self) -> builtins.list[Any]:
        with self.cluster.api_client() as api:
            return (
                client.CoreV1Api(api)
                .list_namespaced_pod(self.namespace, label_selector="app.kubernetes.io/name=plantfed-operator")
                .items
            )


POSTRENDER = Path(__file__).with_name("hub_postrender.py")


def _secret(cluster: ClusterWithNodes, namespace: str, name: str) -> dict[str, str]:
    with cluster.api_client() as api:
        data = client.CoreV1Api(api).read_namespaced_secret(name, namespace).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def plant_values(plants: Iterable[str], data_sub_path: str) -> list[dict[str, Any]]:
    """The hub chart's `plants` entries for these plant ids (one GPU each, npz data at `data_sub_path`)."""
    return [
        {
            "name": plant,
            "labels": {"region": "eu", "line": "press"},
            "site": plant.split("-")[0].title(),
            "capacity": {"gpus": 1, "modelVariant": "full"},
            "data": {"hostPath": {"path": "/srv/plantfed/data"}, "subPath": data_sub_path, "format": "npz"},
        }
        for plant in plants
    ]


def deploy_hub(
    cluster: ClusterWithNodes,
    namespace: str,
    plants: list[dict[str, Any]],
    *,
    mutual_tls: bool = False,
    settings: Sequence[str] = (),
) -> Hub:
    """`helm install` the hub chart and read back what it generated (CA, admin and plant tokens, and with
    `mutual_tls` the operator's client certificate). `settings` are more `--set key=value`s, applied last
    (bench/bench_operator.py puts the operator's poll and heartbeat timeout back to the chart's defaults)."""
    exchange_port, health_port, exchange_metrics, metrics_port, liveness_port = free_ports(5)
    cluster.helm(
        "install",
        RELEASE,
        str(HUB_CHART),
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "300s",
        "--set",
        "crds.enabled=false",
        "--set",
        "tests.enabled=false",
        "--set",
        f"exchange.service.port={exchange_port}",
        "--set",
        f"metrics.port={metrics_port}",
        "--set",
        f"exchange.store.storageClassName={STORAGE_CLASS}",
        "--set",
        "exchange.store.size=1Gi",
        "--set-json",
        f"plants={json.dumps(plants)}",
        "--set",
        f"operator.livenessPort={liveness_port}",
        "--set",
        "operator.pollSeconds=1",
        "--set",
        f"operator.heartbeatTimeoutSeconds={HEARTBEAT_TIMEOUT}",
        "--set",
        "operator.logLevel=DEBUG",
        "--set",
        f"tls.mutual.enabled={str(mutual_tls).lower()}",
        "--post-renderer",
        sys.executable,
        "--post-renderer-args",
        str(POSTRENDER),
        "--post-renderer-args",
        f"--grpc={exchange_port}",
        "--post-renderer-args",
        f"--health={health_port}",
        "--post-renderer-args",
        f"--metrics={exchange_metrics}",
        *(arg for setting in settings for arg in ("--set", setting)),
    )
    admin_cert = None
    if mutual_tls:
        operator = _secret(cluster, namespace, "plantfed-operator-tls")
        admin_cert = (operator["tls.crt"].encode(), operator["tls.key"].encode())
    return Hub(
        cluster=cluster,
        namespace=namespace,
        exchange_port=exchange_port,
        metrics_port=metrics_port,
        ca_pem=_secret(cluster, namespace, "plantfed-exchange-tls")["ca.crt"].encode(),
        admin_token=_secret(cluster, namespace, "plantfed-admin-token")["token"].strip(),
        plant_tokens=_secret(cluster, namespace, "plantfed-plant-tokens"),
        admin_cert=admin_cert,
        exchange_metrics_port=exchange_metrics,
    )


def wait_hub_ready(hub: Hub) -> None:
    """`helm install --wait` saw both Deployments ready; this also waits for the exchange to answer from here."""
    with hub.admin() as admin:
        admin.list_versions("e2e")  # waits for the exchange to answer (the client retries until ready)


def store_root(hub: Hub) -> Path:
    """The model store's directory on this machine (the PVC's hostPath volume)."""
    with hub.cluster.api_client() as api:
        core = client.CoreV1Api(api)
        pvc = core.read_namespaced_persistent_volume_claim("plantfed-store", hub.namespace)
        return Path(core.read_persistent_volume(pvc.spec.volume_name).spec.host_path.path)
