"""A round driven to the end against an in-memory world, with crashes, for arbitrary plant behaviour.

The world executes the decisions' actions the way the real exchange, Job and store would (the
exchange refuses uploads to a closed or unknown round, the Job aggregates the plants it was given).
Crashes are injected between "decide" and "persist status" and between "persist" and "act".
Whatever happens, a round must finish, aggregate only updates committed before its cutoff, and
never aggregate below quorum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from plantfed.contract.api import FederatedRound, PlantParticipant
from plantfed.contract.api.round import PlantRoundState, RoundPhase
from plantfed.contract.records import ModelVersion, RoundRecord, RoundState
from plantfed.hub.reconcile import (
    CloseExchangeRound,
    CreateAggregationJob,
    JobObservation,
    JobState,
    ObservedRound,
    OpenExchangeRound,
    Promote,
    Upload,
    reconcile_round,
)

T0 = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=45)
DEADLINE = 600
PLANTS = ("a", "b", "c", "d")


@dataclass
class World:
    """The exchange, the aggregation Job and the model store, as far as one round sees them."""

    exchange: RoundRecord | None = None
    committed: dict[str, tuple[Upload, datetime]] = field(default_factory=dict)
    job: CreateAggregationJob | None = None
    job_done: bool = False
    candidate: ModelVersion | None = None
    promoted: ModelVersion = field(
        default_factory=lambda: ModelVersion(
            model="bearing", version=1, digest="d1", size=1, created_at=0.0, promoted=True
        )
    )

    def try_upload(self, plant: str, now: datetime) -> None:
        ex = self.exchange
        if ex is not None and ex.state is RoundState.OPEN and plant in ex.plants and plant not in self.committed:
            self.committed[plant] = (Upload(plant, 100, 1000), now)

    def observe(self) -> ObservedRound:
        job = None
        if self.job is not None:
            job = JobObservation(self.job.name, JobState.SUCCEEDED if self.job_done else JobState.RUNNING)
        return ObservedRound(
            uploads=tuple(u for u, _ in self.committed.values()),
            exchange=self.exchange,
            job=job,
            candidate=self.candidate,
            promoted=self.promoted,
        )

    def act(self, actions, now: datetime) -> None:
        for action in actions:
            if isinstance(action, OpenExchangeRound) and self.exchange is None:
                self.exchange = action.record
            elif isinstance(action, CloseExchangeRound) and self.exchange is not None:
                self.exchange = self.exchange.model_copy(update={"state": RoundState.CLOSED})
            elif isinstance(action, CreateAggregationJob) and self.job is None:
                self.job = action
            elif isinstance(action, Promote) and self.candidate is not None:
                self.candidate = self.candidate.model_copy(update={"promoted": True})
                self.promoted = self.candidate

    def run_job(self) -> None:
        if self.job is not None and not self.job_done:
            self.job_done = True
            self.candidate = ModelVersion(
                model="bearing", version=2, digest="d2", size=1, round_id=self.job.round_id, created_at=0.0
            )


def fleet() -> list[PlantParticipant]:
    return [
        PlantParticipant.from_object(
            {
                "metadata": {"name": p},
                "spec": {"plantId": p, "data": {"hostPath": {"path": "/data"}}},
                "status": {"lastHeartbeatTime": (T0 + timedelta(hours=1)).isoformat()},
            }
        )
        for p in PLANTS
    ]


def _longest_crash_run(crashes: list[str]) -> int:
    longest = run = 0
    for c in crashes:
        run = run + 1 if c != "none" else 0
        longest = max(longest, run)
    return longest


plant_behaviour = st.one_of(st.none(), st.integers(min_value=0, max_value=DEADLINE + 300))
crash = st.sampled_from(["none", "before-persist", "before-act"])


@settings(max_examples=150, deadline=None)
@given(
    upload_at=st.fixed_dictionaries(dict.fromkeys(PLANTS, plant_behaviour)),
    quorum=st.integers(min_value=1, max_value=len(PLANTS)),
    policy=st.sampled_from(["Reject", "Record"]),
    crashes=st.lists(crash, max_size=30),
)
def test_round_always_finishes_and_aggregates_only_what_was_committed_before_the_cutoff(
    upload_at, quorum, policy, crashes
):
    fr = FederatedRound.from_object(
        {
            "metadata": {"name": "bearing-r1", "generation": 1},
            "spec": {
                "modelRef": "bearing",
                "plants": list(PLANTS),
                "minParticipants": quorum,
                "deadlineSeconds": DEADLINE,
                "lateUploadPolicy": policy,
            },
        }
    )
    world, plants = World(), fleet()
    steps = [*crashes, *["none"] * 60]
    for i, crashed in enumerate(steps):
        if fr.status.phase is not None and fr.status.phase.finished and i >= len(crashes):
            break
        now = T0 + i * STEP
        for plant, at in upload_at.items():
            if at is not None and now >= T0 + timedelta(seconds=at):
                world.try_upload(plant, now)
        decision = reconcile_round(fr, plants, world.observe(), now)
        if crashed == "before-persist":
            continue
        fr = fr.model_copy(update={"status": decision.status})
        if crashed == "before-act":
            continue
        world.act(decision.actions, now)
        world.run_job()

    status = fr.status
    assert status.phase is not None and status.phase.finished, status.phase
    if world.job is not None:
        aggregated = set(world.job.plants)
        assert len(aggregated) >= quorum
        assert aggregated == {p.plant for p in status.plants if p.state is PlantRoundState.UPLOADED}
        assert status.cutoff_time is not None
        assert all(world.committed[p][1] <= status.cutoff_time for p in aggregated)
        late = {p for p, (_, at) in world.committed.items() if at > status.cutoff_time}
        assert late.isdisjoint(aggregated)
        assert all(p.state is PlantRoundState.LATE for p in status.plants if p.plant in late)
    if _longest_crash_run(crashes) <= 3 and sum(at is not None and at <= 200 for at in upload_at.values()) >= quorum:
        # Liveness: with short outages, plants that upload early are always aggregated in time.
        assert status.phase is RoundPhase.SUCCEEDED, status.conditions
    if status.phase is RoundPhase.SUCCEEDED:
        assert status.result_version == 2 and world.promoted.version == 2
    else:
        assert world.promoted.version == 1 and world.job is None
        assert status.completion_time is not None
        assert sum(at <= status.completion_time for _, at in world.committed.values()) < quorum
    # A finished round closes its exchange round at the latest on the next reconcile (the last
    # step may have crashed before acting).
    world.act(reconcile_round(fr, plants, world.observe(), now).actions, now)
    assert world.exchange is None or world.exchange.state is RoundState.CLOSED
