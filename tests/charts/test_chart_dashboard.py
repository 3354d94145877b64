"""The Grafana convergence dashboard: importable, portable across Grafana instances, and querying
only metrics plantfed actually exports (src/plantfed/contract/metrics.py is the single source)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
from helmchart import HUB, REPO

from plantfed.contract.metrics import Metrics

DASHBOARD = HUB / "dashboards" / "plantfed-convergence.json"
METRIC = re.compile(r"\bplantfed_[a-zA-Z0-9_]+")


def exported_series_names() -> set[str]:
    """Every series name Prometheus can see from the registry, suffixes included."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def expressions(dash: dict) -> list[tuple[str, str]]:
    found = [(p["title"], t["expr"]) for p in panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            found.append((f"variable {var['name']}", query["query"]))
    return found


@pytest.fixture(scope="module")
def dash() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_committed_json_is_what_the_generator_builds():
    spec = importlib.util.spec_from_file_location("build_dashboard", REPO / "dashboards" / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUT == DASHBOARD
    assert DASHBOARD.read_text() == module.render(), "run: python dashboards/build_dashboard.py"


def test_fixed_uid_and_title(dash):
    # A stable uid keeps links and the sidecar's provisioning pointing at one dashboard across upgrades.
    assert dash["uid"] == "plantfed-convergence"
    assert dash["title"]
    assert "id" not in dash or dash["id"] is None


def test_variables(dash):
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "model", "plant"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "model", "plant"):
        v = variables[name]
        assert v["type"] == "query" and v["includeAll"] and v["multi"]
        # ".*" rather than Grafana's joined list: also matches series without the label.
        assert v["allValue"] == ".*"
        assert v["datasource"]["uid"] == "${datasource}"
        assert name in v["query"]["query"]


def test_every_query_uses_the_datasource_variable(dash):
    for p in panels(dash):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]


def test_only_metrics_defined_in_plantfed_metrics(dash):
    known = exported_series_names()
    used = {(where, name) for where, expr in expressions(dash) for name in METRIC.findall(expr)}
    unknown = sorted((name, where) for where, name in used if name not in known)
    assert not unknown, f"metrics not defined in src/plantfed/contract/metrics.py: {unknown}"


def test_rate_windows_use_rate_interval(dash):
    for where, expr in expressions(dash):
        for func, window in re.findall(r"\b(rate|irate)\(\s*[^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{where}: {func}() over [{window}]"


def test_queries_filter_by_namespace_and_their_labels(dash):
    # prometheus_client keeps a family's label names only on the metric object.
    labels_of = {m._name: set(m._labelnames) for m in vars(Metrics()).values() if hasattr(m, "_labelnames")}
    assert labels_of["plantfed_plant_score"] == {"model", "plant", "score"}
    for where, expr in expressions(dash):
        if where.startswith("variable"):
            continue
        for selector in re.findall(r"(plantfed_[a-z0-9_]+)\{([^}]*)\}", expr):
            name, matchers = selector
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert 'namespace=~"$namespace"' in matchers, f"{where}: {name} not filtered by namespace"
            for label, var in (("model", "$model"), ("plant", "$plant")):
                if label in labels_of[base]:
                    assert f'{label}=~"{var}"' in matchers, f"{where}: {name} not filtered by {label}"


def test_covers_what_operators_watch(dash):
    # The questions the dashboard exists to answer, each needing its metric on some panel.
    used = {name for _, expr in expressions(dash) for name in METRIC.findall(expr)}
    for metric in (
        "plantfed_global_score",
        "plantfed_objective",
        "plantfed_round_number",
        "plantfed_plant_score",
        "plantfed_round_plants_selected",
        "plantfed_round_plants_replied",
        "plantfed_round_plants_late",
        "plantfed_round_plants_failed",
        "plantfed_update_l2_norm",
        "plantfed_update_cosine_to_aggregate",
        "plantfed_update_bytes_received_total",
        "plantfed_upload_throughput_bytes_per_second",
        "plantfed_round_duration_seconds_bucket",
        "plantfed_aggregation_duration_seconds_bucket",
        "plantfed_aggregation_peak_bytes",
        "plantfed_promoted_version",
        "plantfed_dp_epsilon_spent",
        "plantfed_plant_heartbeat_age_seconds",
    ):
        assert metric in used, f"no panel shows {metric}"


def test_layout_is_valid(dash):
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    occupied: set[tuple[int, int]] = set()
    for p in panels(dash):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        cells = {(g["y"] + dy, g["x"] + dx) for dy in range(g["h"]) for dx in range(g["w"])}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
