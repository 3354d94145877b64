"""What the agent should do next, as a pure function of what it sees (hub objects + local Jobs + cache).

When to train. The hub operator (plantfed.hub.reconcile.round) writes the plant as `Assigned` in a round's
`status.plants` and moves the round to phase `Training` in the same status write, before it opens the
round on the exchange. The plant should train exactly while the round is in `Training` and its own entry
is still waiting (`Assigned`, or `Training` once the operator folded in our report). Any other state
(Uploaded, Late, Failed, Excluded) or phase means the hub no longer wants an update from us.

Level-triggered: every call re-derives the actions from scratch, and every action is idempotent (the
Job's name is derived from the round), so a restarted agent, or one that lost a watch, converges to the
same Jobs. The returned `ReportAssignment` is what `status.assignment` should say; the I/O layer writes it
only when it differs from what is there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import Assignment, AssignmentState, PlantParticipant
from plantfed.contract.api.round import (
    FederatedRound,
    LateUploadPolicy,
    PlantRoundState,
    PlantRoundStatus,
    PrivacyMode,
    RoundPhase,
)
from plantfed.plant.agent.naming import evaluation_job_name, training_job_name
from plantfed.plant.agent.observe import TrainingObservation, TrainingPhase, clip

MIN_DEADLINE = 60
"""A Job gets at least this long, even when the round's deadline is closer (clock skew with the hub)."""

_WANTED = (PlantRoundState.ASSIGNED, PlantRoundState.TRAINING)


@dataclass(frozen=True)
class TrainingSpec:
    """Everything the training Job takes from the hub's round, model and participant objects."""

    round: str
    round_uid: str
    model: str
    task: str
    variant: str
    gpus: int
    cpu: str
    memory: str
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    fedprox_mu: float
    codec: str
    clip_norm: float
    noise_multiplier: float
    data_sub_path: str
    active_deadline_seconds: int
    #: "local" (clip and noise the whole update) or "sample" (DP-SGD); see PrivacyMode
    dp_mode: str = "local"
    #: "train" (train and upload an update) or "evaluate" (score the round's candidate and report the numbers)
    purpose: str = "train"
    #: local SGD momentum (spec.training.momentum)
    momentum: float = 0.9

    @property
    def job_name(self) -> str:
        return evaluation_job_name(self.round) if self.purpose == "evaluate" else training_job_name(self.round)


@dataclass(frozen=True)
class CreateTrainingJob:
    """Create the round's training (or evaluation) Job and its token Secret (409 Conflict = already there)."""

    spec: TrainingSpec


@dataclass(frozen=True)
class CancelTrainingJob:
    """Delete a training Job the hub no longer wants: still running (frees the GPU), or left by a replaced round."""

    job_name: str
    round: str
    reason: str


@dataclass(frozen=True)
class ReportAssignment:
    """What the plant's `status.assignment` should say."""

    assignment: Assignment


@dataclass(frozen=True)
class RefreshModel:
    """Download the model's promoted version into the plant's cache."""

    model: str
    version: int


Action = CreateTrainingJob | CancelTrainingJob | ReportAssignment | RefreshModel


@dataclass(frozen=True)
class AgentView:
    """Everything one decision depends on. `trainings` maps round name → its local Job's observation."""

    plant: str
    participant: PlantParticipant | None
    rounds: Sequence[FederatedRound]
    models: Mapping[str, FederatedModel]
    trainings: Mapping[str, TrainingObservation]
    cached: Mapping[str, int | None]
    max_gpus: int
    now: datetime
    followed_models: frozenset[str] = field(default_factory=frozenset)
    #: round name → observation of its local evaluation Job
    evaluations: Mapping[str, TrainingObservation] = field(default_factory=dict)


def my_entry(fr: FederatedRound, plant: str) -> PlantRoundStatus | None:
    return next((p for p in fr.status.plants if p.plant == plant), None)


def wants_update(fr: FederatedRound, entry: PlantRoundStatus | None) -> bool:
    """The hub is waiting for this plant's update in this round (see the module docstring)."""
    return entry is not None and fr.status.phase is RoundPhase.TRAINING and entry.state in _WANTED


def wants_evaluation(fr: FederatedRound, entry: PlantRoundStatus | None) -> bool:
    """The hub asks the plants whose updates went into the candidate to score it, and has none from us yet."""
    return (
        entry is not None
        and fr.status.phase is RoundPhase.EVALUATING
        and fr.status.evaluation is not None
        and entry.state is PlantRoundState.UPLOADED
        and not entry.evaluation
    )


