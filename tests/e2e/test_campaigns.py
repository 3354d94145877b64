"""Campaigns, offline plants, impossible quorums and operator restarts, on real clusters."""

from __future__ import annotations

import urllib.request

from kubernetes import client
from support.federation.rounds import PLANTS, condition, create_lineage, model_manifest, round_manifest, wait_phase
from support.kube import wait_for

from plantfed.contract.naming import MODEL_KEY, ROUND_KEY

ACCURACY = "global_test_accuracy"
"""Each round's base model scored on every plant's own test split, sample-weighted."""


def test_campaign_of_three_rounds_improves_accuracy(federation):
    hub = federation.hub
    template = {
        "plants": list(PLANTS),
        "minParticipants": 2,
        "deadlineSeconds": 600,
        "training": {"epochs": 3, "batchSize": 32, "learningRate": 0.003, "optimizer": "adam"},
        "strategy": {"name": "fedavg"},
        "pod": {"gpus": 1},
    }
    hub.apply(model_manifest(hub, "campaign", suspend=False, template=template, stop={"maxRounds": 3}))
    fm = wait_phase(hub, "federatedmodels", "campaign", ("Completed",), timeout=900)

    rounds = {n: hub.get("federatedrounds", f"campaign-r{n}") for n in (1, 2, 3)}
    assert all(r["status"]["phase"] == "Succeeded" for r in rounds.values())
    assert [r["status"]["baseVersion"] for r in rounds.values()] == [1, 2, 3]
    assert [r["status"]["resultVersion"] for r in rounds.values()] == [2, 3, 4]
    for r in rounds.values():  # campaign rounds are owned by their model (deleted with it)
        assert r["metadata"]["ownerReferences"][0]["name"] == "campaign"
        assert r["metadata"]["labels"][MODEL_KEY] == "campaign"
    accuracy = [r["status"]["metrics"][ACCURACY] for r in rounds.values()]
    assert accuracy[2] > accuracy[0] + 0.2, accuracy  # measured: 0.25 -> about 0.9
    scored = [r["status"]["metrics"]["val_accuracy"] for r in rounds.values()]  # each candidate, as plants scored it
    assert scored[2] > accuracy[0] + 0.2, scored

    status = fm["status"]
    assert status["promotedVersion"] == 4 and status["roundsCompleted"] == 3
    assert [h["version"] for h in status["history"]] == [2, 3, 4]
    assert condition(fm, "Converged")["reason"] == "MaxRoundsReached"
    with hub.admin() as admin:
        lineage = admin.list_versions("campaign")
    assert [(v.version, v.parent, v.round_id) for v in lineage] == [
        (1, None, None),
        (2, 1, "campaign-r1"),
        (3, 2, "campaign-r2"),
        (4, 3, "campaign-r3"),
    ]

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{hub.metrics_port}/metrics", timeout=10).read().decode()
    assert 'plantfed_rounds_total{model="campaign",outcome="succeeded"} 3.0' in metrics
    assert 'plantfed_promoted_version{model="campaign"} 4.0' in metrics
    assert 'plantfed_round_plants_replied{model="campaign"} 2.0' in metrics
    for plant in PLANTS:
        assert f'plantfed_plant_heartbeat_age_seconds{{plant="{plant}"}}' in metrics


def test_impossible_quorum_fails_the_round_with_a_clear_reason(federation):
    hub = federation.hub
    # Two plants match the selector; the schema cannot know that, the operator can.
    hub.apply(
        round_manifest(
            hub,
            "quorum-1",
            "quorum",
            baseVersion=1,
            plants=None,
            plantSelector={"matchLabels": {"region": "eu"}},
            minParticipants=3,
        )
    )
    fr = wait_phase(hub, "federatedrounds", "quorum-1", ("Failed",), timeout=120)
    succeeded = condition(fr, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "QuorumUnreachable")
    assert succeeded["message"] == "2 plants eligible but minParticipants is 3"
    events = hub.kubectl(
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=quorum-1",
        "-o",
        "jsonpath={range .items[*]}{.type} {.reason}{'\\n'}{end}",
    ).stdout
    assert "Warning QuorumUnreachable" in events
    assert not any(agent.training_jobs("quorum-1") for agent in federation.agents.values())


