"""Fault injection on the real control planes (docs/fault-injection.md lists every fault and where it is tested).

Each test breaks one part of a running round and checks what a user would check: the round still succeeds, every
plant trained and uploaded once, one version was aggregated, and the promoted weights are bit-identical to an
undisturbed aggregation of the same committed updates (re-run here, offline, from the round's own Job command).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from support.federation.hubdeploy import Hub, store_root
from support.federation.rounds import PLANTS, create_lineage, round_manifest, wait_phase
from support.kube import wait_for
from support.kube.controlplane import ControlPlane

from plantfed.cli import build_parser
from plantfed.contract.naming import ROUND_KEY
from plantfed.contract.records import RoundRecord
from plantfed.contract.scores import scores_only
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.engine.store import ModelStore


def snapshot_round(hub: Hub, round_name: str, tmp_path: Path, plants: int = len(PLANTS)) -> ModelStore:
    """A scratch store holding the round's base and its `plants` committed updates, copied while the round is
    unfinished: once it is promoted, the hub's retention drops its update blobs (docs/install.md)."""
    live = ModelStore(store_root(hub))
    with hub.admin() as admin:
        wait_for(lambda: len(admin.list_updates(round_name).updates) == plants, timeout=300, what="every upload")
    record = live.get_round(round_name)
    assert record.base_version == 1, "the scratch store rebuilds a lineage that starts at the base"
    base = live.get_model(record.model, record.base_version)
    calm = ModelStore(tmp_path / "undisturbed")
    calm.publish_model(record.model, calm.import_file(live.blob_path(base.digest))[0], promote=True)
    calm.open_round(RoundRecord(round_id=round_name, model=record.model, base_version=1, plants=record.plants))
    for update in live.updates(round_name):
        calm.import_file(live.blob_path(update.digest))
        calm.commit_update(update.meta, update.digest)
    calm.close_round(round_name)
    return calm


def undisturbed_digest(hub: Hub, round_name: str, calm: ModelStore) -> str:
    """Aggregate the snapshot's updates (`snapshot_round`) again, exactly as the round's Job was told to."""
    with hub.cluster.api_client() as api:
        job = client.BatchV1Api(api).read_namespaced_job(f"{round_name}-aggregate", hub.namespace)
    args = build_parser().parse_args(job.spec.template.spec.containers[0].command[1:])
    return aggregate_round(
        calm, round_name, StrategyConfig.from_arguments(args), plants=args.plants.split(",")
    ).version.digest


def promoted_once(federation, round_name: str, model: str) -> str:
    """The round's single promoted version (digest), after checking nothing was trained or aggregated twice."""
    hub = federation.hub
    with hub.admin() as admin:
        updates = admin.list_updates(round_name).updates
        versions = [v for v in admin.list_versions(model) if v.round_id == round_name]
        promoted = admin.get_model(model)
    assert sorted(u.meta.plant for u in updates) == sorted(PLANTS), "one update per plant"
    assert len(versions) == 1 and promoted.version == versions[0].version, "aggregated and promoted once"
    for plant, agent in federation.agents.items():
        (training,) = agent.training_jobs(round_name)
        assert training.status.succeeded == 1 and not training.status.failed, f"{plant} trained once"
    return promoted.digest


def _set_operator_replicas(hub: Hub, replicas: int) -> None:
    hub.kubectl("scale", "deployment/plantfed-operator", f"--replicas={replicas}")


def _kill_operator(hub: Hub) -> None:
    """SIGKILL the operator (no grace) and keep it down until `_set_operator_replicas(hub, 1)`."""
    _set_operator_replicas(hub, 0)
    for pod in hub.operator_pods():
        hub.kubectl("delete", "pod", pod.metadata.name, "--grace-period=0", "--force", check=False)
    wait_for(lambda: not hub.operator_pods(), timeout=60, what="the operator pod gone")


