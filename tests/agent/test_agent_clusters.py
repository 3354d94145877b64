"""The plant agent on real control planes: a hub cluster and plant-a's own cluster, a real exchange.

The agent runs as a process (`plantfed agent`) with exactly the credentials a plant gets: on the hub, the
ServiceAccount and resourceNames-scoped Role the hub chart renders; on the plant, the agent Role of the
plant chart. Its training Jobs run on plant-a's fake GPU node as real `plantfed train` processes against a
real `plantfed exchange`. The hub operator is not running: the tests write round status as it would.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
import yaml
from agent_objects import model_body, participant_body, round_spec, stamp
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from support.crds import apply_crds
from support.kube import wait_for
from support.kube.audit import by_user, read_events

from plantfed.contract.naming import GROUP, VERSION, assigned_label
from plantfed.contract.records import RoundRecord
from plantfed.engine.store import ModelStore
from plantfed.exchange import AdminClient
from plantfed.formats import codecs
from plantfed.plant.model_cache import ModelCache
from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.bearing.synthetic import SyntheticSizes, synthetic_plant

REPO = Path(__file__).resolve().parents[2]
MERGE = "application/merge-patch+json"
PLANT = "plant-a"
MODEL = "bearing"
HUB_SA = f"plantfed-plant-{PLANT}"
ADMIN_TOKEN = "agent-test-admin-token"
TRAINING_TIMEOUT = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def plantfed_bin() -> str:
    return str(Path(sys.executable).with_name("plantfed"))


@dataclass
class Exchange:
    """`plantfed exchange` as a process over a store directory; stop/start keep the store and port."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def store(self) -> ModelStore:
        return ModelStore(self.root / "store")

    def start(self) -> None:
        log = open(self.root / "exchange.log", "ab")
        self.process = subprocess.Popen(
            [
                plantfed_bin(),
                "exchange",
                "--store",
                str(self.root / "store"),
                "--tokens",
                str(self.root / "tokens"),
                "--admin-token-file",
                str(self.root / "admin-token"),
                "--listen",
                self.address,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: port_accepts(self.port) or self.process.poll() is not None, timeout=60, what="exchange listening"
        )
        assert self.process.poll() is None, (self.root / "exchange.log").read_text()[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def admin(self) -> AdminClient:
        return AdminClient(self.address, ADMIN_TOKEN)


@dataclass
class World:
    hub: Any
    plant: Any
    hub_ns: str
    plant_ns: str
    hub_kubeconfig: Path
    exchange: Exchange
    cache_dir: Path
    agent_log: Path
    metrics_port: int
    agent_cmd: list[str] | None = None
    agent: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> None:
        assert self.agent_cmd is not None
        with open(self.agent_log, "ab") as log:
            self.agent = subprocess.Popen(
                self.agent_cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        if self.agent is None or self.agent.poll() is not None:
            return
        self.agent.send_signal(sig)
        try:
            self.agent.wait(20)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            self.agent.wait()

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.hub.api_client())

    def participant(self, name: str = PLANT) -> dict[str, Any]:
        found = self.custom().get_namespaced_custom_object(GROUP, VERSION, self.hub_ns, "plantparticipants", name)
        return cast(dict[str, Any], found)

    def assignment(self, plant: str = PLANT) -> dict[str, Any]:
        return (self.participant(plant).get("status") or {}).get("assignment") or {}

    def plant_api(self) -> client.ApiClient:
        return self.plant.api_client()

    def start_round(self, name: str, *, open_on_exchange: bool, plant: str = PLANT, **spec: Any) -> None:
        """Create the round, labelled and with the status the operator writes when it assigns `plant`."""
        base = self.exchange.store.promoted(MODEL).version
        if open_on_exchange:
            with self.exchange.admin() as admin:
                admin.open_round(RoundRecord(round_id=name, model=MODEL, base_version=base, plants=[plant]))
        custom = self.custom()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FederatedRound",
            "metadata": {"name": name, "namespace": self.hub_ns, "labels": {assigned_label(plant): "true"}},
            "spec": round_spec(MODEL, plants=[plant], **spec),
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, self.hub_ns, "federatedrounds", body)
        status = {
            "phase": "Training",
            "baseVersion": base,
            "startTime": stamp(datetime.now(UTC)),
            "assigned": 1,
            "plants": [{"plant": plant, "state": "Assigned"}],
        }
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.hub_ns, "federatedrounds", name, {"status": status}, _content_type=MERGE
        )

    def set_round_phase(self, name: str, phase: str) -> None:
        self.custom().patch_namespaced_custom_object_status(
            GROUP, VERSION, self.hub_ns, "federatedrounds", name, {"status": {"phase": phase}}, _content_type=MERGE
        )

    def promote(self, version: int) -> None:
        self.custom().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.hub_ns,
            "federatedmodels",
            MODEL,
            {"status": {"promotedVersion": version}},
            _content_type=MERGE,
        )

    def job(self, name: str) -> client.V1Job:
        return client.BatchV1Api(self.plant_api()).read_namespaced_job(name, self.plant_ns)

    def agent_output(self) -> str:
        return self.agent_log.read_text(errors="replace")


