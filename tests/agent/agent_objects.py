"""Hub objects as the API server returns them, for the agent's pure tests and its control-plane tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound
from plantfed.contract.naming import API_VERSION

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def participant_body(
    plant: str,
    namespace: str = "plantfed-system",
    *,
    gpus: int = 1,
    variant: str = "full",
    sub_path: str = "",
    assignment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "PlantParticipant",
        "metadata": {"name": plant, "namespace": namespace, "generation": 1},
        "spec": {
            "plantId": plant,
            "capacity": {"gpus": gpus, "modelVariant": variant},
            "data": {"hostPath": {"path": "/data/vibration"}, **({"subPath": sub_path} if sub_path else {})},
        },
    }
    if assignment is not None:
        body["status"] = {"assignment": assignment}
    return body


def model_body(
    name: str = "bearing", namespace: str = "plantfed-system", promoted: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "FederatedModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"task": "bearing", "roundTemplate": {"plants": ["plant-a"], "minParticipants": 1}},
    }
    if promoted is not None:
        body["status"] = {"promotedVersion": promoted}
    return body


def round_spec(model: str = "bearing", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "modelRef": model,
        "plants": ["plant-a"],
        "minParticipants": 1,
        "deadlineSeconds": 3600,
        "training": {"epochs": 1, "batchSize": 32, "learningRate": 0.05},
    }
    spec.update(overrides)
    return spec


def round_status(
    plants: dict[str, str], phase: str = "Training", start: datetime = NOW, base: int = 1
) -> dict[str, Any]:
    return {
        "phase": phase,
        "baseVersion": base,
        "startTime": stamp(start),
        "plants": [{"plant": p, "state": s} for p, s in sorted(plants.items())],
        "assigned": len(plants),
    }


def round_body(
    name: str,
    plants: dict[str, str] | None = None,
    *,
    phase: str = "Training",
    namespace: str = "plantfed-system",
    created: datetime = NOW,
    start: datetime = NOW,
    uid: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "FederatedRound",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": stamp(created),
            **({"uid": uid} if uid else {}),
        },
        "spec": round_spec(**spec),
    }
    if plants is not None:
        body["status"] = round_status(plants, phase, start)
    return body


def fr(name: str, plants: dict[str, str] | None = None, **kw: Any) -> FederatedRound:
    return FederatedRound.from_object(round_body(name, plants, **kw))


def fm(name: str = "bearing", promoted: int | None = None) -> FederatedModel:
    return FederatedModel.from_object(model_body(name, promoted=promoted))


def pp(plant: str = "plant-a", **kw: Any) -> PlantParticipant:
    return PlantParticipant.from_object(participant_body(plant, **kw))


def later(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)
