"""Simulated plants: the plant agent's own decisions in virtual time, real training and evaluation processes.

Each plant runs `plantfed.plant.agent.decide.decide`, the function a plant's agent runs, over the in-memory
hub objects. Its actions become local work: CreateTrainingJob runs `plantfed train` (or `plantfed evaluate
--round`) in the plant's own OS process (a fresh one, or the plant's warm worker: `plantfed.sim.workers`) with
the plant's own token, over real gRPC; CancelTrainingJob kills it;
ReportAssignment writes the plant's `status.assignment`; RefreshModel records the cached version (the
process fetches the model itself, which its Job is charged for in virtual time). Heartbeats
keep `status.lastHeartbeatTime` at the virtual now, except in the plant's `offline` windows, in which its agent
neither heartbeats nor decides anything (Jobs already running go on, as pods do without their agent).

Virtual time. A Job starts at the virtual instant the agent creates it. What it does takes
`train_seconds × slowdown` (as measured by the process) plus `bytes × 8 / bandwidth` for the model it
downloads and the update it uploads; an evaluation takes its process's wall time × slowdown plus the
candidate's download. The Job's `activeDeadlineSeconds` kills it in virtual time, as Kubernetes would.
The `UploadGate` (the exchange's upload gate) sees each upload before the exchange accepts a byte of it,
computes its virtual arrival from the upload's own metadata, and holds an upload that would arrive after
the round's deadline until the virtual clock gets there: the exchange then accepts or refuses it exactly as
a cluster's would at that moment (open under lateUploadPolicy Record, closed under Reject). Uploads that
arrive in time go through at once and stay invisible to the hub until their virtual arrival.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import Assignment, PlantParticipant
from plantfed.contract.api.round import FederatedRound
from plantfed.contract.records import UpdateMeta
from plantfed.hub.reconcile.schedule import next_fire, open_window
from plantfed.plant.agent.decide import (
    AgentView,
    CancelTrainingJob,
    CreateTrainingJob,
    RefreshModel,
    ReportAssignment,
    TrainingSpec,
    decide,
)
from plantfed.plant.agent.jobspec import training_args
from plantfed.plant.agent.observe import TrainingObservation, TrainingPhase, clip
from plantfed.sim.profile import Resolved
from plantfed.sim.workers import Fresh, Run, Warm

log = logging.getLogger(__name__)

AGENT_VERSION = "plantfed-simulate"
_POLL = 0.1
DEADLINE_EXCEEDED = "DeadlineExceeded: Job was active longer than specified deadline"
"""What the Job controller says when activeDeadlineSeconds ends a Job."""


@dataclass(frozen=True)
class PlantSetup:
    """What a simulated plant is on this machine: its partition of the data and its local directories."""

    name: str
    index: int
    directory: Path
    profile: Resolved

    @property
    def token_file(self) -> Path:
        return self.directory / "token"


@dataclass(frozen=True)
class LocalSettings:
    """Everything a plant process needs besides the round: where the exchange is and what data to load."""

    exchange: str
    task: str
    num_plants: int
    seed: int = 0
    data: Path | None = None
    data_options: Mapping[str, str] = field(default_factory=dict)
    label_skew_alpha: float = 0.0
    parallel: int = 1
    plant_timeout_s: float = 1800.0

    def data_args(self) -> list[str]:
        args = [] if self.data is None else ["--data", str(Path(self.data).resolve())]
        for key, value in sorted(self.data_options.items()):
            args += ["--data-option", f"{key}={value}"]
        return args


@dataclass
class PlantJob:
    """One training or evaluation Job of one plant: its virtual schedule and the process behind it."""

    plant: str
    spec: TrainingSpec
    start: datetime
    kill_at: datetime
    """The Job's activeDeadlineSeconds, in virtual time."""
    deadline: datetime | None
    """The round's upload deadline (training); an upload arriving after it is held until the clock gets there."""
    download_bytes: int
    #: `plantfed ARGV`: what a pod's container command would be.
    argv: list[str]
    report: Path
    dropped: bool = False
    proc: Run | None = None
    real_start: float | None = None
    arrival: datetime | None = None
    upload_bytes: int = 0
    train_seconds: float | None = None
    hold: threading.Event | None = None
    finish: datetime | None = None
    succeeded: bool | None = None
    message: str = ""
    cancelled: str | None = None
    cancelled_at: datetime | None = None
    #: The upload was let through to the exchange at its virtual arrival (see `Fleet.release`).
    released: bool = False
    #: Its activeDeadlineSeconds passes before its upload arrives: the process is stopped, the upload never made.
    doomed: bool = False

    @property
    def round(self) -> str:
        return self.spec.round

    @property
    def training(self) -> bool:
        return self.spec.purpose != "evaluate"

    @property
    def held(self) -> bool:
        return self.hold is not None and not self.hold.is_set()

    @property
    def known(self) -> bool:
        """Its outcome in virtual time is decided (or it is held with a known arrival, or never returns)."""
        return self.dropped or self.cancelled is not None or self.succeeded is not None or self.held

    def outcome(self, succeeded: bool, at: datetime, message: str = "") -> None:
        if at > self.kill_at:
            succeeded, at, message = False, self.kill_at, DEADLINE_EXCEEDED
        self.succeeded, self.finish, self.message = succeeded, at, message

    def observation(self, now: datetime) -> TrainingObservation:
        """The Job as the agent's `observe_training` would report it at virtual `now`."""
        phase, reason, message = TrainingPhase.RUNNING, "Running", f"{'training' if self.training else 'evaluating'}"
        if self.succeeded is not None and self.finish is not None and self.finish <= now:
            phase = TrainingPhase.SUCCEEDED if self.succeeded else TrainingPhase.FAILED
            reason, message = ("Uploaded", "") if self.succeeded else ("JobFailed", self.message)
        elif self.dropped:
            message += " (dropped out: no result will come back)"
        return TrainingObservation(self.spec.job_name, self.round, phase, reason, message, "", self.spec.round_uid)

    def next_event(self, now: datetime) -> datetime | None:
        if self.cancelled is not None:
            return None
        if self.succeeded is not None and self.finish is not None and self.finish > now:
            return self.finish
        if self.held and self.arrival is not None and self.arrival > now:
            return self.arrival
        return None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return clip(lines[-1]) if lines else ""


