"""Records <-> wire messages. Pure functions; pydantic validates whatever arrives from the wire."""

from __future__ import annotations

from plantfed.contract.records import (
    AggregationSummary,
    Codec,
    DPMode,
    DPRelease,
    EvaluationRecord,
    LedgerEntry,
    ModelVersion,
    RoundRecord,
    RoundState,
    UpdateMeta,
    UpdateRecord,
)
from plantfed.contract.wire.v1 import exchange_pb2 as pb

_CODEC_TO_WIRE = {Codec.NONE: pb.CODEC_NONE, Codec.FP16: pb.CODEC_FP16, Codec.INT8: pb.CODEC_INT8}
_CODEC_FROM_WIRE = {v: k for k, v in _CODEC_TO_WIRE.items()} | {pb.CODEC_UNSPECIFIED: Codec.NONE}
_STATE_TO_WIRE = {RoundState.OPEN: pb.ROUND_STATE_OPEN, RoundState.CLOSED: pb.ROUND_STATE_CLOSED}
_STATE_FROM_WIRE = {v: k for k, v in _STATE_TO_WIRE.items()} | {pb.ROUND_STATE_UNSPECIFIED: RoundState.OPEN}
_DP_MODE_TO_WIRE = {
    DPMode.LOCAL: pb.DP_MODE_LOCAL,
    DPMode.CENTRAL: pb.DP_MODE_CENTRAL,
    DPMode.SAMPLE: pb.DP_MODE_SAMPLE,
}
_DP_MODE_FROM_WIRE = {v: k for k, v in _DP_MODE_TO_WIRE.items()}


def state_to_wire(state: RoundState) -> pb.RoundState:
    return _STATE_TO_WIRE[state]


def meta_to_wire(meta: UpdateMeta) -> pb.UpdateMetadata:
    return pb.UpdateMetadata(
        plant=meta.plant,
        round_id=meta.round_id,
        base_version=meta.base_version,
        num_samples=meta.num_samples,
        metrics=meta.metrics,
        train_seconds=meta.train_seconds,
        codec=_CODEC_TO_WIRE[meta.codec],
        dp=pb.DPParams(**meta.dp.model_dump(exclude={"mode"}), mode=_DP_MODE_TO_WIRE[meta.dp.mode]),
        total_bytes=meta.total_bytes,
        sha256=meta.sha256,
        variant=meta.variant,
    )


def meta_from_wire(msg: pb.UpdateMetadata) -> UpdateMeta:
    """Raises pydantic.ValidationError (or ValueError for an unknown codec) on bad input."""
    if msg.codec not in _CODEC_FROM_WIRE:
        raise ValueError(f"unknown codec {msg.codec}")
    dp_mode = DPMode.LOCAL if msg.dp.mode == pb.DP_MODE_UNSPECIFIED else _DP_MODE_FROM_WIRE.get(msg.dp.mode)
    if dp_mode is None:
        raise ValueError(f"unknown DP mode {msg.dp.mode}")
    # One validation of the whole record, so an error names its field as the store would (`dp.clip_norm`).
    return UpdateMeta.model_validate(
        {
            "plant": msg.plant,
            "round_id": msg.round_id,
            "base_version": msg.base_version,
            "num_samples": msg.num_samples,
            "metrics": dict(msg.metrics),
            "train_seconds": msg.train_seconds,
            "codec": _CODEC_FROM_WIRE[msg.codec],
            "dp": {
                "mode": dp_mode,
                "clip_norm": msg.dp.clip_norm,
                "noise_multiplier": msg.dp.noise_multiplier,
                "steps": msg.dp.steps,
                "sample_rate": msg.dp.sample_rate,
            },
            "total_bytes": msg.total_bytes,
            "sha256": msg.sha256,
            "variant": msg.variant or "full",
        }
    )


def round_to_wire(record: RoundRecord) -> pb.Round:
    return pb.Round(
        round_id=record.round_id,
        model=record.model,
        base_version=record.base_version,
        plants=record.plants,
        state=state_to_wire(record.state),
        max_update_bytes=record.max_update_bytes,
        opened_at=record.opened_at or 0.0,
        closed_at=record.closed_at or 0.0,
    )


def round_from_wire(msg: pb.Round) -> RoundRecord:
    fields = {
        "round_id": msg.round_id,
        "model": msg.model,
        "base_version": msg.base_version,
        "plants": list(msg.plants),
        "state": _STATE_FROM_WIRE.get(msg.state, RoundState.OPEN),
        "opened_at": msg.opened_at or None,
        "closed_at": msg.closed_at or None,
    }
    if msg.max_update_bytes:
        fields["max_update_bytes"] = msg.max_update_bytes
    return RoundRecord(**fields)


