"""Plantfed objects on the e2e hub: manifests for a test's lineage and rounds, and waits on their status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from plantfed.contract.naming import API_VERSION
from support.federation.hubdeploy import Hub
from support.kube import wait_for

PLANTS = {"stuttgart-press3": "plant-a", "lyon-press1": "plant-b"}
"""Plant id -> the cluster it runs in (the examples' plant ids, so examples/round.yaml applies as written)."""


def phase(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_phase(hub: Hub, plural: str, name: str, phases: tuple[str, ...], timeout: float = 420) -> dict[str, Any]:
    """Wait until the object's phase is one of `phases`; fail at once on a round that failed unexpectedly."""

    seen: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        obj = hub.get(plural, name)
        seen[:] = [obj.get("status") or {}]
        if phase(obj) == "Failed" and "Failed" not in phases:
            pytest.fail(f"{plural}/{name} failed: {condition(obj, 'Succeeded')}")
        return obj if phase(obj) in phases else None

    try:
        return wait_for(
            probe,
            timeout=timeout,
            what=f"{plural}/{name} phase in {phases}",
            interval=0.5,
            ignore=(client.exceptions.ApiException,),
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {json.dumps(seen[-1] if seen else None, indent=1)}") from None


def model_manifest(
    hub: Hub,
    name: str,
    *,
    suspend: bool,
    template: dict[str, Any] | None = None,
    stop: dict[str, Any] | None = None,
    seed: int = 7,
    task: str = "bearing",
) -> dict[str, Any]:
    """A FederatedModel for one test's lineage; `suspend` keeps the campaign from creating rounds."""
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedModel",
        "metadata": {"name": name, "namespace": hub.namespace},
        "spec": {
            "task": task,
            "variant": "full",
            "initialWeights": {"seed": seed},
            "cadence": "",
            "suspend": suspend,
            "stop": stop or {"maxRounds": 1},
            "roundTemplate": template or {"plants": list(PLANTS), "minParticipants": 1, "pod": {"gpus": 1}},
        },
    }


def round_manifest(hub: Hub, name: str, model: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedRound",
        "metadata": {"name": name, "namespace": hub.namespace},
        "spec": {
            "modelRef": model,
            "plants": list(PLANTS),
            "minParticipants": 2,
            "deadlineSeconds": 600,
            "training": {"epochs": 1, "batchSize": 32, "learningRate": 0.05},
            **spec,
        },
    }


def create_lineage(hub: Hub, name: str, **kwargs: Any) -> dict[str, Any]:
    """Apply a suspended FederatedModel and wait for its init Job to promote version 1."""
    hub.apply(model_manifest(hub, name, suspend=True, **kwargs))
    return wait_for(
        lambda: (fm := hub.get("federatedmodels", name)).get("status", {}).get("promotedVersion") and fm,
        timeout=240,
        what=f"model {name} initialised",
        interval=0.5,
    )
