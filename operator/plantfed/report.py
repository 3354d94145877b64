"""Convergence plots from a run's report.json, for people without Grafana."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    """Each plant's score of the global model it received at the start of round r (i.e. after round r-1)."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for r in report["rounds"]:
        for plant, p in r["plants"].items():
            value = p.get("metrics", {}).get("global_test_accuracy")
            if p.get("ok") and value is not None:
                xs, ys = curves.setdefault(plant, ([], []))
                xs.append(r["round"] - 1)
                ys.append(value)
    last = report["rounds"][-1]["round"] if report["rounds"] else 0
    for plant, ev in (report.get("final_evaluation") or {}).items():
        xs, ys = curves.setdefault(plant, ([], []))
        xs.append(last)
        ys.append(ev["test_accuracy"])
    return curves


def render_convergence(report: dict, out: Path) -> Path:
    rounds, acc, loss = _series(report)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    pts = [(x, y) for x, y in zip(rounds, acc) if y is not None]
    if pts:
        ax.plot(*zip(*pts), marker="o", color="tab:blue", label="global (weighted over plants)")
    for plant, (xs, ys) in sorted(_plant_curves(report).items()):
        ax.plot(xs, ys, linestyle="--", alpha=0.6, label=plant)
    ax.set(title="Test accuracy of the global model", xlabel="round", ylabel="accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    ax = axes[1]
    pts = [(x, y) for x, y in zip(rounds, loss) if y is not None]
    if pts:
        ax.plot(*zip(*pts), marker="o", color="tab:red")
    ax.set(title="Test loss of the global model", xlabel="round", ylabel="loss")
    ax = axes[2]
    xs = [r["round"] for r in report["rounds"]]
    ax.bar(xs, [r["bytes_up"] / 1e6 for r in report["rounds"]], label="updates up")
    ax.bar(xs, [r["bytes_down"] / 1e6 for r in report["rounds"]], bottom=[r["bytes_up"] / 1e6 for r in report["rounds"]], label="models down")
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
