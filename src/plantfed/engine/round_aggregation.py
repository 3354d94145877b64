"""Aggregate one round from the model store into a new (not yet promoted) model version.

This is the body of the per-round aggregation Job (`plantfed aggregate`) and of `plantfed simulate`'s hub.
It is idempotent: if a version for the round already exists (the Job ran to completion before its pod or
the operator died) it is returned as-is, so nothing is ever aggregated or published twice. Server-optimiser
state is keyed by the model version it led to, so a retried Job starts from the same state. The version
record keeps what the aggregation measured (`AggregationSummary`), which is how those numbers reach the
operator's metrics: the Job has no API credentials and exits before any scrape.

Each aggregated plant's differential-privacy releases are charged to the lineage's `PrivacyLedger` before the
version is published, so a published model is always accounted for; the ledger records a round once per
plant, so a retried Job never charges twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from plantfed.contract.records import AggregationSummary, ModelVersion, UpdateRecord
from plantfed.contract.scores import pool
from plantfed.engine.aggregation import AggregationResult, StrategyConfig, UpdateInput, aggregate
from plantfed.engine.privacy import PrivacyLedger, round_releases
from plantfed.engine.store import ModelStore


@dataclass
class RoundAggregation:
    version: ModelVersion
    plants: list[str]
    result: AggregationResult | None
    seconds: float
    reused: bool


def pooled_metrics(updates: list[UpdateRecord]) -> dict[str, float]:
    """Each metric every aggregated plant reported, pooled from its sufficient statistics (`contract.scores`).

    A score without statistics of its own is a sample-weighted mean (by its split's samples, else the update's).
    """
    return pool([(u.meta.metrics, u.meta.num_samples) for u in updates])


def summarize(result: AggregationResult, seconds: float) -> AggregationSummary:
    """What the version record keeps of an aggregation: every number it reported per plant."""
    plants = {
        stat.plant: {k: float(v) for k, v in stat.model_dump().items() if isinstance(v, int | float)}
        for stat in result.plants
    }
    return AggregationSummary(
        strategy=result.strategy.value, seconds=seconds, peak_bytes=result.peak_bytes, plants=plants
    )


def charge_privacy(
    store: ModelStore, model: str, round_id: str, updates: list[UpdateRecord], config: StrategyConfig
) -> None:
    """Record each update's local release (its declared DP parameters) and the hub's central one."""
    ledger = PrivacyLedger(store, model)
    for update in updates:
        releases = round_releases(update.meta.dp, config.central_noise_multiplier, config.norm_bound or 0.0)
        ledger.charge_round(round_id, update.meta.plant, releases)


def aggregate_round(
    store: ModelStore,
    round_id: str,
    config: StrategyConfig,
    *,
    plants: list[str] | None = None,
    local_patterns: tuple[str, ...] = (),
) -> RoundAggregation:
    """Aggregate the committed updates of `round_id` (restricted to `plants` when the operator froze a set)."""
    record = store.get_round(round_id)
    for existing in store.versions(record.model):
        if existing.round_id == round_id:
            return RoundAggregation(existing, plants or [], None, 0.0, reused=True)
    store.require_round_updates(round_id)
    store.require_version_blob(record.model, record.base_version)
    updates = [u for u in store.updates(round_id) if plants is None or u.meta.plant in plants]
    if not updates:
        raise ValueError(f"round {round_id} has no committed updates to aggregate")
    missing = sorted(set(plants or []) - {u.meta.plant for u in updates})
    if missing:
        raise ValueError(f"round {round_id}: no committed update from {', '.join(missing)}")
    base = store.get_model(record.model, record.base_version)
    # Every byte aggregated is checked against its digest first: a flipped bit is reported by name, not averaged.
    base_path = store.verify_blob(base.digest, f"model {record.model!r} version {base.version}", base.size)
    inputs = [
        UpdateInput(
            plant=u.meta.plant,
            path=store.verify_blob(u.digest, f"round {round_id!r}: {u.meta.plant!r}'s update", u.meta.total_bytes),
            num_samples=u.meta.num_samples,
            codec=u.meta.codec,
            partial=u.meta.partial,
        )
        for u in sorted(updates, key=lambda u: u.meta.plant)
    ]
    started = time.perf_counter()
    with store.scratch_dir(prefix="aggregate-") as tmp:
        state = store.stage_server_state(record.model, record.base_version, tmp / "state")
        out = tmp / "model.safetensors"
        result = aggregate(base_path, inputs, config, out, local_patterns=local_patterns, state_dir=state)
        seconds = time.perf_counter() - started
        digest, _size = store.import_file(out)
        charge_privacy(store, record.model, round_id, updates, config)
        metrics = pooled_metrics(updates)
        version = store.publish_model(
            record.model,
            digest,
            parent=base.version,
            round_id=round_id,
            metrics=metrics,
            aggregation=summarize(result, seconds),
        )
        store.keep_server_state(record.model, version.version, state)
    return RoundAggregation(version, [u.meta.plant for u in updates], result, seconds, reused=False)
