"""The charts speak the contract's API group and version (plantfed.contract.naming), which they cannot import.

Every plantfed group in an RBAC rule, every plantfed apiVersion of an object and every CRD's group and version
in what the charts render must be the contract's; a chart that drifted would grant rights on, or create objects
of, an API the operator does not serve.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from helmchart import HUB_TOGGLES, PLANT_TOGGLES, WITH_CRDS, Manifests

from plantfed.contract.naming import API_VERSION, GROUP, PLANT_KEY, VERSION


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key, f"{path}/<key>")
            yield from _strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}/{i}")
    elif isinstance(node, str):
        yield path, node


def _renders(helm: Any) -> list[tuple[str, Manifests]]:
    plants = ["-f", str(helm.plants_file)]
    hub = [(f"hub/{t}", helm.render_hub(*a, *plants, *WITH_CRDS)) for t, a in HUB_TOGGLES.items()]
    return hub + [(f"plant/{t}", helm.render_plant(*a)) for t, a in PLANT_TOGGLES.items()]


def test_every_rendered_plantfed_group_and_version_is_the_contracts(helm) -> None:
    wrong: list[str] = []
    seen_groups = 0
    for render, manifests in _renders(helm):
        for obj in manifests:
            where = f"{render}: {obj['kind']}/{obj['metadata']['name']}"
            if "plantfed" in obj["apiVersion"] and obj["apiVersion"] != API_VERSION:
                wrong.append(f"{where} apiVersion {obj['apiVersion']}")
            for rule in obj.get("rules", []) if obj["kind"] in ("Role", "ClusterRole") else []:
                for group in rule.get("apiGroups", []):
                    if "plantfed" in group:
                        seen_groups += 1
                        if group != GROUP:
                            wrong.append(f"{where} grants on apiGroup {group!r}")
            if obj["kind"] == "CustomResourceDefinition":
                if obj["spec"]["group"] != GROUP or [v["name"] for v in obj["spec"]["versions"]] != [VERSION]:
                    wrong.append(
                        f"{where} serves {obj['spec']['group']} {[v['name'] for v in obj['spec']['versions']]}"
                    )
            # Anything else that looks like a plantfed API version (e.g. in a ConfigMap or an argument).
            for path, text in _strings(obj):
                for found in re.findall(r"[a-z0-9.-]*plantfed[a-z0-9.-]*/v[0-9]+[a-z0-9]*", text):
                    if found != API_VERSION and not path.startswith("/spec/versions"):
                        wrong.append(f"{where} at {path}: {found}")
    assert seen_groups, "no plantfed RBAC rule rendered: the check would pass vacuously"
    assert not wrong, "\n".join(wrong)


def test_plant_participants_render_once_the_contracts_version_is_served(helm) -> None:
    """The chart's capability check names the contract's group/version, or it would never create a participant."""
    plants = ["-f", str(helm.plants_file)]
    with_crd = helm.render_hub(*plants, "--api-versions", f"{API_VERSION}/PlantParticipant")
    assert sorted(p["metadata"]["name"] for p in with_crd.of("PlantParticipant")) == ["plant-a", "plant-b"]
    assert {p["apiVersion"] for p in with_crd.of("PlantParticipant")} == {API_VERSION}
    assert helm.render_hub(*plants, "--api-versions", f"{GROUP}/v0/PlantParticipant").of("PlantParticipant") == []


@pytest.mark.parametrize("kind", ["Role", "RoleBinding", "ServiceAccount"])
def test_per_plant_objects_carry_the_contracts_plant_label(helm, kind: str) -> None:
    manifests = helm.render_hub("-f", str(helm.plants_file))
    mine = [o for o in manifests.of(kind) if o["metadata"]["name"] == "plantfed-plant-plant-a"]
    assert len(mine) == 1 and mine[0]["metadata"]["labels"][PLANT_KEY] == "plant-a"
