"""Builds the "plantfed / Federated convergence" Grafana dashboard.

The dashboard JSON lives in the hub chart (charts/plantfed-hub/dashboards/), which ships it as a
ConfigMap for Grafana's sidecar; it can also be imported by hand. It is generated rather than
hand-edited so that every panel follows the same conventions: a `datasource` variable (no
hard-coded datasource uid), `$namespace`/`$model`/`$plant` filters, `$__rate_interval` in every
rate(), and only metric names that src/plantfed/contract/metrics.py defines (tests/charts checks).

    python dashboards/build_dashboard.py          # rewrite the JSON
    python dashboards/build_dashboard.py --check  # exit 1 if the committed JSON is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

UID = "plantfed-convergence"
OUT = Path(__file__).resolve().parent.parent / "charts" / "plantfed-hub" / "dashboards" / "plantfed-convergence.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

# Label filters. Prometheus adds `namespace` from the scrape target; `.*` as the "All" value also
# matches series without the label (e.g. `plantfed simulate` scraped directly).
NS = 'namespace=~"$namespace"'
M = f'{NS}, model=~"$model"'
MP = f'{M}, plant=~"$plant"'
OBJECTIVE = f"max by (namespace, model, score, goal) (plantfed_objective{{{M}}})"
"""The task's primary score of each lineage, with its goal: joined on (namespace, model, score) to pick it."""


def primary(series: str, by: str) -> str:
    """`series` (a score gauge) restricted to each lineage's primary score, with its `goal` label."""
    return f"max by ({by}, score, goal) ({series} * on (namespace, model, score) group_left (goal) {OBJECTIVE})"


P = f'{NS}, plant=~"$plant"'


