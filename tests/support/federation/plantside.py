"""A plant as a user sets it up: the plant chart installed into the plant's own cluster.

The hub admin hands the plant a Secret with three things (docs/install.md), all read from what the hub
chart created: a kubeconfig with the token of the plant's ServiceAccount on the hub (allowed to write
only its own PlantParticipant), the plant's exchange token, and the exchange's CA; under mutual TLS also a
copy of the plant's client certificate Secret, named by the chart's hub.clientCertSecret. `helm install` of
charts/plantfed-plant then runs `plantfed agent` as a pod with in-cluster credentials for the
plant cluster, the model-cache PVC, and the plant's data on the GPU node (a hostPath here,
written from the bearing task's synthetic fleet so each plant has its own machines).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kubernetes import client

from plantfed.contract.naming import ROUND_KEY
from plantfed.tasks.bearing.synthetic import SyntheticSizes, synthetic_plant
from support.federation.hubdeploy import HEARTBEAT_EVERY, Hub
from support.kube import wait_for
from support.kube.environment import ClusterWithNodes
from support.kube.ports import free_ports
from support.paths import REPO

PLANT_CHART = REPO / "charts" / "plantfed-plant"
DATA_SUB_PATH = "bearings"
"""The PlantParticipants' spec.data.subPath (tests/e2e/conftest.py, plant_values): the agent mounts only that part."""
RECORDINGS_PER_CLASS = 3
"""Small synthetic bearing data: a round trains in seconds on a CPU."""


def write_plant_data(directory: Path, plant_index: int) -> Path:
    """The plant's own recordings as `.npz` files, the bearing task's on-disk format."""
    directory.mkdir(parents=True, exist_ok=True)
    for rec in synthetic_plant(0, plant_index, SyntheticSizes(recordings_per_class=RECORDINGS_PER_CLASS)):
        np.savez(
            directory / f"{rec.name}.npz",
            signal=rec.signal,
            label=np.array(rec.label),
            fs=np.array(rec.fs),
            rpm=np.array(rec.rpm or 1797.0),
        )
    return directory


def hub_kubeconfig(hub: Hub, plant: str) -> str:
    """The plant's kubeconfig for the hub, from the token Secret the hub chart made for its ServiceAccount
    (docs/install.md, "Register a plant"), with the CA inline as `kubectl config --embed-certs` writes it."""
    name = f"plantfed-plant-{plant}-token"
    with hub.cluster.api_client() as api:
        core = client.CoreV1Api(api)

        def filled() -> dict[str, Any] | None:
            data = core.read_namespaced_secret(name, hub.namespace).data or {}
            return data if data.get("token") else None

        data = wait_for(filled, timeout=120, what=f"the token controller to fill Secret {name}")
    server = yaml.safe_load(hub.cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "hub",
            "clusters": [{"name": "hub", "cluster": {"server": server, "certificate-authority-data": data["ca.crt"]}}],
            "users": [{"name": "plant", "user": {"token": base64.b64decode(data["token"]).decode()}}],
            "contexts": [{"name": "hub", "context": {"cluster": "hub", "user": "plant", "namespace": hub.namespace}}],
        }
    )


CLIENT_CERT_SECRET = "plantfed-client-tls"
"""Under mutual TLS: the plant's copy of the client certificate Secret the hub chart issued it."""