def test_offline_plant_is_left_out_and_rejoins_the_next_round(federation):
    hub = federation.hub
    create_lineage(hub, "offline")
    offline = "lyon-press1"
    federation.agents[offline].stop()
    try:
        federation.wait_ready(offline, "False")
        # A short deadline: a plant still counted as Ready when the round starts is marked Late at it.
        hub.apply(round_manifest(hub, "offline-1", "offline", minParticipants=1, deadlineSeconds=120))
        fr = wait_phase(hub, "federatedrounds", "offline-1", ("Succeeded",))
    finally:
        federation.agents[offline].start()
    plants = {p["plant"]: p for p in fr["status"]["plants"]}
    assert plants["stuttgart-press3"]["state"] == "Uploaded"
    assert (plants[offline]["state"], plants[offline]["reason"]) in {
        ("Excluded", "NotReady"),
        ("Late", "DeadlineExceeded"),
    }
    assert fr["status"]["resultVersion"] == 2
    with hub.admin() as admin:
        assert [u.meta.plant for u in admin.list_updates("offline-1").updates] == ["stuttgart-press3"]

    federation.wait_ready(offline, "True")
    hub.apply(round_manifest(hub, "offline-2", "offline", minParticipants=2))
    fr = wait_phase(hub, "federatedrounds", "offline-2", ("Succeeded",))
    assert {p["plant"]: p["state"] for p in fr["status"]["plants"]} == dict.fromkeys(PLANTS, "Uploaded")
    assert (fr["status"]["baseVersion"], fr["status"]["resultVersion"]) == (2, 3)


def _scale_operator(hub, replicas: int) -> None:
    hub.kubectl("scale", "deployment/plantfed-operator", f"--replicas={replicas}")
    if replicas == 0:
        wait_for(lambda: not hub.operator_pods(), timeout=120, what="operator pods gone")
    else:
        hub.kubectl("rollout", "status", "deployment/plantfed-operator", "--timeout=120s")


def test_operator_killed_between_uploads_and_promotion_finishes_the_round_once(federation):
    hub = federation.hub
    create_lineage(hub, "restart")
    hub.apply(round_manifest(hub, "restart-1", "restart", minParticipants=2))
    wait_phase(hub, "federatedrounds", "restart-1", ("Training",), timeout=120)

    # Operator gone while the plants train and upload: nothing on the hub waits for it.
    _scale_operator(hub, 0)
    with hub.admin() as admin:
        wait_for(lambda: len(admin.list_updates("restart-1").updates) == 2, timeout=300, what="both uploads committed")
    assert hub.get("federatedrounds", "restart-1")["status"]["phase"] == "Training"

    # Back, and killed again (SIGKILL, no grace) as soon as it has frozen the set and created the Job.
    _scale_operator(hub, 1)
    fr = wait_phase(hub, "federatedrounds", "restart-1", ("Aggregating", "Evaluating", "Succeeded"), timeout=120)
    if fr["status"]["phase"] == "Aggregating":
        (pod,) = hub.operator_pods()
        hub.kubectl("delete", "pod", pod.metadata.name, "--grace-period=0", "--force")
    fr = wait_phase(hub, "federatedrounds", "restart-1", ("Succeeded",))

    with hub.admin() as admin:
        updates = admin.list_updates("restart-1").updates
        versions = [v for v in admin.list_versions("restart") if v.round_id == "restart-1"]
        promoted = admin.get_model("restart")
    assert sorted(u.meta.plant for u in updates) == sorted(PLANTS)  # one update per plant
    assert len(versions) == 1  # aggregated once
    assert (promoted.version, promoted.parent) == (versions[0].version, 1) == (fr["status"]["resultVersion"], 1)
    assert {p["plant"]: p["state"] for p in fr["status"]["plants"]} == dict.fromkeys(PLANTS, "Uploaded")
    assert set(versions[0].metrics) < set(fr["status"]["metrics"]), "training metrics plus the plants' val_* scores"
    assert fr["status"]["evaluation"]["reported"] == 2
    with hub.cluster.api_client() as api:
        job = client.BatchV1Api(api).read_namespaced_job(fr["status"]["aggregationJob"], hub.namespace)
        jobs = client.BatchV1Api(api).list_namespaced_job(hub.namespace, label_selector=f"{ROUND_KEY}=restart-1")
    assert job.status.succeeded == 1 and not job.status.failed
    assert len(jobs.items) == 1
    for agent in federation.agents.values():  # each plant trained exactly once
        (training,) = agent.training_jobs("restart-1")
        assert training.status.succeeded == 1
