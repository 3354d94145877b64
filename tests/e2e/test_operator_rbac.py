"""The operator's RBAC checked live: the hub chart grants it nothing it does not use, and it is never refused.

The chart's render test pins the rules; this one watches the real operator (the chart's Deployment, running
as its ServiceAccount under the chart's Role and ClusterRole) through the hub API server's audit log while
a campaign runs two rounds: model initialisation, round creation, training, aggregation, promotion, and the
deletion of the first round once the second finished (`roundRetention: 1`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from support.federation.plantside import hub_kubeconfig
from support.federation.rounds import PLANTS, model_manifest, wait_phase
from support.kube import wait_for
from support.kube.audit import by_user, grant_of, rbac_grants, read_events

from plantfed.contract.naming import GROUP, VERSION

OPERATOR_SA = "plantfed-operator"
MERGE = "application/merge-patch+json"


def operator_roles(manifests: list[dict]) -> list[dict]:
    """The Roles and ClusterRoles the chart binds to the operator's ServiceAccount."""
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"])
        for b in manifests
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
        if any(s["kind"] == "ServiceAccount" and s["name"] == OPERATOR_SA for s in b["subjects"])
    }
    return [d for d in manifests if (d["kind"], d["metadata"]["name"]) in bound]


def test_the_operator_exercises_every_rbac_grant_and_is_never_refused(federation):
    hub = federation.hub
    log = hub.cluster.cluster.audit_log
    if log is None:
        pytest.skip(
            "the API server audit log exists only on control planes the tests start (not with PLANTFED_TEST_KUBECONFIG)"
        )
    roles = operator_roles(hub.manifests)
    assert {r["kind"] for r in roles} == {"Role", "ClusterRole"}
    granted = rbac_grants(roles)

    template = {
        "plants": list(PLANTS),
        "minParticipants": 2,
        "deadlineSeconds": 600,
        "training": {"epochs": 1, "batchSize": 32, "learningRate": 0.05},
        "pod": {"gpus": 1},
    }
    # Two rounds with roundRetention 1: finishing the second deletes the first.
    manifest = model_manifest(hub, "audited", suspend=False, template=template, stop={"maxRounds": 2})
    manifest["spec"]["roundRetention"] = 1
    hub.apply(manifest)
    wait_phase(hub, "federatedmodels", "audited", ("Completed",), timeout=900)
    with hub.cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)

        def rounds() -> list[str]:
            listing = custom.list_namespaced_custom_object(GROUP, VERSION, hub.namespace, "federatedrounds")
            return sorted(r["metadata"]["name"] for r in listing["items"] if r["spec"]["modelRef"] == "audited")

        wait_for(lambda: rounds() == ["audited-r2"], timeout=60, what="retention to delete audited-r1 only")
        history = custom.get_namespaced_custom_object(GROUP, VERSION, hub.namespace, "federatedmodels", "audited")
    assert history["status"]["roundsCompleted"] == 2

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


def _as_plant(hub, plant: str) -> client.CustomObjectsApi:
    """The plant's own hub credential: the token Secret the hub chart made for its ServiceAccount."""
    return client.CustomObjectsApi(config.new_client_from_config_dict(yaml.safe_load(hub_kubeconfig(hub, plant))))


def test_a_plant_writes_its_status_and_nothing_of_its_spec_or_labels(federation):
    """Plants must not promote themselves: un-pausing, dropping maintenance windows or relabelling is Forbidden."""
    hub = federation.hub
    plant = next(iter(PLANTS))
    custom = _as_plant(hub, plant)
    before = custom.get_namespaced_custom_object(GROUP, VERSION, hub.namespace, "plantparticipants", plant)
    attempts: dict[str, dict[str, Any]] = {
        "un-pause": {"spec": {"paused": False}},
        "drop maintenance windows": {"spec": {"maintenanceWindows": []}},
        "add a label": {"metadata": {"labels": {"tier": "gold"}}},
    }
    refused = {}
    for what, patch in attempts.items():
        with pytest.raises(ApiException) as exc:
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, hub.namespace, "plantparticipants", plant, patch, _content_type=MERGE
            )
        refused[what] = exc.value.status
    assert refused == dict.fromkeys(attempts, 403)
    # Its status is its own; a /status patch that also names spec and labels changes only status.
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        hub.namespace,
        "plantparticipants",
        plant,
        {"metadata": {"labels": {"tier": "gold"}}, "spec": {"paused": False}, "status": {"agentVersion": "rbac-test"}},
        _content_type=MERGE,
    )
    assert patched["status"]["agentVersion"] == "rbac-test"
    assert patched["spec"] == before["spec"] and "tier" not in (patched["metadata"].get("labels") or {})
    with pytest.raises(ApiException) as other:
        custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            hub.namespace,
            "plantparticipants",
            next(p for p in PLANTS if p != plant),
            {"status": {"agentVersion": "rbac-test"}},
            _content_type=MERGE,
        )
    assert other.value.status == 403
