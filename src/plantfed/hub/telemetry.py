"""Prometheus metrics from the objects the operator reconciles (names live in `plantfed.contract.metrics`).

Counters move on a round's transition to a finished phase, which happens exactly once in the
round's status; gauges are set from current state on every reconcile, so a restarted operator
reports the same values without remembering anything. What the aggregation Job measured (update
norms, cosines, duration, peak memory, ε) comes from the version it published: the Job exits before
any scrape, and the version record in the store outlives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRoundStatus, PlantRoundState, RoundPhase
from plantfed.contract.metrics import Metrics
from plantfed.contract.plant_metrics import TEST, TRAIN_LOSS, VAL, base_key, split_key
from plantfed.contract.records import ModelVersion
from plantfed.contract.scores import objective_of, scores_only
from plantfed.hub.reconcile.model import round_number


class Telemetry:
    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def round_transition(
        self,
        model: str,
        name: str,
        before: FederatedRoundStatus,
        after: FederatedRoundStatus,
        produced: ModelVersion | None = None,
    ) -> None:
        """`produced`: the version this round's aggregation published, if any (its record carries the stats)."""
        if after.phase is None or not after.phase.finished or (before.phase is not None and before.phase.finished):
            return
        m = self.m
        outcome = "succeeded" if after.phase is RoundPhase.SUCCEEDED else "failed"
        m.rounds_total.labels(model, outcome).inc()
        if after.start_time is not None and after.completion_time is not None:
            m.round_duration.labels(model).observe((after.completion_time - after.start_time).total_seconds())
        number = round_number(model, name)
        if number is not None:
            m.round_number.labels(model).set(number)
        count = {state: sum(p.state is state for p in after.plants) for state in PlantRoundState}
        m.plants_selected.labels(model).set(after.assigned or 0)
        m.plants_replied.labels(model).set(count[PlantRoundState.UPLOADED])
        m.plants_late.labels(model).set(count[PlantRoundState.LATE])
        m.plants_failed.labels(model).set(count[PlantRoundState.FAILED])
        base_test = base_key(TEST, "")
        for plant in after.plants:
            for key, value in scores_only(plant.metrics).items():
                if key.startswith(base_test):
                    m.plant_score.labels(model, plant.plant, key.removeprefix(base_test)).set(value)
            if plant.state is PlantRoundState.UPLOADED:
                m.set_objective(model, *objective_of(plant.metrics))
            if TRAIN_LOSS in plant.metrics:
                m.plant_loss.labels(model, plant.plant).set(plant.metrics[TRAIN_LOSS])
        if produced is not None and produced.aggregation is not None:
            m.record_aggregation(model, produced.aggregation)
        if after.result_version is not None:
            m.promoted_version.labels(model).set(after.result_version)
            # The promoted model's own scores when its plants evaluated it (on their validation splits); else its
            # base's on the plants' test splits (one round behind), pooled by aggregation.
            scores = scores_only(after.metrics)
            for prefix in (split_key(VAL, ""), base_key(TEST, "")):
                found = {k.removeprefix(prefix): v for k, v in scores.items() if k.startswith(prefix)}
                if found:
                    for name, value in found.items():
                        m.global_score.labels(model, name).set(value)
                    break

    def privacy_spent(self, model: str, epsilon: Mapping[str, float]) -> None:
        for plant, value in epsilon.items():
            self.m.dp_epsilon.labels(model, plant).set(value)

    def model_state(self, fm: FederatedModel) -> None:
        if fm.status.promoted_version is not None:
            self.m.promoted_version.labels(fm.name).set(fm.status.promoted_version)

    def heartbeat(self, pp: PlantParticipant, now: datetime) -> None:
        beat = pp.status.last_heartbeat_time
        if beat is not None:
            self.m.heartbeat_age.labels(pp.spec.plant_id).set(max(0.0, (now - beat).total_seconds()))