class Fleet:
    """The simulated plants: agents deciding in virtual time, their Jobs as local processes."""

    def __init__(
        self,
        plants: Sequence[PlantSetup],
        settings: LocalSettings,
        model_size: Callable[[str, int], int],
        heartbeat_timeout: timedelta,
        processes: Fresh | Warm | None = None,
    ) -> None:
        self.plants = {p.name: p for p in plants}
        self.processes = processes or Fresh()
        self.settings = settings
        self.model_size = model_size
        self.heartbeat_timeout = heartbeat_timeout
        self.jobs: list[PlantJob] = []
        self.cached: dict[str, dict[str, int | None]] = {p.name: {} for p in plants}
        self.have: dict[str, set[tuple[str, int]]] = {p.name: set() for p in plants}
        self._lock = threading.Condition()

    # -- heartbeats ----------------------------------------------------------------------------------------
    def heartbeat(self, now: datetime, participants: dict[str, PlantParticipant]) -> bool:
        """Fresh heartbeats for every plant not in an offline window; True if any status changed."""
        changed = False
        for name, setup in self.plants.items():
            pp = participants.get(name)
            if pp is None:
                continue
            window = open_window(setup.profile.offline, now)
            beat = pp.status.last_heartbeat_time
            if window is None:
                new = now
            elif beat is None or beat < window.start:
                new = window.start  # the agent was alive until the window opened
            else:
                continue
            if new != beat or pp.status.agent_version != AGENT_VERSION:
                status = pp.status.model_copy(update={"last_heartbeat_time": new, "agent_version": AGENT_VERSION})
                participants[name] = pp.model_copy(update={"status": status})
                changed = True
        return changed

    def schedule_events(self, now: datetime) -> list[datetime]:
        """When an offline window opens (and its heartbeat goes stale) or closes, after `now`."""
        out = []
        for setup in self.plants.values():
            for window in setup.profile.offline:
                opens = next_fire(window.schedule, now, window.time_zone)
                out += [opens, opens + self.heartbeat_timeout + timedelta(seconds=1)]
            current = open_window(setup.profile.offline, now)
            if current is not None:
                out.append(current.end)
        return out

    # -- the agents ----------------------------------------------------------------------------------------
    def sync(
        self,
        now: datetime,
        rounds: Sequence[FederatedRound],
        models: Mapping[str, FederatedModel],
        participants: dict[str, PlantParticipant],
    ) -> bool:
        """Every plant's agent decides once; True if any action was taken."""
        by_name = {fr.name: fr for fr in rounds}
        changed = False
        for name in sorted(self.plants):
            if open_window(self.plants[name].profile.offline, now) is not None:
                continue  # the agent is down: it decides nothing (its running Jobs go on without it)
            mine = [j for j in self.jobs if j.plant == name and j.cancelled is None]
            view = AgentView(
                plant=name,
                participant=participants.get(name),
                rounds=list(rounds),
                models=models,
                trainings={j.round: j.observation(now) for j in mine if j.training},
                cached=self.cached[name],
                max_gpus=participants[name].spec.capacity.gpus if name in participants else 0,
                now=now,
                evaluations={j.round: j.observation(now) for j in mine if not j.training},
            )
            for action in decide(view):
                changed = True
                match action:
                    case CreateTrainingJob(spec=spec):
                        self._create(name, spec, by_name[spec.round], now)
                    case CancelTrainingJob(job_name=job_name, reason=reason):
                        self._cancel(name, job_name, reason, now)
                    case ReportAssignment(assignment=assignment):
                        self._report(participants, name, assignment)
                    case RefreshModel(model=model, version=version):
                        # Recorded, not fetched: the plant's process downloads what it trains from itself
                        # (and the virtual clock charges that download to its Job).
                        self.cached[name][model] = version
                        pp = participants[name]
                        status = pp.status.model_copy(update={"model_version": version})
                        participants[name] = pp.model_copy(update={"status": status})
        return changed

    @staticmethod
    def _report(participants: dict[str, PlantParticipant], plant: str, assignment: Assignment) -> None:
        pp = participants[plant]
        participants[plant] = pp.model_copy(update={"status": pp.status.model_copy(update={"assignment": assignment})})

    def _argv(self, setup: PlantSetup, spec: TrainingSpec, report: Path) -> list[str]:
        s = self.settings
        cmd = [
            "evaluate" if spec.purpose == "evaluate" else "train",
            "--exchange",
            s.exchange,
            "--plant",
            setup.name,
            "--token-file",
            str(setup.token_file),
            "--round",
            spec.round,
            "--task",
            spec.task,
            "--variant",
            spec.variant,
            "--state-dir",
            str(setup.directory),
            "--plant-index",
            str(setup.index),
            "--num-plants",
            str(s.num_plants),
            "--seed",
            str(s.seed),
            "--device",
            "auto" if spec.gpus > 0 else "cpu",
            "--report",
            str(report),
        ]
        if spec.purpose != "evaluate":
            cmd += training_args(spec)
        return [*cmd, "--label-skew-alpha", repr(s.label_skew_alpha), *s.data_args()]

    def _create(self, plant: str, spec: TrainingSpec, fr: FederatedRound, now: datetime) -> None:
        setup = self.plants[plant]
        training = spec.purpose != "evaluate"
        if training:
            version = fr.status.base_version
            deadline = (
                fr.status.start_time + timedelta(seconds=fr.spec.deadline_seconds) if fr.status.start_time else None
            )
        else:
            version = fr.status.evaluation.version if fr.status.evaluation is not None else None
            deadline = None
        download = 0
        if version is not None and (fr.spec.model_ref, version) not in self.have[plant]:
            download = self.model_size(fr.spec.model_ref, version)
            self.have[plant].add((fr.spec.model_ref, version))
        dropped = False
        if training and setup.profile.dropout > 0:
            draw = random.Random(f"{self.settings.seed}/{plant}/{fr.name}/{fr.metadata.uid}").random()
            dropped = draw < setup.profile.dropout
        report = setup.directory / "reports" / f"{spec.job_name}.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.unlink(missing_ok=True)
        job = PlantJob(
            plant=plant,
            spec=spec,
            start=now,
            kill_at=now + timedelta(seconds=spec.active_deadline_seconds),
            deadline=deadline,
            download_bytes=download,
            argv=self._argv(setup, spec, report),
            report=report,
            dropped=dropped,
        )
        with self._lock:
            self.jobs.append(job)
        self.pump()

    def _cancel(self, plant: str, job_name: str, reason: str, now: datetime) -> None:
        with self._lock:
            for job in self.jobs:
                if job.plant == plant and job.spec.job_name == job_name and job.cancelled is None:
                    job.cancelled, job.cancelled_at = reason, now
                    self._stop(job)

    @staticmethod
    def _stop(job: PlantJob) -> None:
        if job.proc is not None and job.proc.poll() is None:
            job.proc.stop()
        if job.hold is not None:
            job.hold.set()

    # -- processes -----------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Split the machine's cores between concurrently training plants instead of oversubscribing them."""
        env = dict(os.environ)
        threads = max(1, (os.cpu_count() or 1) // max(1, self.settings.parallel))
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        return env

    def pump(self) -> None:
        """Start queued Jobs while cores (and warm workers) are free, collect finished ones, kill those past the
        timeout."""
        with self._lock:
            for job in self.jobs:
                if job.doomed and job.proc is not None and job.proc.poll() is None:
                    self._stop(job)
                if job.proc is not None and job.cancelled is None:
                    self._poll(job)
            running = [j for j in self.jobs if j.proc is not None and j.proc.poll() is None]
            busy = sum(1 for j in running if not j.held)
            queued = [j for j in self.jobs if j.proc is None and not j.dropped and j.cancelled is None]
            # Plants with an idle warm worker first: with more plants than the memory budget keeps alive, the
            # others would evict exactly the workers the next round needs (virtual start times do not change).
            for job in sorted(queued, key=lambda j: not self.processes.warm_for(j.plant)):
                if busy >= self.settings.parallel:
                    break
                if job.succeeded is None:
                    log = self.plants[job.plant].directory / "train.log"
                    stalled = all(j.held for j in running)
                    job.proc = self.processes.start(job.plant, job.argv, log, self.env(), overflow=stalled)
                    if job.proc is None:
                        break  # no room for another warm worker: it waits for one to finish
                    job.real_start = time.monotonic()
                    running.append(job)
                    busy += 1

    def _poll(self, job: PlantJob) -> None:
        assert job.proc is not None and job.real_start is not None
        code = job.proc.poll()
        profile = self.plants[job.plant].profile
        elapsed = time.monotonic() - job.real_start
        if code is None:
            if not job.held and job.succeeded is None and elapsed > self.settings.plant_timeout_s:
                log.warning("%s: %s still running after %.0f s; killing it", job.plant, job.spec.job_name, elapsed)
                job.proc.kill()
                job.outcome(
                    False,
                    job.start + timedelta(seconds=self.settings.plant_timeout_s * profile.slowdown),
                    f"PlantTimeout: no result within plant_timeout_s={self.settings.plant_timeout_s:g}s; killed",
                )
            return
        if job.succeeded is not None:
            return
        tail = _tail(self.plants[job.plant].directory / "train.log")
        failure = f"exit code {code}" + (f": {tail}" if tail else "")
        if job.training and job.arrival is not None:
            job.outcome(code == 0, job.arrival, "" if code == 0 else failure)
        elif job.training:
            job.outcome(False, job.start + timedelta(seconds=elapsed * profile.slowdown), failure)
        else:
            seconds = profile.transfer_seconds(job.download_bytes) + elapsed * profile.slowdown
            job.outcome(code == 0, job.start + timedelta(seconds=seconds), "" if code == 0 else failure)

    def wait_known(self) -> None:
        """Block until every Job's outcome in virtual time is known: the clock may not pass a Job still computing."""
        while True:
            self.pump()
            with self._lock:
                if all(j.known for j in self.jobs):
                    return
                self._lock.wait(_POLL)

    def release(self, now: datetime) -> None:
        """Let held uploads whose virtual arrival has come reach the exchange, and wait for their outcome."""
        with self._lock:
            due = [j for j in self.jobs if j.held and not j.doomed and j.arrival is not None and j.arrival <= now]
            for job in due:
                assert job.hold is not None
                job.released = True
                job.hold.set()
        for job in due:
            assert job.proc is not None
            try:
                job.proc.wait(timeout=self.settings.plant_timeout_s)
            except subprocess.TimeoutExpired:
                job.proc.kill()
            self.pump()

    def next_event(self, now: datetime) -> datetime | None:
        with self._lock:
            times = [t for j in self.jobs if (t := j.next_event(now)) is not None]
        return min(times, default=None)

    # -- what the hub may see --------------------------------------------------------------------------------
    def _job(self, round_name: str, plant: str, training: bool) -> PlantJob | None:
        found = [j for j in self.jobs if j.round == round_name and j.plant == plant and j.training == training]
        return found[-1] if found else None

    def upload_visible(self, round_name: str, plant: str, now: datetime) -> bool:
        job = self._job(round_name, plant, True)
        if job is None:
            return True
        if job.arrival is None or job.arrival > now or job.arrival > job.kill_at:
            return False
        return job.cancelled_at is None or job.cancelled_at >= job.arrival

    def evaluation_visible(self, round_name: str, plant: str, now: datetime) -> bool:
        job = self._job(round_name, plant, False)
        if job is None:
            return True
        done = job.succeeded and job.finish is not None and job.finish <= now
        return bool(done) and (job.cancelled_at is None or job.finish is None or job.cancelled_at >= job.finish)

    # -- the gate --------------------------------------------------------------------------------------------
    def on_upload(self, meta: UpdateMeta) -> threading.Event | None:
        """Called by the exchange's interceptor before an upload is processed; an Event to wait on if held."""
        with self._lock:
            job = self._job(meta.round_id, meta.plant, True)
            if job is None or job.cancelled is not None:
                return None
            if job.arrival is None:
                profile = self.plants[job.plant].profile
                seconds = (
                    profile.transfer_seconds(job.download_bytes + meta.total_bytes)
                    + meta.train_seconds * profile.slowdown
                )
                job.arrival = job.start + timedelta(seconds=seconds)
                job.upload_bytes, job.train_seconds = meta.total_bytes, meta.train_seconds
                if job.arrival > job.kill_at:
                    job.outcome(False, job.kill_at, DEADLINE_EXCEEDED)
                    job.doomed = True
                    job.hold = threading.Event()  # never released: the Job is gone before the upload arrives
                elif job.deadline is not None and job.arrival > job.deadline:
                    job.hold = threading.Event()
                self._lock.notify_all()
            return job.hold

    def admitted(self, meta: UpdateMeta) -> bool:
        """A held upload may reach the exchange: it was released, not cancelled or stopped by its deadline."""
        with self._lock:
            job = self._job(meta.round_id, meta.plant, True)
            return job is not None and job.released and job.cancelled is None and not job.doomed

    def timeline(self) -> list[dict[str, Any]]:
        """Every Job's virtual schedule and outcome, for the report."""
        out = []
        for j in self.jobs:
            out.append(
                {
                    "plant": j.plant,
                    "round": j.round,
                    "job": "evaluate" if not j.training else "train",
                    "start": j.start.isoformat(),
                    "upload_arrival": j.arrival.isoformat() if j.arrival else None,
                    "finish": j.finish.isoformat() if j.finish else None,
                    "succeeded": j.succeeded,
                    "dropped": j.dropped,
                    "cancelled": j.cancelled,
                    "message": j.message,
                    "train_seconds": j.train_seconds,
                    "download_bytes": j.download_bytes,
                    "upload_bytes": j.upload_bytes,
                    "report": str(j.report) if j.report.exists() else None,
                }
            )
        return out

    def stop(self) -> None:
        with self._lock:
            for job in self.jobs:
                self._stop(job)


class UploadGate:
    """The simulated link: an upload reaches the exchange at its virtual arrival (see the module docstring).

    The exchange awaits it (`build_server(upload_gate=...)`) with each upload's declared metadata before it
    accepts a byte; a held upload waits for its release without blocking the exchange's event loop.
    """

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    async def __call__(self, meta: UpdateMeta) -> str | None:
        hold = self.fleet.on_upload(meta)
        if hold is None:
            return None
        while not await asyncio.to_thread(hold.wait, 0.5):
            pass  # a plant killed meanwhile cancels its call, and with it this wait
        if not self.fleet.admitted(meta):
            return "the training Job was stopped before its upload"
        return None
