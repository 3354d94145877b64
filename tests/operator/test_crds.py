"""The generated CRDs: in sync with the models, structural, and their CEL rules do what they say.

CEL rules are evaluated with cel-python on objects defaulted the way the API server defaults
them, as a stand-in until tests can run against a real control plane.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml
from pydantic import ValidationError

from plantfed.contract.api import FederatedModel, FederatedRound, PlantParticipant
from plantfed.contract.api.crdgen import RESOURCES, crd, crd_filename, generate_crds, main
from plantfed.contract.api.openapi import SchemaError, apply_defaults, to_structural, walk
from plantfed.contract.naming import API_VERSION

REPO = Path(__file__).resolve().parents[2]

PLANT = (
    f"apiVersion: {API_VERSION}\n"
    + """kind: PlantParticipant
metadata: {name: plant-a, labels: {region: eu}}
spec:
  plantId: plant-a
  data: {pvc: {claimName: bearing-data}, subPath: vibration/2026, format: npz}
  maintenanceWindows:
  - {schedule: "0 22 * * 5", durationMinutes: 120, timeZone: Europe/Berlin}
"""
)

ROUND = (
    f"apiVersion: {API_VERSION}\n"
    + """kind: FederatedRound
metadata: {name: bearing-r1}
spec:
  modelRef: bearing
  plantSelector:
    matchLabels: {region: eu}
    matchExpressions: [{key: line, operator: In, values: [a, b]}]
  minParticipants: 2
  strategy: {name: fedprox}
  training: {fedProxMu: 0.01}
"""
)

MODEL = (
    f"apiVersion: {API_VERSION}\n"
    + """kind: FederatedModel
metadata: {name: bearing}
spec:
  task: bearing
  initialWeights: {seed: 7}
  roundTemplate: {plants: [plant-a, plant-b, plant-c], minParticipants: 2}
  stop: {maxRounds: 20, metric: accuracy, target: 0.95, patience: 3}
