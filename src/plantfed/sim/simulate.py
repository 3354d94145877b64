"""`plantfed simulate`: the whole federation on one machine, with the production code paths.

The hub (model store + gRPC exchange on loopback + aggregation) runs in this process; every plant is its own
OS process running `plantfed train`, exactly the command a plant's training pod runs, authenticating with its
own token and seeing only its own data partition. Nothing is shortcut through shared memory: models and
updates cross real gRPC.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from plantfed.contract.metrics import Metrics
from plantfed.contract.records import Codec, DPMode, RoundRecord
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.privacy import DPRelease, PrivacyLedger, central_release, dearest_epsilon, round_costs
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.engine.store import ModelStore
from plantfed.exchange.auth import TokenBook
from plantfed.exchange.server import build_server
from plantfed.formats import codecs
from plantfed.plant.training import LocalTrainingConfig, pick_device
from plantfed.sim.baselines import BaselineReport, run_baselines
from plantfed.tasks.sdk import DataSpec, load_task


@dataclass
class SimulationConfig:
    plants: int = 3
    holdout: int = 0
    baselines: bool = False
    rounds: int = 5
    task: str = "bearing"
    data: Path | None = None
    data_options: dict[str, str] = field(default_factory=dict)
    out: Path = Path("runs/simulate")
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    fedprox_mu: float = 0.0
    codec: Codec = Codec.NONE
    clip_norm: float = 0.0
    noise_multiplier: float = 0.0
    #: LOCAL clips and noises each plant's whole update; SAMPLE runs DP-SGD on each plant
    dp_mode: DPMode = DPMode.LOCAL
    label_skew_alpha: float = 0.0
    variants: tuple[str, ...] = ()
    seed: int = 0
    parallel: int = 0
    metrics_port: int | None = None
    #: Keep serving metrics this long after the run, so a scraper collects the final values.
    metrics_linger_s: float = 0.0
    model_name: str = "bearing"
    plant_timeout_s: float = 1800.0
    #: δ at which each plant's ε is reported (and the budget checked).
    dp_delta: float = 1e-5
    #: A plant whose next round would take its ε above this sits the round out (PrivacyBudgetExhausted).
    epsilon_budget: float | None = None


@dataclass
class PlantRound:
    plant: str
    ok: bool
    num_samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    payload_bytes: int = 0
    bytes_sent: int = 0
    update_norm: float = 0.0
    cosine: float | None = None
    train_seconds: float = 0.0
    error: str | None = None
    #: ε spent by the plant after this round at `dp_delta` (None when no DP is configured).
    epsilon: float | None = None


@dataclass
class RoundReport:
    round: int
    round_id: str
    base_version: int
    version: int | None
    seconds: float
    aggregation_seconds: float
    bytes_up: int
    bytes_down: int
    plants: dict[str, PlantRound]
    global_loss: float | None = None
    global_accuracy: float | None = None
    #: Plants left out because their next round would exceed the ε budget.
    budget_exhausted: list[str] = field(default_factory=list)


class BudgetExhausted(RuntimeError):
    """No plant can take part in another round without exceeding the ε budget."""


def plant_name(index: int) -> str:
    return f"plant-{index + 1}"


class Simulation:
    def __init__(self, cfg: SimulationConfig, console: Console | None = None):
        if not 0 <= cfg.holdout < cfg.plants:
            raise ValueError(f"--holdout {cfg.holdout} must leave at least one of the {cfg.plants} plants training")
        if cfg.dp_mode is DPMode.SAMPLE and cfg.clip_norm > 0 and cfg.fedprox_mu > 0:
            raise ValueError(
                "--dp-mode sample (DP-SGD) cannot be combined with --fedprox-mu: the proximal term's "
                "gradient would escape per-record clipping"
            )
        self.cfg = cfg
        self.console = console or Console()
        self.out = Path(cfg.out).resolve()
        self.task = load_task(cfg.task)
        self.store = ModelStore(self.out / "hub" / "store")
        self.metrics = Metrics()
        everyone = [plant_name(i) for i in range(cfg.plants)]
        self.plants = everyone[: cfg.plants - cfg.holdout]
        self.holdout = everyone[cfg.plants - cfg.holdout :]
        self.reports: list[RoundReport] = []
        self.final_eval: dict[str, dict[str, float]] = {}
        self.baselines = None
        self.local_patterns = tuple(self.task.local_parameter_patterns())
        self.ledger = PrivacyLedger(self.store.root, cfg.model_name)
        self._last_contact: dict[str, float] = {}

    # -- privacy -----------------------------------------------------------------------------------------
    @property
    def dp_enabled(self) -> bool:
        return self.cfg.noise_multiplier > 0 or self.cfg.strategy.central_noise_multiplier is not None

    def _round_costs(self, plant: str) -> list[list[DPRelease]]:
        """What one more round may cost `plant`, priced exactly as the operator prices it."""
        c = self.cfg
        central = (
            central_release(c.strategy.central_noise_multiplier, c.strategy.norm_bound or 0.0)
            if c.strategy.central_noise_multiplier is not None
            else None
        )
        return round_costs(
            c.dp_mode,
            clip_norm=c.clip_norm,
            noise_multiplier=c.noise_multiplier,
            epochs=c.epochs,
            central=central,
            history=self.ledger.history(plant),
        )

    def _within_budget(self, plants: list[str]) -> tuple[list[str], list[str]]:
        """(plants that may train, plants whose next round would exceed the ε budget)."""
        budget = self.cfg.epsilon_budget
        if budget is None or not self.dp_enabled:
            return plants, []
        over = [
            p
            for p in plants
            if dearest_epsilon(self.ledger.history(p), self._round_costs(p), self.cfg.dp_delta) > budget
        ]
        return [p for p in plants if p not in over], over

    # -- hub ---------------------------------------------------------------------------------------------
    def _issue_tokens(self) -> Path:
        """One secret per plant; the hub keeps them as a Secret-like directory, each plant gets only its own."""
        book_dir = self.out / "hub" / "tokens"
        book_dir.mkdir(parents=True, exist_ok=True)
        for plant in self.plants + self.holdout:
            token = secrets.token_urlsafe(32)
            for path in (book_dir / plant, self.out / "plants" / plant / "token"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(token)
                path.chmod(0o600)
        return book_dir

    def _seed_model(self) -> int:
        torch.manual_seed(self.cfg.seed)
        model = self.task.build_model("full")
        path = self.out / "hub" / "initial.safetensors"
        codecs.save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        digest, _ = self.store.import_file(path)
        version = self.store.publish_model(self.cfg.model_name, digest, parent=None, round_id=None, metrics={})
        self.store.promote(self.cfg.model_name, version.version)
        return version.version

    # -- plants ------------------------------------------------------------------------------------------
    def _plant_command(self, plant: str, index: int, round_id: str, target: str) -> list[str]:
        c = self.cfg
        pdir = self.out / "plants" / plant
        cmd = [
            sys.executable,
            "-m",
            "plantfed",
            "train",
            "--exchange",
            target,
            "--plant",
            plant,
            "--token-file",
            str(pdir / "token"),
            "--round",
            round_id,
            "--task",
            c.task,
            "--state-dir",
            str(pdir),
            "--plant-index",
            str(index),
            "--num-plants",
            str(c.plants),
            "--seed",
            str(c.seed),
            "--epochs",
            str(c.epochs),
            "--batch-size",
            str(c.batch_size),
            "--learning-rate",
            str(c.learning_rate),
            "--optimizer",
            c.optimizer,
            "--fedprox-mu",
            str(c.fedprox_mu),
            "--codec",
            c.codec.value,
            "--clip-norm",
            str(c.clip_norm),
            "--noise-multiplier",
            str(c.noise_multiplier),
            "--dp-mode",
            c.dp_mode.value,
            "--label-skew-alpha",
            str(c.label_skew_alpha),
            "--report",
            str(pdir / "report.json"),
        ]
        if c.variants:
            cmd += ["--variant", c.variants[index % len(c.variants)]]
        return cmd + self._data_args()

    def _data_args(self) -> list[str]:
        args = [] if self.cfg.data is None else ["--data", str(Path(self.cfg.data).resolve())]
        for key, value in sorted(self.cfg.data_options.items()):
            args += ["--data-option", f"{key}={value}"]
        return args

    def _plant_env(self) -> dict[str, str]:
        """Split the machine's cores between concurrently training plants instead of oversubscribing them."""
        env = dict(os.environ)
        threads = max(1, (os.cpu_count() or 1) // max(1, self._parallel()))
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        return env

    def _parallel(self) -> int:
        return self.cfg.parallel or min(len(self.plants), os.cpu_count() or 1)

    def _run_plants(self, jobs: list[tuple[str, list[str]]], on_done) -> dict[str, tuple[int, str]]:
        """Run plant processes, at most `parallel` at once; returns plant -> (exit code, stderr tail)."""
        pending = list(jobs)
        running: dict[str, tuple[subprocess.Popen, object]] = {}
        results: dict[str, tuple[int, str]] = {}
        env = self._plant_env()
        while pending or running:
            while pending and len(running) < self._parallel():
                plant, cmd = pending.pop(0)
                log = open(self.out / "plants" / plant / "train.log", "ab")
                running[plant] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            for plant, (proc, log) in list(running.items()):
                try:
                    code = proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                log.close()
                del running[plant]
                tail = (self.out / "plants" / plant / "train.log").read_text(errors="replace")[-2000:]
                results[plant] = (code, tail)
                if code == 0:
                    self._plant_contacted(plant)
                on_done(plant, code)
        return results

    # -- one round ---------------------------------------------------------------------------------------
    def run_round(self, number: int, target: str, progress: Progress, bar) -> RoundReport:
        c = self.cfg
        started = time.perf_counter()
        base = self.store.promoted(c.model_name)
        round_id = f"{c.model_name}-r{number}"
        selected, exhausted = self._within_budget(self.plants)
        if not selected:
            raise BudgetExhausted(
                f"round {round_id}: every plant's next round would exceed ε budget {c.epsilon_budget}"
            )
        self.store.open_round(
            RoundRecord(round_id=round_id, model=c.model_name, base_version=base.version, plants=selected)
        )
        for plant in selected:
            (self.out / "plants" / plant / "report.json").unlink(missing_ok=True)
        jobs = [(p, self._plant_command(p, self.plants.index(p), round_id, target)) for p in selected]
        if exhausted:
            progress.update(bar, advance=len(exhausted))

        def done(plant: str, code: int) -> None:
            progress.update(
                bar,
                advance=1,
                description=f"round {number}/{c.rounds}: {plant} {'uploaded' if code == 0 else 'FAILED'}",
            )

        exits = self._run_plants(jobs, done)
        self.store.close_round(round_id)

        plants: dict[str, PlantRound] = {}
        for plant in selected:
            code, tail = exits[plant]
            report_path = self.out / "plants" / plant / "report.json"
            if code != 0 or not report_path.exists():
                plants[plant] = PlantRound(
                    plant=plant, ok=False, error=tail.strip().splitlines()[-1] if tail.strip() else f"exit {code}"
                )
                continue
            rep = json.loads(report_path.read_text())
            plants[plant] = PlantRound(
                plant=plant,
                ok=True,
                num_samples=rep["num_samples"],
                metrics=rep["metrics"],
                payload_bytes=rep["payload_bytes"],
                bytes_sent=rep["bytes_sent"],
                update_norm=rep["update_norm"],
                train_seconds=rep["train_seconds"],
            )
        ok = [p for p in plants.values() if p.ok]
        if not ok:
            self.metrics.rounds_total.labels(c.model_name, "failed").inc()
            raise RuntimeError(
                f"round {round_id}: every plant failed; first error: {next(iter(plants.values())).error}"
            )

        agg = aggregate_round(self.store, round_id, c.strategy, local_patterns=self.local_patterns)
        self.store.promote(c.model_name, agg.version.version)
        if self.dp_enabled:  # aggregate_round charged the aggregated plants' releases to the ledger
            for plant in selected:
                plants[plant].epsilon = self.ledger.epsilon(plant, c.dp_delta)
        if agg.result is not None:
            for stat in agg.result.plants:
                if stat.plant in plants:
                    plants[stat.plant].cosine = stat.cosine
        model_bytes = self.store.get_model(c.model_name, base.version).size
        report = RoundReport(
            round=number,
            round_id=round_id,
            base_version=base.version,
            version=agg.version.version,
            seconds=time.perf_counter() - started,
            aggregation_seconds=agg.seconds,
            bytes_up=sum(p.bytes_sent for p in ok),
            bytes_down=model_bytes * len(ok),
            plants=plants,
            budget_exhausted=exhausted,
        )
        self._export_round_metrics(report, agg)
        return report

    def _export_round_metrics(self, report: RoundReport, agg) -> None:
        """The operator's round metrics, from one simulated round (see docs/observability.md).

        The round number is set first: a scrape landing mid-update then pairs the new round with the
        previous round's values at worst, never a finished round with the next one's.
        """
        m, model = self.metrics, self.cfg.model_name
        m.round_number.labels(model).set(report.round)
        m.round_duration.labels(model).observe(report.seconds)
        m.rounds_total.labels(model, "succeeded").inc()
        m.plants_selected.labels(model).set(len(report.plants))
        m.plants_replied.labels(model).set(sum(p.ok for p in report.plants.values()))
        m.plants_failed.labels(model).set(sum(not p.ok for p in report.plants.values()))
        m.plants_late.labels(model).set(0)
        m.promoted_version.labels(model).set(report.version or 0)
        if agg.version.aggregation is not None:
            # Update norms as the hub received them (after the plants' clipping and noise), as on a cluster.
            m.record_aggregation(model, agg.version.aggregation)
        for p in report.plants.values():
            if not p.ok:
                continue
            if p.epsilon is not None:
                m.dp_epsilon.labels(model, p.plant).set(p.epsilon)
            m.plant_loss.labels(model, p.plant).set(p.metrics.get("train_loss", float("nan")))
            if "global_test_accuracy" in p.metrics:
                m.plant_accuracy.labels(model, p.plant).set(p.metrics["global_test_accuracy"])
        # Federated evaluation of the model this round started from, as the operator reports it: the
        # newly promoted model is scored when plants receive it (next round, or the final evaluation).
        incoming = _weighted(
            [
                (p.metrics["global_test_accuracy"], p.metrics["global_test_loss"], p.metrics["global_test_samples"])
                for p in report.plants.values()
                if p.ok and {"global_test_accuracy", "global_test_loss", "global_test_samples"} <= p.metrics.keys()
            ]
        )
        if incoming is not None:
            m.global_accuracy.labels(model).set(incoming[0])
            m.global_loss.labels(model).set(incoming[1])

    def _plant_contacted(self, plant: str) -> None:
        """A plant process finished cleanly, so it just talked to the hub: its heartbeat age restarts at 0."""
        first = plant not in self._last_contact
        self._last_contact[plant] = time.time()
        if first:
            self.metrics.heartbeat_age.labels(plant).set_function(lambda: time.time() - self._last_contact[plant])

    # -- evaluation -------------------------------------------------------------------------------------
    def _attach_global_metrics(self, final_eval: dict[str, dict[str, float]]) -> None:
        """Global model quality after round r = what plants measured on their test splits with that version.

        Plants score the incoming model at the start of every round (federated evaluation, numbers only),
        so round r's model is measured in round r+1; the last one by a final evaluation pass.
        """
        by_version: dict[int, list[tuple[float, float, float]]] = {}
        for rep in self.reports:
            for p in rep.plants.values():
                if p.ok and "global_test_accuracy" in p.metrics:
                    by_version.setdefault(rep.base_version, []).append(
                        (
                            p.metrics["global_test_accuracy"],
                            p.metrics["global_test_loss"],
                            p.metrics["global_test_samples"],
                        )
                    )
        for plant, ev in final_eval.items():
            if plant in self.plants:
                by_version.setdefault(int(ev["version"]), []).append(
                    (ev["test_accuracy"], ev["test_loss"], ev["test_samples"])
                )
        self.initial = _weighted(by_version.get(self.reports[0].base_version, [])) if self.reports else None
        for rep in self.reports:
            quality = _weighted(by_version.get(rep.version, []))
            if quality:
                rep.global_accuracy, rep.global_loss = quality
        if self.reports and self.reports[-1].global_accuracy is not None:
            self.metrics.global_accuracy.labels(self.cfg.model_name).set(self.reports[-1].global_accuracy)
            self.metrics.global_loss.labels(self.cfg.model_name).set(self.reports[-1].global_loss)
        for plant, ev in final_eval.items():
            self.metrics.plant_accuracy.labels(self.cfg.model_name, plant).set(ev["test_accuracy"])

    def _final_evaluation(self, target: str) -> dict[str, dict[str, float]]:
        c = self.cfg
        jobs = []
        for i, plant in enumerate(self.plants + self.holdout):
            pdir = self.out / "plants" / plant
            cmd = [
                sys.executable,
                "-m",
                "plantfed",
                "evaluate",
                "--exchange",
                target,
                "--plant",
                plant,
                "--token-file",
                str(pdir / "token"),
                "--model",
                c.model_name,
                "--task",
                c.task,
                "--state-dir",
                str(pdir),
                "--plant-index",
                str(i),
                "--num-plants",
                str(c.plants),
                "--seed",
                str(c.seed),
                "--report",
                str(pdir / "evaluation.json"),
            ]
            jobs.append((plant, cmd + self._data_args()))
        exits = self._run_plants(jobs, lambda plant, code: None)
        return {
            p: json.loads((self.out / "plants" / p / "evaluation.json").read_text())
            for p, (code, _) in exits.items()
            if code == 0
        }

    # -- driver ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if self.store.versions(c.model_name):
            raise RuntimeError(f"{self.out} already holds a simulation; pass a fresh --out directory")
        token_dir = self._issue_tokens()
        admin_token = secrets.token_urlsafe(32)
        server, port = build_server(
            self.store, TokenBook(token_dir), admin_token=admin_token, address="127.0.0.1:0", metrics=self.metrics
        )
        server.start()
        metrics_http = None
        if c.metrics_port is not None:
            from prometheus_client import start_http_server

            metrics_http, _ = start_http_server(c.metrics_port, addr="127.0.0.1", registry=self.metrics.registry)
        for outcome in ("succeeded", "failed"):  # from 0, so increase() over a window counts the first round
            self.metrics.rounds_total.labels(c.model_name, outcome)
        target = f"127.0.0.1:{port}"
        started = time.perf_counter()
        try:
            self._seed_model()
            self.console.print(
                f"[bold]plantfed simulate[/]: {len(self.plants)} plants × {c.rounds} rounds"
                f"{f' (+{len(self.holdout)} hold-out)' if self.holdout else ''}, task {c.task}, "
                f"strategy {c.strategy.name.value}, data {'synthetic' if c.data is None else c.data}, exchange {target}"
            )
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            ) as progress:
                bar = progress.add_task("starting", total=c.rounds * len(self.plants))
                for number in range(1, c.rounds + 1):
                    try:
                        self.reports.append(self.run_round(number, target, progress, bar))
                    except BudgetExhausted as stop:
                        self.console.print(f"[yellow]stopping early[/]: {stop}")
                        break
            self.final_eval = self._final_evaluation(target)
            self._attach_global_metrics(self.final_eval)
            if c.baselines:
                self.baselines = self._run_baselines()
        finally:
            server.stop(grace=2)
        try:
            return self._write_outputs(time.perf_counter() - started)
        finally:
            if metrics_http is not None:
                if c.metrics_linger_s > 0:
                    self.console.print(
                        f"serving metrics on 127.0.0.1:{c.metrics_port} for {c.metrics_linger_s:g} s more"
                    )
                    time.sleep(c.metrics_linger_s)
                metrics_http.shutdown()

    def _write_outputs(self, seconds: float) -> dict:
        from plantfed.sim.report import render_convergence

        report = {
            "config": _jsonable(asdict(self.cfg)),
            "initial": {"accuracy": self.initial[0], "loss": self.initial[1]} if self.initial else None,
            "rounds": [_jsonable(asdict(r)) for r in self.reports],
            "final_evaluation": self.final_eval,
            "holdout": self.holdout,
            "quality": quality_summary(self.reports, self.final_eval, self.plants, self.holdout, self.baselines),
            "seconds": seconds,
            "privacy": self._privacy_summary(),
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        render_convergence(report, self.out / "convergence.png")
        self._print_summary(report)
        return report

    def _privacy_summary(self) -> dict | None:
        """ε per plant at δ after the last round, and what one step is (see docs/security.md)."""
        if not self.dp_enabled:
            return None
        c = self.cfg
        return {
            "delta": c.dp_delta,
            "epsilon_budget": c.epsilon_budget,
            "epsilon": {p: self.ledger.epsilon(p, c.dp_delta) for p in self.plants},
            "rounds_charged": {p: len(self.ledger.rounds(p)) for p in self.plants},
            "accounting": "opacus RDP; one Gaussian release per round a plant's update is aggregated "
            "(local: σ=noise_multiplier, q=1; central: σ=central_noise_multiplier, q=1)",
        }

    def _spec(self, index: int) -> DataSpec:
        c = self.cfg
        return DataSpec(
            plant=plant_name(index),
            path=Path(c.data).resolve() if c.data else None,
            plant_index=index,
            num_plants=c.plants,
            seed=c.seed,
            options=dict(c.data_options),
        )

    def _run_baselines(self) -> BaselineReport:
        """Centralised and siloed models with the federation's compute budget (see plantfed.sim.baselines)."""
        c = self.cfg
        self.console.print(
            f"baselines: centralised + {len(self.plants)} siloed models, {c.rounds * c.epochs} epochs each"
        )
        initial = codecs.load_state(self.store.blob_path(self.store.get_model(c.model_name, 1).digest))
        torch.set_num_threads(1)
        return run_baselines(
            self.task,
            initial,
            [self._spec(i) for i in range(len(self.plants))],
            [self._spec(i) for i in range(c.plants)],
            self._training_config(),
            rounds=c.rounds,
            seed=c.seed,
            device=pick_device(),
            label_skew_alpha=c.label_skew_alpha,
        )

    def _training_config(self) -> LocalTrainingConfig:
        c = self.cfg
        return LocalTrainingConfig(
            epochs=c.epochs,
            batch_size=c.batch_size,
            learning_rate=c.learning_rate,
            optimizer=c.optimizer,
            fedprox_mu=c.fedprox_mu,
        )

    def _print_summary(self, report: dict) -> None:
        table = Table(title="federated rounds (global model, federated evaluation on each plant's test split)")
        for col in ("round", "version", "accuracy", "loss", "plants ok", "MB up", "seconds"):
            table.add_column(col, justify="right")
        for r in self.reports:
            table.add_row(
                str(r.round),
                str(r.version),
                _fmt(r.global_accuracy),
                _fmt(r.global_loss),
                f"{sum(p.ok for p in r.plants.values())}/{len(r.plants)}",
                f"{r.bytes_up / 1e6:.2f}",
                f"{r.seconds:.1f}",
            )
        self.console.print(table)
        quality = report["quality"]
        if quality.get("comparison"):
            cmp = Table(title="test accuracy per plant: federated vs centralised vs siloed (same compute budget)")
            cmp.add_column("plant")
            cmp.add_column("trained?")
            models = list(next(iter(quality["comparison"].values())))
            for name in models:
                cmp.add_column(name, justify="right")
            for plant, row in quality["comparison"].items():
                cmp.add_row(plant, "hold-out" if plant in self.holdout else "yes", *(_fmt(row[m]) for m in models))
            self.console.print(cmp)
        for key in ("federated_share_of_centralised", "rounds_to_95pct_of_final"):
            if quality.get(key) is not None:
                self.console.print(f"{key.replace('_', ' ')}: {quality[key]:.4g}")
        self.console.print(f"report: {self.out / 'report.json'}   plot: {self.out / 'convergence.png'}")


def quality_summary(
    reports: list[RoundReport],
    final_eval: dict[str, dict[str, float]],
    trained: list[str],
    holdout: list[str],
    baselines: BaselineReport | None,
) -> dict:
    """The learning-quality figures: per-plant comparison, federated/centralised share, rounds to 95 %."""
    accs = [r.global_accuracy for r in reports if r.global_accuracy is not None]
    out: dict = {"rounds_to_95pct_of_final": None, "federated_share_of_centralised": None, "comparison": {}}
    if accs:
        final = accs[-1]
        out["rounds_to_95pct_of_final"] = next(r.round for r in reports if (r.global_accuracy or 0) >= 0.95 * final)
    for plant in trained + holdout:
        row = {"federated": final_eval.get(plant, {}).get("test_accuracy")}
        if baselines is not None:
            for name, scores in baselines.scores.items():
                row[name] = scores[plant]["accuracy"]
        out["comparison"][plant] = row
    if baselines is not None and trained and all(out["comparison"][p]["federated"] is not None for p in trained):
        fed = sum(out["comparison"][p]["federated"] for p in trained) / len(trained)
        cen = sum(out["comparison"][p]["centralised"] for p in trained) / len(trained)
        out["federated_share_of_centralised"] = fed / cen if cen else None
    if baselines is not None:
        out["baseline_epochs"] = baselines.epochs
    return out


def _weighted(rows: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    total = sum(n for _, _, n in rows)
    if not rows or total == 0:
        return None
    return sum(acc * n for acc, _, n in rows) / total, sum(loss * n for _, loss, n in rows) / total


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "value") and not isinstance(obj, (int, float, str)):
        return obj.value
    return obj
