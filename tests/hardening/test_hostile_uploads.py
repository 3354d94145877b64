"""Issue 7, item 3: broken and hostile uploads are refused with a clear error and nothing accepted is lost.

Every test runs against a real exchange (gRPC on loopback, real store directory) with the production payload
check. After each refusal we check the plant's update was not committed, another plant's committed update is
intact, and the refused plant can still upload a good update (a refusal never wedges its upload slot).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch
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

from plantfed.contract.records import Codec
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.exchange import ExchangeError


@pytest.fixture
def committed_b(strict_hub: Hub) -> str:
    """plant-b's good update, committed before anything hostile happens: it must survive every refusal."""
    path = write_good_update(strict_hub.tmp / "b.safetensors", seed=2)
    return strict_hub.plant("plant-b").upload_update(update_meta("plant-b", "r1", path), path).digest


def assert_nothing_lost(hub: Hub, committed_b: str, *, a_committed: bool = False) -> None:
    updates = {u.meta.plant: u.digest for u in hub.store.updates("r1")}
    assert updates.get("plant-b") == committed_b
    assert ("plant-a" in updates) is a_committed
    if not a_committed:
        good = write_good_update(hub.tmp / "a-good.safetensors", seed=3)
        hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", good), good)
        assert {u.meta.plant for u in hub.store.updates("r1")} == {"plant-a", "plant-b"}


def refuse(hub: Hub, path: Path, **meta_fields: object) -> ExchangeError:
    with pytest.raises(ExchangeError) as info:
        hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", path, **meta_fields), path)
    return info.value


def _with(name: str, value: torch.Tensor | None) -> dict[str, torch.Tensor]:
    tensors = good_delta()
    if value is None:
        del tensors[name]
    else:
        tensors[name] = value
    return tensors


@pytest.mark.parametrize(
    ("tensors", "words"),
    [
        (_with("conv.weight", torch.full((4, 2, 3), float("nan"))), ["'conv.weight'", "NaN"]),
        (_with("head.weight", torch.tensor([[float("inf")] * 4] * 3)), ["'head.weight'", "Inf"]),
        (_with("conv.bias", torch.zeros(5)), ["'conv.bias'", "shape [5]", "[4]"]),
        (_with("conv.bias", torch.zeros(4, dtype=torch.float64)), ["'conv.bias'", "dtype"]),
        (_with("norm.num_batches_tracked", torch.tensor(1.5)), ["'norm.num_batches_tracked'", "dtype"]),
        (_with("head.weight", None), ["missing tensor 'head.weight'"]),
        (_with("backdoor.weight", torch.zeros(2)), ["unexpected tensor 'backdoor.weight'"]),
    ],
    ids=["nan", "inf", "shape", "float-dtype", "int-dtype", "missing", "unexpected"],
)
def test_malformed_update_is_refused_at_upload_naming_the_tensor(
    strict_hub: Hub, committed_b: str, tensors: dict[str, torch.Tensor], words: list[str]
) -> None:
    path = write_raw_update(strict_hub.tmp / "bad.safetensors", tensors)
    err = refuse(strict_hub, path)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "plant 'plant-a'" in err.details and "round 'r1'" in err.details
    for word in words:
        assert word in err.details
    assert str(strict_hub.tmp) not in err.details  # no hub paths leak to the plant
    assert_nothing_lost(strict_hub, committed_b)


def test_declared_codec_must_match_the_payload(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "fp16.safetensors", codec=Codec.FP16)
    err = refuse(strict_hub, path, codec=Codec.INT8)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "codec" in err.details
    assert_nothing_lost(strict_hub, committed_b)


def test_a_model_file_is_not_an_update(strict_hub: Hub, committed_b: str) -> None:
    base = strict_hub.tmp / "base.safetensors"  # full weights, tagged as a state file
    err = refuse(strict_hub, base)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and "update metadata" in err.details
    assert_nothing_lost(strict_hub, committed_b)


def test_compressed_updates_pass_the_check(strict_hub: Hub) -> None:
    for plant, codec in (("plant-a", Codec.INT8), ("plant-b", Codec.FP16)):
        path = write_good_update(strict_hub.tmp / f"{plant}.safetensors", codec=codec)
        strict_hub.plant(plant).upload_update(update_meta(plant, "r1", path, codec=codec), path)
    assert {u.meta.codec for u in strict_hub.store.updates("r1")} == {Codec.INT8, Codec.FP16}


def test_a_lighter_variant_may_leave_tensors_out_but_not_break_the_rest(strict_hub: Hub, committed_b: str) -> None:
    backbone = {k: v for k, v in good_delta().items() if k.startswith("conv.")}
    light = write_raw_update(strict_hub.tmp / "light.safetensors", backbone)
    strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", light, variant="light"), light)
    assert {u.meta.plant: u.meta.partial for u in strict_hub.store.updates("r1")} == {"plant-a": True, "plant-b": False}
    strict_hub.open_round("r2", ("plant-a",), model=MODEL)
    bad = write_raw_update(strict_hub.tmp / "light-bad.safetensors", {**backbone, "conv.bias": torch.zeros(3)})
    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r2", bad, variant="light"), bad)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "'conv.bias'" in info.value.details


def test_update_for_a_closed_round_is_refused(strict_hub: Hub, committed_b: str) -> None:
    strict_hub.admin().close_round("r1")
    path = write_good_update(strict_hub.tmp / "late.safetensors")
    err = refuse(strict_hub, path)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "closed" in err.details
    assert {u.meta.plant for u in strict_hub.store.updates("r1")} == {"plant-b"}


