"""TEMPORARY plant side: what `plantfed agent` does, played by the test until the agent lands.

Per plant, a thread heartbeats the plant's PlantParticipant on the hub (as the plant's own
ServiceAccount, through the hub chart's per-plant Role), and when the plant is Assigned in a
round it creates a real batch/v1 training Job in the plant's own cluster running
`plantfed train` against the hub's exchange over TLS with the plant's token, then reports
`status.assignment` from the Job's state. Everything the round needs from the plant goes through
the same objects and processes the agent will use; only the loop deciding what to create lives
here. Replace with the agent pod (charts/plantfed-plant) once `plantfed agent` exists.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from plantfed.api.round import FederatedRound
from support.kube.environment import ClusterWithNodes

from hubdeploy import HEARTBEAT_EVERY, Hub

log = logging.getLogger(__name__)

MERGE = "application/merge-patch+json"
GROUP, VERSION = "plantfed.io", "v1alpha1"
DATA_OPTIONS = ("recordings_per_class=3",)
"""Small synthetic bearing data: a round trains in seconds on a CPU."""


def _job_state(job: client.V1Job | None) -> str | None:
    if job is None:
        return None
    for c in (job.status and job.status.conditions) or ():
        if c.status == "True" and c.type == "Complete":
            return "Uploaded"
        if c.status == "True" and c.type == "Failed":
            return "Failed"
    return "Training"


class StandInAgent:
    def __init__(self, hub: Hub, plant: str, cluster: ClusterWithNodes, index: int, num_plants: int,
                 workdir: Path) -> None:
        self.hub, self.plant, self.cluster = hub, plant, cluster
        self.index, self.num_plants = index, num_plants
        self.namespace = cluster.create_namespace(f"plantfed-{plant}")
        sa = f"plantfed-plant-{plant}"
        # The plant's identity on the hub: the chart's per-plant ServiceAccount (writes only its own object).
        self.hub_api = config.new_client_from_config(
            config_file=str(hub.cluster.cluster.service_account_kubeconfig(hub.namespace, sa, expiration_seconds=7200)))
        self.local_api = cluster.api_client()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.jobs_created: list[str] = []
        core = client.CoreV1Api(self.local_api)
        core.create_namespaced_secret(self.namespace, {
            "metadata": {"name": "plantfed-exchange"},
            "stringData": {"token": hub.plant_tokens[plant], "ca.crt": hub.ca_pem.decode()},
        })
        core.create_namespaced_persistent_volume_claim(self.namespace, {
            "metadata": {"name": "plantfed-model-cache"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "plantfed-local",
                     "resources": {"requests": {"storage": "1Gi"}}},
        })

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"standin-{self.plant}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The plant goes offline: no heartbeats, no new training Jobs."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # keep going like an agent would; the test asserts outcomes, not this loop
                log.exception("stand-in agent %s: sync failed", self.plant)
            self._stop.wait(HEARTBEAT_EVERY)

    # -- one pass ----------------------------------------------------------------------------------
    def sync(self) -> None:
        hub = client.CustomObjectsApi(self.hub_api)
        status: dict[str, Any] = {"lastHeartbeatTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "agentVersion": "e2e-standin"}
        rounds = hub.list_namespaced_custom_object(GROUP, VERSION, self.hub.namespace, "federatedrounds")["items"]
        for body in sorted(rounds, key=lambda r: r["metadata"]["creationTimestamp"]):
            fr = FederatedRound.from_object(body)
            mine = next((p for p in fr.status.plants if p.plant == self.plant), None)
            if mine is None or fr.status.phase is None or fr.status.phase.finished:
                continue
            if mine.state.value not in ("Assigned", "Training"):
                continue
            state = self._ensure_training(fr)
            status["assignment"] = {"round": fr.name, "state": state, "progress": 1.0 if state == "Uploaded" else 0.0,
                                    "message": f"training Job train-{fr.name} in {self.cluster.name}"}
        hub.patch_namespaced_custom_object_status(GROUP, VERSION, self.hub.namespace, "plantparticipants",
                                                  self.plant, {"status": status}, _content_type=MERGE)

    def _ensure_training(self, fr: FederatedRound) -> str:
        batch = client.BatchV1Api(self.local_api)
        name = f"train-{fr.name}"[:63]
        try:
            job = batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            job = None
        if job is None:
            try:
                batch.create_namespaced_job(self.namespace, self._job(name, fr))
                self.jobs_created.append(name)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            return "Training"
        return _job_state(job) or "Training"

    def _task(self, model: str) -> tuple[str, str]:
        hub = client.CustomObjectsApi(self.hub_api)
        fm = hub.get_namespaced_custom_object(GROUP, VERSION, self.hub.namespace, "federatedmodels", model)
        return fm["spec"]["task"], fm["spec"].get("variant", "full")

    def _job(self, name: str, fr: FederatedRound) -> dict[str, Any]:
        spec = fr.spec
        task, variant = self._task(spec.model_ref)
        command = [
            "plantfed", "train", f"--exchange={self.hub.exchange}", f"--plant={self.plant}",
            "--token-file=/etc/plantfed/exchange/token", "--ca-file=/etc/plantfed/exchange/ca.crt",
            f"--round={fr.name}", f"--task={task}", f"--variant={variant}",
            f"--plant-index={self.index}", f"--num-plants={self.num_plants}",
            "--state-dir=/var/lib/plantfed/state",
            f"--epochs={spec.training.epochs}", f"--batch-size={spec.training.batch_size}",
            f"--learning-rate={spec.training.learning_rate}", f"--optimizer={spec.training.optimizer.value}",
            f"--fedprox-mu={spec.training.fed_prox_mu}", f"--codec={spec.compression.value}",
            "--device=cpu", "--report=/tmp/report.json",
        ]
        if spec.privacy.mode.value == "local":
            command += [f"--clip-norm={spec.privacy.clip_norm}", f"--noise-multiplier={spec.privacy.noise_multiplier}"]
        command += [f"--data-option={o}" for o in DATA_OPTIONS]
        resources = {"requests": {"cpu": "100m", "memory": "256Mi"}}
        if spec.pod.gpus:
            resources["limits"] = {"nvidia.com/gpu": str(spec.pod.gpus)}
        labels = {"plantfed.io/round": fr.name, "plantfed.io/plant": self.plant}
        return {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "backoffLimit": 1,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "nodeSelector": dict(spec.pod.node_selector),
                        "tolerations": [t.to_dict() for t in spec.pod.tolerations],
                        "containers": [{
                            "name": "train", "image": "ghcr.io/plantfed/plantfed:e2e", "command": command,
                            "env": [{"name": "OMP_NUM_THREADS", "value": "1"},
                                    {"name": "PYTHONUNBUFFERED", "value": "1"}],
                            "resources": resources,
                            "volumeMounts": [
                                {"name": "exchange", "mountPath": "/etc/plantfed/exchange", "readOnly": True},
                                {"name": "state", "mountPath": "/var/lib/plantfed/state"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }],
                        "volumes": [
                            {"name": "exchange", "secret": {"secretName": "plantfed-exchange"}},
                            {"name": "state", "persistentVolumeClaim": {"claimName": "plantfed-model-cache"}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
        }

    def report(self, round_name: str) -> dict[str, Any] | None:
        """The training pod's JSON report (its stdout), for assertions."""
        core = client.CoreV1Api(self.local_api)
        pods = core.list_namespaced_pod(self.namespace, label_selector=f"plantfed.io/round={round_name}").items
        for pod in pods:
            for line in reversed(self.cluster.logs(self.namespace, pod.metadata.name, "train").splitlines()):
                if line.startswith("{"):
                    return json.loads(line)
        return None

    def close(self) -> None:
        self.stop()
        self.hub_api.close()
        self.local_api.close()
        self.cluster.delete_namespace(self.namespace)
