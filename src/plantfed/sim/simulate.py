"""`plantfed simulate`: rehearse a campaign on one machine with the operator's own policy, in virtual time.

The hub is real: the model store, the gRPC exchange on loopback, and the operator's pure reconcilers
(`reconcile_model`, `reconcile_round`, `reconcile_participant`) driven over in-memory FederatedModel,
FederatedRound and PlantParticipant objects by `plantfed.sim.hub.LocalOperator`, which carries out the same
actions the operator's executor does (the aggregation and init Jobs run their own container commands).
Every plant runs its agent's decision function (`plantfed.sim.plants.Fleet`) and trains in its own OS
process (a warm worker kept across rounds, or a fresh process per Job: `plantfed.sim.workers`), `plantfed
train` with its own token, seeing only its own data partition; candidates are scored by `plantfed evaluate
--round` in the same processes. Nothing crosses shared memory: models, updates and evaluations cross
real gRPC.

Time is simulated where it would only be waited for: the clock jumps to the next thing that can happen (a
requeue the reconcilers asked for, a cadence tick, a deadline, a plant's virtual completion), so a
50-round campaign on a 6-hour cadence takes as long as its training, not 12 days. A plant's virtual
duration is what its process measured, stretched by its heterogeneity profile (`plantfed.sim.profile`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from plantfed.contract.api.common import ConditionStatus, MetricGoal, ObjectMeta
from plantfed.contract.api.model import FederatedModel, FederatedModelSpec, InitialWeights, ModelPhase, StopCriteria
from plantfed.contract.api.round import (
    FederatedRound,
    LateUploadPolicy,
    Optimizer,
    PlantRoundState,
    PrivacyMode,
    Promotion,
    PromotionPolicy,
    RoundPhase,
    RoundTemplate,
    Strategy,
    Training,
)
from plantfed.contract.metrics import Metrics
from plantfed.contract.plant_metrics import TEST, TEST_SAMPLES, VAL, base_scores, is_split_key, split_key
from plantfed.contract.records import Codec, DPMode
from plantfed.contract.scores import Score, pool, scope_of, scores_only
from plantfed.contract.strategies import PARAMETERS
from plantfed.engine.privacy import PrivacyLedger
from plantfed.engine.store import ModelStore
from plantfed.exchange import AdminClient
from plantfed.exchange.auth import TokenBook
from plantfed.exchange.server import build_server
from plantfed.formats import codecs
from plantfed.hub.config import OperatorConfig
from plantfed.hub.reconcile import get_condition, round_number
from plantfed.hub.telemetry import Telemetry
from plantfed.plant.training import LocalTrainingConfig, pick_device
from plantfed.sim.baselines import BaselineReport, run_baselines
from plantfed.sim.campaign import (
    Campaign,
    CampaignError,
    from_manifests,
    participants_for,
    plant_label,
    plant_name,
    privacy_from_flags,
    with_profile,
)
from plantfed.sim.hub import Event, LocalOperator, Visibility
from plantfed.sim.plants import Fleet, LocalSettings, PlantSetup, UploadGate
from plantfed.sim.profile import FleetProfile
from plantfed.sim.workers import MIB, WARM, Run, Warm, processes
from plantfed.tasks.sdk import DataSpec, Task, TaskError, load_task

_SETTLE_PASSES = 200
"""Reconcile passes at one virtual instant before simulate calls it a bug (a decision that never settles)."""


@dataclass
class SimulationConfig:
    plants: int = 3
    holdout: int = 0
    baselines: bool = False
    #: The campaign's stop.maxRounds (None with manifests: the manifest's own).
    rounds: int | None = 5
    task: str = "bearing"
    data: Path | None = None
    data_options: dict[str, str] = field(default_factory=dict)
    out: Path = Path("runs/simulate")
    strategy: Strategy = field(default_factory=Strategy)
    #: Central DP (privacy mode central): σ of the hub's noise; needs strategy.norm_bound.
    central_noise_multiplier: float | None = None
    #: Hub-side strategy parameters a FederatedRound does not carry (noise_seed, buffer_bytes), appended to
    #: every aggregation Job's command: a fixed noise_seed makes central DP reproducible, which no cluster is.
    aggregation_overrides: dict[str, float | int] = field(default_factory=dict)
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    #: local SGD momentum (spec.training.momentum)
    momentum: float = 0.9
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
    #: A plant process with no result after this many (real) seconds is killed and reported as failed.
    plant_timeout_s: float = 1800.0
    #: warm: one worker process per plant across rounds; fresh: a process per Job, as pods (plantfed.sim.workers).
    plant_processes: str = WARM
    #: warm: what live workers may hold (default: 75 % of available memory).
    plant_memory_budget_mib: float | None = None
    #: δ at which each plant's ε is reported (and the budget checked).
    dp_delta: float = 1e-5
    #: A plant whose next round would take its ε above this sits the round out (PrivacyBudgetExhausted).
    epsilon_budget: float | None = None
    #: Quorum (default: 2, or every training plant when there are fewer).
    min_participants: int | None = None
    deadline_seconds: int = 3600
    late_upload_policy: LateUploadPolicy = LateUploadPolicy.REJECT
    promotion: PromotionPolicy = PromotionPolicy.ALWAYS
    promotion_metric: str | None = None
    #: Whether larger values of the promotion/stop metric are better (default: the task's goal for that score).
    goal: MetricGoal | None = None
    #: How long contributing plants get to score a candidate (default: 0 under Always, 600 under IfBetter).
    evaluation_timeout_s: int | None = None
    cadence: str = ""
    stop_metric: str | None = None
    stop_target: float | None = None
    patience: int | None = None
    #: FederatedModel / FederatedRound / PlantParticipant manifests; the campaign flags above are then unused.
    manifests: tuple[Path, ...] = ()
    profile: FleetProfile = field(default_factory=FleetProfile)


@dataclass
class PlantRound:
    plant: str
    ok: bool
    #: The plant's state in the round's status (Uploaded, Late, Failed, Excluded, ...) and why.
    state: str = ""
    reason: str | None = None
    message: str = ""
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
    #: The plant's score of the round's candidate on its validation split.
    evaluation: dict[str, float] = field(default_factory=dict)
    #: Virtual times: the training Job started, and its update arrived (or the Job failed).
    virtual_start: str | None = None
    virtual_finish: str | None = None
    dropped: bool = False


@dataclass
class RoundReport:
    round: int
    round_id: str
    base_version: int | None
    #: The candidate version aggregated in this round (None if it never aggregated).
    version: int | None
    seconds: float
    aggregation_seconds: float
    bytes_up: int
    bytes_down: int
    plants: dict[str, PlantRound]
    phase: str = ""
    reason: str = ""
    message: str = ""
    promoted: bool = False
    #: The round's model scored on the plants' test splits, pooled (score name -> value; `global_<name>` in
    #: report.json).
    global_scores: dict[str, float] = field(default_factory=dict)
    #: Plants left out because their next round would exceed the ε budget.
    budget_exhausted: list[str] = field(default_factory=list)
    virtual_start: str | None = None
    virtual_cutoff: str | None = None
    virtual_completion: str | None = None


class Simulation:
    def __init__(self, cfg: SimulationConfig, console: Console | None = None):
        if cfg.manifests and cfg.holdout:
            raise ValueError("--holdout builds plants from flags; with -f, list every plant as a PlantParticipant")
        if not cfg.manifests and not 0 <= cfg.holdout < cfg.plants:
            raise ValueError(f"--holdout {cfg.holdout} must leave at least one of the {cfg.plants} plants training")
        if cfg.dp_mode is DPMode.SAMPLE and cfg.clip_norm > 0 and cfg.fedprox_mu > 0:
            raise ValueError(
                "--dp-mode sample (DP-SGD) cannot be combined with --fedprox-mu: the proximal term's "
                "gradient would escape per-record clipping"
            )
        self.cfg = cfg
        self.console = console or Console()
        self.out = Path(cfg.out).resolve()
        self.campaign = self._campaign()
        self.model_name = self.campaign.model.name
        self.task = load_task(self.campaign.model.spec.task)
        self.primary = self.task.primary_score()
        self.names = self.campaign.plant_names  # in order: a plant's index picks its data partition
        #: what each plant's data calls it (a motor load, a site): shown next to its id in tables and plots
        self.plant_names = {plant: self.task.plant_name(self._spec(i)) for i, plant in enumerate(self.names)}
        candidates = self._candidates()
        self.plants = [p for p in self.names if p in candidates]
        self.holdout = [p for p in self.names if p not in candidates]
        self.store = ModelStore(self.out / "hub" / "store")
        self.metrics = Metrics()
        self.telemetry = Telemetry(self.metrics)
        self.ledger = PrivacyLedger(self.store.root, self.model_name)
        self.reports: list[RoundReport] = []
        self.final_eval: dict[str, dict[str, float]] = {}
        self.baselines: BaselineReport | None = None
        self.initial: dict[str, float] | None = None
        self.stopped: str | None = None
        #: Why the run ended before its outputs were complete (an exception), written into report.json.
        self.failure: str | None = None
        self.events: list[Event] = []
        self._reported: set[str] = set()
        self._real_start: dict[str, float] = {}

    # -- the campaign ------------------------------------------------------------------------------------
    def _campaign(self) -> Campaign:
        c = self.cfg
        try:
            if c.manifests:
                campaign = from_manifests(c.manifests, plants=c.plants, task=c.task, seed=c.seed, rounds=c.rounds)
            else:
                campaign = self._from_flags()
            return Campaign(campaign.model, with_profile(campaign.participants, c.profile), campaign.rounds)
        except ValidationError as err:
            causes = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
            raise CampaignError(f"the flags describe an invalid campaign: {causes}") from None

    def _from_flags(self) -> Campaign:
        c = self.cfg
        names = [plant_name(i) for i in range(c.plants)]
        training = names[: c.plants - c.holdout]
        privacy = privacy_from_flags(
            clip_norm=c.clip_norm,
            noise_multiplier=c.noise_multiplier,
            dp_mode=c.dp_mode,
            central_noise_multiplier=c.central_noise_multiplier,
            norm_bound=c.strategy.norm_bound,
            delta=c.dp_delta,
            epsilon_budget=c.epsilon_budget,
        )
        task = load_task(c.task)
        default_metric = split_key(VAL, task.primary)  # the candidate's primary score, as its plants measured it
        promotion_metric = c.promotion_metric or (default_metric if c.promotion is PromotionPolicy.IF_BETTER else None)
        stop_metric = c.stop_metric or (default_metric if c.stop_target is not None or c.patience else None)
        goal = c.goal or goal_of(task, promotion_metric or stop_metric or default_metric)
        if c.evaluation_timeout_s is not None:
            evaluation = c.evaluation_timeout_s
        else:
            # A val_* stop metric exists only where the plants score each candidate.
            scored = c.promotion is PromotionPolicy.IF_BETTER or (stop_metric is not None and is_split_key(stop_metric))
            evaluation = 600 if scored else 0
        template = RoundTemplate(
            plants=training,
            min_participants=c.min_participants or min(2, len(training)),
            deadline_seconds=c.deadline_seconds,
            training=Training(
                epochs=c.epochs,
                batch_size=c.batch_size,
                learning_rate=c.learning_rate,
                fed_prox_mu=c.fedprox_mu,
                optimizer=Optimizer(c.optimizer),
                momentum=c.momentum,
            ),
            strategy=c.strategy,
            compression=c.codec,
            privacy=privacy,
            promotion=Promotion(
                policy=c.promotion, metric=promotion_metric, goal=goal, evaluation_timeout_seconds=evaluation
            ),
            late_upload_policy=c.late_upload_policy,
        )
        model = FederatedModel(
            metadata=ObjectMeta(name=c.model_name),
            spec=FederatedModelSpec(
                task=c.task,
                initial_weights=InitialWeights(seed=c.seed),
                round_template=template,
                cadence=c.cadence,
                stop=StopCriteria(
                    max_rounds=c.rounds, metric=stop_metric, goal=goal, target=c.stop_target, patience=c.patience
                ),
            ),
        )
        return Campaign(model=model, participants=participants_for(names, c.variants))

    def _candidates(self) -> set[str]:
        """Plants some round may assign: named by a template or round, or matched by its selector."""
        from plantfed.hub.reconcile import matches_selector

        specs = [self.campaign.model.spec.round_template, *(fr.spec for fr in self.campaign.rounds)]
        out: set[str] = set()
        for spec in specs:
            for pp in self.campaign.participants:
                named = spec.plants is None or pp.spec.plant_id in spec.plants
                selected = spec.plant_selector is None or matches_selector(spec.plant_selector, pp.metadata.labels)
                if named and selected:
                    out.add(pp.spec.plant_id)
        return out

    @property
    def dp_enabled(self) -> bool:
        specs = [self.campaign.model.spec.round_template, *(fr.spec for fr in self.campaign.rounds)]
        return any(s.privacy.mode is not PrivacyMode.OFF for s in specs)

    @property
    def dp_delta(self) -> float:
        return self.campaign.model.spec.round_template.privacy.delta

    # -- the hub -----------------------------------------------------------------------------------------
    def _issue_tokens(self) -> Path:
        """One secret per plant; the hub keeps them as a Secret-like directory, each plant gets only its own."""
        book_dir = self.out / "hub" / "tokens"
        book_dir.mkdir(parents=True, exist_ok=True)
        for plant in self.names:
            token = secrets.token_urlsafe(32)
            for path in (book_dir / plant, self.out / "plants" / plant / "token"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(token)
                path.chmod(0o600)
        return book_dir

    def _parallel(self) -> int:
        return self.cfg.parallel or min(max(1, len(self.plants)), os.cpu_count() or 1)

    def _model_size(self, model: str, version: int) -> int:
        return self.store.get_model(model, version).size

    # -- driver ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if self.store.versions(self.model_name):
            raise RuntimeError(f"{self.out} already holds a simulation; pass a fresh --out directory")
        self.campaign.write(self.out / "campaign.yaml")
        token_dir = self._issue_tokens()
        admin_token = secrets.token_urlsafe(32)
        operator_cfg = OperatorConfig(
            namespace=None, exchange="", admin_token_file=Path(), store_claim="", image="plantfed"
        )
        fleet_setups = [
            PlantSetup(name, i, self.out / "plants" / name, c.profile.resolve(name))
            for i, name in enumerate(self.names)
        ]
        settings = LocalSettings(
            exchange="",
            task=self.campaign.model.spec.task,
            num_plants=len(self.names),
            seed=c.seed,
            data=c.data,
            data_options=dict(c.data_options),
            label_skew_alpha=c.label_skew_alpha,
            parallel=self._parallel(),
            plant_timeout_s=c.plant_timeout_s,
        )
        budget = c.plant_memory_budget_mib
        self.processes = processes(c.plant_processes, None if budget is None else int(budget * MIB))
        fleet = Fleet(fleet_setups, settings, self._model_size, operator_cfg.heartbeat_timeout, self.processes)
        server, port = build_server(
            self.store,
            TokenBook(token_dir),
            admin_token=admin_token,
            address="127.0.0.1:0",
            metrics=self.metrics,
            upload_gate=UploadGate(fleet),
        )
        server.start()
        target = f"127.0.0.1:{port}"
        settings = replace(settings, exchange=target)
        fleet.settings = settings
        admin = AdminClient(target, admin_token)
        operator = LocalOperator(
            operator_cfg,
            admin,
            self.store.root,
            self.telemetry,
            Visibility(fleet.upload_visible, fleet.evaluation_visible),
            aggregate_args=tuple(f"{PARAMETERS[k].flag}={v!r}" for k, v in sorted(c.aggregation_overrides.items())),
            on_event=self._on_event,
        )
        metrics_http = None
        if c.metrics_port is not None:
            from prometheus_client import start_http_server

            metrics_http, _ = start_http_server(c.metrics_port, addr="127.0.0.1", registry=self.metrics.registry)
        for outcome in ("succeeded", "failed"):  # from 0, so increase() over a window counts the first round
            self.metrics.rounds_total.labels(self.model_name, outcome)
        started = time.perf_counter()
        self.virtual_start = c.profile.start
        try:
            try:
                self._print_header(target)
                self.virtual_end = self._drive(operator, fleet, c.profile.start)
                self.model_status = operator.models[self.model_name].status
                fleet.stop()
                self.timeline = fleet.timeline()
                self.final_eval = self._final_evaluation(fleet, target, settings)
                self._attach_global_metrics(self.final_eval)
                if c.baselines:
                    self.baselines = self._run_baselines()
            finally:
                fleet.stop()
                self.processes.close()
                admin.close()
                server.stop(grace=2)
        except (Exception, KeyboardInterrupt) as exc:
            # Whatever was done is kept: report.json with the rounds so far and the plot, then the error.
            self.failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.console.print(f"[red]simulation failed[/]: {self.failure}; writing what it has")
            self._model_status_from(operator)
            self._write_outputs(time.perf_counter() - started)
            raise
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

    def _model_status_from(self, operator: LocalOperator) -> None:
        model = operator.models.get(self.model_name)
        if model is not None and not hasattr(self, "model_status"):
            self.model_status = model.status

    def _drive(self, operator: LocalOperator, fleet: Fleet, start: datetime) -> datetime:
        """The event loop: settle every object at `now`, wait for the plants' real work, jump to the next event."""
        now = start
        operator.add(self.campaign.model, now)
        for pp in self.campaign.participants:
            operator.add(pp, now)
        for fr in self.campaign.rounds:
            operator.add(fr, now)
        while True:
            self._settle(operator, fleet, now)
            fleet.wait_known()
            self._settle(operator, fleet, now)
            self._collect(operator, fleet)
            if self._campaign_over(operator):
                return now
            upcoming = [operator.next_event(now), fleet.next_event(now), *fleet.schedule_events(now)]
            later = [t for t in upcoming if t is not None and t > now]
            if not later:
                self.stopped = "nothing left that could happen: no requeue, deadline or plant result is pending"
                self.console.print(f"[yellow]stopping[/]: {self.stopped}")
                return now
            now = min(later)
            fleet.release(now)

    def _settle(self, operator: LocalOperator, fleet: Fleet, now: datetime) -> None:
        for _ in range(_SETTLE_PASSES):
            changed = fleet.heartbeat(now, operator.participants)
            changed |= operator.reconcile(now)
            changed |= fleet.sync(now, list(operator.rounds.values()), operator.models, operator.participants)
            for fr in operator.rounds.values():
                self._real_start.setdefault(fr.name, time.perf_counter())
            if not changed:
                return
        raise RuntimeError(f"the reconcilers did not settle at {now.isoformat()} after {_SETTLE_PASSES} passes")

    def _campaign_over(self, operator: LocalOperator) -> bool:
        """No round runs and none will: the campaign completed, was suspended (hand-written rounds only) or stopped."""
        if operator.unfinished_rounds():
            return False
        phase = operator.models[self.model_name].status.phase
        return (
            self.stopped is not None
            or phase is ModelPhase.COMPLETED
            or (phase is ModelPhase.SUSPENDED and bool(self.campaign.rounds))
        )

    def _on_event(self, event: Event) -> None:
        self.events.append(event)
        if event.type == "Warning":
            self.console.print(f"[yellow]{event.kind} {event.name}[/]: {event.reason}: {event.message}")

    # -- per round ---------------------------------------------------------------------------------------
    def _collect(self, operator: LocalOperator, fleet: Fleet) -> None:
        """Report every round that finished since the last look, in the order they finished."""
        done = [fr for fr in operator.rounds.values() if fr.status.phase is not None and fr.status.phase.finished]
        for fr in sorted(done, key=lambda r: (r.status.completion_time or self.virtual_start, r.name)):
            if fr.name in self._reported:
                continue
            self._reported.add(fr.name)
            report = self._round_report(fr, operator, fleet)
            self.reports.append(report)
            self._export_round_metrics(report)
            self._print_round(report)
            if self.stopped is None:
                self.stopped = self._task_broken(report)
            if self.stopped is None:
                self.stopped = self._budget_exhausted(fr)
                if self.stopped:
                    self.console.print(f"[yellow]stopping early[/]: {self.stopped}")

    def _task_broken(self, report: RoundReport) -> str | None:
        """A plant's Job failed on a task bug (`TaskError`): every round would fail the same way, so stop now."""
        for p in report.plants.values():
            if p.error and TaskError.__name__ in p.error:
                message = f"plant {p.plant}, round {report.round_id}: {p.error}"
                self.console.print(f"[red]the task is broken[/]: {message}")
                return f"task bug: {message}"
        return None

    def _budget_exhausted(self, fr: FederatedRound) -> str | None:
        """The ε budget ends the rehearsal once it alone leaves too few plants: ε never goes down again."""
        if fr.status.phase is not RoundPhase.FAILED or fr.status.start_time is not None:
            return None
        exhausted = [p.plant for p in fr.status.plants if p.reason == "PrivacyBudgetExhausted"]
        if exhausted and len(fr.status.plants) - len(exhausted) < fr.spec.min_participants:
            return (
                f"round {fr.name}: the next round of {', '.join(exhausted)} would exceed their ε budget "
                f"{fr.spec.privacy.epsilon_budget:g} (PrivacyBudgetExhausted), leaving fewer than "
                f"minParticipants {fr.spec.min_participants}; on a cluster the operator would keep creating "
                "rounds that fail the same way"
            )
        return None

    def _round_report(self, fr: FederatedRound, operator: LocalOperator, fleet: Fleet) -> RoundReport:
        st = fr.status
        candidate = self.store.get_model(self.model_name, st.candidate_version) if st.candidate_version else None
        stats = candidate.aggregation.plants if candidate is not None and candidate.aggregation else {}
        jobs = {j.plant: j for j in fleet.jobs if j.round == fr.name and j.training}
        downloads = sum(j.download_bytes for j in fleet.jobs if j.round == fr.name and j.proc is not None)
        plants: dict[str, PlantRound] = {}
        for entry in st.plants:
            job = jobs.get(entry.plant)
            ok = entry.state is PlantRoundState.UPLOADED
            row = PlantRound(
                plant=entry.plant,
                ok=ok,
                state=entry.state.value,
                reason=entry.reason,
                message=entry.message,
                evaluation=dict(entry.evaluation),
                dropped=bool(job and job.dropped),
            )
            if job is not None:
                row.virtual_start = job.start.isoformat()
                finish = job.finish or job.arrival
                row.virtual_finish = finish.isoformat() if finish is not None else None
                if job.report.exists() and job.succeeded:
                    rep = json.loads(job.report.read_text())
                    row.num_samples, row.metrics = rep["num_samples"], rep["metrics"]
                    row.payload_bytes, row.bytes_sent = rep["payload_bytes"], rep["bytes_sent"]
                    row.update_norm, row.train_seconds = rep["update_norm"], rep["train_seconds"]
                elif job.message:
                    row.error = job.message
            if ok and entry.plant in stats:
                row.cosine = stats[entry.plant].get("cosine")
            if ok and self.dp_enabled and candidate is not None:
                row.epsilon = self.ledger.epsilon(entry.plant, fr.spec.privacy.delta)
            plants[entry.plant] = row
        succeeded = get_condition(st.conditions, "Succeeded")
        aggregation = operator.jobs.get(st.aggregation_job or "")
        first = self._real_start.get(fr.name, time.perf_counter())
        return RoundReport(
            round=round_number(self.model_name, fr.name) or len(self.reports) + 1,
            round_id=fr.name,
            base_version=st.base_version,
            version=st.candidate_version,
            seconds=time.perf_counter() - first,
            aggregation_seconds=aggregation.seconds if aggregation is not None else 0.0,
            bytes_up=sum(p.bytes_sent for p in plants.values()),
            bytes_down=downloads,
            plants=plants,
            phase=st.phase.value if st.phase else "",
            reason=succeeded.reason if succeeded is not None else "",
            message=succeeded.message if succeeded is not None else "",
            promoted=st.result_version is not None,
            budget_exhausted=[p.plant for p in st.plants if p.reason == "PrivacyBudgetExhausted"],
            virtual_start=st.start_time.isoformat() if st.start_time else None,
            virtual_cutoff=st.cutoff_time.isoformat() if st.cutoff_time else None,
            virtual_completion=st.completion_time.isoformat() if st.completion_time else None,
        )

    def _export_round_metrics(self, report: RoundReport) -> None:
        """Federated evaluation of the model the round started from, as plants scored it on their test splits.

        The operator's own metrics moved with the round's status (`Telemetry`); these gauges are the
        pooled test scores simulate's report uses, set last so both agree.
        """
        incoming = pooled_test_scores([base_scores(p.metrics, TEST) for p in report.plants.values() if p.ok])
        for name, value in incoming.items():
            self.metrics.global_score.labels(self.model_name, name).set(value)

    # -- evaluation -------------------------------------------------------------------------------------
    def _attach_global_metrics(self, final_eval: dict[str, dict[str, float]]) -> None:
        """Global model quality after round r = what plants measured on their test splits with that version.

        Plants score the incoming model at the start of every round (federated evaluation, numbers only),
        so round r's model is measured in the next round that trains from it; the last one by a final
        evaluation pass. Scores are pooled from the plants' sufficient statistics (`plantfed.contract.scores`).
        """
        by_version: dict[int, list[dict[str, float]]] = {}
        for rep in self.reports:
            for p in rep.plants.values():
                if p.ok and rep.base_version is not None and TEST_SAMPLES in base_scores(p.metrics, TEST):
                    by_version.setdefault(rep.base_version, []).append(base_scores(p.metrics, TEST))
        for plant, ev in final_eval.items():
            if plant in self.plants:
                by_version.setdefault(int(ev["version"]), []).append(ev)
        first = next((r.base_version for r in self.reports if r.base_version is not None), None)
        self.initial = pooled_test_scores(by_version.get(first, [])) or None if first is not None else None
        for rep in self.reports:
            if rep.version is not None:
                rep.global_scores = pooled_test_scores(by_version.get(rep.version, []))
        self.metrics.set_objective(self.model_name, self.primary.name, self.primary.goal)
        last = self.reports[-1] if self.reports else None
        if last is not None:
            for name, value in last.global_scores.items():
                self.metrics.global_score.labels(self.model_name, name).set(value)
        prefix = split_key(TEST, "")
        for plant, ev in final_eval.items():
            for key, value in scores_only(ev).items():
                if key.startswith(prefix):
                    self.metrics.plant_score.labels(self.model_name, plant, key.removeprefix(prefix)).set(value)

    def _final_evaluation(self, fleet: Fleet, target: str, settings: LocalSettings) -> dict[str, dict[str, float]]:
        """Every plant (hold-outs included) scores the promoted model on its test split, locally."""
        if self.store.promoted(self.model_name) is None:
            return {}
        results: dict[str, dict[str, float]] = {}
        pending = list(enumerate(self.names))
        running: dict[str, tuple[Run, float]] = {}
        env = dict(fleet.env())
        while pending or running:
            while pending and len(running) < self._parallel():
                index, plant = pending[0]
                pdir = self.out / "plants" / plant
                argv = [
                    "evaluate",
                    "--exchange",
                    target,
                    "--plant",
                    plant,
                    "--token-file",
                    str(pdir / "token"),
                    "--model",
                    self.model_name,
                    "--task",
                    self.campaign.model.spec.task,
                    "--state-dir",
                    str(pdir),
                    "--plant-index",
                    str(index),
                    "--num-plants",
                    str(len(self.names)),
                    "--seed",
                    str(self.cfg.seed),
                    "--report",
                    str(pdir / "evaluation.json"),
                    "--label-skew-alpha",
                    repr(settings.label_skew_alpha),
                    *settings.data_args(),
                ]
                proc = self.processes.start(plant, argv, pdir / "train.log", env, overflow=not running)
                if proc is None:
                    break  # every warm worker the budget allows is busy
                pending.pop(0)
                running[plant] = (proc, time.monotonic())
            for plant, (proc, began) in list(running.items()):
                try:
                    code = proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    if time.monotonic() - began <= self.cfg.plant_timeout_s:
                        continue
                    proc.kill()
                    code = -9
                    self.console.print(
                        f"[yellow]{plant}[/]: final evaluation killed after {self.cfg.plant_timeout_s:g} s"
                    )
                del running[plant]
                if code == 0:
                    results[plant] = json.loads((self.out / "plants" / plant / "evaluation.json").read_text())
        return results

    # -- outputs ------------------------------------------------------------------------------------------
    def _write_outputs(self, seconds: float) -> dict[str, Any]:
        from plantfed.sim.report import render_convergence

        status = getattr(self, "model_status", None)
        converged = get_condition(status.conditions, "Converged") if status is not None else None
        report: dict[str, Any] = {
            "config": _jsonable(asdict(self.cfg)),
            "campaign": {
                "model": self.model_name,
                "manifest": str(self.out / "campaign.yaml"),
                "phase": status.phase.value if status is not None and status.phase else None,
                "rounds_completed": status.rounds_completed if status is not None else 0,
                "stop_reason": converged.reason
                if converged is not None and converged.status is not ConditionStatus.UNKNOWN
                else None,
                "stop_message": converged.message if converged is not None else None,
                "best": status.best.to_dict() if status is not None and status.best else None,
                "stopped_early": self.stopped,
                "virtual_start": self.virtual_start.isoformat(),
                "virtual_end": getattr(self, "virtual_end", self.virtual_start).isoformat(),
            },
            "objective": {
                "score": self.primary.name,
                "goal": self.primary.goal.value,
                "unit_interval": self.primary.unit_interval,
                "scores": [s.name for s in self.task.scores],
            },
            "initial": self.initial,
            "rounds": [round_json(r) for r in self.reports],
            "final_evaluation": self.final_eval,
            "holdout": self.holdout,
            "plant_names": self.plant_names,
            "quality": quality_summary(
                self.reports, self.final_eval, self.plants, self.holdout, self.baselines, self.primary
            ),
            "failure": self.failure,
            "seconds": seconds,
            "privacy": self._privacy_summary(),
            "events": [
                {
                    "time": e.time.isoformat(),
                    "kind": e.kind,
                    "name": e.name,
                    "type": e.type,
                    "reason": e.reason,
                    "message": e.message,
                }
                for e in self.events
            ],
            "jobs": getattr(self, "timeline", []),
            "plant_processes": self._processes_summary(),
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        render_convergence(report, self.out / "convergence.png")
        self._print_summary(report)
        return report

    def _processes_summary(self) -> dict[str, Any]:
        """How plants ran: fresh processes, or warm workers with how many were ever alive at once."""
        pool = getattr(self, "processes", None)
        if not isinstance(pool, Warm):
            return {"mode": self.cfg.plant_processes}
        return {
            "mode": pool.mode,
            "memory_budget_mib": pool.budget / MIB,
            "worker_pss_mib": pool.worker_memory / MIB,
            "worker_peak_rss_mib": (pool.worker_peak_rss or 0) / MIB,
            "max_workers": pool.capacity,
            "max_alive": pool.max_alive,
        }

    def _privacy_summary(self) -> dict[str, Any] | None:
        """ε per plant at δ after the last round, and what one step is (see docs/security.md)."""
        if not self.dp_enabled:
            return None
        spec = self.campaign.model.spec.round_template
        return {
            "delta": self.dp_delta,
            "epsilon_budget": spec.privacy.epsilon_budget,
            "epsilon": {p: self.ledger.epsilon(p, self.dp_delta) for p in self.plants},
            "rounds_charged": {p: len(self.ledger.rounds(p)) for p in self.plants},
            "accounting": "opacus RDP; one Gaussian release per round a plant's update is aggregated "
            "(local: σ=noiseMultiplier, q=1; central: σ=noiseMultiplier on the aggregate, q=1; "
            "sample: what DP-SGD's accountant recorded)",
        }

    def _spec(self, index: int) -> DataSpec:
        c = self.cfg
        return DataSpec(
            plant=self.names[index],
            path=Path(c.data).resolve() if c.data else None,
            plant_index=index,
            num_plants=len(self.names),
            seed=c.seed,
            options=dict(c.data_options),
            runtime_partition=c.label_skew_alpha > 0,
        )

    def _run_baselines(self) -> BaselineReport:
        """Centralised and siloed models with the federation's compute budget (see plantfed.sim.baselines)."""
        c = self.cfg
        rounds = len([r for r in self.reports if r.version is not None])
        training = self.campaign.model.spec.round_template.training
        self.console.print(
            f"baselines: centralised + {len(self.plants)} siloed models, {rounds * training.epochs} epochs each"
        )
        initial = codecs.load_state(self.store.blob_path(self.store.get_model(self.model_name, 1).digest))
        torch.set_num_threads(1)
        return run_baselines(
            self.task,
            initial,
            [self._spec(self.names.index(p)) for p in self.plants],
            [self._spec(i) for i in range(len(self.names))],
            LocalTrainingConfig(
                epochs=training.epochs,
                batch_size=training.batch_size,
                learning_rate=training.learning_rate,
                optimizer=training.optimizer.value,
                momentum=training.momentum,
                fedprox_mu=training.fed_prox_mu,
            ),
            rounds=rounds,
            seed=c.seed,
            device=pick_device(),
            label_skew_alpha=c.label_skew_alpha,
        )

    # -- console -----------------------------------------------------------------------------------------
    def _print_header(self, target: str) -> None:
        fm = self.campaign.model
        t = fm.spec.round_template
        source = ", ".join(str(p) for p in self.cfg.manifests) if self.cfg.manifests else "flags"
        self.console.print(
            f"[bold]plantfed simulate[/]: FederatedModel {fm.name} from {source}; {len(self.plants)} plants"
            f"{f' (+{len(self.holdout)} hold-out)' if self.holdout else ''}, task {fm.spec.task}, strategy "
            f"{t.strategy.name.value}, quorum {t.min_participants}, deadline {t.deadline_seconds}s, promotion "
            f"{t.promotion.policy.value}, cadence {fm.spec.cadence or 'back-to-back'}, maxRounds "
            f"{fm.spec.stop.max_rounds}; data {'synthetic' if self.cfg.data is None else self.cfg.data}; "
            f"exchange {target}; virtual clock from {self.cfg.profile.start.isoformat()}"
        )
        if any(name != plant for plant, name in self.plant_names.items()):
            self.console.print("plants: " + ", ".join(plant_label(p, self.plant_names) for p in self.names))

    def _print_round(self, r: RoundReport) -> None:
        counts: dict[str, int] = {}
        for p in r.plants.values():
            counts[p.state] = counts.get(p.state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        colour = "green" if r.phase == "Succeeded" else "red"
        self.console.print(
            f"[{colour}]{r.round_id}[/] {r.phase} ({r.reason}): {summary}; "
            f"virtual {_clock(r.virtual_start)} → {_clock(r.virtual_completion)}; {r.seconds:.1f} s"
        )
        for p in r.plants.values():
            if p.state not in ("Uploaded", "Assigned") and (p.reason or p.message):
                self.console.print(f"    {p.plant}: {p.state} {p.reason or ''} {p.message}".rstrip())

    def _print_summary(self, report: dict[str, Any]) -> None:
        table = Table(title="federated rounds (global model, federated evaluation on each plant's test split)")
        names = shown_scores(self.task)
        for col in ("round", "phase", "version", "promoted", *names, "uploaded", "MB up", "seconds"):
            table.add_column(col, justify="right")
        for r in self.reports:
            table.add_row(
                str(r.round),
                r.phase,
                str(r.version) if r.version is not None else "-",
                "yes" if r.promoted else "no",
                *(_fmt(r.global_scores.get(n)) for n in names),
                f"{sum(p.ok for p in r.plants.values())}/{len(r.plants)}",
                f"{r.bytes_up / 1e6:.2f}",
                f"{r.seconds:.1f}",
            )
        self.console.print(table)
        campaign = report["campaign"]
        if campaign["stop_reason"]:
            self.console.print(f"campaign {campaign['phase']}: {campaign['stop_reason']}: {campaign['stop_message']}")
        quality = report["quality"]
        if quality.get("comparison"):
            cmp = Table(
                title=f"test {self.primary.name} per plant ({_better(self.primary)}): federated vs centralised vs "
                "siloed (same compute budget)"
            )
            cmp.add_column("plant")
            cmp.add_column("trained?")
            models = list(next(iter(quality["comparison"].values())))
            for name in models:
                cmp.add_column(name, justify="right")
            for plant, row in quality["comparison"].items():
                cmp.add_row(
                    plant_label(plant, self.plant_names),
                    "hold-out" if plant in self.holdout else "yes",
                    *(_fmt(row[m]) for m in models),
                )
            self.console.print(cmp)
        for key in ("federated_share_of_centralised", "rounds_to_95pct_of_final"):
            if quality.get(key) is not None:
                self.console.print(f"{key.replace('_', ' ')}: {quality[key]:.4g}")
        swing = quality.get("swing")
        if swing and swing["flagged"]:
            self.console.print(
                f"[yellow]unstable[/]: final {self.primary.name} {swing['final']:.4g} is {swing['gap']:.4g} worse "
                f"than the best, {swing['best']:.4g} in round {swing['best_round']} ({swing['rule']}); "
                "compare runs on more seeds or lower the learning rate"
            )
        if self.failure:
            self.console.print(f"[red]incomplete run[/]: {self.failure}")
        self.console.print(
            f"virtual time {campaign['virtual_start']} → {campaign['virtual_end']}; "
            f"report: {self.out / 'report.json'}   plot: {self.out / 'convergence.png'}   "
            f"manifest: {campaign['manifest']}"
        )


SWING_TOLERANCE = 0.05
"""A run swings when its final primary score is worse than its best by more than this share of the best's size."""


def quality_summary(
    reports: list[RoundReport],
    final_eval: dict[str, dict[str, float]],
    trained: list[str],
    holdout: list[str],
    baselines: BaselineReport | None,
    primary: Score,
) -> dict[str, Any]:
    """The learning-quality figures on the task's primary score, each read in the score's direction.

    * rounds to 95 %: the first round whose score reaches 95 % of the final one: at least 0.95 × final when
      larger is better; at most final / 0.95 when smaller is better (within 5 % of the final error);
    * federated share of centralised: federated / centralised when larger is better, centralised / federated
      when smaller is, so 1 is parity and below 1 means federated is worse either way (means over the training
      plants);
    * swing: flagged when the final score is worse than the best round's by more than SWING_TOLERANCE × |best|.
    """
    name = primary.name
    maximize = primary.goal is MetricGoal.MAXIMIZE
    series = [(r.round, r.global_scores[name]) for r in reports if name in r.global_scores]
    out: dict[str, Any] = {
        "score": name,
        "goal": primary.goal.value,
        "rounds_to_95pct_of_final": None,
        "federated_share_of_centralised": None,
        "swing": None,
        "comparison": {},
    }
    if series:
        final = series[-1][1]
        reached = (lambda v: v >= 0.95 * final) if maximize else (lambda v: v <= final / 0.95)
        out["rounds_to_95pct_of_final"] = next((r for r, v in series if reached(v)), series[-1][0])
        best_round, best = (max if maximize else min)(series, key=lambda rv: rv[1])
        gap = abs(best - final)
        out["swing"] = {
            "flagged": gap > SWING_TOLERANCE * abs(best),
            "final": final,
            "best": best,
            "best_round": best_round,
            "gap": gap,
            "rule": f"final worse than the best by more than {SWING_TOLERANCE:.0%} of the best",
        }
    key = split_key(TEST, name)
    for plant in trained + holdout:
        row: dict[str, float | None] = {"federated": final_eval.get(plant, {}).get(key)}
        if baselines is not None:
            for model, scores in baselines.scores.items():
                row[model] = scores[plant].get(name)
        out["comparison"][plant] = row
    rows = [out["comparison"][p] for p in trained]
    complete = all(r["federated"] is not None and r.get("centralised") is not None for r in rows)
    if baselines is not None and rows and complete:
        fed = sum(r["federated"] for r in rows) / len(rows)
        cen = sum(r["centralised"] for r in rows) / len(rows)
        ratio = (fed, cen) if maximize else (cen, fed)
        out["federated_share_of_centralised"] = ratio[0] / ratio[1] if ratio[1] else None
    if baselines is not None:
        out["baseline_epochs"] = baselines.epochs
    return out


def goal_of(task: Task, metric: str) -> MetricGoal:
    """The goal of a metric key (`val_rmse`, `local_val_mae`) as the task declares its score."""
    scope = scope_of(metric)
    try:
        return task.score(metric.removeprefix(scope) if scope else metric).goal
    except TaskError as exc:
        raise ValueError(f"{exc}: say which way {metric} is better with --goal Maximize|Minimize") from None


def shown_scores(task: Task) -> list[str]:
    """The columns of simulate's tables: the primary score, the other declared ones, then the loss."""
    names = [task.primary, *(s.name for s in task.scores if s.name != task.primary)]
    return names + ([] if "loss" in names else ["loss"])


def pooled_test_scores(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Plants' test-split metrics (keyed `test_*`) pooled from their statistics, as {score name: value}."""
    prefix = split_key(TEST, "")
    pooled = pool([(r, r.get(TEST_SAMPLES, 0.0)) for r in rows])
    return {k.removeprefix(prefix): v for k, v in scores_only(pooled).items() if k.startswith(prefix)}


def round_json(r: RoundReport) -> dict[str, Any]:
    """A round as report.json holds it: its pooled scores flat, as `global_<score>`."""
    row = _jsonable(asdict(r))
    row.update({f"global_{k}": v for k, v in row.pop("global_scores").items()})
    return row


def _better(score: Score) -> str:
    return "higher is better" if score.goal is MetricGoal.MAXIMIZE else "lower is better"


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _clock(stamp: str | None) -> str:
    if stamp is None:
        return "-"
    moment = datetime.fromisoformat(stamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    if hasattr(obj, "value") and not isinstance(obj, (int, float, str)):
        return obj.value
    return obj