def version_to_wire(record: ModelVersion) -> pb.ModelVersion:
    msg = pb.ModelVersion(
        model=record.model,
        version=record.version,
        digest=record.digest,
        size=record.size,
        round_id=record.round_id or "",
        metrics=record.metrics,
        created_at=record.created_at,
        promoted=record.promoted,
    )
    if record.parent is not None:
        msg.parent = record.parent
    if record.aggregation is not None:
        agg = record.aggregation
        msg.aggregation.CopyFrom(
            pb.AggregationSummary(
                strategy=agg.strategy,
                seconds=agg.seconds,
                peak_bytes=agg.peak_bytes,
                plants={plant: pb.PlantAggregationStats(values=values) for plant, values in agg.plants.items()},
            )
        )
    return msg


def version_from_wire(msg: pb.ModelVersion) -> ModelVersion:
    aggregation = None
    if msg.HasField("aggregation"):
        agg = msg.aggregation
        aggregation = AggregationSummary(
            strategy=agg.strategy,
            seconds=agg.seconds,
            peak_bytes=agg.peak_bytes,
            plants={plant: dict(stats.values) for plant, stats in agg.plants.items()},
        )
    return ModelVersion(
        model=msg.model,
        version=msg.version,
        digest=msg.digest,
        size=msg.size,
        parent=msg.parent if msg.HasField("parent") else None,
        round_id=msg.round_id or None,
        metrics=dict(msg.metrics),
        created_at=msg.created_at,
        promoted=msg.promoted,
        aggregation=aggregation,
    )


def update_to_wire(record: UpdateRecord) -> pb.UpdateRecord:
    return pb.UpdateRecord(
        meta=meta_to_wire(record.meta),
        digest=record.digest,
        received_at=record.received_at,
        bytes_received=record.bytes_received or 0,
        upload_seconds=record.upload_seconds or 0.0,
    )


def update_from_wire(msg: pb.UpdateRecord) -> UpdateRecord:
    return UpdateRecord(
        meta=meta_from_wire(msg.meta),
        digest=msg.digest,
        received_at=msg.received_at,
        bytes_received=msg.bytes_received,
        upload_seconds=msg.upload_seconds,
    )


def evaluation_to_wire(record: EvaluationRecord) -> pb.Evaluation:
    return pb.Evaluation(
        round_id=record.round_id,
        plant=record.plant,
        version=record.version,
        num_samples=record.num_samples,
        metrics=record.metrics,
        received_at=record.received_at,
    )


def evaluation_from_wire(msg: pb.Evaluation) -> EvaluationRecord:
    return EvaluationRecord(
        round_id=msg.round_id,
        plant=msg.plant,
        version=msg.version,
        num_samples=msg.num_samples,
        metrics=dict(msg.metrics),
        received_at=msg.received_at,
    )


def ledger_to_wire(model: str, entries: dict[str, list[LedgerEntry]]) -> pb.PrivacyLedger:
    return pb.PrivacyLedger(
        model=model,
        plants=[
            pb.PlantReleases(
                plant=plant,
                releases=[
                    pb.DPRelease(
                        round_id=e.round_id,
                        mode=_DP_MODE_TO_WIRE[e.release.mode],
                        noise_multiplier=e.release.noise_multiplier,
                        sample_rate=e.release.sample_rate,
                        steps=e.release.steps,
                        clip_norm=e.release.clip_norm,
                    )
                    for e in plant_entries
                ],
            )
            for plant, plant_entries in sorted(entries.items())
        ],
    )


def ledger_from_wire(msg: pb.PrivacyLedger) -> dict[str, list[LedgerEntry]]:
    """Raises ValueError for an unknown mode and pydantic.ValidationError for out-of-range parameters."""
    out: dict[str, list[LedgerEntry]] = {}
    for plant in msg.plants:
        entries = out.setdefault(plant.plant, [])
        for r in plant.releases:
            if r.mode not in _DP_MODE_FROM_WIRE:
                raise ValueError(f"unknown DP mode {r.mode} in plant {plant.plant!r}'s ledger")
            release = DPRelease(
                mode=_DP_MODE_FROM_WIRE[r.mode],
                noise_multiplier=r.noise_multiplier,
                sample_rate=r.sample_rate,
                steps=r.steps,
                clip_norm=r.clip_norm,
            )
            entries.append(LedgerEntry(round_id=r.round_id, release=release))
    return out
