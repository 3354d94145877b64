"""The hub chart ships exactly the repo's generated CRDs, as templates Helm upgrades and never deletes."""

from __future__ import annotations

import copy

import yaml
from helmchart import HUB, REPO

REPO_CRDS = REPO / "crds"
CHART_CRDS = HUB / "files" / "crds"
SYNC = "copy them: cp crds/*.yaml charts/plantfed-hub/files/crds/ (after `make crds`)"


def test_chart_copy_is_identical_to_generated_crds():
    generated = {p.name: p.read_bytes() for p in REPO_CRDS.glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    assert generated, "crds/ is empty: run `make crds`"
    assert sorted(shipped) == sorted(generated), f"chart CRD files differ from crds/: {SYNC}"
    stale = [name for name in generated if shipped[name] != generated[name]]
    assert not stale, f"chart copies of {stale} are stale: {SYNC}"


def test_rendered_crds_are_the_generated_ones_with_keep_policy(helm):
    rendered = {o["metadata"]["name"]: o for o in helm.render_hub().of("CustomResourceDefinition")}
    generated = {}
    for path in REPO_CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        generated[crd["metadata"]["name"]] = crd
    assert sorted(rendered) == sorted(generated)
    for name, crd in rendered.items():
        meta = crd["metadata"]
        # Uninstalling the hub must not delete the CRDs (and with them every round and model).
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        stripped = copy.deepcopy(crd)
        stripped["metadata"].pop("annotations")
        stripped["metadata"].pop("labels")
        want = copy.deepcopy(generated[name])
        for key in ("annotations", "labels"):
            for k in want["metadata"].get(key, {}):
                stripped["metadata"].setdefault(key, {})[k] = crd["metadata"][key][k]
        # Helm re-serialises the YAML (key order, 0.0 -> 0): compare the objects, not the text.
        assert stripped == want, f"{name}: rendered CRD differs from crds/{name}.yaml"


def test_crds_can_be_left_to_another_tool(helm):
    assert not helm.render_hub("--set", "crds.enabled=false").of("CustomResourceDefinition")