class Layout:
    """Places panels left to right on Grafana's 24-column grid and hands out panel ids."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._id(),
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def add(self, panel: dict, w: int, h: int = 8) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self) -> None:
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(expr: str, legend: str, ref: str = "A", instant: bool = False) -> dict:
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": not instant}
    if instant:
        t["instant"] = True
    return t


def timeseries(
    title: str,
    description: str,
    targets: list[dict],
    unit: str = "short",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    overrides: list | None = None,
    draw: str = "line",
    stack: bool = False,
) -> dict:
    defaults: dict = {
        "unit": unit,
        "custom": {
            "drawStyle": draw,
            "lineInterpolation": "stepAfter",
            "lineWidth": 2,
            "fillOpacity": 10,
            "showPoints": "auto",
            "spanNulls": True,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str, description: str, targets: list[dict], unit: str = "short", thresholds: list | None = None
) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "blue", "value": None}]},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "value_and_name",
        },
    }


def bargauge(title: str, description: str, targets: list[dict], unit: str, thresholds: list) -> dict:
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": unit, "min": 0, "thresholds": {"mode": "absolute", "steps": thresholds}},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        },
    }


def right_axis(regex: str, unit: str, label: str) -> dict:
    """Override moving series whose name matches `regex` to a right-hand axis of its own."""
    return {
        "matcher": {"id": "byRegexp", "options": regex},
        "properties": [
            {"id": "custom.axisPlacement", "value": "right"},
            {"id": "unit", "value": unit},
            {"id": "custom.axisLabel", "value": label},
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "decimals", "value": 0},
        ],
    }


def variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def build() -> dict:
    g = Layout()

    g.row("Convergence")
    g.add(
        timeseries(
            "Global primary score (and round)",
            "The task's primary score (accuracy, RMSE, ...) of each promoted global model, pooled over the plants; "
            "the legend says whether larger (Maximize) or smaller (Minimize) is better. The dashed line is the "
            "latest finished round number on the right axis: read the score against it.",
            [
                target(primary(f"plantfed_global_score{{{M}}}", "model"), "{{model}} {{score}} ({{goal}})"),
                target(f"max by (model) (plantfed_round_number{{{M}}})", "round {{model}}", "B"),
            ],
            "none",
            overrides=[right_axis("^round .*", "none", "round")],
        ),
        w=12,
        h=9,
    )
    g.add(
        timeseries(
            "Global loss (and round)",
            "Test loss of each promoted global model; the dashed line is the round number (right axis).",
            [
                target(f'max by (model) (plantfed_global_score{{{M}, score="loss"}})', "{{model}}"),
                target(f"max by (model) (plantfed_round_number{{{M}}})", "round {{model}}", "B"),
            ],
            "none",
            minimum=0,
            overrides=[right_axis("^round .*", "none", "round")],
        ),
        w=12,
        h=9,
    )
    g.add(
        stat(
            "Round",
            "Number of the latest finished round.",
            [target(f"max by (model) (plantfed_round_number{{{M}}})", "{{model}}", instant=True)],
        ),
        w=6,
        h=5,
    )
    g.add(
        stat(
            "Promoted version",
            "Version of the global model plants currently receive.",
            [target(f"max by (model) (plantfed_promoted_version{{{M}}})", "{{model}}", instant=True)],
        ),
        w=6,
        h=5,
    )
    g.add(
        stat(
            "Global primary score",
            "The task's primary score of the promoted model now (the legend gives its goal).",
            [
                target(
                    primary(f"plantfed_global_score{{{M}}}", "model"),
                    "{{model}} {{score}} ({{goal}})",
                    instant=True,
                )
            ],
        ),
        w=6,
        h=5,
    )
    g.add(
        stat(
            "Rounds by outcome (range)",
            "Rounds finished in the selected time range, by outcome.",
            [
                target(
                    f"sum by (outcome) (increase(plantfed_rounds_total{{{M}}}[$__range]))", "{{outcome}}", instant=True
                )
            ],
        ),
        w=6,
        h=5,
    )

    g.row("Per plant")
    g.add(
        timeseries(
            "Global model's primary score on each plant's data",
            "How well the promoted global model serves each plant, in the task's primary score. A plant far worse "
            "than the others is the one federation is not helping (data drift, different machines) - a "
            "candidate for personalisation.",
            [target(primary(f"plantfed_plant_score{{{MP}}}", "plant"), "{{plant}} {{score}} ({{goal}})")],
            "none",
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Local training loss per plant",
            "Each plant's training loss in its latest round.",
            [target(f"max by (plant) (plantfed_plant_loss{{{MP}}})", "{{plant}}")],
            "none",
            minimum=0,
        ),
        w=12,
    )

    g.row("Participation")
    g.add(
        timeseries(
            "Plants per round",
            "Latest round: plants selected, whose update was aggregated (replied), that missed the deadline "
            "(late), and whose training failed.",
            [
                target(f"sum(plantfed_round_plants_selected{{{M}}})", "selected"),
                target(f"sum(plantfed_round_plants_replied{{{M}}})", "replied", "B"),
                target(f"sum(plantfed_round_plants_late{{{M}}})", "late", "C"),
                target(f"sum(plantfed_round_plants_failed{{{M}}})", "failed", "D"),
            ],
            "none",
            minimum=0,
            overrides=[
                {
                    "matcher": {"id": "byName", "options": n},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}],
                }
                for n, c in (("selected", "blue"), ("replied", "green"), ("late", "orange"), ("failed", "red"))
            ],
        ),
        w=12,
    )
    g.add(
        bargauge(
            "Heartbeat age",
            "Seconds since each plant's agent last reported. Plants whose heartbeat is stale are not assigned rounds.",
            [target(f"max by (plant) (plantfed_plant_heartbeat_age_seconds{{{P}}})", "{{plant}}", instant=True)],
            "s",
            [{"color": "green", "value": None}, {"color": "orange", "value": 120}, {"color": "red", "value": 300}],
        ),
        w=12,
    )

    g.row("Drift and robustness")
    g.add(
        timeseries(
            "Update L2 norm per plant",
            "Size of each plant's latest weight update. A plant whose norm jumps away from the others is drifting "
            "or sending a faulty/poisoned update.",
            [target(f"max by (plant) (plantfed_update_l2_norm{{{MP}}})", "{{plant}}")],
            "none",
            minimum=0,
        ),
        w=12,
    )
    g.add(
        timeseries(
            "Update cosine similarity to the aggregate",
            "1 = the plant's update points the same way as the aggregate; near 0 or negative = it pulls against the "
            "federation.",
            [target(f"max by (plant) (plantfed_update_cosine_to_aggregate{{{MP}}})", "{{plant}}")],
            "none",
            minimum=-1,
            maximum=1,
        ),
        w=12,
    )

    g.row("Traffic")
    g.add(
        timeseries(
            "Update bytes received per plant",
            "Rate of update bytes the exchange accepted from each plant (compression shows up here).",
            [
                target(
                    f"sum by (plant) (rate(plantfed_update_bytes_received_total{{{MP}}}[$__rate_interval]))",
                    "{{plant}}",
                )
            ],
            "Bps",
            minimum=0,
        ),
        w=8,
    )
    g.add(
        timeseries(
            "Upload throughput per plant",
            "Throughput of each plant's latest upload: slow plant links show up here before they miss deadlines.",
            [target(f"max by (plant) (plantfed_upload_throughput_bytes_per_second{{{MP}}})", "{{plant}}")],
            "Bps",
            minimum=0,
        ),
        w=8,
    )
    g.add(
        timeseries(
            "Model bytes served",
            "Rate of global-model bytes the exchange served to plants.",
            [target(f"sum by (model) (rate(plantfed_model_bytes_served_total{{{M}}}[$__rate_interval]))", "{{model}}")],
            "Bps",
            minimum=0,
        ),
        w=8,
    )

    g.row("Durations and resources")
    g.add(
        timeseries(
            "Round duration",
            "Wall time from assignment to promotion: p50/p95 over rounds finished in the window, and the mean.",
            [
                target(
                    "histogram_quantile(0.5, sum by (le, model) "
                    f"(rate(plantfed_round_duration_seconds_bucket{{{M}}}[$__rate_interval])))",
                    "p50 {{model}}",
                ),
                target(
                    "histogram_quantile(0.95, sum by (le, model) "
                    f"(rate(plantfed_round_duration_seconds_bucket{{{M}}}[$__rate_interval])))",
                    "p95 {{model}}",
                    "B",
                ),
                target(
                    f"sum by (model) (rate(plantfed_round_duration_seconds_sum{{{M}}}[$__rate_interval])) / "
                    f"sum by (model) (rate(plantfed_round_duration_seconds_count{{{M}}}[$__rate_interval]))",
                    "mean {{model}}",
                    "C",
                ),
            ],
            "s",
            minimum=0,
            draw="points",
        ),
        w=8,
    )
    g.add(
        timeseries(
            "Aggregation duration",
            "Time to aggregate one round's updates, by strategy (p95 and mean).",
            [
                target(
                    "histogram_quantile(0.95, sum by (le, model, strategy) "
                    f"(rate(plantfed_aggregation_duration_seconds_bucket{{{M}}}[$__rate_interval])))",
                    "p95 {{model}} {{strategy}}",
                ),
                target(
                    "sum by (model, strategy) "
                    f"(rate(plantfed_aggregation_duration_seconds_sum{{{M}}}[$__rate_interval])) / "
                    "sum by (model, strategy) "
                    f"(rate(plantfed_aggregation_duration_seconds_count{{{M}}}[$__rate_interval]))",
                    "mean {{model}} {{strategy}}",
                    "B",
                ),
            ],
            "s",
            minimum=0,
            draw="points",
        ),
        w=8,
    )
    g.add(
        timeseries(
            "Aggregation peak memory",
            "Peak bytes held by the latest aggregation: size the aggregation Job's memory limit from this.",
            [target(f"max by (model) (plantfed_aggregation_peak_bytes{{{M}}})", "{{model}}")],
            "bytes",
            minimum=0,
        ),
        w=8,
    )

    g.row("Privacy")
    g.add(
        timeseries(
            "Differential-privacy budget spent (epsilon) per plant",
            (
                "Cumulative epsilon each plant has spent under differential privacy (clipped, noised updates), at the "
                "run's delta. Exported only while DP is on: with DP off there is no finite epsilon, so the panel shows "
                "no data rather than 0."
            ),
            [target(f"max by (plant) (plantfed_dp_epsilon_spent{{{MP}}})", "{{plant}}")],
            "none",
            minimum=0,
        ),
        w=24,
    )

    return {
        "uid": UID,
        "title": "plantfed / Federated convergence",
        "description": "Convergence, participation, drift, traffic and privacy of plantfed federated training.",
        "tags": ["plantfed", "federated-learning"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                },
                variable("namespace", "Namespace", "label_values(plantfed_round_number, namespace)"),
                variable("model", "Model", 'label_values(plantfed_round_number{namespace=~"$namespace"}, model)'),
                variable(
                    "plant",
                    "Plant",
                    'label_values(plantfed_plant_heartbeat_age_seconds{namespace=~"$namespace"}, plant)',
                ),
            ]
        },
        "panels": g.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python dashboards/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
