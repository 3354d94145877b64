"""Pure reconcile logic: plants, rounds and campaigns decided from spec + observation + `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plantfed.contract.api import FederatedModel, FederatedRound, PlantParticipant
from plantfed.contract.api.common import ConditionStatus, MetricGoal
from plantfed.contract.api.round import PlantRoundState, RoundPhase, RoundScore
from plantfed.contract.naming import MODEL_KEY, assigned_label
from plantfed.contract.records import EvaluationRecord, ModelVersion, RoundRecord, RoundState
from plantfed.engine.privacy import DPMode, DPRelease, epsilon_for
from plantfed.hub.reconcile import (
    CloseExchangeRound,
    CreateAggregationJob,
    CreateRound,
    DeleteRound,
    EmitEvent,
    InitializeModel,
    JobObservation,
    JobState,
    ObservedRound,
    OpenExchangeRound,
    Promote,
    RecordPrivacySpend,
    Upload,
    get_condition,
    plant_readiness,
    reconcile_model,
    reconcile_participant,
    reconcile_round,
    round_dp_costs,
    select_plants,
    set_condition,
    status_patch,
)

NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)  # a Friday
TIMEOUT = timedelta(seconds=90)


# --- builders ---------------------------------------------------------------------------------


def plant(
    plant_id: str,
    *,
    labels: dict[str, str] | None = None,
    heartbeat: datetime | None = NOW - timedelta(seconds=10),
    paused: bool = False,
    windows: list[dict[str, Any]] | None = None,
    gpus: int = 1,
    assignment: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> PlantParticipant:
    status: dict[str, Any] = {"conditions": conditions or []}
    if heartbeat is not None:
        status["lastHeartbeatTime"] = heartbeat.isoformat()
    if assignment is not None:
        status["assignment"] = assignment
    return PlantParticipant.from_object(
        {
            "metadata": {"name": plant_id, "labels": labels or {}, "generation": 1},
            "spec": {
                "plantId": plant_id,
                "paused": paused,
                "capacity": {"gpus": gpus},
                "data": {"hostPath": {"path": "/data"}},
                "maintenanceWindows": windows or [],
            },
            "status": status,
        }
    )


def round_(name: str = "bearing-r1", status: Any = None, **spec: Any) -> FederatedRound:
    body = {"modelRef": "bearing", "plants": ["a", "b", "c"], "minParticipants": 2, "deadlineSeconds": 600}
    body.update(spec)
    fr = FederatedRound.from_object({"metadata": {"name": name, "generation": 1}, "spec": body})
    if status is not None:
        fr = fr.model_copy(update={"status": status})
    return fr


def version(v: int, *, round_id: str | None = None, promoted: bool = False, **metrics: float) -> ModelVersion:
    return ModelVersion(
        model="bearing",
        version=v,
        digest=f"d{v}",
        size=1,
        round_id=round_id,
        metrics=metrics,
        created_at=0.0,
        promoted=promoted,
    )


def upload(p: str, samples: int = 100, base_accuracy: float = 0.6, val_samples: float = 50.0) -> Upload:
    """A committed update; the plant also scored the base version on its validation split before training."""
    return Upload(
        p,
        samples,
        samples * 10,
        {"loss": 0.5, "global_val_accuracy": base_accuracy, "global_val_loss": 1.0, "global_val_samples": val_samples},
    )


def scored(p: str, accuracy: float, samples: int = 50, v: int = 5) -> EvaluationRecord:
    return EvaluationRecord(
        plant=p,
        round_id="bearing-r1",
        version=v,
        num_samples=samples,
        metrics={"val_accuracy": accuracy, "val_loss": 1.0 - accuracy},
    )


FLEET = [plant("a"), plant("b"), plant("c")]
BASE = version(4, promoted=True, accuracy=0.80)


def observed(
    *uploads: Upload,
    exchange: str | None = "open",
    job: JobState | None = None,
    candidate: ModelVersion | None = None,
    promoted: ModelVersion | None = BASE,
    round_id: str = "bearing-r1",
    plants: tuple[str, ...] = ("a", "b", "c"),
    evaluations: tuple[EvaluationRecord, ...] = (),
    privacy: dict[str, tuple[DPRelease, ...]] | None = None,
) -> ObservedRound:
    record = None
    if exchange is not None:
        record = RoundRecord(
            round_id=round_id, model="bearing", base_version=4, plants=list(plants), state=RoundState(exchange)
        )
    return ObservedRound(
        uploads=uploads,
        exchange=record,
        job=JobObservation(f"{round_id}-aggregate", job, "BackoffLimitExceeded") if job else None,
        candidate=candidate,
        promoted=promoted,
        evaluations=evaluations,
        privacy=privacy or {},
    )


def run(fr: FederatedRound, obs: ObservedRound, now: datetime = NOW, plants=FLEET):
    """Reconcile and return the round with the new status persisted, plus the decision."""
    decision = reconcile_round(fr, plants, obs, now, TIMEOUT)
    return fr.model_copy(update={"status": decision.status}), decision


def started(fr: FederatedRound | None = None, plants=FLEET) -> FederatedRound:
    fr, decision = run(fr or round_(), ObservedRound(promoted=BASE), plants=plants)
    assert fr.status.phase is RoundPhase.TRAINING
    return fr


def states(fr: FederatedRound) -> dict[str, str]:
    return {p.plant: p.state.value for p in fr.status.plants}


def reasons(fr: FederatedRound) -> dict[str, str | None]:
    return {p.plant: p.reason for p in fr.status.plants}


def of_type(decision, kind) -> list:
    return [a for a in decision.actions if isinstance(a, kind)]


def cond(obj, type_: str):
    found = get_condition(obj.status.conditions, type_)
    assert found is not None, f"no {type_} condition"
    return found


# --- conditions -------------------------------------------------------------------------------


def test_set_condition_keeps_transition_time_while_status_is_unchanged():
    first = set_condition([], "Ready", True, "HeartbeatFresh", "10s ago", NOW)
    later = set_condition(first, "Ready", True, "HeartbeatFresh", "20s ago", NOW + timedelta(minutes=5))
    flipped = set_condition(later, "Ready", False, "HeartbeatStale", "5m ago", NOW + timedelta(minutes=9))
    assert later[0].last_transition_time == NOW and later[0].message == "20s ago"
    assert flipped[0].last_transition_time == NOW + timedelta(minutes=9)
    assert len(flipped) == 1


def test_set_condition_requires_camel_case_reasons_and_aware_times():
    with pytest.raises(ValueError, match="CamelCase"):
        set_condition([], "Ready", True, "heartbeat fresh", "", NOW)
    with pytest.raises(ValueError, match="timezone"):
        reconcile_round(round_(), FLEET, ObservedRound(promoted=BASE), NOW.replace(tzinfo=None))


# --- plant readiness --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heartbeat", "status", "reason"),
    [
        (NOW - timedelta(seconds=30), ConditionStatus.TRUE, "HeartbeatFresh"),
        (NOW - timedelta(seconds=90), ConditionStatus.TRUE, "HeartbeatFresh"),
        (NOW - timedelta(seconds=91), ConditionStatus.FALSE, "HeartbeatStale"),
        (NOW + timedelta(seconds=20), ConditionStatus.TRUE, "HeartbeatFresh"),
        (None, ConditionStatus.UNKNOWN, "NoHeartbeat"),
    ],
)
def test_plant_readiness_follows_heartbeat_freshness(heartbeat, status, reason):
    ready = plant_readiness(plant("a", heartbeat=heartbeat), NOW, TIMEOUT)
    assert (ready.status, ready.reason) == (status, reason)


def test_stale_heartbeat_message_says_how_stale():
    ready = plant_readiness(plant("a", heartbeat=NOW - timedelta(minutes=5)), NOW, TIMEOUT)
    assert ready.message == "last heartbeat 5m ago, timeout is 90s"


def test_reconcile_participant_requeues_when_the_heartbeat_would_go_stale():
    beat = NOW - timedelta(seconds=30)
    decision = reconcile_participant(plant("a", heartbeat=beat), NOW, TIMEOUT)
    assert decision.requeue_at == beat + TIMEOUT + timedelta(seconds=1)
    assert decision.status.observed_generation == 1
    stale = plant("a", heartbeat=beat, conditions=[c.to_dict() for c in decision.status.conditions])
    later = reconcile_participant(stale, decision.requeue_at, TIMEOUT)
    assert cond(later, "Ready").status is ConditionStatus.FALSE
    assert cond(later, "Ready").last_transition_time == decision.requeue_at
    assert later.requeue_at is None


# --- plant selection --------------------------------------------------------------------------

FRIDAY_EVENING = {"schedule": "0 22 * * 5", "durationMinutes": 120, "timeZone": "Europe/Berlin"}


@pytest.mark.parametrize(
    ("now", "in_window"),
    [
        (datetime(2026, 11, 6, 20, 59, tzinfo=UTC), False),  # 21:59 Berlin (UTC+1)
        (datetime(2026, 11, 6, 21, 0, tzinfo=UTC), True),  # 22:00 Berlin: window opens
        (datetime(2026, 11, 6, 22, 59, tzinfo=UTC), True),
        (datetime(2026, 11, 6, 23, 0, tzinfo=UTC), False),  # 00:00 Berlin: window closed
        (datetime(2026, 11, 13, 21, 30, tzinfo=UTC), True),  # next Friday
    ],
)
def test_maintenance_window_excludes_a_plant(now, in_window):
    fleet = [plant(p, heartbeat=now, windows=[FRIDAY_EVENING] if p == "b" else None) for p in "abc"]
    selection = select_plants(round_().spec, fleet, now, TIMEOUT)
    excluded = {e.plant: e for e in selection.excluded}
    assert ("b" in excluded) is in_window
    assert selection.eligible == (("a", "c") if in_window else ("a", "b", "c"))
    if in_window:
        assert excluded["b"].reason == "InMaintenance" and "'0 22 * * 5'" in excluded["b"].message


def test_selection_gives_a_reason_for_every_excluded_named_plant():
    fleet = [
        plant("a"),
        plant("b", paused=True),
        plant("c", heartbeat=NOW - timedelta(hours=1)),
        plant("d", gpus=0),
        plant("e", labels={"region": "us"}),
    ]
    spec = round_(
        plants=["a", "b", "c", "d", "e", "f"],
        plantSelector={
            "matchLabels": {},
            "matchExpressions": [{"key": "region", "operator": "NotIn", "values": ["us"]}],
        },
    ).spec
    selection = select_plants(spec, fleet, NOW, TIMEOUT)
    assert selection.eligible == ("a",)
    assert {e.plant: e.reason for e in selection.excluded} == {
        "b": "Paused",
        "c": "NotReady",
        "d": "InsufficientGpus",
        "e": "SelectorMismatch",
        "f": "NotFound",
    }


def test_selector_alone_picks_matching_plants_and_ignores_the_rest_silently():
    fleet = [plant("a", labels={"line": "x"}), plant("b", labels={"line": "y"}), plant("c")]
    spec = round_(
        plants=None, plantSelector={"matchExpressions": [{"key": "line", "operator": "In", "values": ["x", "y"]}]}
    ).spec
    selection = select_plants(spec, fleet, NOW, TIMEOUT)
    assert selection.eligible == ("a", "b") and selection.excluded == ()


DELTA = 1e-5


def local(sigma: float = 1.0) -> DPRelease:
    return DPRelease(mode=DPMode.LOCAL, noise_multiplier=sigma, clip_norm=1.0)


def dp_round(budget: float, mode: str = "local", sigma: float = 1.0, **spec: Any) -> FederatedRound:
    return round_(
        privacy={"mode": mode, "noiseMultiplier": sigma, "clipNorm": 1.0, "delta": DELTA, "epsilonBudget": budget},
        **spec,
    )


def test_a_plant_is_excluded_when_its_next_round_would_exceed_the_budget_not_once_it_has():
    one, two = epsilon_for([local()], DELTA), epsilon_for([local()] * 2, DELTA)
    budget = (one + two) / 2  # one round fits, a second does not
    ledger = {"b": (local(),)}
    selection = select_plants(dp_round(budget).spec, FLEET, NOW, TIMEOUT, ledger)
    assert selection.eligible == ("a", "c")  # never charged: one round fits
    (b,) = selection.excluded
    assert (b.plant, b.reason) == ("b", "PrivacyBudgetExhausted")
    # b has spent less than the budget: what excludes it is the round it would add.
    assert one < budget
    assert b.message == (
        f"epsilon spent {one:.4g}; one more round would make it {two:.4g}, "
        f"above the budget {budget:g} (delta {DELTA:g})"
    )


def test_a_round_that_exactly_uses_up_the_budget_is_allowed():
    budget = epsilon_for([local(2.0)] * 3, DELTA)
    ledger = {"a": (local(2.0),) * 2, "b": (local(2.0),) * 3}
    selection = select_plants(dp_round(budget, sigma=2.0).spec, FLEET, NOW, TIMEOUT, ledger)
    assert selection.eligible == ("a", "c")
    assert [(e.plant, e.reason) for e in selection.excluded] == [("b", "PrivacyBudgetExhausted")]


def test_the_projection_uses_the_rounds_own_noise_and_mechanism():
    budget = epsilon_for([local(1.0)] * 2, DELTA) + 1e-6
    ledger = {"a": (local(1.0),)}
    assert select_plants(dp_round(budget, sigma=1.0).spec, FLEET, NOW, TIMEOUT, ledger).eligible == ("a", "b", "c")
    # Less noise costs more: with sigma 0.9 a second round no longer fits, a first one still does.
    less_noise = select_plants(dp_round(budget, sigma=0.9).spec, FLEET, NOW, TIMEOUT, ledger)
    assert [e.plant for e in less_noise.excluded] == ["a"]
    central = select_plants(dp_round(budget, mode="central", sigma=0.9).spec, FLEET, NOW, TIMEOUT, ledger)
    assert [e.plant for e in central.excluded] == ["a"]


def sample(q: float, steps: int, sigma: float = 1.0) -> DPRelease:
    return DPRelease(mode=DPMode.SAMPLE, noise_multiplier=sigma, sample_rate=q, steps=steps, clip_norm=1.0)


def test_dp_sgd_is_priced_from_the_plants_last_round_or_at_its_worst_case_before_it():
    """The hub never sees a plant's data size: its last DP-SGD round tells it; a first round is priced dearest."""
    spec = dp_round(1.0, mode="sample", sigma=1.0, training={"epochs": 2}).spec
    history = (sample(q=0.025, steps=40),)
    assert round_dp_costs(spec, history) == [[sample(q=0.025, steps=80)]]  # 40 batches per epoch, 2 epochs
    first = round_dp_costs(spec)
    assert [sample(q=1.0, steps=2)] in first and [sample(q=0.5, steps=4)] in first
    worst = max(epsilon_for(cost, DELTA) for cost in first)
    typical = epsilon_for([*history, sample(0.025, 80)], DELTA)
    assert typical < worst  # a first round is priced conservatively: a new plant may need a larger budget
    budget = (worst + typical) / 2
    selection = select_plants(
        dp_round(budget, mode="sample", training={"epochs": 2}).spec, FLEET, NOW, TIMEOUT, {"a": history}
    )
    assert selection.eligible == ("a",)
    assert {e.plant: e.reason for e in selection.excluded} == {
        "b": "PrivacyBudgetExhausted",
        "c": "PrivacyBudgetExhausted",
    }


