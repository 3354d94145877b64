"""Drive one FederatedRound from plant assignment to promotion, as a pure function.

Contract with the (thin) kopf handler:

1. Observe: the round, all PlantParticipants, and `ObservedRound` (committed uploads and the
   round record from the exchange, the aggregation Job, the candidate and promoted versions
   from the model store).
2. Call `reconcile_round(...)`.
3. Patch `decision.status` first, then execute `decision.actions` in order; requeue at
   `decision.requeue_at`.

Writing status before acting is what makes restarts safe: the plant assignment and the set of
updates to aggregate are frozen in status before the exchange round is opened or the Job is
created, and every action is re-derived from status plus observation on the next call, so a
crashed operator re-issues the same idempotent actions. Events are the only output that is
emitted once: on the transition that causes them.

Quorum and deadline. The round proceeds to aggregation as soon as every assigned plant has
either uploaded or failed, with at least `minParticipants` uploads, or at the deadline
(`startTime + deadlineSeconds`) if the quorum is met by then; plants that have not uploaded at
that cutoff are marked Late. The round fails with `QuorumUnreachable` as soon as the quorum can
no longer be met (too few eligible plants at the start, or too many failures), and with
`DeadlineExceeded` if the deadline passes without it.

Late uploads. Only updates observed as committed when the round reaches the cutoff are
aggregated; that set is frozen in `status.plants` (state Uploaded). An update committed later is
never aggregated and its plant stays Late. `lateUploadPolicy: Reject` closes the exchange round
right after the cutoff is recorded, so later uploads are refused (one racing the close may still
commit, and is treated as late); `Record` keeps it open until the round finishes so late
updates' samples and metrics show up in status, marked `UploadedAfterCutoff`.

Differential privacy. `ObservedRound.privacy` is the lineage's privacy ledger. At the start a plant whose
next round would exceed `privacy.epsilonBudget` is Excluded with `PrivacyBudgetExhausted` (see
`selection`). The aggregation Job charges every aggregated plant before it publishes the candidate, so
once the candidate is observed the ledger includes this round; the ε each aggregated plant has then spent
(at the round's δ) goes into `RoundDecision.epsilon` and, while the round is being finished, into its
`PlantParticipant.status.dpEpsilon`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from plantfed.contract.api.common import ConditionStatus, MetricGoal
from plantfed.contract.api.participant import AssignmentState, PlantParticipant
from plantfed.contract.api.round import (
    FederatedRound,
    FederatedRoundStatus,
    LateUploadPolicy,
    PlantRoundState,
    PlantRoundStatus,
    PrivacyMode,
    Promotion,
    PromotionPolicy,
    RoundEvaluation,
    RoundPhase,
    RoundScore,
)
from plantfed.contract.naming import assigned_label, bounded_name
from plantfed.contract.plant_metrics import (
    BASE_VAL_SAMPLES,
    LOSS,
    VAL,
    VAL_SAMPLES,
    base_scores,
    is_split_key,
    local_key,
    split_key,
)
from plantfed.contract.records import DPRelease, EvaluationRecord, ModelVersion, RoundRecord, RoundState, UpdateRecord
from plantfed.contract.scores import DEFAULT_OBJECTIVE, goal_for, objective_of, pool, scores_only
from plantfed.engine.privacy.accounting import epsilon_for
from plantfed.hub.reconcile.actions import (
    Action,
    CloseExchangeRound,
    CreateAggregationJob,
    EmitEvent,
    EventType,
    OpenExchangeRound,
    Promote,
    RecordPrivacySpend,
)
from plantfed.hub.reconcile.conditions import set_condition, timestamp
from plantfed.hub.reconcile.readiness import DEFAULT_HEARTBEAT_TIMEOUT
from plantfed.hub.reconcile.selection import select_plants

SUCCEEDED = "Succeeded"
QUORUM_MET = "QuorumMet"
AGGREGATED = "Aggregated"
EVALUATED = "Evaluated"
PROMOTED = "Promoted"

_WAITING = (PlantRoundState.ASSIGNED, PlantRoundState.TRAINING)
_LISTED = 8
"""Excluded plants named in a message; the rest are in status.plants (Events cap at 1 KiB)."""


@dataclass(frozen=True)
class Upload:
    """A committed update as listed by the exchange (only checksum-verified updates appear)."""

    plant: str
    samples: int
    bytes: int
    metrics: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: UpdateRecord) -> Upload:
        meta = record.meta
        return cls(meta.plant, meta.num_samples, meta.total_bytes, dict(meta.metrics))


class JobState(str, Enum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobObservation:
    name: str
    state: JobState
    message: str = ""

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> JobObservation:
        """Read a batch/v1 Job as the API server returns it: terminal only once its condition says so."""
        name = job["metadata"]["name"]
        for condition in (job.get("status") or {}).get("conditions") or ():
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                return cls(name, JobState.SUCCEEDED)
            if condition.get("type") == "Failed":
                detail = ": ".join(x for x in (condition.get("reason"), condition.get("message")) if x)
                return cls(name, JobState.FAILED, detail)
        return cls(name, JobState.RUNNING)


@dataclass(frozen=True)
class ObservedRound:
    """Everything outside the FederatedRound object that the decision depends on.

    `candidate` is the store's version produced for this round (round_id matches), if any;
    `promoted` is the model's currently promoted version (the default base, and the incumbent
    an IfBetter promotion must beat). `privacy` is each plant's release history in the lineage's privacy
    ledger (only observed when the round uses DP), read after the candidate so it includes this round.
    """

    uploads: tuple[Upload, ...] = ()
    exchange: RoundRecord | None = None
    job: JobObservation | None = None
    candidate: ModelVersion | None = None
    promoted: ModelVersion | None = None
    evaluations: tuple[EvaluationRecord, ...] = ()
    privacy: Mapping[str, tuple[DPRelease, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundDecision:
    status: FederatedRoundStatus
    actions: tuple[Action, ...]
    requeue_at: datetime | None = None
    #: ε (at the round's δ) each plant this round aggregated has spent in the lineage; empty before aggregation.
    epsilon: Mapping[str, float] = field(default_factory=dict)
    #: labels the round lacks (`assignment_labels`): the adapter merges them into metadata before the status patch
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def events(self) -> tuple[EmitEvent, ...]:
        return tuple(a for a in self.actions if isinstance(a, EmitEvent))


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Incumbent:
    """What a candidate must beat: its metrics and how to name it in a message."""

    label: str
    metrics: Mapping[str, float]


def promotion_verdict(
    policy: Promotion,
    version: int,
    candidate: Mapping[str, float],
    incumbent: Incumbent | None,
    objective: tuple[str, MetricGoal] = DEFAULT_OBJECTIVE,
) -> Verdict:
    """Whether candidate `version` (with `candidate` metrics) should replace `incumbent` under the policy.

    Without a `goal` in the policy, the metric's direction is the task's (`objective`, as its plants declare it)
    for its primary score, Minimize for a loss, else Maximize (`goal_for`)."""
    if policy.policy is PromotionPolicy.ALWAYS:
        return Verdict(True, "PolicyAlways", "promotion policy is Always")
    metric = policy.metric or ""
    if metric not in candidate:
        return Verdict(False, "MetricMissing", f"candidate version {version} has no metric {metric!r}")
    value = candidate[metric]
    if incumbent is None:
        return Verdict(True, "NoIncumbent", f"{metric} {value:g}; no promoted version to compare with")
    if metric not in incumbent.metrics:
        if is_split_key(metric, VAL):
            return Verdict(False, "IncumbentUnscored", f"{incumbent.label} has no {metric} to compare with")
        return Verdict(True, "NoIncumbent", f"{metric} {value:g}; {incumbent.label} has no {metric}")
    best = incumbent.metrics[metric]
    goal = goal_for(metric, policy.goal, objective)
    if goal.better(value, best, policy.min_delta):
        return Verdict(True, "Better", f"{metric} {value:g} beats {best:g} of {incumbent.label}")
    direction = "above" if goal is MetricGoal.MAXIMIZE else "below"
    return Verdict(
        False,
        "NotBetter",
        f"{metric} {value:g} is not {direction} {best:g} of {incumbent.label}"
        + (f" by more than {policy.min_delta:g}" if policy.min_delta else ""),
    )


ASSIGNED = "true"
"""Value of a round's `assigned_label(plant)`."""