def _hub_rbac(hub: Any, ns: str, plant: str = PLANT) -> str:
    """What charts/plantfed-hub/templates/plants.yaml renders for one plant; returns the ServiceAccount."""
    sa = f"plantfed-plant-{plant}"
    with hub.api_client() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            ns, {"metadata": {"name": sa}, "automountServiceAccountToken": False}
        )
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            ns,
            {
                "metadata": {"name": sa},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "resources": ["plantparticipants"],
                        "resourceNames": [plant],
                        "verbs": ["get"],
                    },
                    {
                        "apiGroups": [GROUP],
                        "resources": ["plantparticipants/status"],
                        "resourceNames": [plant],
                        "verbs": ["patch"],
                    },
                    {
                        "apiGroups": [GROUP],
                        "resources": ["federatedrounds", "federatedmodels"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": sa},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
            },
        )
    return sa


def _plant_rbac(plant: Any, ns: str) -> None:
    """What charts/plantfed-plant/templates/rbac.yaml renders, plus pods/log for failure messages."""
    with plant.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "plantfed-agent"}})
        core.create_namespaced_service_account(
            ns, {"metadata": {"name": "plantfed-train"}, "automountServiceAccountToken": False}
        )
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            ns,
            {
                "metadata": {"name": "plantfed-agent"},
                "rules": [
                    {
                        "apiGroups": ["batch"],
                        "resources": ["jobs"],
                        "verbs": ["create", "get", "list", "watch", "delete"],
                    },
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "delete"]},
                    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": "plantfed-agent"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plantfed-agent"},
                "subjects": [{"kind": "ServiceAccount", "name": "plantfed-agent", "namespace": ns}],
            },
        )


def _plant_data(directory: Path) -> Path:
    """A small plant-data directory (`.npz` recordings) on the plant's node."""
    directory.mkdir(parents=True)
    for rec in synthetic_plant(0, 0, SyntheticSizes(recordings_per_class=2, seconds=2.0)):
        np.savez(
            directory / f"{rec.name}.npz",
            signal=rec.signal,
            label=np.array(rec.label),
            fs=np.array(rec.fs),
            rpm=np.array(rec.rpm or 1797.0),
        )
    return directory


def _seed_model(exchange: Exchange) -> None:
    torch.manual_seed(0)
    path = exchange.root / "initial.safetensors"
    codecs.save_state(BearingTask().build_model("full").state_dict(), path)
    with exchange.admin() as admin:
        admin.publish_model(MODEL, path, promote=True)