def test_the_budget_is_ignored_without_privacy_or_without_a_budget():
    ledger = {"a": (local(0.1),) * 50}
    assert select_plants(round_().spec, FLEET, NOW, TIMEOUT, ledger).eligible == ("a", "b", "c")
    unlimited = round_(privacy={"mode": "local", "noiseMultiplier": 1.0}).spec
    assert select_plants(unlimited, FLEET, NOW, TIMEOUT, ledger).eligible == ("a", "b", "c")


def test_an_exhausted_plant_shows_as_excluded_in_the_rounds_status():
    budget = epsilon_for([local()], DELTA) + 1e-6
    fr, _ = run(dp_round(budget), ObservedRound(promoted=BASE, privacy={"c": (local(),)}))
    assert states(fr) == {"a": "Assigned", "b": "Assigned", "c": "Excluded"}
    assert reasons(fr)["c"] == "PrivacyBudgetExhausted"


# --- rounds: start ----------------------------------------------------------------------------


def test_round_starts_by_assigning_plants_and_opening_the_exchange():
    fleet = [plant("a"), plant("b"), plant("c", paused=True)]
    fr, decision = run(round_(), ObservedRound(promoted=BASE), plants=fleet)
    assert fr.status.phase is RoundPhase.TRAINING and fr.status.base_version == 4
    assert states(fr) == {"a": "Assigned", "b": "Assigned", "c": "Excluded"}
    assert (fr.status.assigned, fr.status.uploaded, fr.status.start_time) == (2, 0, NOW)
    [opened] = of_type(decision, OpenExchangeRound)
    assert opened.record == RoundRecord(round_id="bearing-r1", model="bearing", base_version=4, plants=["a", "b"])
    assert [e.reason for e in decision.events] == ["Started"]
    assert decision.requeue_at == NOW + timedelta(seconds=600)


