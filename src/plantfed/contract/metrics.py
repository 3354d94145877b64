"""Every Prometheus metric plantfed exports, in one place, so names and labels never drift.

Labels are low-cardinality by design: model lineage, plant, strategy and outcome. Round ids are never a
label (they grow without bound); the round number is a gauge value instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from plantfed.contract.api.common import MetricGoal
    from plantfed.contract.records import AggregationSummary

PREFIX = "plantfed_"

EPSILON = "epsilon"
"""The per-plant number of an aggregation summary that holds the privacy ε spent (present only with DP)."""


class Metrics:
    """A registry plus the metric families; one instance per process (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.round_duration = Histogram(
            PREFIX + "round_duration_seconds",
            "Wall time of a federated round, assignment to promotion.",
            ["model"],
            registry=r,
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
        )
        self.rounds_total = Counter(
            PREFIX + "rounds_total", "Rounds finished, by outcome.", ["model", "outcome"], registry=r
        )
        self.round_number = Gauge(
            PREFIX + "round_number", "Number of the latest finished round.", ["model"], registry=r
        )
        self.plants_selected = Gauge(
            PREFIX + "round_plants_selected", "Plants assigned in the latest round.", ["model"], registry=r
        )
        self.plants_replied = Gauge(
            PREFIX + "round_plants_replied",
            "Plants whose update was aggregated in the latest round.",
            ["model"],
            registry=r,
        )
        self.plants_late = Gauge(
            PREFIX + "round_plants_late", "Plants that missed the latest round's deadline.", ["model"], registry=r
        )
        self.plants_failed = Gauge(
            PREFIX + "round_plants_failed", "Plants whose training failed in the latest round.", ["model"], registry=r
        )
        self.global_score = Gauge(
            PREFIX + "global_score",
            "A score (the task's declared scores and its loss) of the promoted global model, pooled over the plants "
            "from sufficient statistics (cluster: validation scores of it before promotion; simulate: test splits).",
            ["model", "score"],
            registry=r,
        )
        self._objectives: dict[str, tuple[str, str]] = {}
        self.objective = Gauge(
            PREFIX + "objective",
            "1 for the task's primary score of a model lineage; `goal` says whether larger (Maximize) or smaller "
            "(Minimize) is better. Join on (model, score) to show the primary score with its direction.",
            ["model", "score", "goal"],
            registry=r,
        )
        self.plant_loss = Gauge(
            PREFIX + "plant_loss", "A plant's local training loss in the latest round.", ["model", "plant"], registry=r
        )
        self.plant_score = Gauge(
            PREFIX + "plant_score",
            "A score of the global model on a plant's own test split.",
            ["model", "plant", "score"],
            registry=r,
        )
        self.update_norm = Gauge(
            PREFIX + "update_l2_norm",
            "L2 norm of a plant's latest update (drift/poisoning signal).",
            ["model", "plant"],
            registry=r,
        )
        self.update_cosine = Gauge(
            PREFIX + "update_cosine_to_aggregate",
            "Cosine similarity of a plant's update to the aggregate.",
            ["model", "plant"],
            registry=r,
        )
        self.bytes_received = Counter(
            PREFIX + "update_bytes_received_total",
            "Update bytes accepted by the exchange.",
            ["model", "plant"],
            registry=r,
        )
        self.bytes_served = Counter(
            PREFIX + "model_bytes_served_total", "Model bytes served to plants.", ["model"], registry=r
        )
        self.upload_throughput = Gauge(
            PREFIX + "upload_throughput_bytes_per_second",
            "Throughput of a plant's latest upload.",
            ["model", "plant"],
            registry=r,
        )
        self.exchange_calls = Gauge(
            PREFIX + "exchange_calls_in_progress",
            "Exchange calls being served, by kind (transfer: uploads, downloads and publishes; other: the rest).",
            ["kind"],
            registry=r,
        )
        self.exchange_calls_ended = Counter(
            PREFIX + "exchange_calls_ended_total",
            "Exchange calls the hub ended to protect itself, by reason (unauthenticated, overloaded, no_message, "
            "stalled, superseded).",
            ["reason"],
            registry=r,
        )
        self.store_bytes = Gauge(
            PREFIX + "store_bytes",
            "Bytes the hub's model store holds, by part (blobs, partial uploads, other: records, state, scratch); "
            "measured after each retention run.",
            ["part"],
            registry=r,
        )
        self.store_pruned_bytes = Counter(
            PREFIX + "store_pruned_bytes_total",
            "Bytes of blobs the store's retention removed (versions and finished rounds' updates).",
            registry=r,
        )
        self.aggregation_duration = Histogram(
            PREFIX + "aggregation_duration_seconds",
            "Time to aggregate one round's updates.",
            ["model", "strategy"],
            registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
        )
        self.reconcile_duration = Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Wall time of one operator reconcile pass (read, decide, patch, act), by resource (the plural).",
            ["resource"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.aggregation_peak_bytes = Gauge(
            PREFIX + "aggregation_peak_bytes", "Peak bytes held by the latest aggregation.", ["model"], registry=r
        )
        self.promoted_version = Gauge(
            PREFIX + "promoted_version", "Version number of the promoted global model.", ["model"], registry=r
        )
        self.dp_epsilon = Gauge(
            PREFIX + "dp_epsilon_spent",
            "Differential-privacy epsilon spent by a plant so far.",
            ["model", "plant"],
            registry=r,
        )
        self.heartbeat_age = Gauge(
            PREFIX + "plant_heartbeat_age_seconds",
            "Seconds since a plant agent's last heartbeat.",
            ["plant"],
            registry=r,
        )
        self.cached_model_version = Gauge(
            PREFIX + "plant_cached_model_version",
            "Model version held in a plant's cache (what it serves).",
            ["model", "plant"],
            registry=r,
        )
        self.agent_training_jobs = Counter(
            PREFIX + "agent_training_jobs_total",
            "Training Jobs a plant's agent created or cancelled.",
            ["plant", "action"],
            registry=r,
        )
        self.agent_errors = Counter(
            PREFIX + "agent_errors_total",
            "Failed calls of a plant's agent, by what it called (hub, kubernetes).",
            ["plant", "target"],
            registry=r,
        )

    def set_objective(self, model: str, score: str, goal: MetricGoal) -> None:
        """Mark `score` as the lineage's primary score (one per model: another one set before is removed)."""
        before = self._objectives.get(model)
        if before is not None and before != (score, goal.value):
            self.objective.remove(model, *before)
        self._objectives[model] = (score, goal.value)
        self.objective.labels(model, score, goal.value).set(1)

    def record_aggregation(self, model: str, summary: AggregationSummary) -> None:
        """One round's aggregation, as the operator (from the version record) and simulate export it.

        Only numbers the summary carries are set: without DP there is no ε, so that series stays absent.
        """
        self.aggregation_duration.labels(model, summary.strategy).observe(summary.seconds)
        self.aggregation_peak_bytes.labels(model).set(summary.peak_bytes)
        for plant, values in summary.plants.items():
            if "l2_norm" in values:
                self.update_norm.labels(model, plant).set(values["l2_norm"])
            if "cosine" in values:
                self.update_cosine.labels(model, plant).set(values["cosine"])
            if EPSILON in values:
                self.dp_epsilon.labels(model, plant).set(values[EPSILON])