def assignment_labels(fr: FederatedRound, status: FederatedRoundStatus) -> dict[str, str]:
    """The `assigned.plantfed.io/<plant>` labels `fr` still lacks for the plants `status` assigns.

    A plant's agent lists and watches only rounds labelled for it, so another plant's round changing costs it
    nothing. Labels are added, never removed: a plant that turned Late or Failed still sees the round it trained
    for (to cancel or report its Job); an Excluded plant never needed to. The adapter writes them before the
    status that assigns the plant, so an agent never misses a round that wants its update.
    """
    have = fr.metadata.labels
    wanted = (assigned_label(p.plant) for p in status.plants if p.state is not PlantRoundState.EXCLUDED)
    return {key: ASSIGNED for key in wanted if have.get(key) != ASSIGNED}


def aggregation_job_name(round_name: str) -> str:
    """Deterministic Job name, kept within the 63 characters a Job's pod label allows."""
    return bounded_name(round_name, suffix="-aggregate")


class _Work:
    """Mutable scratch state for one reconcile call; never escapes it."""

    def __init__(self, fr: FederatedRound, observed: ObservedRound, now: datetime) -> None:
        self.fr = fr
        self.spec = fr.spec
        self.name = fr.metadata.name
        self.observed = observed
        self.now = now
        self.status = fr.status.model_copy(deep=True)
        self.plants: dict[str, PlantRoundStatus] = {p.plant: p for p in self.status.plants}
        self.events: list[EmitEvent] = []
        self.promote: Verdict | None = None
        self.requeue_at: datetime | None = None

    @property
    def phase(self) -> RoundPhase:
        return self.status.phase or RoundPhase.PENDING

    def count(self, *states: PlantRoundState) -> int:
        return sum(p.state in states for p in self.plants.values())

    def assigned(self) -> list[str]:
        return sorted(p.plant for p in self.plants.values() if p.state is not PlantRoundState.EXCLUDED)

    def condition(self, type_: str, status: ConditionStatus | bool, reason: str, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions, type_, status, reason, message, self.now, self.fr.metadata.generation
        )

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(EmitEvent(type_, reason, message))

    def set_plant(self, plant: str, **changes: object) -> None:
        self.plants[plant] = self.plants[plant].model_copy(update=changes)

    def fail(self, reason: str, message: str) -> None:
        self.status.phase = RoundPhase.FAILED
        self.status.completion_time = self.now
        self.condition(SUCCEEDED, False, reason, message)
        self.event(EventType.WARNING, reason, message)

    def succeed(self, message: str) -> None:
        self.status.phase = RoundPhase.SUCCEEDED
        self.status.completion_time = self.now
        self.condition(SUCCEEDED, True, "Completed", message)

    def exchange(self) -> RoundRecord | None:
        record = self.observed.exchange
        return record if record is not None and record.round_id == self.name else None

    def candidate(self) -> ModelVersion | None:
        cand = self.observed.candidate
        ok = cand is not None and cand.round_id == self.name and cand.model == self.spec.model_ref
        return cand if ok else None