"""
)

EXAMPLES = {"PlantParticipant": PLANT, "FederatedRound": ROUND, "FederatedModel": MODEL}
BY_KIND = {r.kind_name: r for r in RESOURCES}


def schema_of(kind: str) -> dict[str, Any]:
    return crd(BY_KIND[kind])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def example(kind: str) -> dict[str, Any]:
    return yaml.safe_load(EXAMPLES[kind])


# --- a small stand-in for the API server's CEL validation -------------------------------------


def _celpy() -> Any:
    return pytest.importorskip("celpy", reason="cel-python evaluates the CRDs' CEL rules (dev dependency)")


@functools.cache
def _program(rule: str) -> Any:
    env = _celpy().Environment()
    return env.program(env.compile(rule))


def _eval(rule: str, self_: Any, old: Any) -> bool:
    celpy = _celpy()
    activation = {"self": celpy.json_to_cel(self_)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    result = _program(rule).evaluate(activation)
    assert isinstance(result, celpy.celtypes.BoolType), f"rule {rule!r} did not evaluate to a bool: {result!r}"
    return bool(result)


def cel_violations(schema: dict[str, Any], value: Any, old: Any = None) -> list[str]:
    """Messages of the rules `value` breaks; transition rules (oldSelf) run only on updates."""
    failed = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is None:
            continue
        if not _eval(rule["rule"], value, old):
            failed.append(rule["message"])
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                failed += cel_violations(sub, value[name], old.get(name) if isinstance(old, dict) else None)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            failed += [m for v in value.values() for m in cel_violations(extra, v)]
    if isinstance(value, list) and "items" in schema:
        failed += [m for v in value for m in cel_violations(schema["items"], v)]
    return failed


def admit(kind: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    schema = schema_of(kind)
    return cel_violations(schema, apply_defaults(obj, schema), apply_defaults(old, schema) if old else None)


# --- drift and structure ----------------------------------------------------------------------


def test_committed_crds_match_the_models():
    committed = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert committed == generate_crds(), "run `python -m plantfed.contract.api.crdgen --out crds`"


def test_check_mode_reports_drift_and_write_mode_fixes_it(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--check"]) == 1
    stale = tmp_path / crd_filename(FederatedRound)
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    stale.write_text(stale.read_text().replace("minParticipants", "minParticipant"))
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert crd_filename(FederatedRound) in capsys.readouterr().err


@pytest.mark.parametrize("kind", sorted(BY_KIND))
def test_schema_is_structural_and_bounded(kind):
    """Every node typed, no unions or refs, and every list, map and string bounded (CEL cost)."""
    for path, node in walk(schema_of(kind)):
        assert "type" in node, path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "nullable", "const"} & node.keys(), path
        if "default" in node:
            assert "null" not in yaml.safe_dump(node["default"]), f"{path}: the API server rejects null defaults"
        if path in (".metadata", ".apiVersion", ".kind"):
            continue
        if node["type"] == "array":
            assert "maxItems" in node, path
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node and "properties" not in node, path
        if node["type"] == "object":
            assert "properties" in node or "additionalProperties" in node, path
        if node["type"] == "string":
            assert {"maxLength", "enum", "format"} & node.keys(), path
        for name in node.get("properties", {}):
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", name), f"{path}.{name} is not camelCase"


@pytest.mark.parametrize("kind", sorted(BY_KIND))
def test_crd_metadata_for_kubectl(kind):
    resource = BY_KIND[kind]
    spec = crd(resource)["spec"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert spec["names"]["categories"] == ["plantfed"]
    assert spec["names"]["shortNames"] == list(resource.short_names)
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"].split("[")[0].strip(".").split(".")
        if path[0] == "metadata":
            continue
        node = schema
        for part in path:
            if isinstance(node.get("additionalProperties"), dict):  # a map (e.g. status.metrics): any key
                node = node["additionalProperties"]
                continue
            assert part in node.get("properties", {}), f"printer column {column['name']} points at {column['jsonPath']}"
            node = node["properties"][part]


@pytest.mark.parametrize("kind", sorted(BY_KIND))
def test_conditions_follow_api_conventions(kind):
    status = schema_of(kind)["properties"]["status"]
    assert "observedGeneration" in status["properties"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) >= {"type", "status", "lastTransitionTime", "reason"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    reason = re.compile(item["properties"]["reason"]["pattern"])
    assert reason.match("QuorumUnreachable") and not reason.match("quorum unreachable")


def test_identity_fields_are_immutable():
    def rules(node):
        return [r["rule"] for r in node.get("x-kubernetes-validations", [])]

    assert "self == oldSelf" in rules(schema_of("PlantParticipant")["properties"]["spec"]["properties"]["plantId"])
    assert "self == oldSelf" in rules(schema_of("FederatedRound")["properties"]["spec"])
    model_spec = schema_of("FederatedModel")["properties"]["spec"]["properties"]
    for field in ("task", "variant", "initialWeights"):
        assert "self == oldSelf" in rules(model_spec[field]), field


# --- defaults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BY_KIND))
def test_server_defaults_equal_python_defaults(kind):
    """What the API server stores for a minimal manifest is what the operator's models assume."""
    obj = example(kind)
    defaulted = apply_defaults(obj, schema_of(kind))
    parsed = BY_KIND[kind].from_object(obj).to_dict()
    assert defaulted["spec"] == parsed["spec"]


def test_nested_defaults_fill_in_from_an_empty_object():
    spec = apply_defaults(example("FederatedRound"), schema_of("FederatedRound"))["spec"]
    assert spec["deadlineSeconds"] == 3600
    # Strategy parameters have no schema defaults: each strategy has its own (plantfed.contract.strategies).
    assert spec["strategy"] == {"name": "fedprox"}
    assert spec["privacy"]["mode"] == "off" and spec["promotion"]["policy"] == "Always"
    assert spec["lateUploadPolicy"] == "Reject"


