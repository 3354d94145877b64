"""One round on Kubernetes, from `kubectl apply` to the promoted model (docs/architecture.md), on a hub and
plants installed with `helm install` of their charts (conftest)."""

from __future__ import annotations

import math

import pytest
import yaml
from kubernetes import client
from support.federation.rounds import PLANTS, condition, create_lineage, round_manifest, wait_phase
from support.kube import wait_for
from support.paths import REPO

from plantfed.tasks.rul.synthetic import RulOptions, plant_units, write_units


def example(name: str, namespace: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((REPO / "examples" / name).read_text()) if d]
    doc["metadata"]["namespace"] = namespace
    return doc


def columns(table: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows keyed by header (columns are separated by 2+ spaces)."""
    import re

    lines = [line for line in table.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=False)) for line in lines[1:]]


def test_example_round_is_trained_aggregated_and_promoted(federation):
    hub = federation.hub
    # The campaign is suspended so only the hand-written round runs; the lineage starts at version 1.
    model = example("model.yaml", hub.namespace)
    model["spec"]["suspend"] = True
    hub.apply(model)
    fm = wait_phase(hub, "federatedmodels", "bearing", ("Suspended",), timeout=240)
    assert fm["status"]["promotedVersion"] == 1
    assert condition(fm, "Ready")["status"] == "True"

    round_ = example("round.yaml", hub.namespace)
    del round_["spec"]["baseVersion"]  # the example names version 12 of a long-running lineage
    hub.apply(round_)
    fr = wait_phase(hub, "federatedrounds", "bearing-hotfix-1", ("Succeeded",))

    status = fr["status"]
    plants = {p["plant"]: p for p in status["plants"]}
    assert {p: plants[p]["state"] for p in PLANTS} == dict.fromkeys(PLANTS, "Uploaded")
    assert plants["brno-lathe2"]["state"] == "Excluded" and plants["brno-lathe2"]["reason"] == "NotFound"
    assert status["baseVersion"] == 1 and status["resultVersion"] == 2 and status["uploaded"] == 2
    assert condition(fr, "Succeeded")["status"] == "True"
    assert condition(fr, "Promoted")["reason"] == "Promoted"

    # Before promotion both plants scored the candidate on their own validation splits; only numbers came back.
    evaluation = status["evaluation"]
    assert (evaluation["version"], evaluation["expected"], evaluation["reported"]) == (2, 2, 2)
    assert condition(fr, "Evaluated")["status"] == "True"
    assert 0.0 <= status["metrics"]["val_accuracy"] <= 1.0 and "val_accuracy" in evaluation["base"]
    assert all("val_accuracy" in plants[p]["evaluation"] for p in PLANTS)
    with hub.admin() as admin:
        scored = admin.list_evaluations("bearing-hotfix-1")
    assert sorted((e.plant, e.version) for e in scored) == [(p, 2) for p in sorted(PLANTS)]
    for plant, agent in federation.agents.items():  # its report may finish the round while its pod still exits
        wait_for(
            # wait_for calls it within this iteration, so the loop variable is the one meant.
            lambda: (
                [j.status.succeeded for j in agent.training_jobs("bearing-hotfix-1", component="evaluate")]  # noqa: B023
                == [1]
            ),
            timeout=120,
            what=f"{plant}'s one evaluation Job to succeed",
        )
        (evaluation_job,) = agent.training_jobs("bearing-hotfix-1", component="evaluate")
        assert evaluation_job.spec.template.spec.containers[0].command[:2] == ["plantfed", "evaluate"]

    with hub.admin() as admin:
        promoted = admin.get_model("bearing")
        updates = admin.list_updates("bearing-hotfix-1")
    assert (promoted.version, promoted.parent, promoted.round_id) == (2, 1, "bearing-hotfix-1")
    assert sorted(u.meta.plant for u in updates.updates) == sorted(PLANTS)
    assert all(u.meta.dp.noise_multiplier == 0.8 for u in updates.updates)  # local DP reached the plants
    assert updates.round.state.value == "closed"

    # The aggregation Job: owned by the round, no API credentials, exactly the frozen plant set.
    with hub.cluster.api_client() as api:
        job = client.BatchV1Api(api).read_namespaced_job(status["aggregationJob"], hub.namespace)
    assert job.metadata.owner_references[0].kind == "FederatedRound"
    assert job.metadata.owner_references[0].uid == fr["metadata"]["uid"]
    pod = job.spec.template.spec
    assert pod.automount_service_account_token is False
    command = pod.containers[0].command
    assert command[:2] == ["plantfed", "aggregate"]
    assert "--strategy=fedprox" in command and f"--plants={','.join(sorted(PLANTS))}" in command
    assert job.status.succeeded == 1

    fm = wait_phase(hub, "federatedmodels", "bearing", ("Suspended",))
    wait_for_history = [h for h in fm["status"].get("history", []) if h["round"] == "bearing-hotfix-1"]
    if not wait_for_history:  # the model's timer records the promotion within a poll interval
        wait_for(
            lambda: hub.get("federatedmodels", "bearing")["status"].get("promotedVersion") == 2,
            timeout=30,
            what="model records version 2",
        )
        fm = hub.get("federatedmodels", "bearing")
    assert fm["status"]["promotedVersion"] == 2
    assert [h["version"] for h in fm["status"]["history"]] == [2]

    # The operator re-exports what the aggregation Job measured (the Job exits before any scrape), from the
    # version record it published, with the labels simulate uses.
    measured = promoted.aggregation
    assert measured is not None and set(measured.plants) == set(PLANTS) and measured.strategy == "fedprox"
    of_model = frozenset({("model", "bearing")})

    def exported():
        samples = hub.operator_metrics()
        return samples if samples.get("plantfed_aggregation_peak_bytes", {}).get(of_model) else None

    samples = wait_for(exported, timeout=30, what="the operator to export the aggregation's metrics")
    for plant in PLANTS:
        labels = of_model | {("plant", plant)}
        norm = samples["plantfed_update_l2_norm"][labels]
        cosine = samples["plantfed_update_cosine_to_aggregate"][labels]
        assert norm > 0 and -1.0 <= cosine <= 1.0, (plant, norm, cosine)
        assert (norm, cosine) == (measured.plants[plant]["l2_norm"], measured.plants[plant]["cosine"])
    duration = of_model | {("strategy", "fedprox")}
    assert samples["plantfed_aggregation_duration_seconds_count"][duration] == 1
    assert samples["plantfed_aggregation_duration_seconds_sum"][duration] == measured.seconds > 0
    assert samples["plantfed_aggregation_peak_bytes"][of_model] == measured.peak_bytes > 0
    # The example round has local DP on: each plant's ε comes from the privacy ledger the Job charged, and the
    # same number is in the plant's PlantParticipant status.
    for plant in PLANTS:
        epsilon = samples["plantfed_dp_epsilon_spent"][of_model | {("plant", plant)}]
        assert epsilon > 0 and hub.get("plantparticipants", plant)["status"]["dpEpsilon"] == pytest.approx(epsilon)

    # Both plants' agents notice the promotion and cache version 2 next to their data.
    for plant, agent in federation.agents.items():
        wait_for(
            lambda: agent.cached("bearing") == 2,  # noqa: B023  # called within this iteration
            timeout=120,
            what=f"{plant}'s cache to hold version 2",
        )

    rows = {r["NAME"]: r for r in columns(hub.kubectl("get", "federatedrounds").stdout)}
    assert {
        k: rows["bearing-hotfix-1"][k] for k in ("MODEL", "PHASE", "BASE", "QUORUM", "ASSIGNED", "UPLOADED", "RESULT")
    } == {
        "MODEL": "bearing",
        "PHASE": "Succeeded",
        "BASE": "1",
        "QUORUM": "2",
        "ASSIGNED": "2",
        "UPLOADED": "2",
        "RESULT": "2",
    }
    # The headline score is the task's primary one (the bearing task's accuracy), as the plants declared it.
    assert status["score"] == {"metric": "val_accuracy", "goal": "Maximize", "value": status["metrics"]["val_accuracy"]}
    assert rows["bearing-hotfix-1"]["METRIC"] == "val_accuracy"
    assert float(rows["bearing-hotfix-1"]["VALUE"]) == pytest.approx(status["metrics"]["val_accuracy"], abs=1e-6)
    rows = {r["NAME"]: r for r in columns(hub.kubectl("get", "plantparticipants").stdout)}
    for plant in PLANTS:
        assert rows[plant]["READY"] == "True" and rows[plant]["PAUSED"] == "false" and rows[plant]["GPUS"] == "1"
    rows = {r["NAME"]: r for r in columns(hub.kubectl("get", "federatedmodels").stdout)}
    assert (rows["bearing"]["PHASE"], rows["bearing"]["PROMOTED"]) == ("Suspended", "2")

    events = hub.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=bearing-hotfix-1", "-o", "jsonpath={.items[*].reason}"
    ).stdout.split()
    assert {"Started", "QuorumReached", "Aggregated", "EvaluationRequested", "Promoted"} <= set(events)


def test_a_regression_round_promotes_the_candidate_with_the_lower_pooled_rmse(federation):
    """The built-in `rul` task on the cluster: RMSE is minimised (`goal: Minimize`) and shown as the round's score."""
    hub = federation.hub
    for index, agent in enumerate(federation.agents.values()):  # each plant's own run-to-failure histories
        write_units(agent.data_dir / "rul", plant_units(0, index, RulOptions()))
    create_lineage(hub, "rul", task="rul")
    promotion = {"policy": "IfBetter", "metric": "val_rmse", "goal": "Minimize"}
    hub.apply(round_manifest(hub, "rul-r1", "rul", promotion=promotion, training={"epochs": 3, "optimizer": "adam"}))
    fr = wait_phase(hub, "federatedrounds", "rul-r1", ("Succeeded",))

    status = fr["status"]
    evaluation = status["evaluation"]
    assert evaluation["reported"] == len(PLANTS)
    assert evaluation["candidate"]["val_rmse"] < evaluation["base"]["val_rmse"], evaluation
    # The operator pooled the plants' sums of squares: the fleet's RMSE, not a mean of two RMSEs.
    sumsq = sum(p["evaluation"]["val_rmse.sumsq"] for p in status["plants"])
    assert evaluation["candidate"]["val_rmse"] == pytest.approx(math.sqrt(sumsq / evaluation["samples"]))
    assert condition(fr, "Promoted")["reason"] == "Promoted" and status["resultVersion"] == 2
    assert status["score"] == {"metric": "val_rmse", "goal": "Minimize", "value": evaluation["candidate"]["val_rmse"]}
    assert "val_rmse" in condition(fr, "Evaluated")["message"]
    assert not [k for k in status["metrics"] if "accuracy" in k or "." in k], "scores only, the task's own"
    (row,) = [r for r in columns(hub.kubectl("get", "federatedrounds").stdout) if r["NAME"] == "rul-r1"]
    assert row["METRIC"] == "val_rmse" and float(row["VALUE"]) == pytest.approx(status["score"]["value"], abs=1e-4)
