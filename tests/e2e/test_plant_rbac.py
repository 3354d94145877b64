"""A plant's hub credential checked live: it writes its own status and nothing else (the operator's RBAC is
audited while the campaign in test_campaigns.py runs)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from support.federation.plantside import hub_kubeconfig
from support.federation.rounds import PLANTS

from plantfed.contract.naming import GROUP, VERSION

MERGE = "application/merge-patch+json"


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