def test_the_round_is_labelled_for_each_plant_it_assigns_and_labels_are_never_taken_back():
    fleet = [plant("a"), plant("b"), plant("c", paused=True)]
    fr, decision = run(round_(), ObservedRound(promoted=BASE), plants=fleet)
    assert decision.labels == {assigned_label("a"): "true", assigned_label("b"): "true"}  # not c: excluded
    labelled = fr.model_copy(update={"metadata": fr.metadata.model_copy(update={"labels": dict(decision.labels)})})
    failed = [plant("a"), plant("b", heartbeat=NOW - timedelta(hours=1)), plant("c", paused=True)]
    later, again = run(labelled, observed(), NOW + timedelta(seconds=5), plants=failed)
    assert again.labels == {}  # nothing to add, and b keeps its label whatever its state now
    assert assigned_label("x" * 63) == f"assigned.plantfed.io/{'x' * 63}"


def test_explicit_base_version_wins_over_the_promoted_one():
    fr, decision = run(round_(baseVersion=2), ObservedRound(promoted=BASE))
    assert fr.status.base_version == 2 and of_type(decision, OpenExchangeRound)[0].record.base_version == 2


def test_round_waits_while_the_model_has_no_version():
    fr, decision = run(round_(), ObservedRound(promoted=None))
    assert fr.status.phase is None and decision.actions == ()
    assert cond(fr, "Succeeded").reason == "WaitingForBaseModel"


def test_impossible_quorum_fails_at_once_naming_the_numbers():
    fleet = [plant("a"), plant("b", heartbeat=None), plant("c", paused=True)]
    fr, decision = run(round_(), ObservedRound(promoted=BASE), plants=fleet)
    assert fr.status.phase is RoundPhase.FAILED and fr.status.completion_time == NOW
    succeeded = cond(fr, "Succeeded")
    assert (succeeded.status, succeeded.reason) == (ConditionStatus.FALSE, "QuorumUnreachable")
    assert succeeded.message == "1 plants eligible but minParticipants is 2 (excluded b: NotReady, c: Paused)"
    assert cond(fr, "QuorumMet").status is ConditionStatus.FALSE
    assert not of_type(decision, OpenExchangeRound)
    assert [(e.type.value, e.reason) for e in decision.events] == [("Warning", "QuorumUnreachable")]


def test_quorum_message_stays_short_for_a_large_fleet():
    fleet = [plant(f"p{i:02d}", paused=True) for i in range(20)]
    fr, _ = run(round_(plants=None, plantSelector={}), ObservedRound(promoted=BASE), plants=fleet)
    message = cond(fr, "Succeeded").message
    assert message.endswith("p07: Paused and 12 more)") and len(fr.status.plants) == 20