@pytest.fixture(scope="module")
def world(hub_and_plants, tmp_path_factory) -> Iterator[World]:
    hub, plant = hub_and_plants.hub, hub_and_plants.plants[PLANT]
    root = tmp_path_factory.mktemp("agent")
    apply_crds(hub)
    hub_ns, plant_ns = hub.create_namespace("agent-hub"), plant.create_namespace("agent-plant")
    with hub.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for name in (PLANT, "plant-b"):
            custom.create_namespaced_custom_object(
                GROUP, VERSION, hub_ns, "plantparticipants", participant_body(name, hub_ns)
            )
        custom.create_namespaced_custom_object(GROUP, VERSION, hub_ns, "federatedmodels", model_body(MODEL, hub_ns))
    _hub_rbac(hub, hub_ns)
    _plant_rbac(plant, plant_ns)

    exchange = Exchange(root / "hub", free_port())
    (exchange.root / "tokens").mkdir(parents=True)
    token = "plant-a-exchange-token"
    (exchange.root / "tokens" / PLANT).write_text(token)
    (exchange.root / "admin-token").write_text(ADMIN_TOKEN)
    (root / "token").write_text(token)
    exchange.start()
    _seed_model(exchange)

    world = World(
        hub,
        plant,
        hub_ns,
        plant_ns,
        hub.service_account_kubeconfig(hub_ns, HUB_SA),
        exchange,
        root / "cache",
        root / "agent.log",
        free_port(),
    )
    world.agent_cmd = [
        plantfed_bin(),
        "agent",
        f"--plant={PLANT}",
        f"--hub-kubeconfig={world.hub_kubeconfig}",
        f"--hub-namespace={hub_ns}",
        f"--exchange={exchange.address}",
        f"--token-file={root / 'token'}",
        f"--kubeconfig={plant.service_account_kubeconfig(plant_ns, 'plantfed-agent')}",
        f"--namespace={plant_ns}",
        f"--cache-dir={world.cache_dir}",
        f"--data-host-path={_plant_data(root / 'data')}",
        "--gpus=2",
        "--node-selector=plantfed.dev/plant=plant-a",
        '--tolerations-json=[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]',
        "--image=ghcr.io/plantfed/plantfed:test",
        "--training-service-account=plantfed-train",
        f"--metrics-port={world.metrics_port}",
        "--heartbeat-seconds=2",
        "--sync-seconds=2",
    ]
    world.start_agent()
    try:
        yield world
    finally:
        world.stop_agent()
        exchange.stop()
        hub.delete_namespace(hub_ns)
        plant.delete_namespace(plant_ns)


def test_heartbeat_appears_on_the_hub(world):
    status = wait_for(
        lambda: (world.participant().get("status") or {}).get("lastHeartbeatTime") and world.participant()["status"],
        timeout=90,
        what=f"heartbeat; agent log:\n{world.agent_output()[-2000:]}",
    )
    assert status["agentVersion"]
    assert status["observedGeneration"] == world.participant()["metadata"]["generation"]
    first = status["lastHeartbeatTime"]
    wait_for(lambda: world.participant()["status"]["lastHeartbeatTime"] != first, timeout=60, what="a second heartbeat")


def test_agent_credentials_cannot_read_or_patch_another_plant(world):
    with config.new_client_from_config(config_file=str(world.hub_kubeconfig)) as api:
        custom = client.CustomObjectsApi(api)
        assert custom.get_namespaced_custom_object(GROUP, VERSION, world.hub_ns, "plantparticipants", PLANT)
        with pytest.raises(ApiException) as read:
            custom.get_namespaced_custom_object(GROUP, VERSION, world.hub_ns, "plantparticipants", "plant-b")
        with pytest.raises(ApiException) as patch:
            custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                world.hub_ns,
                "plantparticipants",
                "plant-b",
                {"status": {"lastHeartbeatTime": stamp(datetime.now(UTC))}},
                _content_type=MERGE,
            )
        with pytest.raises(ApiException) as secrets:
            client.CoreV1Api(api).list_namespaced_secret(world.hub_ns)
    assert (read.value.status, patch.value.status, secrets.value.status) == (403, 403, 403)
    assert "lastHeartbeatTime" not in (world.participant("plant-b").get("status") or {})