def _start(w: _Work, plants: Sequence[PlantParticipant], heartbeat_timeout: timedelta) -> None:
    base = w.spec.base_version
    if base is None and w.observed.promoted is not None:
        base = w.observed.promoted.version
    if base is None:
        w.condition(
            SUCCEEDED,
            ConditionStatus.UNKNOWN,
            "WaitingForBaseModel",
            f"model {w.spec.model_ref} has no promoted version yet",
        )
        return
    selection = select_plants(w.spec, plants, w.now, heartbeat_timeout, w.observed.privacy)
    w.plants = {
        **{p: PlantRoundStatus(plant=p, state=PlantRoundState.ASSIGNED) for p in selection.eligible},
        **{
            e.plant: PlantRoundStatus(plant=e.plant, state=PlantRoundState.EXCLUDED, reason=e.reason, message=e.message)
            for e in selection.excluded
        },
    }
    eligible, quorum = len(selection.eligible), w.spec.min_participants
    if eligible < quorum:
        shown = [f"{e.plant}: {e.reason}" for e in selection.excluded[:_LISTED]]
        more = len(selection.excluded) - len(shown)
        detail = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        message = f"{eligible} plants eligible but minParticipants is {quorum}" + (
            f" (excluded {detail})" if detail else ""
        )
        w.condition(QUORUM_MET, False, "QuorumUnreachable", message)
        w.fail("QuorumUnreachable", message)
        return
    w.status.base_version = base
    w.status.start_time = w.now
    w.status.phase = RoundPhase.TRAINING
    w.condition(SUCCEEDED, ConditionStatus.UNKNOWN, "InProgress", f"training on {eligible} plants from version {base}")
    excluded = f", {len(selection.excluded)} excluded" if selection.excluded else ""
    w.event(EventType.NORMAL, "Started", f"assigned {eligible} plants{excluded}; base version {base}")