# --- rounds: training, quorum and deadline ----------------------------------------------------


def test_quorum_met_early_when_every_assigned_plant_uploaded():
    fr = started()
    fr, decision = run(fr, observed(upload("a", 100), upload("b", 300), upload("c", 50)), NOW + timedelta(minutes=3))
    assert fr.status.phase is RoundPhase.AGGREGATING
    assert fr.status.cutoff_time == NOW + timedelta(minutes=3)
    assert states(fr) == {"a": "Uploaded", "b": "Uploaded", "c": "Uploaded"}
    assert fr.status.plants[1].samples == 300 and fr.status.uploaded == 3
    assert of_type(decision, CloseExchangeRound) == [CloseExchangeRound("bearing-r1")]
    [job] = of_type(decision, CreateAggregationJob)
    assert (job.name, job.plants, job.base_version) == ("bearing-r1-aggregate", ("a", "b", "c"), 4)
    assert cond(fr, "QuorumMet").reason == "QuorumReached"


def test_quorum_alone_waits_for_the_other_plants_until_the_deadline():
    fr = started()
    fr, decision = run(fr, observed(upload("a"), upload("b")), NOW + timedelta(minutes=5))
    assert fr.status.phase is RoundPhase.TRAINING
    assert not of_type(decision, CreateAggregationJob) and not of_type(decision, OpenExchangeRound)
    assert decision.requeue_at == NOW + timedelta(seconds=600)
    assert cond(fr, "QuorumMet").message == "2 of 3 plants uploaded; quorum is 2"


def test_deadline_with_quorum_proceeds_and_marks_the_rest_late():
    fr = started()
    fr, decision = run(fr, observed(upload("a"), upload("c")), NOW + timedelta(seconds=600))
    assert fr.status.phase is RoundPhase.AGGREGATING
    assert states(fr) == {"a": "Uploaded", "b": "Late", "c": "Uploaded"}
    assert reasons(fr)["b"] == "DeadlineExceeded"
    assert of_type(decision, CreateAggregationJob)[0].plants == ("a", "c")


def test_deadline_without_quorum_fails_the_round():
    fr = started()
    fr, decision = run(fr, observed(upload("a")), NOW + timedelta(seconds=601))
    assert fr.status.phase is RoundPhase.FAILED
    assert (cond(fr, "Succeeded").reason, cond(fr, "QuorumMet").reason) == ("DeadlineExceeded", "QuorumNotMet")
    assert cond(fr, "Succeeded").message == "deadline of 600s passed with 1 of 3 plants uploaded; quorum is 2"
    assert states(fr) == {"a": "Uploaded", "b": "Late", "c": "Late"}
    assert of_type(decision, CloseExchangeRound) and not of_type(decision, CreateAggregationJob)


def test_plant_failures_that_make_quorum_impossible_fail_the_round_before_the_deadline():
    failed = {"round": "bearing-r1", "state": "Failed", "message": "CUDA out of memory"}
    fleet = [plant("a", assignment=failed), plant("b", assignment=failed), plant("c")]
    fr, decision = run(started(), observed(upload("c")), NOW + timedelta(minutes=2), plants=fleet)
    assert fr.status.phase is RoundPhase.FAILED
    assert cond(fr, "Succeeded").reason == "QuorumUnreachable"
    assert (
        cond(fr, "Succeeded").message == "2 of 3 assigned plants failed; at most 1 can upload but minParticipants is 2"
    )
    assert fr.status.plants[0].message == "CUDA out of memory"


def test_agent_reports_show_progress_and_scheduling_problems():
    fleet = [
        plant("a", assignment={"round": "bearing-r1", "state": "Training", "progress": 0.4}),
        plant(
            "b",
            assignment={
                "round": "bearing-r1",
                "state": "Pending",
                "message": "Unschedulable: 0/1 nodes have free nvidia.com/gpu",
            },
        ),
        plant("c", assignment={"round": "other-round", "state": "Failed"}),
    ]
    fr, _ = run(started(), observed(), NOW + timedelta(minutes=1), plants=fleet)
    by_plant = {p.plant: p for p in fr.status.plants}
    assert (by_plant["a"].state, by_plant["a"].progress) == (PlantRoundState.TRAINING, 0.4)
    assert by_plant["b"].state is PlantRoundState.ASSIGNED
    assert by_plant["b"].message.startswith("Unschedulable")
    assert by_plant["c"].state is PlantRoundState.ASSIGNED


# --- rounds: late uploads ---------------------------------------------------------------------


def aggregating(policy: str = "Reject", **spec: Any) -> FederatedRound:
    fr = started(round_(lateUploadPolicy=policy, **spec))
    fr, _ = run(fr, observed(upload("a"), upload("c")), NOW + timedelta(seconds=600))
    assert fr.status.phase is RoundPhase.AGGREGATING
    return fr


def test_late_upload_is_not_aggregated():
    fr = aggregating("Record")
    late = observed(upload("a"), upload("b", 999), upload("c"))
    fr2, decision = run(fr, late, NOW + timedelta(seconds=700))
    assert of_type(decision, CreateAggregationJob)[0].plants == ("a", "c")
    b = next(p for p in fr2.status.plants if p.plant == "b")
    assert (b.state, b.reason, b.samples) == (PlantRoundState.LATE, "UploadedAfterCutoff", 999)
    assert reasons(fr2)["a"] is None and reasons(fr2)["c"] is None
    assert fr2.status.uploaded == 2
    assert not of_type(decision, CloseExchangeRound), "Record keeps the exchange open until the round ends"


def test_reject_policy_closes_the_exchange_at_the_cutoff():
    fr = aggregating("Reject")
    _, decision = run(fr, observed(upload("a"), upload("c")), NOW + timedelta(seconds=601))
    assert of_type(decision, CloseExchangeRound) == [CloseExchangeRound("bearing-r1")]
    _, decision = run(fr, observed(upload("a"), upload("c"), exchange="closed"), NOW + timedelta(seconds=602))
    assert not of_type(decision, CloseExchangeRound)


# --- rounds: aggregation, evaluation, promotion -----------------------------------------------