def test_assigned_round_runs_a_training_job_that_uploads(world):
    world.start_round("bearing-r1", open_on_exchange=True, pod={"gpus": 1, "cpu": "1", "memory": "2Gi"})

    job = wait_for(
        lambda: world.job("train-bearing-r1"),
        timeout=60,
        what="training Job in plant-a's cluster",
        ignore=(ApiException,),
    )
    pod = job.spec.template.spec
    (container,) = pod.containers
    assert container.command[:2] == ["plantfed", "train"]
    assert container.resources.requests["nvidia.com/gpu"] == "1"
    assert pod.node_selector == {"plantfed.dev/plant": PLANT}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod.restart_policy == "Never" and job.spec.backoff_limit == 1 and job.spec.ttl_seconds_after_finished
    assert pod.automount_service_account_token is False and pod.service_account_name == "plantfed-train"
    data = next(m for m in container.volume_mounts if m.name == "data")
    assert data.read_only is True

    core = client.CoreV1Api(world.plant_api())
    secret = wait_for(
        lambda: core.read_namespaced_secret("train-bearing-r1-token", world.plant_ns),
        timeout=30,
        what="token Secret",
        ignore=(ApiException,),
    )
    owners = secret.metadata.owner_references
    assert owners is not None and len(owners) == 1, owners
    (owner,) = owners
    assert (owner.kind, owner.name, owner.uid) == ("Job", "train-bearing-r1", job.metadata.uid)

    uploaded = wait_for(
        lambda: world.assignment().get("state") in ("Uploaded", "Failed") and world.assignment(),
        timeout=TRAINING_TIMEOUT,
        what="the plant's assignment to finish",
    )
    logs = world.plant.logs(world.plant_ns, _pod_of(world, "train-bearing-r1"), "train")
    assert uploaded["state"] == "Uploaded", f"{uploaded}\ntraining pod log:\n{logs[-3000:]}"
    assert uploaded["round"] == "bearing-r1" and uploaded["progress"] == 1.0
    (update,) = world.exchange.store.updates("bearing-r1")
    assert update.meta.plant == PLANT and update.meta.num_samples > 0
    token = (world.exchange.root / "tokens" / PLANT).read_text()
    for obj in (
        world.participant(),
        world.custom().get_namespaced_custom_object(GROUP, VERSION, world.hub_ns, "federatedrounds", "bearing-r1"),
    ):
        assert token not in json.dumps(obj)


def test_a_failing_training_pod_reports_its_exit_code_and_last_log_line(world):
    # Not opened on the exchange: `plantfed train` asks the exchange for the round and exits 1.
    world.start_round("bearing-r1b", open_on_exchange=False, pod={"gpus": 1, "cpu": "1", "memory": "2Gi"})

    failed = wait_for(
        lambda: (a := world.assignment()).get("round") == "bearing-r1b" and a.get("state") == "Failed" and a,
        timeout=TRAINING_TIMEOUT,
        what="bearing-r1b reported Failed",
    )
    assert failed["message"].startswith("BackoffLimitExceeded: "), failed
    assert "exit code 1 (Error): " in failed["message"], failed
    assert "NOT_FOUND" in failed["message"], failed  # the exchange's answer, from the pod's last log line


def test_a_killed_agent_picks_up_where_it_stopped(world):
    world.start_round("bearing-r1c", open_on_exchange=True, pod={"gpus": 1, "cpu": "1", "memory": "2Gi"})
    job = wait_for(lambda: world.job("train-bearing-r1c"), timeout=60, what="training Job", ignore=(ApiException,))
    world.stop_agent(signal.SIGKILL)  # the Job trains on without its agent

    batch = client.BatchV1Api(world.plant_api())
    wait_for(
        lambda: batch.read_namespaced_job("train-bearing-r1c", world.plant_ns).status.succeeded,
        timeout=TRAINING_TIMEOUT,
        what="the orphaned training Job to finish",
    )
    assert world.assignment().get("round") != "bearing-r1c" or world.assignment().get("state") != "Uploaded"
    world.start_agent()

    done = wait_for(
        lambda: (a := world.assignment()).get("round") == "bearing-r1c" and a.get("state") == "Uploaded" and a,
        timeout=90,
        what="the restarted agent to report the finished Job",
    )
    assert done["progress"] == 1.0
    assert world.job("train-bearing-r1c").metadata.uid == job.metadata.uid  # the same Job, not a second one
    assert [u.meta.plant for u in world.exchange.store.updates("bearing-r1c")] == [PLANT]