def _track_plants(w: _Work, plants: Sequence[PlantParticipant]) -> None:
    """Fold exchange uploads (authoritative) and agents' reports into per-plant states."""
    uploads = {u.plant: u for u in w.observed.uploads}
    reports = {
        pp.spec.plant_id: pp.status.assignment
        for pp in plants
        if pp.status.assignment is not None and pp.status.assignment.round == w.name
    }
    for plant, entry in list(w.plants.items()):
        if entry.state in (PlantRoundState.EXCLUDED, PlantRoundState.UPLOADED):
            continue
        upload, report = uploads.get(plant), reports.get(plant)
        if upload is not None:
            w.set_plant(
                plant,
                state=PlantRoundState.UPLOADED,
                progress=1.0,
                samples=upload.samples,
                bytes=upload.bytes,
                metrics=dict(upload.metrics),
                reason=None,
                message="",
            )
        elif report is None:
            continue
        elif report.state is AssignmentState.FAILED:
            w.set_plant(
                plant,
                state=PlantRoundState.FAILED,
                reason="TrainingFailed",
                message=report.message,
                progress=report.progress,
            )
        elif report.state is AssignmentState.PENDING:
            w.set_plant(
                plant, state=PlantRoundState.ASSIGNED, reason=None, message=report.message, progress=report.progress
            )
        else:
            w.set_plant(
                plant, state=PlantRoundState.TRAINING, reason=None, message=report.message, progress=report.progress
            )


def _training(w: _Work, plants: Sequence[PlantParticipant], heartbeat_timeout: timedelta) -> None:
    _track_plants(w, plants)
    uploaded, waiting = w.count(PlantRoundState.UPLOADED), w.count(*_WAITING)
    failed, assigned, quorum = w.count(PlantRoundState.FAILED), len(w.assigned()), w.spec.min_participants
    assert w.status.start_time is not None
    deadline = w.status.start_time + timedelta(seconds=w.spec.deadline_seconds)
    past_deadline = w.now >= deadline
    progress = f"{uploaded} of {assigned} plants uploaded; quorum is {quorum}"
    if uploaded >= quorum and (waiting == 0 or past_deadline):
        for entry in list(w.plants.values()):
            if entry.state in _WAITING:
                w.set_plant(
                    entry.plant,
                    state=PlantRoundState.LATE,
                    reason="DeadlineExceeded",
                    message="no update committed by the deadline; not aggregated",
                )
        w.status.cutoff_time = w.now
        w.status.aggregation_job = aggregation_job_name(w.name)
        w.status.phase = RoundPhase.AGGREGATING
        w.condition(QUORUM_MET, True, "QuorumReached", progress)
        w.event(EventType.NORMAL, "QuorumReached", f"{progress}; aggregating")
    elif uploaded + waiting < quorum:
        message = (
            f"{failed} of {assigned} assigned plants failed; at most {uploaded + waiting} "
            f"can upload but minParticipants is {quorum}"
        )
        w.condition(QUORUM_MET, False, "QuorumUnreachable", message)
        w.fail("QuorumUnreachable", message)
    elif past_deadline:
        for entry in list(w.plants.values()):
            if entry.state in _WAITING:
                w.set_plant(
                    entry.plant,
                    state=PlantRoundState.LATE,
                    reason="DeadlineExceeded",
                    message="no update committed by the deadline",
                )
        message = f"deadline of {w.spec.deadline_seconds}s passed with {progress}"
        w.condition(QUORUM_MET, False, "QuorumNotMet", message)
        w.fail("DeadlineExceeded", message)
    else:
        w.condition(QUORUM_MET, ConditionStatus.UNKNOWN, "WaitingForUploads", progress)
        w.requeue_at = deadline