def test_operator_killed_in_every_phase_still_promotes_bit_identical_weights(federation, tmp_path):
    """Killed in Training, Aggregating and Evaluating, each time held down while the rest of the system moves on."""
    hub = federation.hub
    create_lineage(hub, "chaos")
    hub.apply(round_manifest(hub, "chaos-1", "chaos"))

    wait_phase(hub, "federatedrounds", "chaos-1", ("Training",), timeout=120)
    _kill_operator(hub)
    calm = snapshot_round(hub, "chaos-1", tmp_path)  # plants train and upload with no operator
    _set_operator_replicas(hub, 1)

    wait_phase(hub, "federatedrounds", "chaos-1", ("Aggregating",), timeout=120)
    _kill_operator(hub)
    with hub.admin() as admin:  # the aggregation Job runs to the end with no operator
        wait_for(
            lambda: any(v.round_id == "chaos-1" for v in admin.list_versions("chaos")),
            timeout=300,
            what="the candidate version",
        )
    _set_operator_replicas(hub, 1)

    fr = wait_phase(hub, "federatedrounds", "chaos-1", ("Evaluating",), timeout=120)
    assert fr["status"]["evaluation"]["expected"] == 2
    _kill_operator(hub)
    with hub.admin() as admin:  # plants score the candidate with no operator
        wait_for(lambda: len(admin.list_evaluations("chaos-1")) == 2, timeout=300, what="both plants' scores")
    _set_operator_replicas(hub, 1)

    fr = wait_phase(hub, "federatedrounds", "chaos-1", ("Succeeded",))
    assert fr["status"]["evaluation"]["reported"] == 2
    assert promoted_once(federation, "chaos-1", "chaos") == undisturbed_digest(hub, "chaos-1", calm)
    # The round is finished: the store's retention (chart default) drops its update blobs, keeps their records.
    live = ModelStore(store_root(hub))
    wait_for(lambda: live.round_pruned("chaos-1"), timeout=60, what="the retention after the promotion")
    assert [u.meta.plant for u in live.updates("chaos-1")] == sorted(PLANTS)
    assert not any(live.has_blob(u.digest) for u in live.updates("chaos-1"))
    with hub.cluster.api_client() as api:  # the restarted operator adopted the Job it had created
        jobs = client.BatchV1Api(api).list_namespaced_job(hub.namespace, label_selector=f"{ROUND_KEY}=chaos-1").items
    assert [(j.metadata.name, j.status.succeeded, j.status.failed) for j in jobs] == [("chaos-1-aggregate", 1, None)]
    with hub.admin() as admin:
        (version,) = [v for v in admin.list_versions("chaos") if v.round_id == "chaos-1"]
    training = scores_only(version.metrics)  # status keeps the scores, not their statistics
    assert set(training) < set(fr["status"]["metrics"]), "training metrics plus the plants' val_* scores"


def test_aggregation_pod_killed_is_retried_with_the_same_result(federation, tmp_path):
    hub = federation.hub
    create_lineage(hub, "retry")
    hub.apply(round_manifest(hub, "retry-1", "retry"))
    selector = "job-name=retry-1-aggregate"

    def first_pod():
        with hub.cluster.api_client() as api:
            pods = client.CoreV1Api(api).list_namespaced_pod(hub.namespace, label_selector=selector).items
        return pods[0] if pods else None

    pod = wait_for(first_pod, timeout=420, what="the aggregation pod", interval=0.2)
    assert pod.status.phase in ("Pending", "Running"), f"too late to kill: {pod.status.phase}"
    calm = snapshot_round(hub, "retry-1", tmp_path)
    hub.kubectl("delete", "pod", pod.metadata.name, "--grace-period=0", "--force")

    wait_phase(hub, "federatedrounds", "retry-1", ("Succeeded",))
    with hub.cluster.api_client() as api:
        job = client.BatchV1Api(api).read_namespaced_job("retry-1-aggregate", hub.namespace)
    assert job.status.succeeded == 1 and job.status.failed == 1, "the killed pod counted as one failure, then retried"
    assert promoted_once(federation, "retry-1", "retry") == undisturbed_digest(hub, "retry-1", calm)


def test_etcd_restart_under_load_loses_nothing(federation, tmp_path):
    """etcd SIGKILLed while plants heartbeat and train and the operator polls; it comes back on the same data."""
    hub = federation.hub
    plane = hub.cluster.cluster
    if not isinstance(plane, ControlPlane):
        pytest.skip("etcd can only be restarted on a control plane these tests started")
    create_lineage(hub, "outage")
    hub.apply(round_manifest(hub, "outage-1", "outage"))
    wait_phase(hub, "federatedrounds", "outage-1", ("Training",), timeout=120)

    plane.restart_etcd(down_seconds=3.0)
    calm = snapshot_round(hub, "outage-1", tmp_path)

    fr = wait_phase(hub, "federatedrounds", "outage-1", ("Succeeded",))
    assert {p["plant"]: p["state"] for p in fr["status"]["plants"]} == dict.fromkeys(PLANTS, "Uploaded")
    assert promoted_once(federation, "outage-1", "outage") == undisturbed_digest(hub, "outage-1", calm)
    for plant in PLANTS:
        federation.wait_ready(plant)
