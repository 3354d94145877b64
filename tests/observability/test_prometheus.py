"""plantfed's metrics through a real Prometheus: every Grafana panel shows data, and `plantfed report`
draws the convergence curves from what Prometheus stored.

One `plantfed simulate` run (2 plants, 3 rounds, local DP so the ε panel has data) serves its metrics;
Debian's `prometheus` scrapes it every second, adding the `namespace` label a ServiceMonitor adds in
Kubernetes. After the run (simulate lingers so the final values are scraped) every query of the
dashboard the hub chart ships is sent to Prometheus with Grafana's template variables filled in.
"""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from promserver import Prometheus, free_port, require_prometheus
from support.kube.wait import wait_for

from plantfed.engine.store import ModelStore
from plantfed.sim.report import PrometheusSource, render_prometheus

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "plantfed-hub" / "dashboards" / "plantfed-convergence.json"
NAMESPACE = "plantfed-observability"
MODEL = "bearing"
PLANTS = ["plant-1", "plant-2"]
ROUNDS = 3
SCRAPE_S = 1
STEP = "2s"
# Grafana's $__rate_interval is max($__interval + scrape interval, 4 × scrape interval); 15s is what a
# 1s-step panel over this run gets with the usual 15s scrape, and at least 4 of our 1s scrapes.
RATE_INTERVAL = "15s"

pytestmark = pytest.mark.slow


@dataclass
class ObservedRun:
    prom: Prometheus
    report: dict
    started: float
    finished: float
    out: Path


def _simulate_finished(proc: subprocess.Popen, report: Path, log: Path) -> bool:
    if report.exists():
        return True
    if proc.poll() is not None:
        raise AssertionError(
            f"plantfed simulate exited with {proc.returncode} before finishing:\n{log.read_text()[-4000:]}"
        )
    return False


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory):
    require_prometheus()
    work = tmp_path_factory.mktemp("observability")
    metrics_port = free_port()
    prom = Prometheus.start(
        work / "prometheus",
        "plantfed-simulate",
        f"127.0.0.1:{metrics_port}",
        {"namespace": NAMESPACE},
        scrape_interval=f"{SCRAPE_S}s",
    )
    out = work / "run"
    log = work / "simulate.log"
    started = time.time()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plantfed",
            "simulate",
            "--plants",
            str(len(PLANTS)),
            "--rounds",
            str(ROUNDS),
            "--out",
            str(out),
            "--metrics-port",
            str(metrics_port),
            "--metrics-linger",
            "900",
            "--data-option",
            "recordings_per_class=2",
            "--clip-norm",
            "1.0",
            "--noise-multiplier",
            "0.3",
            "--parallel",
            str(len(PLANTS)),
            # Per-round curves need rounds longer than a scrape interval: a round of fresh plant processes takes
            # seconds, a warm one about one, and two rounds' bytes would then share one scrape.
            "--plant-processes",
            "fresh",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=work,
    )
    try:
        wait_for(
            lambda: _simulate_finished(sim, out / "report.json", log),
            timeout=1200,
            interval=1,
            what=f"plantfed simulate to finish (log: {log})",
        )
        report = json.loads((out / "report.json").read_text())
        final = report["rounds"][-1]["global_accuracy"]
        sel = f'{{namespace="{NAMESPACE}", model="{MODEL}"}}'

        def final_values_scraped() -> bool:
            # The final evaluation is the last thing simulate sets before writing report.json.
            assert sim.poll() is None, (
                f"simulate stopped serving metrics before the final scrape:\n{log.read_text()[-2000:]}"
            )
            acc = prom.value(f'plantfed_global_score{sel[:-1]}, score="accuracy"}}')
            return prom.value(f"plantfed_round_number{sel}") == ROUNDS and acc is not None and math.isclose(acc, final)

        wait_for(final_values_scraped, timeout=120, what="Prometheus to scrape the run's final values")
        # One more scrape past the final values, so range queries ending now include them.
        wait_for(
            lambda: time.time() > _last_scrape(prom) > (out / "report.json").stat().st_mtime + SCRAPE_S,
            timeout=60,
            what="a scrape after the run ended",
        )
        yield ObservedRun(prom, report, started, time.time(), out)
    finally:
        if sim.poll() is None:
            sim.terminate()
            sim.wait(timeout=60)
        prom.stop()


def _last_scrape(prom: Prometheus) -> float:
    result = prom.instant('timestamp(up{job="plantfed-simulate"})')
    return float(result[0]["value"][1]) if result else 0.0