def _record_late_uploads(w: _Work) -> None:
    """After the cutoff, show what late plants sent; it is never aggregated."""
    for upload in w.observed.uploads:
        entry = w.plants.get(upload.plant)
        if entry is None or entry.state is not PlantRoundState.LATE or entry.reason == "UploadedAfterCutoff":
            continue
        w.set_plant(
            upload.plant,
            samples=upload.samples,
            bytes=upload.bytes,
            metrics=dict(upload.metrics),
            reason="UploadedAfterCutoff",
            message="update committed after the cutoff; not aggregated",
        )
        w.event(EventType.NORMAL, "LateUpload", f"{upload.plant} uploaded after the cutoff; not aggregated")


def _aggregating(w: _Work, plants: Sequence[PlantParticipant], heartbeat_timeout: timedelta) -> None:
    job = w.observed.job
    if job is None or job.name != w.status.aggregation_job or job.state is JobState.RUNNING:
        return
    if job.state is JobState.FAILED:
        message = f"aggregation Job {job.name} failed" + (f": {job.message}" if job.message else "")
        w.condition(AGGREGATED, False, "JobFailed", message)
        w.fail("AggregationFailed", message)
        return
    candidate = w.candidate()
    if candidate is None:
        message = f"aggregation Job {job.name} succeeded but the store has no version for round {w.name}"
        w.condition(AGGREGATED, False, "NoCandidate", message)
        w.fail("AggregationFailed", message)
        return
    uploaded = w.count(PlantRoundState.UPLOADED)
    w.status.candidate_version = candidate.version
    w.status.metrics = scores_only(candidate.metrics)
    w.status.score = round_score(w.spec.promotion, w.status.metrics, objective_of(candidate.metrics))
    w.status.phase = RoundPhase.EVALUATING
    message = f"aggregated {uploaded} updates into version {candidate.version}"
    w.condition(AGGREGATED, True, "Aggregated", message)
    w.event(EventType.NORMAL, "Aggregated", message)


def _plant_side_evaluation(w: _Work, candidate: ModelVersion) -> bool:
    """Fold the plants' scores of `candidate` into status; True once the decision may be taken.

    The plants whose updates went into the candidate are asked (status.evaluation appears; their agents run
    an evaluation Job) and the decision waits until all of them reported or the evaluation window closed.
    """
    timeout = w.spec.promotion.evaluation_timeout_seconds
    if timeout == 0:
        return True
    contributors = sorted(p for p, e in w.plants.items() if e.state is PlantRoundState.UPLOADED)
    ev = w.status.evaluation
    if ev is None or ev.version != candidate.version:
        ev = RoundEvaluation(version=candidate.version, start_time=w.now, expected=len(contributors))
        w.event(
            EventType.NORMAL,
            "EvaluationRequested",
            f"asked {len(contributors)} plants to score version {candidate.version} on their validation splits",
        )
    reports = {e.plant: e for e in w.observed.evaluations if e.version == candidate.version and e.plant in contributors}
    for plant, report in reports.items():
        w.set_plant(plant, evaluation=dict(report.metrics))
    base_rows = []
    for plant, report in reports.items():
        measured = w.plants[plant].metrics
        # Plants score the candidate (`val_*`) and, before training, the base (`global_val_*`) on one split.
        scores = base_scores(measured, VAL)
        scores.pop(VAL_SAMPLES, None)
        base_rows.append((scores, measured.get(BASE_VAL_SAMPLES, report.num_samples)))
    w.status.evaluation = ev = ev.model_copy(
        update={
            "reported": len(reports),
            "samples": sum(r.num_samples for r in reports.values()),
            "candidate": pool([(r.metrics, r.num_samples) for r in reports.values()]),
            "base": pool(base_rows),
        }
    )
    closes = ev.start_time + timedelta(seconds=timeout)
    progress = f"{len(reports)} of {len(contributors)} plants scored version {candidate.version}"
    if len(reports) < len(contributors) and w.now < closes:
        w.condition(EVALUATED, ConditionStatus.UNKNOWN, "WaitingForPlants", f"{progress} on their validation splits")
        w.requeue_at = closes
        return False
    objective = objective_of(candidate.metrics)
    if reports:
        shown = {split_key(VAL, objective[0]), split_key(VAL, LOSS)}
        summary = ", ".join(
            f"{k} {v:.4g} (base {ev.base[k]:.4g})" for k, v in ev.candidate.items() if k in shown and k in ev.base
        )
        w.condition(EVALUATED, True, "Evaluated", f"{progress}" + (f": {summary}" if summary else ""))
    else:
        w.condition(EVALUATED, False, "NoEvaluations", f"no plant scored version {candidate.version} within {timeout}s")
    w.status.metrics = scores_only({**candidate.metrics, **ev.candidate})
    w.status.score = round_score(w.spec.promotion, w.status.metrics, objective)
    return True


