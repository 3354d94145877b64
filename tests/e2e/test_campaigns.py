"""Campaigns (the operator's RBAC audited while one runs), offline plants and impossible quorums, on real clusters."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from support.federation.rounds import PLANTS, condition, create_lineage, model_manifest, round_manifest, wait_phase
from support.kube import wait_for
from support.kube.audit import by_user, grant_of, rbac_grants, read_events

from plantfed.contract.naming import GROUP, MODEL_KEY, VERSION

OPERATOR_SA = "plantfed-operator"
ACCURACY = "global_test_accuracy"
"""Each round's base model scored on every plant's own test split, sample-weighted."""


@pytest.fixture(scope="module")
def campaign(federation) -> dict[str, Any]:
    """A three-round campaign with `roundRetention: 2`, run once for the tests below: the third round's end deletes
    the first round's object. Returns the FederatedModel once the retention has done that."""
    hub = federation.hub
    template = {
        "plants": list(PLANTS),
        "minParticipants": 2,
        "deadlineSeconds": 600,
        "training": {"epochs": 3, "batchSize": 32, "learningRate": 0.003, "optimizer": "adam"},
        "strategy": {"name": "fedavg"},
        "pod": {"gpus": 1},
    }
    manifest = model_manifest(hub, "campaign", suspend=False, template=template, stop={"maxRounds": 3})
    manifest["spec"]["roundRetention"] = 2
    hub.apply(manifest)
    wait_phase(hub, "federatedmodels", "campaign", ("Completed",), timeout=900)
    with hub.cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)

        def rounds() -> list[str]:
            listing = custom.list_namespaced_custom_object(GROUP, VERSION, hub.namespace, "federatedrounds")
            return sorted(r["metadata"]["name"] for r in listing["items"] if r["spec"]["modelRef"] == "campaign")

        wait_for(lambda: rounds() == ["campaign-r2", "campaign-r3"], timeout=60, what="retention to delete r1 only")
    return hub.get("federatedmodels", "campaign")


def test_campaign_of_three_rounds_improves_accuracy(federation, campaign):
    hub = federation.hub
    status = campaign["status"]
    assert status["promotedVersion"] == 4 and status["roundsCompleted"] == 3
    history = status["history"]  # outlives the round objects retention deletes
    assert [(h["version"], h["round"]) for h in history] == [(2, "campaign-r1"), (3, "campaign-r2"), (4, "campaign-r3")]
    assert condition(campaign, "Converged")["reason"] == "MaxRoundsReached"
    accuracy = [h["metrics"][ACCURACY] for h in history]
    assert accuracy[2] > accuracy[0] + 0.2, accuracy  # measured: 0.25 -> about 0.9
    scored = [h["metrics"]["val_accuracy"] for h in history]  # each candidate, as plants scored it
    assert scored[2] > accuracy[0] + 0.2, scored

    rounds = {n: hub.get("federatedrounds", f"campaign-r{n}") for n in (2, 3)}
    assert all(r["status"]["phase"] == "Succeeded" for r in rounds.values())
    assert [r["status"]["baseVersion"] for r in rounds.values()] == [2, 3]
    assert [r["status"]["resultVersion"] for r in rounds.values()] == [3, 4]
    for r in rounds.values():  # campaign rounds are owned by their model (deleted with it)
        assert r["metadata"]["ownerReferences"][0]["name"] == "campaign"
        assert r["metadata"]["labels"][MODEL_KEY] == "campaign"
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


def operator_roles(manifests: list[dict]) -> list[dict]:
    """The Roles and ClusterRoles the chart binds to the operator's ServiceAccount."""
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in manifests
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
        if any(s["kind"] == "ServiceAccount" and s["name"] == OPERATOR_SA for s in b["subjects"])
    }
    return [d for d in manifests if (d["kind"], d["metadata"]["name"]) in bound]


def test_the_operator_exercises_every_rbac_grant_and_is_never_refused(federation, campaign):
    """The chart grants the operator nothing it does not use, and it is never refused: the real operator (the
    chart's Deployment, as its ServiceAccount under the chart's Role and ClusterRole) watched through the hub API
    server's audit log, once the campaign has run model initialisation, round creation, training, aggregation,
    promotion and the retention's deletion of a round (the render test pins the rules themselves)."""
    hub = federation.hub
    log = hub.cluster.cluster.audit_log
    if log is None:
        pytest.skip(
            "the API server audit log exists only on control planes the tests start (not with PLANTFED_TEST_KUBECONFIG)"
        )
    roles = operator_roles(hub.manifests)
    assert {r["kind"] for r in roles} == {"Role", "ClusterRole"}
    granted = rbac_grants(roles)
    user = f"system:serviceaccount:{hub.namespace}:{OPERATOR_SA}"
    seen: dict[str, Any] = {}

    def every_grant_used() -> bool:
        events = by_user(read_events(log), user)
        seen["refused"] = [e for e in events if e.get("responseStatus", {}).get("code") == 403]
        seen["unused"] = sorted(granted - {g for e in events if (g := grant_of(e)) is not None})
        return not seen["unused"]

    try:
        wait_for(every_grant_used, timeout=60, what="an audit event for every grant of the operator's RBAC")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ngranted but never used by {user}: {seen['unused']}") from None
    refused = [(e["verb"], e.get("objectRef"), e["requestURI"]) for e in seen["refused"]]
    assert not refused, f"the operator was refused (403):\n{json.dumps(refused, indent=1)}"


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
