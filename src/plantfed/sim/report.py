"""Convergence plots as a PNG, for people without Grafana: from a run's report.json or from Prometheus."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from plantfed.contract.plant_metrics import BASE_TEST_ACCURACY, TEST_ACCURACY
from plantfed.sim.campaign import plant_label


def _series(report: dict) -> tuple[list[int], list[float | None], list[float | None]]:
    rounds, acc, loss = [0], [], []
    initial = report.get("initial") or {}
    acc.append(initial.get("accuracy"))
    loss.append(initial.get("loss"))
    for r in report["rounds"]:
        rounds.append(r["round"])
        acc.append(r.get("global_accuracy"))
        loss.append(r.get("global_loss"))
    return rounds, acc, loss


def _plant_curves(report: dict) -> dict[str, tuple[list[int], list[float]]]:
    """Each plant's score of the global model it received at the start of round r (i.e. after round r-1).

    Keyed by the plant's label: its id, with the name its data gives it where that differs.
    """
    names = report.get("plant_names") or {}
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for r in report["rounds"]:
        for plant, p in r["plants"].items():
            value = p.get("metrics", {}).get(BASE_TEST_ACCURACY)
            if p.get("ok") and value is not None:
                xs, ys = curves.setdefault(plant_label(plant, names), ([], []))
                xs.append(r["round"] - 1)
                ys.append(value)
    last = report["rounds"][-1]["round"] if report["rounds"] else 0
    for plant, ev in (report.get("final_evaluation") or {}).items():
        xs, ys = curves.setdefault(plant_label(plant, names), ([], []))
        xs.append(last)
        ys.append(ev[TEST_ACCURACY])
    return curves


@dataclass
class Convergence:
    """What the three panels plot; returned by the render functions so callers can check it."""

    rounds: list[int]
    accuracy: list[float | None]
    loss: list[float | None]
    plant_accuracy: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    bytes_rounds: list[int] = field(default_factory=list)
    bytes_up: list[float] = field(default_factory=list)
    bytes_down: list[float] = field(default_factory=list)
    accuracy_title: str = "Test accuracy of the global model"


def convergence_from_report(report: dict) -> Convergence:
    rounds, acc, loss = _series(report)
    return Convergence(
        rounds=rounds,
        accuracy=acc,
        loss=loss,
        plant_accuracy=_plant_curves(report),
        bytes_rounds=[r["round"] for r in report["rounds"]],
        bytes_up=[float(r["bytes_up"]) for r in report["rounds"]],
        bytes_down=[float(r["bytes_down"]) for r in report["rounds"]],
    )


def render_convergence(report: dict, out: Path) -> Path:
    draw(convergence_from_report(report), out)
    return Path(out)


def draw(c: Convergence, out: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    pts = [(x, y) for x, y in zip(c.rounds, c.accuracy, strict=True) if y is not None]
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="o", color="tab:blue", label="global (weighted over plants)")
    for plant, (xs, ys) in sorted(c.plant_accuracy.items()):
        ax.plot(xs, ys, linestyle="--", alpha=0.6, label=plant)
    ax.set(title=c.accuracy_title, xlabel="round", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    ax = axes[1]
    pts = [(x, y) for x, y in zip(c.rounds, c.loss, strict=True) if y is not None]
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="o", color="tab:red")
    ax.set(title="Test loss of the global model", xlabel="round", ylabel="loss")
    ax = axes[2]
    up = [b / 1e6 for b in c.bytes_up]
    ax.bar(c.bytes_rounds, up, label="updates up")
    ax.bar(c.bytes_rounds, [b / 1e6 for b in c.bytes_down], bottom=up, label="models down")
    ax.set(title="Bytes moved per round", xlabel="round", ylabel="MB")
    ax.legend(fontsize=7)
    for a in axes:
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def render_run(run_dir: Path, out: Path | None = None) -> Path:
    run_dir = Path(run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    return render_convergence(report, out or run_dir / "convergence.png")


# -- from Prometheus -------------------------------------------------------------------------------------


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused a query; the message names the URL and the query."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus-style duration such as `6h`, `90m` or `1h30m`."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 6h, 2d, 1h30m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


@dataclass
class PrometheusSource:
    """Where to read plantfed's metrics: a Prometheus base URL and the series of one model lineage."""

    url: str
    model: str
    namespace: str | None = None
    timeout_s: float = 30.0

    def selector(self) -> str:
        matchers = [f'model="{_escape(self.model)}"']
        if self.namespace:
            matchers.append(f'namespace="{_escape(self.namespace)}"')
        return "{" + ", ".join(matchers) + "}"

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        params = urllib.parse.urlencode(
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        url = f"{self.url.rstrip('/')}/api/v1/query_range?{params}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except ValueError:
                pass
            raise PrometheusError(f"Prometheus at {self.url} refused {expr!r}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} refused {expr!r}: {body.get('error')}")
        return body["data"]["result"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _samples(result: list[dict]) -> dict[float, float]:
    """The first series of a query_range result as {timestamp: value} (NaN dropped)."""
    if not result:
        return {}
    return {float(t): float(v) for t, v in result[0]["values"] if not math.isnan(float(v))}


def convergence_from_prometheus(
    src: PrometheusSource, since_s: float, *, step_s: float | None = None, end: float | None = None
) -> Convergence:
    """Per-round curves of the model's most recent campaign in the window.

    Samples are paired by time with `plantfed_round_number`: a gauge's value for round r is its last
    sample while r was the latest finished round (global accuracy is the federated evaluation published
    then, so it scores the model round r started from until a final evaluation scores the last one); a
    counter's bytes for round r are its increase up to the first sample that shows round r finished.
    """
    end = time.time() if end is None else end
    start = end - since_s
    # Prometheus answers at most 11,000 points per series.
    step = step_s or max(1.0, math.ceil(since_s / 10_000))
    sel = src.selector()

    def one(expr: str) -> dict[float, float]:
        return _samples(src.query_range(expr, start, end, step))

    numbers = one(f"max(plantfed_round_number{sel})")
    if not numbers:
        raise PrometheusError(
            f"no plantfed_round_number{sel} in Prometheus at {src.url} over the last {since_s:g} s: "
            "check --model/--namespace, --since and that Prometheus scrapes plantfed"
        )
    campaign = _latest_campaign(sorted(numbers.items()))
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for t, r in campaign:
        first.setdefault(int(r), t)
        last[int(r)] = t
    rounds = sorted(first)
    window = (campaign[0][0], campaign[-1][0])

    def per_round(samples: dict[float, float]) -> list[float | None]:
        return [_last_between(samples, first[r], last[r]) for r in rounds]

    plants: dict[str, tuple[list[int], list[float]]] = {}
    for series in src.query_range(f"max by (plant) (plantfed_plant_accuracy{sel})", start, end, step):
        values = _samples([series])
        points = [(r, v) for r, v in zip(rounds, per_round(values), strict=True) if v is not None]
        if points:
            plants[series["metric"].get("plant", "?")] = ([r for r, _ in points], [v for _, v in points])
    up = one(f"sum(plantfed_update_bytes_received_total{sel})")
    down = one(f"sum(plantfed_model_bytes_served_total{sel})")
    return Convergence(
        rounds=rounds,
        accuracy=per_round(one(f"max(plantfed_global_accuracy{sel})")),
        loss=per_round(one(f"max(plantfed_global_loss{sel})")),
        plant_accuracy=plants,
        bytes_rounds=rounds,
        bytes_up=_per_round_increase(up, rounds, first, window[0]),
        bytes_down=_per_round_increase(down, rounds, first, window[0]),
        accuracy_title="Test accuracy published after each round",
    )


def _latest_campaign(numbers: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The samples since the round number last went down (a new lineage or a restarted simulation)."""
    begin = 0
    for i in range(1, len(numbers)):
        if numbers[i][1] < numbers[i - 1][1]:
            begin = i
    return list(numbers[begin:])


def _last_between(samples: dict[float, float], lo: float, hi: float) -> float | None:
    inside = [t for t in samples if lo <= t <= hi]
    return samples[max(inside)] if inside else None


def _per_round_increase(
    counter: dict[float, float], rounds: list[int], first: dict[int, float], begin: float
) -> list[float]:
    """Counter increase per round, reading it where each round is first seen finished (resets counted)."""

    def at(t: float) -> float | None:
        before = [s for s in counter if s <= t]
        return counter[max(before)] if before else None

    out = []
    for i, r in enumerate(rounds):
        now = at(first[r]) or 0.0
        if i > 0:
            prev = at(first[rounds[i - 1]]) or 0.0
        elif r == 1:
            prev = 0.0  # a lineage's counters start with its first round
        else:
            prev = at(begin - 1e-9) or now  # earlier rounds fell outside the window: unknown, plot none
        out.append(now - prev if now >= prev else now)  # a restarted exchange starts its counters at 0
    return out


def render_prometheus(src: PrometheusSource, out: Path, *, since_s: float, step_s: float | None = None) -> Convergence:
    curves = convergence_from_prometheus(src, since_s, step_s=step_s)
    draw(curves, out)
    return curves