def round_score(
    promotion: Promotion, metrics: Mapping[str, float], objective: tuple[str, MetricGoal]
) -> RoundScore | None:
    """The round's headline score (see `RoundScore`), or None when `metrics` lacks it."""
    if promotion.metric:
        candidates = [(promotion.metric, goal_for(promotion.metric, promotion.goal, objective))]
    else:
        name, goal = objective
        candidates = [(split_key(VAL, name), goal), (local_key(VAL, name), goal)]
    for metric, goal in candidates:
        if metric in metrics:
            return RoundScore(metric=metric, goal=goal, value=metrics[metric])
    return None


def _incumbent(w: _Work) -> Incumbent | None:
    """The promoted version; for `val_*` metrics, as the same plants scored it before training this round."""
    promoted = w.observed.promoted
    if promoted is None:
        return None
    metric = w.spec.promotion.metric or ""
    if is_split_key(metric, VAL):
        ev = w.status.evaluation
        if ev is not None and promoted.version == w.status.base_version:
            return Incumbent(f"version {promoted.version} on the same plants", ev.base)
        return Incumbent(
            f"version {promoted.version} (promoted after this round started; not scored by its plants)", {}
        )
    return Incumbent(f"version {promoted.version}", promoted.metrics)


def _evaluating(w: _Work, plants: Sequence[PlantParticipant], heartbeat_timeout: timedelta) -> None:
    candidate = w.candidate()
    if candidate is None or candidate.version != w.status.candidate_version:
        w.fail("CandidateMissing", f"version {w.status.candidate_version} is no longer in the model store")
        return
    promoted = w.observed.promoted
    if candidate.promoted or (promoted is not None and promoted.version == candidate.version):
        message = f"version {candidate.version} promoted"
        w.status.result_version = candidate.version
        w.condition(PROMOTED, True, "Promoted", message)
        w.succeed(message)
        w.event(EventType.NORMAL, "Promoted", message)
        return
    if not _plant_side_evaluation(w, candidate):
        return
    verdict = promotion_verdict(
        w.spec.promotion, candidate.version, w.status.metrics, _incumbent(w), objective_of(candidate.metrics)
    )
    if verdict.promote:
        w.promote = verdict
        w.condition(PROMOTED, ConditionStatus.UNKNOWN, "Promoting", verdict.message)
        return
    w.condition(PROMOTED, False, verdict.reason, verdict.message)
    message = f"version {candidate.version} not promoted: {verdict.message}"
    w.succeed(message)
    w.event(EventType.NORMAL, "NotPromoted", message)


def _finished(w: _Work, plants: Sequence[PlantParticipant], heartbeat_timeout: timedelta) -> None:
    return None


_STEPS = {
    RoundPhase.PENDING: _start,
    RoundPhase.TRAINING: _training,
    RoundPhase.AGGREGATING: _aggregating,
    RoundPhase.EVALUATING: _evaluating,
    RoundPhase.SUCCEEDED: _finished,
    RoundPhase.FAILED: _finished,
}


