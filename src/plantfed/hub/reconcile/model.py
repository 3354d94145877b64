"""Run a FederatedModel's campaign: initialise the lineage, start rounds, record promotions, stop.

Campaign rounds are named `<model>-r<N>` (N = 1, 2, ...), so the name alone says which round of
which campaign an object is, creating a round is idempotent (the name exists or it does not),
and the round number orders rounds for patience without trusting timestamps. Rounds run one at
a time: the next one is created only once no round of this model is unfinished.

Everything is derived from the FederatedModel's status plus the observed rounds and store, so
the same inputs give the same decision and a restarted operator continues where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plantfed.contract.api.common import ConditionStatus, MetricGoal, ObjectMeta
from plantfed.contract.api.model import (
    MAX_HISTORY,
    BestResult,
    FederatedModel,
    FederatedModelStatus,
    HistoryEntry,
    ModelPhase,
    StopCriteria,
)
from plantfed.contract.api.round import FederatedRound, FederatedRoundSpec, RoundPhase
from plantfed.contract.naming import MODEL_KEY, ROUND_NUMBER_KEY
from plantfed.contract.records import ModelVersion
from plantfed.contract.scores import DEFAULT_OBJECTIVE, goal_for
from plantfed.hub.reconcile.actions import (
    Action,
    CreateRound,
    DeleteRound,
    EmitEvent,
    EventType,
    InitializeModel,
)
from plantfed.hub.reconcile.conditions import get_condition, set_condition, timestamp
from plantfed.hub.reconcile.round import PROMOTED
from plantfed.hub.reconcile.schedule import next_fire

READY = "Ready"
CONVERGED = "Converged"

DEFAULT_FAILURE_BACKOFF = timedelta(seconds=30)
MAX_FAILURE_BACKOFF = timedelta(minutes=30)


@dataclass(frozen=True)
class ModelDecision:
    status: FederatedModelStatus
    actions: tuple[Action, ...]
    requeue_at: datetime | None = None

    @property
    def events(self) -> tuple[EmitEvent, ...]:
        return tuple(a for a in self.actions if isinstance(a, EmitEvent))


def round_name(model: str, number: int) -> str:
    return f"{model}-r{number}"


def round_number(model: str, name: str) -> int | None:
    """N for a campaign round `<model>-r<N>`; None for rounds created by hand."""
    match = re.fullmatch(re.escape(model) + r"-r([1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def _finished(fr: FederatedRound) -> bool:
    return fr.status.phase is not None and fr.status.phase.finished


def _history(fm: FederatedModel, rounds: Sequence[FederatedRound]) -> tuple[list[HistoryEntry], list[HistoryEntry]]:
    """History with the promotions of observed rounds merged in, and the entries that are new."""
    known = {entry.round for entry in fm.status.history}
    new = []
    for fr in rounds:
        promoted = get_condition(fr.status.conditions, PROMOTED)
        if fr.name in known or fr.status.result_version is None or promoted is None:
            continue
        if promoted.status is ConditionStatus.TRUE:
            new.append(
                HistoryEntry(
                    version=fr.status.result_version,
                    round=fr.name,
                    metrics=dict(fr.status.metrics),
                    promoted_at=promoted.last_transition_time,
                )
            )
    merged = sorted([*fm.status.history, *new], key=lambda e: (e.version, e.round))
    return merged[-MAX_HISTORY:], sorted(new, key=lambda e: e.version)


def _best(
    stop: StopCriteria, current: BestResult | None, finished: list[tuple[int, FederatedRound]]
) -> BestResult | None:
    """Best evaluated value of the stop metric, improving only by more than `minDelta`."""
    if stop.metric is None:
        return current
    goal = stop_goal(stop, [fr for _, fr in finished])
    best = current
    for number, fr in finished:
        value = fr.status.metrics.get(stop.metric)
        if fr.status.phase is not RoundPhase.SUCCEEDED or value is None:
            continue
        if best is None or goal.better(value, best.value, stop.min_delta):
            best = BestResult(round=fr.name, round_number=number, value=value)
    return best


def stop_goal(stop: StopCriteria, rounds: Sequence[FederatedRound]) -> MetricGoal:
    """Which way the stop metric is better: the spec's goal; else as the campaign's rounds scored that metric
    (`status.score`, whose goal is the task's own for its primary score); else by name (`goal_for`)."""
    metric = stop.metric or ""
    if stop.goal is None:
        for fr in rounds:
            if fr.status.score is not None and fr.status.score.metric == metric:
                return fr.status.score.goal
    return goal_for(metric, stop.goal, DEFAULT_OBJECTIVE)


def _stop_reason(
    stop: StopCriteria, best: BestResult | None, completed: int, goal: MetricGoal
) -> tuple[bool, str, str] | None:
    """(converged, reason, message) for the first stop criterion that holds, else None."""
    if stop.metric is not None and stop.target is not None and best is not None:
        reached = best.value >= stop.target if goal is MetricGoal.MAXIMIZE else best.value <= stop.target
        if reached:
            return True, "TargetReached", f"{stop.metric} {best.value:g} in {best.round} reached target {stop.target:g}"
    if stop.patience is not None:
        since = completed - (best.round_number if best else 0)
        if since >= stop.patience:
            where = f"; best {best.value:g} in {best.round}" if best else ""
            return True, "NoImprovement", f"no improvement of {stop.metric} for {since} rounds{where}"
    if stop.max_rounds is not None and completed >= stop.max_rounds:
        return False, "MaxRoundsReached", f"{completed} of maxRounds {stop.max_rounds} rounds completed"
    return None


def _consecutive_failures(finished: list[tuple[int, FederatedRound]]) -> int:
    count = 0
    for _, fr in reversed(finished):
        if fr.status.phase is not RoundPhase.FAILED:
            break
        count += 1
    return count


def _next_round_time(
    fm: FederatedModel, finished: list[tuple[int, FederatedRound]], backoff: timedelta
) -> datetime | None:
    """When the next round may start; None means now.

    After failed rounds the next one waits `backoff`, doubling per consecutive failure (capped),
    so a plant fleet that cannot reach quorum does not get a new round every second. A cadence
    tick that falls while a round runs is skipped: the next round starts at the first tick after
    the previous round finished (or after the model was created).
    """
    last = finished[-1][1] if finished else None
    last_end = (last.status.completion_time or last.metadata.creation_timestamp) if last else None
    due: datetime | None = None
    failures = _consecutive_failures(finished)
    if failures and last_end is not None:
        due = last_end + min(backoff * 2 ** (failures - 1), MAX_FAILURE_BACKOFF)
    if fm.spec.cadence:
        after = last_end or fm.metadata.creation_timestamp
        if after is not None:
            tick = next_fire(fm.spec.cadence, after, fm.spec.time_zone)
            due = tick if due is None else max(due, tick)
    return due


def _next_number(model: str, status: FederatedModelStatus, numbered: list[tuple[int, FederatedRound]]) -> int:
    """One past every round number known from observed rounds or status (rounds may be deleted)."""
    taken = [status.rounds_completed, *(n for n, _ in numbered)]
    taken += [round_number(model, e.round) or 0 for e in status.history]
    return max(taken) + 1


def expired_rounds(fm: FederatedModel, finished: Sequence[tuple[int, FederatedRound]]) -> list[FederatedRound]:
    """Finished campaign rounds beyond `spec.roundRetention`, oldest first; `finished` is ordered by number.

    Without this every round ever run stays an object that every agent's list and the operator's own list of
    rounds pay for. What a deleted round leaves behind is in the model's status, which is patched before any
    action runs: its promotion in `history`, `roundsCompleted`, `best`. The newest finished round is always
    kept (retention >= 1), since it times the next round (failure backoff, cadence). Rounds created by hand
    (not `<model>-r<N>`) are the user's and never deleted; their numbers are not in `finished`.
    """
    keep = max(1, fm.spec.round_retention)
    return [fr for _, fr in finished[:-keep]] if len(finished) > keep else []


def new_round(fm: FederatedModel, number: int) -> FederatedRound:
    """The campaign's round N, built from the template (base version: latest promoted)."""
    name = round_name(fm.name, number)
    spec = FederatedRoundSpec.model_validate({**fm.spec.round_template.model_dump(), "model_ref": fm.name})
    meta = ObjectMeta(
        name=name, namespace=fm.metadata.namespace, labels={MODEL_KEY: fm.name, ROUND_NUMBER_KEY: str(number)}
    )
    return FederatedRound(metadata=meta, spec=spec)


def reconcile_model(
    fm: FederatedModel,
    rounds: Sequence[FederatedRound],
    now: datetime,
    promoted: ModelVersion | None,
    failure_backoff: timedelta = DEFAULT_FAILURE_BACKOFF,
) -> ModelDecision:
    """The model's next status and actions.

    `rounds` are the FederatedRounds in the model's namespace (others' are ignored); `promoted`
    is the lineage's promoted version in the store, None when the lineage does not exist yet.
    """
    now = timestamp(now)
    gen = fm.metadata.generation
    status = fm.status.model_copy(deep=True)
    status.observed_generation = gen
    actions: list[Action] = []
    events: list[EmitEvent] = []

    def condition(type_: str, value: ConditionStatus | bool, reason: str, message: str) -> None:
        status.conditions = set_condition(status.conditions, type_, value, reason, message, now, gen)

    if promoted is None:
        status.phase = ModelPhase.INITIALIZING
        condition(READY, False, "Initializing", "writing version 0 to the model store")
        actions.append(InitializeModel(fm.name, fm.spec.task, fm.spec.variant, fm.spec.initial_weights))
        return ModelDecision(status, tuple(actions))

    ours = [fr for fr in rounds if fr.spec.model_ref == fm.name]
    numbered = sorted(((n, fr) for fr in ours if (n := round_number(fm.name, fr.name)) is not None), key=lambda t: t[0])
    finished = [(n, fr) for n, fr in numbered if _finished(fr)]

    status.history, new_entries = _history(fm, ours)
    for entry in new_entries:
        events.append(EmitEvent(EventType.NORMAL, "Promoted", f"version {entry.version} from round {entry.round}"))
    status.promoted_version = promoted.version
    condition(READY, True, "Promoted", f"version {promoted.version} is promoted")

    status.rounds_completed = max([status.rounds_completed, *(n for n, _ in finished)])
    status.best = _best(fm.spec.stop, status.best, finished)

    observed = {fr.name for fr in ours}
    unfinished = [fr.name for fr in ours if not _finished(fr)]
    current = status.current_round
    if current is not None and current not in observed and round_number(fm.name, current) is not None:
        unfinished.append(current)
    status.current_round = min(unfinished, key=lambda n: (round_number(fm.name, n) or 0, n)) if unfinished else None

    stop = _stop_reason(fm.spec.stop, status.best, status.rounds_completed, stop_goal(fm.spec.stop, ours))
    status.next_round_time = None
    requeue_at = None
    if stop is not None:
        converged, reason, message = stop
        condition(CONVERGED, converged, reason, message)
        if status.phase is not ModelPhase.COMPLETED and not unfinished:
            events.append(EmitEvent(EventType.NORMAL, reason, f"campaign complete: {message}"))
        status.phase = ModelPhase.TRAINING if unfinished else ModelPhase.COMPLETED
    else:
        condition(CONVERGED, False, "InProgress", f"{status.rounds_completed} rounds completed")
        if unfinished:
            status.phase = ModelPhase.TRAINING
        elif fm.spec.suspend:
            status.phase = ModelPhase.SUSPENDED
        else:
            due = _next_round_time(fm, finished, failure_backoff)
            if due is not None and now < due:
                status.phase = ModelPhase.WAITING
                status.next_round_time = due
                requeue_at = due
            else:
                status.current_round = round_name(fm.name, _next_number(fm.name, status, numbered))
                status.phase = ModelPhase.TRAINING
                events.append(EmitEvent(EventType.NORMAL, "RoundCreated", f"created round {status.current_round}"))
    current = status.current_round
    missing = round_number(fm.name, current) if current is not None and current not in observed else None
    if missing is not None:
        actions.append(CreateRound(new_round(fm, missing)))
    actions += [DeleteRound(fr.name, fr.metadata.uid or "") for fr in expired_rounds(fm, finished)]
    return ModelDecision(status, (*actions, *events), requeue_at)