def is_stale(training: TrainingObservation, fr: FederatedRound) -> bool:
    """The Job was made for an earlier round of the same name (a model deleted and re-created reuses names)."""
    return bool(training.round_uid and fr.metadata.uid and training.round_uid != fr.metadata.uid)


def should_cancel(fr: FederatedRound | None, entry: PlantRoundStatus | None) -> str | None:
    """Why a running Job for this round is pointless now, or None to let it run.

    A plant marked Late keeps training under `lateUploadPolicy: Record` (its update is still recorded,
    though never aggregated); under Reject its upload would be refused. An Uploaded plant's Job is
    finishing on its own.
    """
    if fr is None:
        return "RoundDeleted"
    if fr.status.phase is not None and fr.status.phase.finished:
        return f"Round{fr.status.phase.value}"
    if entry is None:
        return "NotAssigned"
    if entry.state in (PlantRoundState.FAILED, PlantRoundState.EXCLUDED):
        return f"Plant{entry.state.value}"
    if entry.state is PlantRoundState.LATE and fr.spec.late_upload_policy is LateUploadPolicy.REJECT:
        return "PlantLate"
    return None


class Refusal(Exception):
    """The agent cannot run this round here; the message says what to change."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def training_spec(
    fr: FederatedRound, model: FederatedModel | None, pp: PlantParticipant | None, max_gpus: int, now: datetime
) -> TrainingSpec:
    """The Job's inputs for `fr`, or `Refusal` when this plant cannot run it as asked."""
    if model is None:
        raise Refusal(
            "ModelNotFound", f"FederatedModel {fr.spec.model_ref} of round {fr.name} is not readable on the hub"
        )
    pod = fr.spec.pod
    if pod.gpus > max_gpus:
        raise Refusal(
            "TooManyGpus",
            f"round {fr.name} asks for {pod.gpus} GPU(s) per plant; this plant's agent "
            f"allows at most {max_gpus} (--gpus / training.gpus)",
        )
    deadline = fr.spec.deadline_seconds
    if fr.status.start_time is not None:
        remaining = (fr.status.start_time + timedelta(seconds=fr.spec.deadline_seconds) - now).total_seconds()
        if remaining <= 0:
            raise Refusal("DeadlinePassed", f"round {fr.name}'s deadline passed before training could start")
        deadline = int(remaining)
    return _spec(fr, model, pp, deadline)


def evaluation_spec(
    fr: FederatedRound, model: FederatedModel | None, pp: PlantParticipant | None, now: datetime
) -> TrainingSpec:
    """The evaluation Job's inputs: the training pod's placement and data, no GPU, the evaluation's deadline."""
    evaluation = fr.status.evaluation
    assert evaluation is not None
    if model is None:
        raise Refusal(
            "ModelNotFound", f"FederatedModel {fr.spec.model_ref} of round {fr.name} is not readable on the hub"
        )
    ends = evaluation.start_time + timedelta(seconds=fr.spec.promotion.evaluation_timeout_seconds)
    remaining = int((ends - now).total_seconds())
    if remaining <= 0:
        raise Refusal("DeadlinePassed", f"round {fr.name}'s evaluation window closed before the Job could start")
    base = _spec(fr, model, pp, remaining)
    return replace(base, purpose="evaluate", gpus=0)


def _spec(fr: FederatedRound, model: FederatedModel, pp: PlantParticipant | None, deadline: int) -> TrainingSpec:
    pod = fr.spec.pod
    privacy = fr.spec.privacy
    clip_norm = privacy.clip_norm if privacy.mode is not PrivacyMode.OFF else 0.0
    on_plant = privacy.mode in (PrivacyMode.LOCAL, PrivacyMode.SAMPLE)
    noise = privacy.noise_multiplier if on_plant else 0.0
    training = fr.spec.training
    return TrainingSpec(
        round=fr.name,
        round_uid=fr.metadata.uid or "",
        model=fr.spec.model_ref,
        task=model.spec.task,
        variant=pp.spec.capacity.model_variant.value if pp is not None else model.spec.variant,
        gpus=pod.gpus,
        cpu=pod.cpu,
        memory=pod.memory,
        node_selector=dict(pod.node_selector),
        tolerations=tuple(t.to_dict() for t in pod.tolerations),
        epochs=training.epochs,
        batch_size=training.batch_size,
        learning_rate=training.learning_rate,
        optimizer=training.optimizer.value,
        momentum=training.momentum,
        fedprox_mu=training.fed_prox_mu,
        codec=fr.spec.compression.value,
        clip_norm=clip_norm,
        noise_multiplier=noise,
        dp_mode="sample" if privacy.mode is PrivacyMode.SAMPLE else "local",
        data_sub_path=pp.spec.data.sub_path if pp is not None else "",
        active_deadline_seconds=max(MIN_DEADLINE, deadline),
    )