def _ensure(w: _Work) -> list[Action]:
    """Actions that bring the world in line with the (new) status; repeated until observed done."""
    exchange = w.exchange()
    is_open = exchange is not None and exchange.state is RoundState.OPEN
    phase = w.phase
    actions: list[Action] = []
    if phase is RoundPhase.TRAINING and exchange is None:
        assert w.status.base_version is not None
        record = RoundRecord(
            round_id=w.name, model=w.spec.model_ref, base_version=w.status.base_version, plants=w.assigned()
        )
        actions.append(OpenExchangeRound(record))
    keep_open = phase in (RoundPhase.AGGREGATING, RoundPhase.EVALUATING) and (
        w.spec.late_upload_policy is LateUploadPolicy.RECORD
    )
    past_cutoff = w.status.cutoff_time is not None and not keep_open
    if is_open and (past_cutoff or phase.finished):
        actions.append(CloseExchangeRound(w.name))
    job = w.observed.job
    if phase is RoundPhase.AGGREGATING and (job is None or job.name != w.status.aggregation_job):
        assert w.status.aggregation_job is not None and w.status.base_version is not None
        uploaded = tuple(sorted(p.plant for p in w.plants.values() if p.state is PlantRoundState.UPLOADED))
        actions.append(
            CreateAggregationJob(
                name=w.status.aggregation_job,
                round_id=w.name,
                model=w.spec.model_ref,
                base_version=w.status.base_version,
                plants=uploaded,
                strategy=w.spec.strategy,
                privacy=w.spec.privacy,
                compression=w.spec.compression,
            )
        )
    if phase is RoundPhase.EVALUATING and w.promote is not None:
        assert w.status.candidate_version is not None
        actions.append(Promote(w.spec.model_ref, w.status.candidate_version, w.name))
    return actions


def _privacy_spent(w: _Work) -> dict[str, float]:
    """ε each plant the round aggregated has spent in the lineage, once the candidate (hence the charge) exists."""
    privacy = w.spec.privacy
    if privacy.mode is PrivacyMode.OFF or w.status.candidate_version is None:
        return {}
    spent = {}
    for entry in w.plants.values():
        history = w.observed.privacy.get(entry.plant)
        if entry.state is PlantRoundState.UPLOADED and history:
            epsilon = epsilon_for(list(history), privacy.delta)
            if math.isfinite(epsilon):  # a status field cannot hold inf; no charged release has σ = 0
                spent[entry.plant] = epsilon
    return spent


def _record_spend(
    fr: FederatedRound, plants: Sequence[PlantParticipant], spent: Mapping[str, float]
) -> list[RecordPrivacySpend]:
    """Copy ε into participants whose status differs, while the round is being finished.

    A finished round no longer writes: with several DP lineages, dpEpsilon then shows the lineage whose
    round last aggregated the plant, instead of whichever old round an operator restart reconciles last.
    """
    if (fr.status.phase or RoundPhase.PENDING).finished:
        return []
    shown = {pp.spec.plant_id: pp.status.dp_epsilon for pp in plants}
    return [
        RecordPrivacySpend(plant, epsilon)
        for plant, epsilon in sorted(spent.items())
        if plant in shown and not ((seen := shown[plant]) is not None and math.isclose(seen, epsilon, rel_tol=1e-9))
    ]


def reconcile_round(
    fr: FederatedRound,
    plants: Sequence[PlantParticipant],
    observed: ObservedRound,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> RoundDecision:
    """The round's next status and the actions that move it forward (see the module docstring)."""
    w = _Work(fr, observed, timestamp(now))
    for _ in RoundPhase:
        before = w.phase
        _STEPS[before](w, plants, heartbeat_timeout)
        if w.phase is before:
            break
    if w.status.cutoff_time is not None:
        _record_late_uploads(w)
    w.status.plants = [w.plants[p] for p in sorted(w.plants)]
    w.status.assigned = len(w.assigned())
    w.status.uploaded = w.count(PlantRoundState.UPLOADED)
    w.status.observed_generation = fr.metadata.generation
    spent = _privacy_spent(w)
    actions = (*_record_spend(fr, plants, spent), *_ensure(w), *w.events)
    return RoundDecision(w.status, actions, w.requeue_at, spent, assignment_labels(fr, w.status))