# -- the dashboard --------------------------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_targets(dash: dict) -> list[tuple[str, dict]]:
    panels = [q for p in dash["panels"] for q in (p, *p.get("panels", []))]
    return [(p["title"], t) for p in panels if p.get("type") != "row" for t in p.get("targets", [])]


def interpolate(expr: str, values: dict[str, str]) -> str:
    """Grafana's variable substitution ($name, ${name}, ${name:format}) for the values a user picked."""

    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"{expr!r} uses ${name}, which this test does not know how Grafana fills in")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, expr)


def grafana_values(run: ObservedRun, namespace: str, model: str, plant: str) -> dict[str, str]:
    seconds = math.ceil(run.finished - run.started) + 60
    return {
        "namespace": namespace,
        "model": model,
        "plant": plant,
        "datasource": "prometheus",
        "__rate_interval": RATE_INTERVAL,
        "__interval": STEP,
        "__range": f"{seconds}s",
        "__range_s": str(seconds),
        "__range_ms": str(seconds * 1000),
    }


def finite_samples(result: list[dict]) -> int:
    values = [v for series in result for _, v in series.get("values", [series.get("value", (0, "NaN"))])]
    return sum(math.isfinite(float(v)) for v in values)


SELECTIONS = {
    # Grafana's "All" is allValue ".*"; a single pick is the label value itself.
    "all": lambda run: grafana_values(run, ".*", ".*", ".*"),
    "one plant": lambda run: grafana_values(run, NAMESPACE, MODEL, PLANTS[1]),
}


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_every_dashboard_panel_query_returns_data(observed: ObservedRun, selection: str) -> None:
    values = SELECTIONS[selection](observed)
    empty = []
    targets = panel_targets(dashboard())
    assert len(targets) >= 20, "the dashboard lost its panels"
    for title, target in targets:
        expr = interpolate(target["expr"], values)
        if target.get("instant"):
            result = observed.prom.instant(expr, at=observed.finished)
        else:
            result = observed.prom.api(
                "query_range", query=expr, start=f"{observed.started:.3f}", end=f"{observed.finished:.3f}", step=STEP
            )["result"]
        if not finite_samples(result):
            empty.append(f"{title!r} [{target['refId']}]: {expr}")
    assert not empty, "dashboard queries with no data from a plantfed simulate run:\n" + "\n".join(empty)