# --- CEL rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BY_KIND))
def test_examples_pass_every_rule(kind):
    assert admit(kind, example(kind)) == []


def _set(obj: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    *parents, leaf = dotted.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return obj


_DELETE = object()

INVALID = [
    ("PlantParticipant", "spec.data.hostPath", {"path": "/data"}, "exactly one of pvc or hostPath"),
    ("PlantParticipant", "spec.data.pvc", _DELETE, "exactly one of pvc or hostPath"),
    ("PlantParticipant", "spec.data.subPath", "a/../../etc", "must not contain '..'"),
    ("PlantParticipant", "metadata.name", "plant-b", "metadata.name must equal spec.plantId"),
    ("FederatedRound", "spec.plantSelector", _DELETE, "set plantSelector, plants, or both"),
    ("FederatedRound", "spec.training.fedProxMu", 0.0, "fedprox needs training.fedProxMu > 0"),
    (
        "FederatedRound",
        "spec.strategy",
        {"name": "trimmedMean", "trimFraction": 0.0},
        "trimmedMean needs trimFraction > 0",
    ),
    ("FederatedRound", "spec.promotion", {"policy": "IfBetter"}, "IfBetter needs a metric"),
    ("FederatedRound", "spec.privacy", {"mode": "local", "noiseMultiplier": 0.0}, "noiseMultiplier must be > 0"),
    (
        "FederatedRound",
        "spec.privacy",
        {"mode": "sample", "noiseMultiplier": 1.0},
        "cannot be combined with training.fedProxMu",
    ),
    (
        "FederatedRound",
        "spec.plantSelector.matchExpressions",
        [{"key": "line", "operator": "In"}],
        "values must be non-empty",
    ),
    (
        "FederatedRound",
        "spec.plantSelector.matchExpressions",
        [{"key": "line", "operator": "Exists", "values": ["a"]}],
        "values must be non-empty",
    ),
    (
        "FederatedRound",
        "spec.pod.tolerations",
        [{"key": "gpu", "operator": "Exists", "value": "x"}],
        "value must be empty",
    ),
    (
        "FederatedModel",
        "spec.initialWeights",
        {"seed": 1, "fromVersion": {"model": "m", "version": 2}},
        "exactly one of seed or fromVersion",
    ),
    ("FederatedModel", "spec.stop", {"target": 0.9}, "target needs metric"),
    ("FederatedModel", "spec.stop", {"patience": 2}, "patience needs metric"),
]


def test_min_participants_cannot_exceed_listed_plants():
    obj = _set(_set(example("FederatedRound"), "spec.plants", ["plant-a", "plant-b"]), "spec.minParticipants", 3)
    assert admit("FederatedRound", obj) == ["minParticipants cannot exceed the number of plants listed"]
    assert admit("FederatedRound", _set(obj, "spec.minParticipants", 2)) == []


@pytest.mark.parametrize(("kind", "path", "value", "message"), INVALID)
def test_invalid_objects_are_rejected_with_a_readable_message(kind, path, value, message):
    violations = admit(kind, _set(example(kind), path, value))
    assert len(violations) == 1 and message in violations[0], violations


@pytest.mark.parametrize(
    ("kind", "path", "value", "message"),
    [
        ("PlantParticipant", "spec.plantId", "plant-z", "plantId is immutable"),
        ("FederatedRound", "spec.deadlineSeconds", 60, "spec is immutable"),
        ("FederatedModel", "spec.task", "gearbox", "task is immutable"),
        ("FederatedModel", "spec.initialWeights", {"seed": 8}, "initialWeights is immutable"),
    ],
)
def test_updates_to_immutable_fields_are_rejected(kind, path, value, message):
    old = example(kind)
    assert any(message in m for m in admit(kind, _set(old, path, value), old=old))
    assert admit(kind, old, old=old) == []


def test_campaign_settings_of_a_model_stay_editable():
    old = example("FederatedModel")
    new = _set(_set(old, "spec.cadence", "0 * * * *"), "spec.roundTemplate.minParticipants", 3)
    assert admit("FederatedModel", new, old=old) == []


# --- Python parsing ---------------------------------------------------------------------------


def test_from_object_reads_a_server_body_with_extra_metadata():
    body = example("FederatedRound")
    body["metadata"].update(
        uid="1234",
        generation=3,
        resourceVersion="77",
        creationTimestamp="2026-11-02T10:00:00Z",
        managedFields=[{"manager": "kubectl"}],
        annotations={"kopf.zalando.org/last-handled-configuration": "{}"},
    )
    body["status"] = {
        "kopf": {"progress": {}},
        "phase": "Training",
        "startTime": "2026-11-02T10:00:05Z",
        "plants": [
            {"plant": "plant-a", "state": "Uploaded", "samples": 1200, "bytes": 4096, "metrics": {"loss": 0.3}},
        ],
    }
    fr = FederatedRound.from_object(kopf.Body(cast(kopf.RawBody, body)))
    assert fr.metadata.generation == 3
    assert fr.spec.model_ref == "bearing" and fr.spec.training.fed_prox_mu == 0.01
    assert fr.status.plants[0].samples == 1200
    assert fr.to_dict()["status"]["startTime"] == "2026-11-02T10:00:05Z"


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("FederatedRound", "kind", "FederatedModel"),
        ("FederatedRound", "spec.minParticipants", 0),
        ("FederatedRound", "spec.strategy.name", "krum"),
        ("FederatedRound", "spec.pod.memory", "lots"),
        ("FederatedRound", "spec.trainig", {"epochs": 2}),
        ("PlantParticipant", "spec.maintenanceWindows", [{"schedule": "61 * * * *", "durationMinutes": 5}]),
        (
            "PlantParticipant",
            "spec.maintenanceWindows",
            [{"schedule": "0 1 * * *", "durationMinutes": 5, "timeZone": "Mars/Olympus"}],
        ),
        ("FederatedModel", "spec.cadence", "every day"),
    ],
)
def test_from_object_rejects_what_the_schema_rejects(kind, path, value):
    with pytest.raises(ValidationError):
        BY_KIND[kind].from_object(_set(example(kind), path, value))


