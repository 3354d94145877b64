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

from plantfed.contract.plant_metrics import ACCURACY, LOSS, TEST, base_key, split_key
from plantfed.sim.campaign import plant_label

_ACCURACY_OBJECTIVE = {"score": ACCURACY, "goal": "Maximize", "unit_interval": True}
"""What a report.json written before tasks declared their scores was about."""


def objective(report: dict) -> dict:
    """The run's primary score: name, goal and whether it is a fraction in [0, 1]."""
    return report.get("objective") or _ACCURACY_OBJECTIVE


def _series(report: dict) -> tuple[list[int], list[float | None], list[float | None]]:
    name = objective(report)["score"]
    rounds, score, loss = [0], [], []
    initial = report.get("initial") or {}
    score.append(initial.get(name))
    loss.append(initial.get(LOSS))
    for r in report["rounds"]:
        rounds.append(r["round"])
        score.append(r.get(f"global_{name}"))
        loss.append(r.get(f"global_{LOSS}"))
    return rounds, score, loss


def _plant_curves(report: dict) -> dict[str, tuple[list[int], list[float]]]:
    """Each plant's score of the global model it received at the start of round r (i.e. after round r-1).

    Keyed by the plant's label: its id, with the name its data gives it where that differs.
    """
    names = report.get("plant_names") or {}
    name = objective(report)["score"]
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for r in report["rounds"]:
        for plant, p in r["plants"].items():
            value = p.get("metrics", {}).get(base_key(TEST, name))
            if p.get("ok") and value is not None:
                xs, ys = curves.setdefault(plant_label(plant, names), ([], []))
                xs.append(r["round"] - 1)
                ys.append(value)
    last = report["rounds"][-1]["round"] if report["rounds"] else 0
    for plant, ev in (report.get("final_evaluation") or {}).items():
        xs, ys = curves.setdefault(plant_label(plant, names), ([], []))
        if split_key(TEST, name) in ev:
            xs.append(last)
            ys.append(ev[split_key(TEST, name)])
    return curves


@dataclass
class Convergence:
    """What the three panels plot; returned by the render functions so callers can check it."""

    rounds: list[int]
    #: the task's primary score per round (`score_name`, read in the direction of `goal`)
    score: list[float | None]
    loss: list[float | None]
    plant_score: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    bytes_rounds: list[int] = field(default_factory=list)
    bytes_up: list[float] = field(default_factory=list)
    bytes_down: list[float] = field(default_factory=list)
    score_name: str = ACCURACY
    goal: str = "Maximize"
    #: the score is a fraction in [0, 1]: the axis shows all of it
    unit_interval: bool = True
    source: str = "of the global model"


def convergence_from_report(report: dict) -> Convergence:
    rounds, score, loss = _series(report)
    obj = objective(report)
    return Convergence(
        rounds=rounds,
        score=score,
        loss=loss,
        plant_score=_plant_curves(report),
        score_name=obj["score"],
        goal=obj["goal"],
        unit_interval=bool(obj.get("unit_interval")),
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
    pts = [(x, y) for x, y in zip(c.rounds, c.score, strict=True) if y is not None]
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="o", color="tab:blue", label="global (pooled over plants)")
    for plant, (xs, ys) in sorted(c.plant_score.items()):
        ax.plot(xs, ys, linestyle="--", alpha=0.6, label=plant)
    better = "higher is better" if c.goal == "Maximize" else "lower is better"
    ax.set(title=f"Test {c.score_name} {c.source}", xlabel="round", ylabel=f"{c.score_name} ({better})")
    if c.unit_interval:
        ax.set_ylim(0, 1.02)
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
    path = run_dir / "report.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no report.json: the run wrote nothing (did it start? see its console)")
    report = json.loads(path.read_text())
    return render_convergence(report, out or run_dir / "convergence.png")


def missing_parts(report: dict) -> list[str]:
    """What a run's report.json lacks because the run ended early (empty for a complete run)."""
    missing = []
    if report.get("failure"):
        missing.append(f"the run failed: {report['failure']}")
    planned = (report.get("config") or {}).get("rounds")
    done = len(report.get("rounds") or [])
    stopped = (report.get("campaign") or {}).get("stop_reason") or (report.get("campaign") or {}).get("stopped_early")
    if planned and done < planned and not stopped:
        missing.append(f"rounds: {done} of {planned} done")
    if report.get("failure") and not report.get("final_evaluation"):
        missing.append("the final evaluation of the promoted model (no per-plant comparison)")
    if (
        report.get("failure")
        and (report.get("config") or {}).get("baselines")
        and not (report.get("quality") or {}).get("baseline_epochs")
    ):
        missing.append("the centralised and siloed baselines")
    return missing


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
    sample while r was the latest finished round (a global score is the federated evaluation published
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

    name, goal = _objective(src, start, end, step)
    score_sel = _with(sel, "score", name)
    plants: dict[str, tuple[list[int], list[float]]] = {}
    for series in src.query_range(f"max by (plant) (plantfed_plant_score{score_sel})", start, end, step):
        values = _samples([series])
        points = [(r, v) for r, v in zip(rounds, per_round(values), strict=True) if v is not None]
        if points:
            plants[series["metric"].get("plant", "?")] = ([r for r, _ in points], [v for _, v in points])
    score = per_round(one(f"max(plantfed_global_score{score_sel})"))
    up = one(f"sum(plantfed_update_bytes_received_total{sel})")
    down = one(f"sum(plantfed_model_bytes_served_total{sel})")
    return Convergence(
        rounds=rounds,
        score=score,
        loss=per_round(one(f"max(plantfed_global_score{_with(sel, 'score', LOSS)})")),
        plant_score=plants,
        score_name=name,
        goal=goal,
        # Prometheus does not say what a score's range is: a larger-is-better score seen only in [0, 1] is a fraction.
        unit_interval=goal == "Maximize" and all(0.0 <= v <= 1.0 for v in score if v is not None),
        bytes_rounds=rounds,
        bytes_up=_per_round_increase(up, rounds, first, window[0]),
        bytes_down=_per_round_increase(down, rounds, first, window[0]),
        source="published after each round",
    )


def _with(selector: str, label: str, value: str) -> str:
    """`{a="b"}` plus `label="value"`."""
    return selector[:-1] + f', {label}="{_escape(value)}"' + "}"


def _objective(src: PrometheusSource, start: float, end: float, step: float) -> tuple[str, str]:
    """The lineage's primary score and goal (`plantfed_objective`); accuracy when none was published."""
    for series in src.query_range(f"max by (score, goal) (plantfed_objective{src.selector()})", start, end, step):
        labels = series["metric"]
        if "score" in labels:
            return labels["score"], labels.get("goal", "Maximize")
    return ACCURACY, "Maximize"


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