_STATE = {
    TrainingPhase.WAITING: AssignmentState.PENDING,
    TrainingPhase.RUNNING: AssignmentState.TRAINING,
    TrainingPhase.SUCCEEDED: AssignmentState.UPLOADED,
    TrainingPhase.FAILED: AssignmentState.FAILED,
}


def assignment_for(observation: TrainingObservation) -> Assignment:
    state = _STATE[observation.phase]
    progress = 1.0 if state is AssignmentState.UPLOADED else 0.0
    return Assignment(round=observation.round, state=state, progress=progress, message=observation.summary())


def _created(fr: FederatedRound) -> tuple[str, str]:
    stamp = fr.metadata.creation_timestamp
    return (stamp.isoformat() if stamp else "", fr.name)


def decide(view: AgentView) -> tuple[Action, ...]:
    """The actions that bring the plant's cluster, its cache and its reported status in line with the hub."""
    actions: list[Action] = []
    rounds = {fr.name: fr for fr in view.rounds}
    # (sort key, assignment): the newest round with something to say is what status.assignment shows.
    reports: list[tuple[tuple[int, str, str], Assignment]] = []

    stale: dict[str, TrainingObservation] = {}
    for fr in sorted(view.rounds, key=_created):
        entry = my_entry(fr, view.plant)
        training = view.trainings.get(fr.name)
        if training is not None and is_stale(training, fr):
            # Its Job name is taken: delete it now, create the new round's Job once it is gone.
            stale[fr.name] = training
            continue
        if training is None and wants_update(fr, entry):
            try:
                spec = training_spec(fr, view.models.get(fr.spec.model_ref), view.participant, view.max_gpus, view.now)
            except Refusal as refusal:
                reports.append(
                    (
                        (1, *_created(fr)),
                        Assignment(
                            round=fr.name,
                            state=AssignmentState.FAILED,
                            message=clip(f"{refusal.reason}: {refusal.message}"),
                        ),
                    )
                )
                continue
            actions.append(CreateTrainingJob(spec))
            reports.append(
                (
                    (1, *_created(fr)),
                    Assignment(
                        round=fr.name, state=AssignmentState.PENDING, message=f"creating training Job {spec.job_name}"
                    ),
                )
            )
        elif training is not None:
            reports.append(((1 if training.active else 0, *_created(fr)), assignment_for(training)))
        if view.evaluations.get(fr.name) is None and wants_evaluation(fr, entry):
            try:
                actions.append(
                    CreateTrainingJob(
                        evaluation_spec(fr, view.models.get(fr.spec.model_ref), view.participant, view.now)
                    )
                )
            except Refusal:
                pass  # the hub's evaluation window decides without us; nothing to report on the plant

    for round_name, training in sorted(view.trainings.items()):
        trained_for = rounds.get(round_name)
        if round_name in stale:
            actions.append(CancelTrainingJob(training.job_name, round_name, "RoundReplaced"))
        elif training.active:
            entry = my_entry(trained_for, view.plant) if trained_for is not None else None
            reason = should_cancel(trained_for, entry)
            if reason is not None:
                actions.append(CancelTrainingJob(training.job_name, round_name, reason))

    # An evaluation Job may still be exiting after its report let the round finish, and it ends itself at
    # the evaluation window (activeDeadlineSeconds): only a deleted round's is worth deleting.
    for round_name, evaluation in sorted(view.evaluations.items()):
        if evaluation.active and round_name not in rounds:
            actions.append(CancelTrainingJob(evaluation.job_name, round_name, "RoundDeleted"))

    if reports:
        _, wanted = max(reports, key=lambda item: item[0])
        current = view.participant.status.assignment if view.participant is not None else None
        if current is None or current.to_dict() != wanted.to_dict():
            actions.append(ReportAssignment(wanted))

    for model in sorted(models_to_cache(view)):
        fm = view.models.get(model)
        promoted = fm.status.promoted_version if fm is not None else None
        if promoted is not None and view.cached.get(model) != promoted:
            actions.append(RefreshModel(model, promoted))
    return tuple(actions)


def models_to_cache(view: AgentView) -> set[str]:
    """Models this plant follows: those it was ever assigned a round of, those already cached, and --model."""
    assigned = {
        fr.spec.model_ref
        for fr in view.rounds
        if (e := my_entry(fr, view.plant)) is not None and e.state is not PlantRoundState.EXCLUDED
    }
    return assigned | set(view.followed_models) | {m for m, v in view.cached.items() if v is not None}