# --- the converter ----------------------------------------------------------------------------


def test_converter_rejects_what_a_structural_schema_cannot_express():
    with pytest.raises(SchemaError, match="unions"):
        to_structural({"type": "object", "properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}})
    with pytest.raises(SchemaError, match="free-form"):
        to_structural({"type": "object", "properties": {"x": {"type": "object", "additionalProperties": True}}})
    with pytest.raises(SchemaError, match="needs a type"):
        to_structural({"type": "object", "properties": {"x": {"description": "anything"}}})


def test_converter_maps_json_schema_idioms_to_openapi():
    out = to_structural(
        {
            "type": "object",
            "properties": {
                "opt": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                "one": {"const": "x", "type": "string"},
                "rate": {"type": "number", "exclusiveMinimum": 0},
                "ref": {"$ref": "#/$defs/Sub", "description": "used here"},
            },
            "$defs": {
                "Sub": {"type": "object", "title": "Sub", "properties": {"n": {"type": "integer", "default": 1}}}
            },
        }
    )["properties"]
    assert out["opt"] == {"type": "integer", "format": "int64"}
    assert out["one"] == {"type": "string", "enum": ["x"]}
    assert out["rate"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert out["ref"]["description"] == "used here" and "title" not in out["ref"]


def test_plant_participant_kind_is_checked():
    with pytest.raises(ValidationError):
        PlantParticipant.from_object({**example("FederatedModel")})
    assert FederatedModel.from_object(example("FederatedModel")).spec.initial_weights.seed == 7