def _pod_of(world: World, job: str) -> str:
    pods = client.CoreV1Api(world.plant_api()).list_namespaced_pod(world.plant_ns, label_selector=f"job-name={job}")
    return str(pods.items[-1].metadata.name) if pods.items else ""


def test_a_round_needing_more_gpus_than_the_node_has_reports_unschedulable_and_is_cancelled_when_it_fails(world):
    world.start_round("bearing-r2", open_on_exchange=False, pod={"gpus": 2, "cpu": "1", "memory": "2Gi"})

    pending = wait_for(
        lambda: (
            (a := world.assignment()).get("round") == "bearing-r2"
            and a.get("message", "").startswith("Unschedulable")
            and a
        ),
        timeout=90,
        what="Unschedulable reported for bearing-r2",
    )
    assert pending["state"] == "Pending"
    assert "Insufficient nvidia.com/gpu" in pending["message"], pending

    world.set_round_phase("bearing-r2", "Failed")
    batch = client.BatchV1Api(world.plant_api())

    def gone() -> bool:
        try:
            batch.read_namespaced_job("train-bearing-r2", world.plant_ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=60, what="the agent to delete the failed round's Job")


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def _cached_metric(port: int) -> float | None:
    for line in _scrape(port).splitlines():
        if line.startswith("plantfed_plant_cached_model_version{") and f'model="{MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_model_cache_follows_promotion_and_keeps_serving_while_the_exchange_is_down(world):
    cache = ModelCache(world.cache_dir / "models", None)
    store = world.exchange.store
    # A new version, promoted on the exchange and recorded on the FederatedModel as the operator does.
    v1 = store.promoted(MODEL)
    v2 = store.publish_model(MODEL, v1.digest, parent=v1.version, round_id="bearing-r1", metrics={})
    with world.exchange.admin() as admin:
        admin.promote(MODEL, v2.version)
    world.promote(v2.version)

    wait_for(
        lambda: (c := cache.current(MODEL)) is not None and c.version == v2.version,
        timeout=90,
        what=f"v{v2.version} in the plant's cache",
    )
    assert cache.path_for(MODEL, v2.version).exists()
    wait_for(
        lambda: world.participant()["status"].get("modelVersion") == v2.version,
        timeout=30,
        what="modelVersion on the PlantParticipant",
    )
    assert _cached_metric(world.metrics_port) == v2.version

    world.exchange.stop()
    v3 = store.publish_model(MODEL, v1.digest, parent=v2.version, round_id="bearing-r2", metrics={})
    store.promote(MODEL, v3.version)
    world.promote(v3.version)
    wait_for(
        lambda: f"model {MODEL} v{v3.version} not cached yet" in world.agent_output(),
        timeout=90,
        what="the agent to fail to reach the exchange",
    )
    assert cache.current(MODEL).version == v2.version
    assert cache.current_path(MODEL).exists()
    beat = world.participant()["status"]["lastHeartbeatTime"]
    wait_for(
        lambda: world.participant()["status"]["lastHeartbeatTime"] != beat,
        timeout=30,
        what="heartbeats to go on while the exchange is down",
    )
    assert world.participant()["status"]["modelVersion"] == v2.version

    world.exchange.start()
    wait_for(
        lambda: cache.current(MODEL).version == v3.version, timeout=120, what="the cache to catch up after the outage"
    )


