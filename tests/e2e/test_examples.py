"""The annotated manifests in examples/ stay valid, and the API server refuses invalid ones readably."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.crds import apply_crds
from support.paths import REPO

from plantfed.contract.naming import API_VERSION

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def hub_namespace(hub_and_plants):
    cluster = hub_and_plants.hub
    apply_crds(cluster)
    name = cluster.create_namespace("examples")
    yield cluster, name
    cluster.delete_namespace(name)


def in_namespace(path: Path, namespace: str) -> str:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return "\n---\n".join(yaml.safe_dump(d) for d in docs)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_server_side_validation(hub_namespace, path):
    cluster, namespace = hub_namespace
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=in_namespace(path, namespace))
    assert "(server dry run)" in out.stdout


def test_examples_cover_every_kind():
    kinds = {d["kind"] for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d}
    assert kinds == {"PlantParticipant", "FederatedModel", "FederatedRound"}


def _round(namespace: str, **spec) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedRound",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"modelRef": "bearing", "plants": ["a", "b"], "minParticipants": 2, **spec},
    }


INVALID = {
    "quorum above the plants listed (CEL)": (
        lambda ns: _round(ns, minParticipants=3),
        "minParticipants cannot exceed the number of plants listed",
    ),
    "fedprox without a proximal term (CEL)": (
        lambda ns: _round(ns, strategy={"name": "fedprox"}),
        "strategy fedprox needs training.fedProxMu > 0",
    ),
    "deadline below the minimum (schema)": (
        lambda ns: _round(ns, deadlineSeconds=5),
        "spec.deadlineSeconds: Invalid value",
    ),
    "unknown strategy (schema)": (
        lambda ns: _round(ns, strategy={"name": "fedmagic"}),
        'Unsupported value: "fedmagic"',
    ),
    "participant name differs from plantId (CEL)": (
        lambda ns: {
            "apiVersion": API_VERSION,
            "kind": "PlantParticipant",
            "metadata": {"name": "plant-x", "namespace": ns},
            "spec": {"plantId": "plant-y", "data": {"hostPath": {"path": "/data"}}},
        },
        "metadata.name must equal spec.plantId",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_manifest_is_refused_with_a_readable_message(hub_namespace, case):
    cluster, namespace = hub_namespace
    build, message = INVALID[case]
    out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(build(namespace)), check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