def test_aggregation_asks_the_contributing_plants_to_score_the_candidate_then_promotes():
    fr = aggregating()
    cand = version(5, round_id="bearing-r1", accuracy=0.7)
    after = NOW + timedelta(seconds=900)
    fr, decision = run(
        fr, observed(upload("a"), upload("c"), job=JobState.SUCCEEDED, candidate=cand, exchange="closed"), after
    )
    assert fr.status.phase is RoundPhase.EVALUATING and fr.status.candidate_version == 5
    assert cond(fr, "Aggregated").message == "aggregated 2 updates into version 5"
    assert (fr.status.evaluation.version, fr.status.evaluation.expected, fr.status.evaluation.reported) == (5, 2, 0)
    assert cond(fr, "Evaluated").reason == "WaitingForPlants"
    assert not of_type(decision, Promote), "no promotion before the plants scored the candidate"
    assert decision.requeue_at == after + timedelta(seconds=600)

    obs = observed(
        upload("a"),
        upload("c"),
        job=JobState.SUCCEEDED,
        candidate=cand,
        exchange="closed",
        evaluations=(scored("a", 0.9, samples=100), scored("c", 0.6, samples=50), scored("b", 0.1)),
    )
    fr, decision = run(fr, obs, after + timedelta(seconds=30))
    assert of_type(decision, Promote) == [Promote("bearing", 5, "bearing-r1")]
    ev = fr.status.evaluation
    assert (ev.reported, ev.samples) == (2, 150), "b did not contribute: its report is ignored"
    assert ev.candidate["val_accuracy"] == pytest.approx((0.9 * 100 + 0.6 * 50) / 150)
    assert ev.base == {"val_accuracy": 0.6, "val_loss": 1.0}, "the base as a and c scored it before training"
    assert fr.status.metrics["val_accuracy"] == pytest.approx(0.8) and fr.status.metrics["accuracy"] == 0.7
    assert {p.plant: p.evaluation.get("val_accuracy") for p in fr.status.plants} == {"a": 0.9, "b": None, "c": 0.6}
    assert cond(fr, "Evaluated").status is ConditionStatus.TRUE
    assert "val_accuracy 0.8 (base 0.6)" in cond(fr, "Evaluated").message

    done = cand.model_copy(update={"promoted": True})
    fr, decision = run(
        fr,
        observed(job=JobState.SUCCEEDED, candidate=done, promoted=done, exchange="closed"),
        after + timedelta(seconds=40),
    )
    assert fr.status.phase is RoundPhase.SUCCEEDED and fr.status.result_version == 5
    assert cond(fr, "Succeeded").status is ConditionStatus.TRUE
    assert cond(fr, "Promoted").status is ConditionStatus.TRUE
    assert not of_type(decision, Promote)


def test_evaluation_window_closes_on_whoever_reported():
    fr = aggregating()
    cand = version(5, round_id="bearing-r1")
    after = NOW + timedelta(seconds=900)
    fr, _ = run(fr, observed(job=JobState.SUCCEEDED, candidate=cand, exchange="closed"), after)
    partial = observed(
        upload("a"),
        upload("c"),
        job=JobState.SUCCEEDED,
        candidate=cand,
        exchange="closed",
        evaluations=(scored("a", 0.9),),
    )
    fr, decision = run(fr, partial, after + timedelta(seconds=599))
    assert not of_type(decision, Promote) and cond(fr, "Evaluated").message.startswith("1 of 2 plants scored version 5")
    fr, decision = run(fr, partial, after + timedelta(seconds=600))
    assert of_type(decision, Promote) and fr.status.metrics["val_accuracy"] == 0.9


def test_no_evaluation_at_all_promotes_under_always_and_not_under_if_better():
    for policy, promoted in (({"policy": "Always"}, True), ({"policy": "IfBetter", "metric": "val_accuracy"}, False)):
        fr = aggregating(promotion=policy)
        cand = version(5, round_id="bearing-r1")
        after = NOW + timedelta(seconds=900)
        obs = observed(job=JobState.SUCCEEDED, candidate=cand, exchange="closed")
        fr, _ = run(fr, obs, after)
        fr, decision = run(fr, obs, after + timedelta(seconds=601))
        assert cond(fr, "Evaluated").reason == "NoEvaluations"
        assert bool(of_type(decision, Promote)) is promoted
        if not promoted:
            assert cond(fr, "Promoted").reason == "MetricMissing"


@pytest.mark.parametrize(
    ("scores", "promote", "reason"),
    [
        ((0.9, 0.8), True, "Better"),
        ((0.6, 0.62), False, "NotBetter"),
        ((0.5, 0.5), False, "NotBetter"),
    ],
)
def test_if_better_on_plant_scores_compares_with_the_base_on_the_same_plants(scores, promote, reason):
    fr = aggregating(promotion={"policy": "IfBetter", "metric": "val_accuracy", "minDelta": 0.02})
    cand = version(5, round_id="bearing-r1")  # a and c scored the base 0.6 before training (see upload())
    obs = observed(
        upload("a"),
        upload("c"),
        job=JobState.SUCCEEDED,
        candidate=cand,
        exchange="closed",
        evaluations=(scored("a", scores[0]), scored("c", scores[1])),
    )
    fr, decision = run(fr, obs, NOW + timedelta(seconds=900))
    assert bool(of_type(decision, Promote)) is promote
    promoted = cond(fr, "Promoted")
    if promote:
        assert promoted.message == "val_accuracy 0.85 beats 0.6 of version 4 on the same plants"
    else:
        assert (fr.status.phase, promoted.status, promoted.reason) == (
            RoundPhase.SUCCEEDED,
            ConditionStatus.FALSE,
            reason,
        )


def test_if_better_on_plant_scores_refuses_when_another_version_was_promoted_meanwhile():
    fr = aggregating(promotion={"policy": "IfBetter", "metric": "val_accuracy"})
    newer = version(6, promoted=True, val_accuracy=0.1)
    obs = observed(
        upload("a"),
        upload("c"),
        job=JobState.SUCCEEDED,
        candidate=version(5, round_id="bearing-r1"),
        exchange="closed",
        promoted=newer,
        evaluations=(scored("a", 0.9), scored("c", 0.9)),
    )
    fr, decision = run(fr, obs, NOW + timedelta(seconds=900))
    assert not of_type(decision, Promote)
    assert cond(fr, "Promoted").reason == "IncumbentUnscored"


def test_round_promoted_before_a_newer_promotion_still_records_its_version():
    fr = aggregating()
    cand = version(5, round_id="bearing-r1")
    fr, _ = run(fr, observed(job=JobState.SUCCEEDED, candidate=cand, exchange="closed"), NOW + timedelta(seconds=900))
    newer = version(6, promoted=True)
    fr, decision = run(
        fr,
        observed(
            job=JobState.SUCCEEDED,
            candidate=cand.model_copy(update={"promoted": True}),
            promoted=newer,
            exchange="closed",
        ),
        NOW + timedelta(seconds=960),
    )
    assert (fr.status.phase, fr.status.result_version) == (RoundPhase.SUCCEEDED, 5)
    assert not of_type(decision, Promote)