def _embedded_kubeconfig(path: Path) -> str:
    """The kubeconfig with its CA inline: inside a pod, the host path of the CA file is not there."""
    doc = yaml.safe_load(path.read_text())
    for cluster in doc["clusters"]:
        ca = Path(cluster["cluster"].pop("certificate-authority"))
        cluster["cluster"]["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    return yaml.safe_dump(doc)


def test_the_agent_installed_by_the_plant_chart_trains_a_round(world, hub_and_plants, tmp_path):
    """plant-b runs the agent as the plant chart deploys it: a pod with in-cluster credentials and the cache PVC."""
    plant, cluster = "plant-b", hub_and_plants.plants["plant-b"]
    sa = _hub_rbac(world.hub, world.hub_ns, plant)
    token = "plant-b-exchange-token"
    (world.exchange.root / "tokens" / plant).write_text(token)  # the exchange re-reads its token book
    ns = cluster.create_namespace("agent-chart")
    try:
        with cluster.api_client() as api:
            client.CoreV1Api(api).create_namespaced_secret(
                ns,
                {
                    "metadata": {"name": "plantfed-hub-credentials"},
                    "stringData": {
                        "kubeconfig": _embedded_kubeconfig(world.hub.service_account_kubeconfig(world.hub_ns, sa)),
                        "token": token,
                    },
                },
            )
        data = _plant_data(tmp_path / "data")
        cluster.helm(
            "install",
            "plantfed",
            str(REPO / "charts" / "plantfed-plant"),
            "-n",
            ns,
            "--set",
            f"plant.id={plant}",
            "--set",
            f"hub.exchange={world.exchange.address}",
            "--set",
            f"hub.namespace={world.hub_ns}",
            "--set",
            "hub.existingSecret=plantfed-hub-credentials",
            "--set",
            "hub.tls=false",
            "--set",
            f"data.hostPath={data}",
            "--set",
            "training.gpus=1",
            "--set",
            "training.nodeSelector.plantfed\\.dev/plant=plant-b",
            "--set",
            f"metrics.port={free_port()}",
            "--set",
            "agent.heartbeatSeconds=2",
            "--set",
            "agent.syncSeconds=2",
        )
        wait_for(
            lambda: (world.participant(plant).get("status") or {}).get("lastHeartbeatTime"),
            timeout=120,
            what="plant-b's chart-installed agent to heartbeat",
        )

        world.start_round(
            "bearing-chart-r1", open_on_exchange=True, plant=plant, pod={"gpus": 1, "cpu": "1", "memory": "2Gi"}
        )
        done = wait_for(
            lambda: (a := world.assignment(plant)).get("state") in ("Uploaded", "Failed") and a,
            timeout=TRAINING_TIMEOUT,
            what="plant-b's assignment to finish",
        )
        assert done["state"] == "Uploaded", done
        (update,) = world.exchange.store.updates("bearing-chart-r1")
        assert update.meta.plant == plant
        with cluster.api_client() as api:
            job = client.BatchV1Api(api).read_namespaced_job("train-bearing-chart-r1", ns)
        volumes = {v.name: v for v in job.spec.template.spec.volumes}
        assert volumes["cache"].persistent_volume_claim.claim_name == "plantfed-cache"
        assert job.spec.template.spec.service_account_name == "plantfed-train"
    finally:
        cluster.helm("uninstall", "plantfed", "-n", ns, check=False)
        cluster.delete_namespace(ns)


def _is_round_list(event: dict[str, Any], user: str) -> bool:
    return (
        event.get("user", {}).get("username") == user
        and event["verb"] == "list"
        and (event.get("objectRef") or {}).get("resource") == "federatedrounds"
    )


def _round_lists(log: Path, user: str, after: int) -> tuple[int, int]:
    """(lists of federatedrounds by `user` among the audit events past index `after`, events so far)."""
    events = list(read_events(log))
    return sum(_is_round_list(e, user) for e in events[after:]), len(events)


def test_another_plants_rounds_changing_costs_this_agent_no_reads(world):
    """The agent lists and watches only rounds labelled for its plant: 40 changes elsewhere, no list of ours."""
    log = world.hub.cluster.audit_log
    if log is None:
        pytest.skip("the API server audit log exists only on control planes the tests start")
    user = f"system:serviceaccount:{world.hub_ns}:{HUB_SA}"
    world.stop_agent()
    assert world.agent_cmd is not None
    normal = world.agent_cmd
    # No periodic sync or heartbeat during the measurement, and an empty plant namespace (no pod events from
    # earlier tests' Jobs): every list of rounds it makes is one a round or model watch event caused.
    quiet_ns = world.plant.create_namespace("agent-quiet")
    _plant_rbac(world.plant, quiet_ns)
    plant_kubeconfig = world.plant.service_account_kubeconfig(quiet_ns, "plantfed-agent")
    world.agent_cmd = [
        *normal,
        f"--kubeconfig={plant_kubeconfig}",
        f"--namespace={quiet_ns}",
        "--sync-seconds=3600",
        "--heartbeat-seconds=3600",
    ]
    custom = world.custom()
    # Earlier tests' rounds (still Training, no operator here) would have the new agent train them in its namespace.
    earlier = custom.list_namespaced_custom_object(GROUP, VERSION, world.hub_ns, "federatedrounds")["items"]
    for fr in earlier:
        if (fr.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            world.set_round_phase(fr["metadata"]["name"], "Failed")

    def round_body(name: str, plant: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FederatedRound",
            "metadata": {"name": name, "namespace": world.hub_ns, "labels": {assigned_label(plant): "true"}},
            "spec": round_spec(MODEL, plants=[plant]),
        }

    mine = round_body("mine-r1", PLANT)
    custom.create_namespaced_custom_object(GROUP, VERSION, world.hub_ns, "federatedrounds", mine)
    _, start = _round_lists(log, user, 0)
    world.start_agent()
    try:
        # Started: its first sync's list and the round watch's own list, and the watch is streaming.
        wait_for(
            lambda: (
                _round_lists(log, user, start)[0] >= 2
                and any(
                    e["verb"] == "watch" and (e.get("objectRef") or {}).get("resource") == "federatedrounds"
                    for e in by_user(list(read_events(log))[start:], user)
                )
            ),
            timeout=90,
            what=f"the agent's first sync and round watch; agent log:\n{world.agent_output()[-2000:]}",
        )
        _, mark = _round_lists(log, user, start)
        for n in range(10):  # plant-b's rounds: created, then their status changes three times each
            name = f"elsewhere-r{n}"
            custom.create_namespaced_custom_object(
                GROUP, VERSION, world.hub_ns, "federatedrounds", round_body(name, "plant-b")
            )
            for phase in ("Pending", "Training", "Failed"):
                status = {"phase": phase, "plants": [{"plant": "plant-b", "state": "Assigned"}]}
                custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, world.hub_ns, "federatedrounds", name, {"status": status}, _content_type=MERGE
                )
        # A change to one of our own rounds: its watch event comes after every earlier one of the same watch.
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            world.hub_ns,
            "federatedrounds",
            "mine-r1",
            {"metadata": {"annotations": {"plantfed.dev/touched": "1"}}},
            _content_type=MERGE,
        )

        def listed_after_the_touch() -> list[bool] | None:
            """From `mark` on: for each list of rounds, whether it came after our round was touched."""
            events = list(read_events(log))[mark:]
            touched = next(
                (
                    i
                    for i, e in enumerate(events)
                    if e["verb"] == "patch" and (e.get("objectRef") or {}).get("name") == "mine-r1"
                ),
                None,
            )
            lists = [i for i, e in enumerate(events) if _is_round_list(e, user)]
            if touched is None or not any(i > touched for i in lists):
                return None
            return [i > touched for i in lists]

        seen = wait_for(listed_after_the_touch, timeout=60, what="the agent to list after its own round changed")
        assert seen == [True], f"{seen.count(False)} lists of rounds caused by 40 changes to another plant's rounds"
        listed = [
            e["requestURI"]
            for e in by_user(list(read_events(log))[mark:], user)
            if (e.get("objectRef") or {}).get("resource") == "federatedrounds"
        ]
        assert listed and all("labelSelector=assigned.plantfed.io" in uri for uri in listed), listed
    finally:
        world.stop_agent()
        world.agent_cmd = normal
        world.start_agent()
        world.plant.delete_namespace(quiet_ns)
