"""Issue 20, item 1: update metadata is validated at upload with the model the store reads with.

A plant that declares a number JSON cannot carry (NaN, ±Inf) or one no measurement produces (1e308) is refused
with INVALID_ARGUMENT naming the field, and the round stays readable for everyone: ListUpdates, ListVersions
and GetRound keep working, and an aggregation of the largest accepted values publishes a readable version.
"""

from __future__ import annotations

import grpc
import pytest
from support.exchange import Hub
from support.updates import (
    MODEL,
    good_delta,
    raw_upload,
    update_meta,
    upload_start,
    write_good_update,
    write_raw_update,
)

from plantfed.contract.plant_metrics import TRAIN_LOSS
from plantfed.contract.records import MAX_MAGNITUDE, MAX_SAMPLES
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.round_aggregation import aggregate_round

NAN, INF = float("nan"), float("inf")


def _start(hub: Hub, plant: str, seed: int) -> tuple[pb.UploadStart, bytes]:
    path = write_good_update(hub.tmp / f"{plant}.safetensors", seed=seed)
    return upload_start(update_meta(plant, "r1", path)), path.read_bytes()


def _set(start: pb.UploadStart, field: str, value: float) -> None:
    if field == "metrics":
        start.meta.metrics[TRAIN_LOSS] = value
    elif field == "dp.clip_norm":
        start.meta.dp.clip_norm = value
    else:
        setattr(start.meta, field, value)


@pytest.mark.parametrize("value", [NAN, INF, -INF, 1e308], ids=["nan", "inf", "-inf", "1e308"])
@pytest.mark.parametrize(
    ("field", "named"),
    [("metrics", f"metrics.{TRAIN_LOSS}"), ("dp.clip_norm", "dp.clip_norm"), ("train_seconds", "train_seconds")],
)
def test_unreadable_metadata_is_refused_at_upload_naming_the_field(
    strict_hub: Hub, field: str, named: str, value: float
) -> None:
    good, good_bytes = _start(strict_hub, "plant-b", seed=2)
    raw_upload(strict_hub, strict_hub.tokens["plant-b"], good, [good_bytes])
    fixed, payload = _start(strict_hub, "plant-a", seed=1)
    start = pb.UploadStart()
    start.CopyFrom(fixed)
    _set(start, field, value)
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(strict_hub, strict_hub.tokens["plant-a"], start, [payload])
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert named in (info.value.details() or "")

    # Nothing accepted is lost and the round reads for the admin and for plants.
    listed = strict_hub.admin().list_updates("r1")
    assert [u.meta.plant for u in listed.updates] == ["plant-b"]
    assert strict_hub.plant("plant-a").get_round("r1").round_id == "r1"
    raw_upload(strict_hub, strict_hub.tokens["plant-a"], fixed, [payload])
    assert {u.meta.plant for u in strict_hub.admin().list_updates("r1").updates} == {"plant-a", "plant-b"}


def test_aggregating_the_largest_accepted_values_publishes_a_readable_version(strict_hub: Hub) -> None:
    for plant, seed in (("plant-a", 1), ("plant-b", 2)):
        start, payload = _start(strict_hub, plant, seed)
        start.meta.metrics[TRAIN_LOSS] = MAX_MAGNITUDE
        start.meta.train_seconds = MAX_MAGNITUDE
        start.meta.num_samples = MAX_SAMPLES
        raw_upload(strict_hub, strict_hub.tokens[plant], start, [payload])

    outcome = aggregate_round(strict_hub.store, "r1", StrategyConfig())

    versions = strict_hub.admin().list_versions(MODEL)
    assert [v.version for v in versions] == [1, outcome.version.version]
    assert versions[-1].metrics[TRAIN_LOSS] == MAX_MAGNITUDE
    assert strict_hub.plant("plant-a").get_round("r1").candidate_version == outcome.version.version


def test_a_finite_but_huge_update_still_aggregates_into_a_readable_version(strict_hub: Hub) -> None:
    """Only what plants report is bounded; what the hub measures of a huge update (its norm) is kept as measured."""
    huge = {n: t * 1e30 if t.is_floating_point() else t for n, t in good_delta().items()}
    path = write_raw_update(strict_hub.tmp / "huge.safetensors", huge)
    strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", path), path)

    outcome = aggregate_round(strict_hub.store, "r1", StrategyConfig())

    (listed,) = [v for v in strict_hub.admin().list_versions(MODEL) if v.version == outcome.version.version]
    assert listed.aggregation is not None and listed.aggregation.plants["plant-a"]["l2_norm"] > MAX_MAGNITUDE