@pytest.mark.parametrize(
    ("metrics", "promote", "reason"),
    [
        ({"accuracy": 0.85}, True, "Better"),
        ({"accuracy": 0.805}, False, "NotBetter"),
        ({"accuracy": 0.79}, False, "NotBetter"),
        ({"loss": 0.1}, False, "MetricMissing"),
    ],
)
def test_if_better_on_training_metrics_when_plant_side_evaluation_is_off(metrics, promote, reason):
    fr = aggregating(
        promotion={"policy": "IfBetter", "metric": "accuracy", "minDelta": 0.01, "evaluationTimeoutSeconds": 0}
    )
    cand = version(5, round_id="bearing-r1", **metrics)
    fr, decision = run(
        fr, observed(job=JobState.SUCCEEDED, candidate=cand, exchange="closed"), NOW + timedelta(seconds=900)
    )
    assert fr.status.evaluation is None
    assert bool(of_type(decision, Promote)) is promote
    promoted = cond(fr, "Promoted")
    if promote:
        assert fr.status.phase is RoundPhase.EVALUATING and promoted.status is ConditionStatus.UNKNOWN
    else:
        assert fr.status.phase is RoundPhase.SUCCEEDED and fr.status.result_version is None
        assert (promoted.status, promoted.reason) == (ConditionStatus.FALSE, reason)


def test_epsilon_of_the_aggregated_plants_is_recorded_once_the_candidate_exists():
    fr = aggregating(privacy={"mode": "local", "noiseMultiplier": 1.0, "delta": DELTA, "epsilonBudget": 100.0})
    cand = version(5, round_id="bearing-r1")
    ledger = {"a": (local(),) * 2, "b": (local(),), "c": (local(),)}  # b was charged by an earlier round only
    running = observed(upload("a"), upload("c"), job=JobState.RUNNING, exchange="closed", privacy=ledger)
    _, decision = run(fr, running, NOW + timedelta(seconds=800))
    assert not of_type(decision, RecordPrivacySpend) and decision.epsilon == {}
    done = observed(
        upload("a"),
        upload("c"),
        job=JobState.SUCCEEDED,
        candidate=cand,
        exchange="closed",
        privacy=ledger,
        evaluations=(scored("a", 0.9), scored("c", 0.9)),
    )
    fr2, decision = run(fr, done, NOW + timedelta(seconds=900))
    spent = {"a": epsilon_for([local()] * 2, DELTA), "c": epsilon_for([local()], DELTA)}
    assert decision.epsilon == spent
    assert of_type(decision, RecordPrivacySpend) == [
        RecordPrivacySpend("a", spent["a"]),
        RecordPrivacySpend("c", spent["c"]),
    ]
    assert decision.actions.index(of_type(decision, RecordPrivacySpend)[-1]) < decision.actions.index(
        of_type(decision, Promote)[0]
    )
    # A participant already showing its ε is not patched again; a finished round never writes.
    shown = [plant("a"), plant("b"), plant("c")]
    shown[0].status.dp_epsilon = spent["a"]
    _, decision = run(fr2, done, NOW + timedelta(seconds=901), plants=shown)
    assert of_type(decision, RecordPrivacySpend) == [RecordPrivacySpend("c", spent["c"])]
    finished = fr2.model_copy(update={"status": fr2.status.model_copy(update={"phase": RoundPhase.SUCCEEDED})})
    _, decision = run(finished, done, NOW + timedelta(seconds=902))
    assert not of_type(decision, RecordPrivacySpend) and decision.epsilon == spent


def test_no_epsilon_is_recorded_for_a_round_without_privacy():
    fr = aggregating()
    cand = version(5, round_id="bearing-r1")
    obs = observed(
        upload("a"), upload("c"), job=JobState.SUCCEEDED, candidate=cand, exchange="closed", privacy={"a": (local(),)}
    )
    _, decision = run(fr, obs, NOW + timedelta(seconds=900))
    assert not of_type(decision, RecordPrivacySpend) and decision.epsilon == {}