def label_values(run: ObservedRun, query: str, values: dict[str, str]) -> list[str]:
    """What Grafana's `label_values(selector, label)` variable query lists, via the same API call."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", interpolate(query, values))
    assert match, f"not a label_values() query: {query}"
    selector, label = match.groups()
    return run.prom.api(
        f"label/{label}/values", **{"match[]": [selector], "start": f"{run.started:.3f}", "end": f"{run.finished:.3f}"}
    )


def test_dashboard_variables_list_the_run(observed: ObservedRun) -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"] if v["type"] == "query"}
    values = grafana_values(observed, ".*", ".*", ".*")
    expected = {"namespace": [NAMESPACE], "model": [MODEL], "plant": PLANTS}
    assert set(variables) == set(expected)
    for name, want in expected.items():
        assert label_values(observed, variables[name]["query"]["query"], values) == want, name


# -- what the run exported -------------------------------------------------------------------------------


def test_final_values_match_the_run_report(observed: ObservedRun) -> None:
    prom, report = observed.prom, observed.report
    m = f'namespace="{NAMESPACE}", model="{MODEL}"'
    last = report["rounds"][-1]
    # The norms the hub received (after each plant's clipping and noise), as the aggregation recorded them.
    aggregation = ModelStore(observed.out / "hub" / "store").get_model(MODEL, last["version"]).aggregation
    assert aggregation is not None
    assert prom.value(f"plantfed_round_number{{{m}}}") == ROUNDS
    assert prom.value(f"plantfed_promoted_version{{{m}}}") == last["version"]
    assert prom.value(f'plantfed_rounds_total{{{m}, outcome="succeeded"}}') == ROUNDS
    assert prom.value(f'plantfed_rounds_total{{{m}, outcome="failed"}}') == 0
    assert prom.value(f"plantfed_round_duration_seconds_count{{{m}}}") == ROUNDS
    assert prom.value(f'plantfed_aggregation_duration_seconds_count{{{m}, strategy="fedavg"}}') == ROUNDS
    assert prom.value(f'plantfed_global_score{{{m}, score="loss"}}') == pytest.approx(last["global_loss"])
    assert prom.value(f'plantfed_global_score{{{m}, score="macro_f1"}}') == pytest.approx(last["global_macro_f1"])
    assert prom.value(f'plantfed_objective{{{m}, score="accuracy", goal="Maximize"}}') == 1
    for plant in PLANTS:
        pm = f'{m}, plant="{plant}"'
        final = report["final_evaluation"][plant]
        assert prom.value(f'plantfed_plant_score{{{pm}, score="accuracy"}}') == pytest.approx(final["test_accuracy"])
        assert prom.value(f"plantfed_update_l2_norm{{{pm}}}") == pytest.approx(aggregation.plants[plant]["l2_norm"])
        assert prom.value(f"plantfed_dp_epsilon_spent{{{pm}}}") == pytest.approx(report["privacy"]["epsilon"][plant])
        received = sum(r["plants"][plant]["bytes_sent"] for r in report["rounds"])
        assert prom.value(f"plantfed_update_bytes_received_total{{{pm}}}") == received
        # The simulator's heartbeat: seconds since the plant's last process (the final evaluation) ended.
        age = prom.value(f'plantfed_plant_heartbeat_age_seconds{{namespace="{NAMESPACE}", plant="{plant}"}}')
        assert age is not None and 0 <= age <= observed.finished - observed.started


def test_the_global_score_is_published_every_round(observed: ObservedRun) -> None:
    """Convergence is visible while the run progresses, not only at its end."""
    series = observed.prom.api(
        "query_range",
        query=f'plantfed_global_score{{namespace="{NAMESPACE}", model="{MODEL}", score="accuracy"}}',
        start=f"{observed.started:.3f}",
        end=f"{observed.finished:.3f}",
        step=f"{SCRAPE_S}s",
    )["result"]
    first_seen = float(series[0]["values"][0][0])
    rounds = observed.prom.api(
        "query_range",
        query=f'plantfed_round_number{{namespace="{NAMESPACE}", model="{MODEL}"}}',
        start=f"{observed.started:.3f}",
        end=f"{observed.finished:.3f}",
        step=f"{SCRAPE_S}s",
    )["result"]
    round_one_seen = float(rounds[0]["values"][0][0])
    # Published with round 1's metrics, long before the run's final evaluation.
    assert first_seen <= round_one_seen + SCRAPE_S
    assert float(rounds[0]["values"][0][1]) == 1


# -- plantfed report --prometheus -------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_plots_each_round_from_prometheus(observed: ObservedRun, tmp_path: Path) -> None:
    report = observed.report
    since = time.time() - observed.started + 60
    curves = render_prometheus(PrometheusSource(observed.prom.url, MODEL, NAMESPACE), tmp_path / "c.png", since_s=since)
    assert png_size(tmp_path / "c.png") == (1650, 462)
    rounds = report["rounds"]
    assert curves.rounds == [1, 2, 3]
    # Accuracy published when round r finished: plants' score of the model round r started from, and for
    # the last round the final evaluation of the last model.
    assert (curves.score_name, curves.goal) == ("accuracy", "Maximize")
    assert curves.score == pytest.approx(
        [report["initial"]["accuracy"], rounds[0]["global_accuracy"], rounds[2]["global_accuracy"]]
    )
    assert curves.loss == pytest.approx([report["initial"]["loss"], rounds[0]["global_loss"], rounds[2]["global_loss"]])
    assert sorted(curves.plant_score) == PLANTS
    for plant in PLANTS:
        xs, ys = curves.plant_score[plant]
        assert xs == [1, 2, 3]
        assert ys[-1] == pytest.approx(report["final_evaluation"][plant]["test_accuracy"])
    assert curves.bytes_rounds == [1, 2, 3]
    assert curves.bytes_up == [r["bytes_up"] for r in rounds]
    assert curves.bytes_down == [r["bytes_down"] for r in rounds]


def test_report_cli_from_prometheus(observed: ObservedRun, tmp_path: Path) -> None:
    out = tmp_path / "convergence.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantfed",
            "report",
            "--prometheus",
            observed.prom.url,
            "--model",
            MODEL,
            "--namespace",
            NAMESPACE,
            "--since",
            "1h",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rounds 1-3" in done.stdout
    assert png_size(out) == (1650, 462)

    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantfed",
            "report",
            "--prometheus",
            observed.prom.url,
            "--model",
            "no-such-model",
            "--since",
            "1h",
            "--out",
            str(tmp_path / "none.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode != 0
    assert 'plantfed_round_number{model="no-such-model"}' in missing.stderr
    assert not (tmp_path / "none.png").exists()