def test_update_trained_on_another_base_is_refused(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "old.safetensors")
    err = refuse(strict_hub, path, base_version=7)
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "base version 7" in err.details
    assert_nothing_lost(strict_hub, committed_b)


def test_replayed_upload_is_counted_once_and_cannot_replace_the_update(strict_hub: Hub, committed_b: str) -> None:
    path = strict_hub.tmp / "b-replay.safetensors"
    path.write_bytes(strict_hub.store.blob_path(committed_b).read_bytes())  # the committed update, byte for byte
    again = strict_hub.plant("plant-b").upload_update(update_meta("plant-b", "r1", path), path)
    assert again.duplicate and again.digest == committed_b
    other = write_good_update(strict_hub.tmp / "b-other.safetensors", seed=5)
    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-b").upload_update(update_meta("plant-b", "r1", other), other)
    assert info.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert [(u.meta.plant, u.digest) for u in strict_hub.store.updates("r1")] == [("plant-b", committed_b)]


def test_declared_size_above_the_round_limit_is_refused_before_any_byte(strict_hub: Hub, committed_b: str) -> None:
    strict_hub.open_round("small", ("plant-a",), model=MODEL, max_update_bytes=64)
    path = write_good_update(strict_hub.tmp / "big.safetensors")
    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "small", path), path)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "limit of 64 bytes" in info.value.details
    assert strict_hub.store.updates("small") == []


def test_stream_longer_than_declared_is_refused(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    data = path.read_bytes()
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(
            strict_hub,
            strict_hub.tokens["plant-a"],
            upload_start(update_meta("plant-a", "r1", path)),
            [data, b"\0" * 10],
        )
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE and "more than the declared" in info.value.details()
    assert_nothing_lost(strict_hub, committed_b)


def test_truncated_stream_is_held_for_resume_but_never_committed(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    data = path.read_bytes()
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(
            strict_hub,
            strict_hub.tokens["plant-a"],
            upload_start(update_meta("plant-a", "r1", path)),
            [data[: len(data) // 2]],
        )
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE and "upload incomplete" in info.value.details()
    assert {u.meta.plant for u in strict_hub.store.updates("r1")} == {"plant-b"}
    # The client resumes from what the hub holds and completes the same payload.
    receipt = strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", path), path)
    assert receipt.attempt_offsets[0] == len(data) // 2
    assert {u.meta.plant for u in strict_hub.store.updates("r1")} == {"plant-a", "plant-b"}


def test_wrong_checksum_is_refused_and_discarded(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    meta = update_meta("plant-a", "r1", path, sha256="0" * 64)
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(strict_hub, strict_hub.tokens["plant-a"], upload_start(meta), [path.read_bytes()])
    assert info.value.code() == grpc.StatusCode.DATA_LOSS and "sha256 mismatch" in info.value.details()
    assert strict_hub.store.partial_offset("r1", "plant-a", "0" * 64) == 0
    assert_nothing_lost(strict_hub, committed_b)


@pytest.mark.parametrize("token", ["", "not-a-known-token"], ids=["no-token", "unknown-token"])
def test_unauthenticated_plant_is_refused(strict_hub: Hub, committed_b: str, token: str) -> None:
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(strict_hub, token, upload_start(update_meta("plant-a", "r1", path)), [path.read_bytes()])
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in info.value.details()
    assert_nothing_lost(strict_hub, committed_b)


def test_plant_not_assigned_to_the_round_is_refused(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "c.safetensors")
    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-c").upload_update(update_meta("plant-c", "r1", path), path)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED and "not assigned" in info.value.details
    assert_nothing_lost(strict_hub, committed_b)


def test_plant_uploading_as_another_plant_is_refused(strict_hub: Hub, committed_b: str) -> None:
    path = write_good_update(strict_hub.tmp / "forged.safetensors", seed=9)
    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").upload_update(update_meta("plant-b", "r1", path), path)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "token belongs to plant 'plant-a'" in info.value.details
    assert_nothing_lost(strict_hub, committed_b)


@pytest.mark.parametrize(
    ("dp", "words"),
    [
        (pb.DPParams(noise_multiplier=1.0), ["unbounded sensitivity"]),
        (pb.DPParams(mode=pb.DP_MODE_CENTRAL, clip_norm=1.0, noise_multiplier=1.0), ["central DP is added by the hub"]),
        (pb.DPParams(mode=pb.DP_MODE_SAMPLE, clip_norm=1.0, noise_multiplier=1.0), ["DP-SGD", "steps >= 1"]),
        (
            pb.DPParams(mode=pb.DP_MODE_SAMPLE, clip_norm=1.0, noise_multiplier=1.0, steps=10, sample_rate=1.5),
            ["sample_rate"],
        ),
        (pb.DPParams(mode=99, clip_norm=1.0), ["unknown DP mode 99"]),  # type: ignore[arg-type]  # off the wire
    ],
    ids=["noise-without-clip", "plant-claims-central", "dp-sgd-without-steps", "rate-above-one", "unknown-mode"],
)
def test_a_privacy_claim_the_ledger_cannot_charge_is_refused(
    strict_hub: Hub, committed_b: str, dp: pb.DPParams, words: list[str]
) -> None:
    """Charging such an update as free (or at all) would understate the plant's ε: the upload is refused."""
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    start = upload_start(update_meta("plant-a", "r1", path))
    start.meta.dp.CopyFrom(dp)
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(strict_hub, strict_hub.tokens["plant-a"], start, [path.read_bytes()])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in info.value.details()
    assert_nothing_lost(strict_hub, committed_b)
