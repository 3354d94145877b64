"""values.schema.json: the charts refuse values that would deploy something broken, with a message
that names the offending key, before anything reaches a cluster."""

from __future__ import annotations

import json

import pytest
import yaml
from helmchart import HUB, KUBE_VERSION, PLANT, PLANT_CI_VALUES, PLANT_NAMESPACE

HUB_SCHEMA = json.loads((HUB / "values.schema.json").read_text())
PLANT_SCHEMA = json.loads((PLANT / "values.schema.json").read_text())


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def mentions(output: str, path: str) -> bool:
    # Helm's validator prints either "a.b" or "/a/b" depending on the version.
    return path.replace("/", ".") in output or "/" + path in output


@pytest.fixture(scope="module")
def jsonschema():
    return pytest.importorskip("jsonschema")


def test_schemas_are_valid_and_accept_the_shipped_values(jsonschema):
    for schema in (HUB_SCHEMA, PLANT_SCHEMA):
        jsonschema.Draft7Validator.check_schema(schema)
    hub_defaults = yaml.safe_load((HUB / "values.yaml").read_text())
    jsonschema.validate(hub_defaults, HUB_SCHEMA)
    plant = merged(yaml.safe_load((PLANT / "values.yaml").read_text()), yaml.safe_load(PLANT_CI_VALUES.read_text()))
    jsonschema.validate(plant, PLANT_SCHEMA)


def test_plant_defaults_alone_are_incomplete(jsonschema):
    # plant.id, hub.exchange and hub.existingSecret have no sensible default.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load((PLANT / "values.yaml").read_text()), PLANT_SCHEMA)


def test_objects_are_closed(jsonschema):
    """Every object with declared properties rejects unknown keys (a typo must not be ignored)."""
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(HUB_SCHEMA, "hub")
    walk(PLANT_SCHEMA, "plant")
    assert not open_objects


PLANT_BAD = [
    (["--set", "training.gpus=-1"], "training/gpus"),
    (["--set", "training.gpus=1.5"], "training/gpus"),
    (["--set", "trainng.gpus=1"], "trainng"),
    (["--set", "plant.id=Plant_A"], "plant/id"),
    (["--set", "hub.exchange=hub.example.com"], "hub/exchange"),
    (["--set", "image.pullPolicy=Sometimes"], "image/pullPolicy"),
    (["--set", "cache.accessModes={ReadOnlyMany}"], "cache/accessModes"),
    (["--set-json", 'training.tolerations=[{"key":"gpu","operator":"Maybe"}]'], "training/tolerations"),
    (["--set", "hub.clientCertSecret=Plant_A.TLS"], "hub/clientCertSecret"),
    (["--set", "hub.clientCertSecret=plantfed-client-tls", "--set", "hub.tls=false"], "hub/tls"),
]
HUB_BAD = [
    (["--set", "exchange.service.type=Ingress"], "exchange/service/type"),
    (["--set", "metrics.port=70000"], "metrics/port"),
    (["--set", "tls.enabled=yes"], "tls/enabled"),
    (["--set", "tls.certManager.issuerRef.kind=Vault"], "tls/certManager/issuerRef/kind"),
    (["--set", "tls.mutual.enabled=yes"], "tls/mutual/enabled"),
    (["--set", "tls.mutual.enabled=true", "--set", "tls.enabled=false"], "tls/enabled"),
    (["--set", "tls.mutual.clientCa=ca.crt"], "clientCa"),
    (["--set", "exchange.stor.size=1Gi"], "stor"),
    (["--set", "image.digest=latest"], "image/digest"),
    (["--set-json", 'plants=[{"name":"Plant A","data":{"pvc":{"claimName":"d"}}}]'], "plants/0/name"),
    (["--set-json", 'plants=[{"name":"plant-a"}]'], "plants/0"),
    (
        ["--set-json", 'plants=[{"name":"plant-a","data":{"pvc":{"claimName":"d"},"hostPath":{"path":"/d"}}}]'],
        "plants/0/data",
    ),
]


@pytest.mark.parametrize(("args", "path"), PLANT_BAD, ids=[" ".join(a) for a, _ in PLANT_BAD])
def test_plant_chart_rejects(helm, args, path):
    for command in (["template", "plantfed"], ["lint"]):
        result = helm.run(
            *command, str(PLANT), "--namespace", PLANT_NAMESPACE, *KUBE_VERSION, "-f", str(PLANT_CI_VALUES), *args
        )
        assert result.returncode != 0, f"helm {command[0]} accepted {args}"
        assert "schema" in result.output and mentions(result.output, path), result.output


@pytest.mark.parametrize(("args", "path"), HUB_BAD, ids=[" ".join(a) for a, _ in HUB_BAD])
def test_hub_chart_rejects(helm, args, path):
    result = helm.run("template", "plantfed", str(HUB), *KUBE_VERSION, *args)
    assert result.returncode != 0, f"helm template accepted {args}"
    assert "schema" in result.output and mentions(result.output, path), result.output