@pytest.mark.parametrize(
    ("conditions", "state", "message"),
    [
        ([], JobState.RUNNING, ""),
        ([{"type": "SuccessCriteriaMet", "status": "True"}], JobState.RUNNING, ""),
        ([{"type": "Complete", "status": "True"}], JobState.SUCCEEDED, ""),
        (
            [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
            JobState.FAILED,
            "BackoffLimitExceeded: Job has reached the specified backoff limit",
        ),
        ([{"type": "Failed", "status": "False"}], JobState.RUNNING, ""),
    ],
)
def test_job_observation_reads_batch_job_conditions(conditions, state, message):
    job = {"metadata": {"name": "bearing-r1-aggregate"}, "status": {"conditions": conditions}}
    assert JobObservation.from_job(job) == JobObservation("bearing-r1-aggregate", state, message)


def test_failed_aggregation_job_fails_the_round():
    fr, decision = run(aggregating(), observed(job=JobState.FAILED, exchange="closed"), NOW + timedelta(seconds=900))
    assert fr.status.phase is RoundPhase.FAILED
    assert cond(fr, "Succeeded").reason == "AggregationFailed"
    assert "BackoffLimitExceeded" in cond(fr, "Succeeded").message
    assert cond(fr, "Aggregated").status is ConditionStatus.FALSE


# --- rounds: idempotence and restarts ---------------------------------------------------------


STAGES = [
    ("pending", lambda: round_(), ObservedRound(promoted=BASE)),
    ("training", started, observed(upload("a"))),
    ("cutoff", started, observed(upload("a"), upload("b"), upload("c"))),
    ("aggregating", aggregating, observed(upload("a"), upload("c"), job=JobState.RUNNING)),
    ("evaluating", aggregating, observed(job=JobState.SUCCEEDED, candidate=version(5, round_id="bearing-r1"))),
    ("failed", started, observed(exchange="open")),
]


@pytest.mark.parametrize(("stage", "make", "obs"), STAGES, ids=[s[0] for s in STAGES])
def test_reconcile_is_a_fixed_point_once_its_status_is_persisted(stage, make, obs):
    """Same observation again (e.g. after an operator restart): same status, same actions, no new events."""
    now = NOW + timedelta(seconds=650 if stage == "failed" else 200)
    fr, first = run(make(), obs, now)
    again = reconcile_round(fr, FLEET, obs, now + timedelta(seconds=5), TIMEOUT)
    assert again.status == first.status
    assert [a for a in again.actions if not isinstance(a, EmitEvent)] == [
        a for a in first.actions if not isinstance(a, EmitEvent)
    ]
    assert again.events == ()
    assert reconcile_round(make(), FLEET, obs, now, TIMEOUT) == first


def test_restart_mid_aggregation_recreates_the_same_job_from_status_alone():
    """The Job was never created (crash after the status write); uploads kept arriving since."""
    persisted = FederatedRound.from_object(aggregating().to_dict())
    extra = observed(upload("a"), upload("b"), upload("c"), exchange="closed")
    _, decision = run(persisted, extra, NOW + timedelta(hours=1))
    [job] = of_type(decision, CreateAggregationJob)
    assert job.plants == ("a", "c") and job.name == "bearing-r1-aggregate"


def test_restart_in_training_reopens_a_lost_exchange_round_for_the_same_plants():
    fleet = [plant("a"), plant("b"), plant("c", paused=True)]
    fr = started(plants=fleet)
    _, decision = run(fr, observed(exchange=None), NOW + timedelta(minutes=1), plants=FLEET)
    assert of_type(decision, OpenExchangeRound)[0].record.plants == ["a", "b"]


# --- campaigns --------------------------------------------------------------------------------

PROMOTED = version(4, promoted=True)


def model(status: dict[str, Any] | None = None, **spec: Any) -> FederatedModel:
    body = {"task": "bearing", "roundTemplate": {"plants": ["a", "b", "c"], "minParticipants": 2}}
    body.update(spec)
    return FederatedModel.from_object(
        {
            "metadata": {
                "name": "bearing",
                "namespace": "plants",
                "generation": 2,
                "creationTimestamp": (NOW - timedelta(days=1)).isoformat(),
            },
            "spec": body,
            "status": status or {},
        }
    )


def finished_round(
    n: int,
    *,
    phase: str = "Succeeded",
    ended: datetime = NOW - timedelta(minutes=1),
    promoted_version: int | None = None,
    **metrics: float,
) -> FederatedRound:
    conditions = []
    if promoted_version is not None:
        conditions.append(
            {"type": "Promoted", "status": "True", "reason": "Promoted", "lastTransitionTime": ended.isoformat()}
        )
    return FederatedRound.from_object(
        {
            "metadata": {"name": f"bearing-r{n}", "creationTimestamp": (ended - timedelta(minutes=10)).isoformat()},
            "spec": {"modelRef": "bearing", "plants": ["a", "b"]},
            "status": {
                "phase": phase,
                "completionTime": ended.isoformat(),
                "metrics": metrics,
                "resultVersion": promoted_version,
                "conditions": conditions,
            },
        }
    )


def running_round(n: int) -> FederatedRound:
    return FederatedRound.from_object(
        {
            "metadata": {"name": f"bearing-r{n}"},
            "spec": {"modelRef": "bearing", "plants": ["a", "b"]},
            "status": {"phase": "Training"},
        }
    )


def test_campaign_initialises_the_lineage_before_any_round():
    decision = reconcile_model(model(initialWeights={"seed": 3}), [], NOW, promoted=None)
    [init] = decision.actions
    assert isinstance(init, InitializeModel) and init.initial_weights.seed == 3
    assert cond(decision, "Ready").status is ConditionStatus.FALSE


def test_first_round_is_created_from_the_template():
    fm = model(roundTemplate={"plants": ["a", "b", "c"], "minParticipants": 3, "training": {"epochs": 5}})
    decision = reconcile_model(fm, [], NOW, PROMOTED)
    [create] = of_type(decision, CreateRound)
    fr = create.round
    assert fr.metadata.name == "bearing-r1" and fr.metadata.namespace == "plants"
    assert fr.metadata.labels[MODEL_KEY] == "bearing"
    assert fr.spec.model_ref == "bearing" and fr.spec.base_version is None
    assert (fr.spec.min_participants, fr.spec.training.epochs) == (3, 5)
    assert decision.status.current_round == "bearing-r1"
    assert cond(decision, "Ready").status is ConditionStatus.TRUE


def test_no_new_round_while_one_is_running():
    decision = reconcile_model(model(), [finished_round(1), running_round(2)], NOW, PROMOTED)
    assert not of_type(decision, CreateRound)
    assert decision.status.current_round == "bearing-r2" and decision.status.phase.value == "Training"


def test_next_round_follows_a_finished_one_and_history_records_the_promotion():
    rounds = [finished_round(1, promoted_version=5, accuracy=0.8)]
    decision = reconcile_model(model(), rounds, NOW, version(5, promoted=True))
    assert [a.round.metadata.name for a in of_type(decision, CreateRound)] == ["bearing-r2"]
    [entry] = decision.status.history
    assert (entry.version, entry.round, entry.metrics) == (5, "bearing-r1", {"accuracy": 0.8})
    assert decision.status.promoted_version == 5 and decision.status.rounds_completed == 1
    assert {e.reason for e in decision.events} == {"Promoted", "RoundCreated"}


def test_created_round_is_requested_again_until_it_is_observed():
    """Crash between status write and create, or a stale cache: same name, never a second round."""
    first = reconcile_model(model(), [finished_round(1)], NOW, PROMOTED)
    fm = model(status=first.status.to_dict())
    again = reconcile_model(fm, [finished_round(1)], NOW + timedelta(seconds=2), PROMOTED)
    assert [a.round.metadata.name for a in of_type(again, CreateRound)] == ["bearing-r2"]
    assert again.events == ()
    seen = reconcile_model(fm, [finished_round(1), running_round(2)], NOW + timedelta(seconds=3), PROMOTED)
    assert not of_type(seen, CreateRound)


def test_cadence_waits_for_the_next_tick_after_the_previous_round():
    fm = model(cadence="0 */6 * * *")
    rounds = [finished_round(1, ended=NOW + timedelta(minutes=1))]
    waiting = reconcile_model(fm, rounds, NOW + timedelta(minutes=2), PROMOTED)
    assert not of_type(waiting, CreateRound)
    tick = NOW.replace(hour=18)
    assert (waiting.status.phase.value, waiting.status.next_round_time, waiting.requeue_at) == ("Waiting", tick, tick)
    due = reconcile_model(fm, rounds, tick, PROMOTED)
    assert [a.round.metadata.name for a in of_type(due, CreateRound)] == ["bearing-r2"]


def test_failed_rounds_back_off_exponentially():
    one = [finished_round(1, phase="Failed", ended=NOW)]
    decision = reconcile_model(model(), one, NOW + timedelta(seconds=10), PROMOTED, timedelta(seconds=30))
    assert decision.status.next_round_time == NOW + timedelta(seconds=30)
    two = [
        finished_round(1, phase="Failed", ended=NOW - timedelta(minutes=5)),
        finished_round(2, phase="Failed", ended=NOW),
    ]
    decision = reconcile_model(model(), two, NOW + timedelta(seconds=59), PROMOTED, timedelta(seconds=30))
    assert decision.status.next_round_time == NOW + timedelta(seconds=60)
    assert of_type(
        reconcile_model(model(), two, NOW + timedelta(seconds=60), PROMOTED, timedelta(seconds=30)), CreateRound
    )


@pytest.mark.parametrize(
    ("stop", "accuracies", "converged", "reason"),
    [
        ({"maxRounds": 3}, [0.5, 0.6, 0.7], ConditionStatus.FALSE, "MaxRoundsReached"),
        ({"metric": "accuracy", "target": 0.9}, [0.5, 0.91], ConditionStatus.TRUE, "TargetReached"),
        ({"metric": "accuracy", "patience": 2}, [0.5, 0.7, 0.69, 0.7], ConditionStatus.TRUE, "NoImprovement"),
        (
            {"metric": "accuracy", "patience": 2, "minDelta": 0.05},
            [0.5, 0.7, 0.72, 0.74],
            ConditionStatus.TRUE,
            "NoImprovement",
        ),
        ({"metric": "loss", "goal": "Minimize", "target": 0.2}, [], None, None),
        # No goal: a loss is minimised (losses 0.5, 0.3, 0.15 here), so the target 0.2 is reached.
        ({"metric": "loss", "target": 0.2}, [0.5, 0.7, 0.85], ConditionStatus.TRUE, "TargetReached"),
    ],
)
def test_campaign_stops_on_its_criteria(stop, accuracies, converged, reason):
    rounds = [finished_round(i + 1, accuracy=a, loss=1 - a) for i, a in enumerate(accuracies)]
    decision = reconcile_model(model(stop=stop), rounds, NOW, PROMOTED)
    if reason is None:
        assert of_type(decision, CreateRound)
        assert cond(decision, "Converged").status is ConditionStatus.FALSE
        return
    assert not of_type(decision, CreateRound)
    assert decision.status.phase.value == "Completed"
    assert (cond(decision, "Converged").status, cond(decision, "Converged").reason) == (converged, reason)


@pytest.mark.parametrize("accuracies", [[0.5, 0.7, 0.69], [0.5, 0.7, 0.8, 0.6]])
def test_patience_keeps_going_while_improvement_is_recent(accuracies):
    rounds = [finished_round(i + 1, accuracy=a) for i, a in enumerate(accuracies)]
    decision = reconcile_model(model(stop={"metric": "accuracy", "patience": 2}), rounds, NOW, PROMOTED)
    assert of_type(decision, CreateRound)


def test_patience_survives_deleted_rounds_through_status():
    rounds = [finished_round(i + 1, accuracy=a) for i, a in enumerate([0.5, 0.9, 0.6])]
    first = reconcile_model(model(stop={"metric": "accuracy", "patience": 2}), rounds, NOW, PROMOTED)
    fm = model(status=first.status.to_dict(), stop={"metric": "accuracy", "patience": 2})
    later = reconcile_model(fm, [finished_round(4, accuracy=0.7)], NOW, PROMOTED)
    assert later.status.best.round == "bearing-r2"
    assert cond(later, "Converged").reason == "NoImprovement"


def test_status_patch_clears_fields_the_reconcile_unset():
    fm = model(status={"currentRound": "bearing-r1", "roundsCompleted": 0}, suspend=True)
    decision = reconcile_model(fm, [finished_round(1)], NOW, PROMOTED)
    patch = status_patch(fm.status, decision.status)
    assert patch["currentRound"] is None and patch["roundsCompleted"] == 1 and patch["phase"] == "Suspended"
    persisted = model(status=decision.status.to_dict(), suspend=True)
    assert status_patch(persisted.status, reconcile_model(persisted, [finished_round(1)], NOW, PROMOTED).status) == {}


def test_suspended_campaign_creates_no_round():
    decision = reconcile_model(model(suspend=True), [finished_round(1)], NOW, PROMOTED)
    assert not of_type(decision, CreateRound) and decision.status.phase.value == "Suspended"


# --- campaigns: round retention -----------------------------------------------------------------


def test_finished_rounds_beyond_the_retention_are_deleted_oldest_first_after_status_records_them():
    rounds = [finished_round(n, promoted_version=n + 4, accuracy=0.5 + n / 100) for n in range(1, 6)]
    for n, fr in enumerate(rounds, 1):
        fr.metadata.uid = f"uid-{n}"
    decision = reconcile_model(model(roundRetention=2), rounds, NOW, version(9, promoted=True))
    assert of_type(decision, DeleteRound) == [DeleteRound(f"bearing-r{n}", f"uid-{n}") for n in (1, 2, 3)]
    # what the deleted rounds leave behind is in the status patched before the actions run
    assert [e.round for e in decision.status.history] == [f"bearing-r{n}" for n in range(1, 6)]
    assert decision.status.rounds_completed == 5
    fm = model(status=decision.status.to_dict(), roundRetention=2)
    after = reconcile_model(fm, rounds[3:], NOW + timedelta(seconds=5), version(9, promoted=True))
    assert not of_type(after, DeleteRound)
    assert [e.round for e in after.status.history] == [f"bearing-r{n}" for n in range(1, 6)]
    assert after.status.rounds_completed == 5
    assert [a.round.metadata.name for a in of_type(after, CreateRound)] == ["bearing-r6"]


def test_retention_keeps_running_rounds_hand_made_rounds_and_by_default_ten():
    hand = finished_round(1).model_copy(
        update={"metadata": finished_round(1).metadata.model_copy(update={"name": "by-hand"})}
    )
    rounds = [hand, *(finished_round(n) for n in range(1, 12)), running_round(12)]
    decision = reconcile_model(model(), rounds, NOW, PROMOTED)
    assert [a.name for a in of_type(decision, DeleteRound)] == ["bearing-r1"]  # 11 finished, default keeps 10
    one = reconcile_model(model(roundRetention=1), rounds, NOW, PROMOTED)
    assert [a.name for a in of_type(one, DeleteRound)] == [f"bearing-r{n}" for n in range(1, 11)]
    with pytest.raises(ValueError, match="roundRetention|round_retention"):
        model(roundRetention=0)


def test_a_stop_metric_without_a_goal_is_judged_the_way_the_rounds_scored_it():
    """A regression campaign: val_rmse is the task's primary score, its rounds say Minimize (status.score)."""
    rounds = []
    for i, rmse in enumerate([20.0, 12.0, 9.0]):
        fr = finished_round(i + 1, val_rmse=rmse)
        fr.status.score = RoundScore(metric="val_rmse", goal=MetricGoal.MINIMIZE, value=rmse)
        rounds.append(fr)
    stop = {"metric": "val_rmse", "target": 10.0, "patience": 2}
    decision = reconcile_model(model(stop=stop), rounds, NOW, PROMOTED)
    assert decision.status.best.value == 9.0
    assert (cond(decision, "Converged").status, cond(decision, "Converged").reason) == (
        ConditionStatus.TRUE,
        "TargetReached",
    )