class ChartPlant:
    """One plant cluster running the agent from its Helm chart (with its client certificate under mutual TLS)."""

    def __init__(self, hub: Hub, plant: str, cluster: ClusterWithNodes, index: int, workdir: Path) -> None:
        self.hub, self.plant, self.cluster = hub, plant, cluster
        self.namespace = cluster.create_namespace(f"plantfed-{plant}")
        with cluster.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_secret(
                self.namespace,
                {
                    "metadata": {"name": "plantfed-hub-credentials"},
                    "stringData": {
                        "kubeconfig": hub_kubeconfig(hub, plant),
                        "token": hub.plant_tokens[plant],
                        "ca.crt": hub.ca_pem.decode(),
                    },
                },
            )
            if hub.mutual_tls:  # as docs/install.md copies it: the certificate and key, nothing else
                issued = hub.plant_certificate(plant)
                core.create_namespaced_secret(
                    self.namespace,
                    {
                        "metadata": {"name": CLIENT_CERT_SECRET},
                        "type": "kubernetes.io/tls",
                        "stringData": {"tls.crt": issued["tls.crt"], "tls.key": issued["tls.key"]},
                    },
                )
        data = workdir / "data"
        #: what the plant's Jobs see as their data volume (`/data`)
        self.data_dir = write_plant_data(data / DATA_SUB_PATH, index)
        (metrics_port,) = free_ports(1)
        self.metrics_port = metrics_port
        cluster.helm(
            "install",
            "plantfed",
            str(PLANT_CHART),
            "-n",
            self.namespace,
            "--wait",
            "--timeout",
            "180s",
            "--set",
            f"plant.id={plant}",
            "--set",
            f"hub.exchange={hub.exchange}",
            "--set",
            f"hub.namespace={hub.namespace}",
            "--set",
            "hub.existingSecret=plantfed-hub-credentials",
            "--set",
            f"data.hostPath={data}",
            "--set",
            "training.gpus=1",
            "--set",
            "cache.storageClassName=plantfed-local",
            "--set",
            "cache.size=1Gi",
            "--set",
            f"metrics.port={metrics_port}",
            "--set",
            f"agent.heartbeatSeconds={HEARTBEAT_EVERY:g}",
            "--set",
            "agent.syncSeconds=2",
            "--set",
            f"hub.clientCertSecret={CLIENT_CERT_SECRET if hub.mutual_tls else ''}",
        )

    def _scale(self, replicas: int) -> None:
        self.cluster.kubectl("-n", self.namespace, "scale", "deployment/plantfed-agent", f"--replicas={replicas}")
        if replicas:
            self.cluster.kubectl(
                "-n", self.namespace, "rollout", "status", "deployment/plantfed-agent", "--timeout=180s"
            )
        else:
            with self.cluster.api_client() as api:
                core = client.CoreV1Api(api)
                wait_for(
                    lambda: (
                        not core.list_namespaced_pod(
                            self.namespace, label_selector="app.kubernetes.io/name=plantfed-agent"
                        ).items
                    ),
                    timeout=120,
                    what=f"{self.plant}'s agent pod gone",
                )

    def start(self) -> None:
        self._scale(1)

    def stop(self) -> None:
        """The plant goes offline: its agent stops (no heartbeats, no new training Jobs)."""
        self._scale(0)

    def training_jobs(self, round_name: str, component: str = "train") -> list[client.V1Job]:
        """The round's Jobs of one kind in the plant's cluster: "train", or "evaluate" (scoring the candidate)."""
        with self.cluster.api_client() as api:
            jobs = client.BatchV1Api(api).list_namespaced_job(self.namespace).items
        return [
            j
            for j in jobs
            if (j.metadata.annotations or {}).get(ROUND_KEY) == round_name
            and (j.metadata.labels or {}).get("app.kubernetes.io/component") == component
        ]

    def cached(self, model: str) -> int | None:
        """The model version the plant's cache serves (read from the cache PVC's volume on this machine)."""
        from plantfed.plant.model_cache import ModelCache

        with self.cluster.api_client() as api:
            core = client.CoreV1Api(api)
            pvc = core.read_namespaced_persistent_volume_claim("plantfed-cache", self.namespace)
            if not pvc.spec.volume_name:
                return None
            root = Path(core.read_persistent_volume(pvc.spec.volume_name).spec.host_path.path)
        current = ModelCache(root / "models", None).current(model)
        return current.version if current is not None else None

    def helm_test(self) -> subprocess.CompletedProcess[str]:
        """`helm test` of the plant's release, with the test pod's log in the output; not checked."""
        return self.cluster.helm("test", "plantfed", "-n", self.namespace, "--logs", "--timeout", "120s", check=False)

    def status(self) -> dict[str, Any]:
        return self.hub.get("plantparticipants", self.plant).get("status") or {}

    def close(self) -> None:
        self.cluster.helm("uninstall", "plantfed", "-n", self.namespace, check=False)
        self.cluster.delete_namespace(self.namespace)
