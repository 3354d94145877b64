"""The model exchange over real gRPC on loopback: round trips and every refusal a plant can hit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.exchange import ADMIN_TOKEN, Hub, meta_for, wait_until, write_payload

from plantfed.contract.records import RoundState
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.privacy import DPMode, DPRelease, PrivacyLedger
from plantfed.engine.store import file_sha256
from plantfed.exchange import ExchangeError
from plantfed.exchange.convert import meta_to_wire
from plantfed.exchange.transport import MAX_CHUNK, open_channel


def refused(code: grpc.StatusCode, fn, *args, **kwargs) -> ExchangeError:
    with pytest.raises(ExchangeError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def test_upload_is_listed_with_its_metadata(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 3 * MAX_CHUNK + 123, seed=1)
    meta = meta_for("plant-a", "r1", payload, num_samples=640, metrics={"loss": 0.25}, train_seconds=12.5)
    seen: list[tuple[int, int]] = []

    receipt = hub.plant("plant-a").upload_update(meta, payload, progress=lambda d, t: seen.append((d, t)))

    assert receipt.digest == meta.sha256 and not receipt.duplicate
    assert receipt.bytes_sent == receipt.size == payload.stat().st_size
    assert seen[-1] == (payload.stat().st_size, payload.stat().st_size)
    listed = hub.admin().list_updates("r1")
    assert [u.meta for u in listed.updates] == [meta]
    assert listed.updates[0].bytes_received == payload.stat().st_size
    assert hub.store.blob_path(receipt.digest).read_bytes() == payload.read_bytes()


def test_metadata_filled_from_the_file_when_empty(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 10_000, seed=2)
    meta = meta_for("plant-a", "r1", payload).model_copy(update={"sha256": "", "total_bytes": 0})
    receipt = hub.plant("plant-a").upload_update(meta, payload)
    assert receipt.digest == file_sha256(payload).hexdigest()


def test_download_by_version_and_latest_promoted(hub: Hub, tmp_path: Path) -> None:
    v1, seed_file = hub.seed(nbytes=2 * MAX_CHUNK + 5)
    admin = hub.admin()
    newer = write_payload(tmp_path / "v2.safetensors", 50_000, seed=9)
    v2 = admin.publish_model("bearing-cnn", newer, parent=v1, round_id="r1", metrics={"acc": 0.9})
    plant = hub.plant("plant-b")

    got = plant.download_model("bearing-cnn", None, tmp_path / "latest.bin")
    assert got.version == v1 and got.promoted
    assert (tmp_path / "latest.bin").read_bytes() == seed_file.read_bytes()

    admin.promote("bearing-cnn", v2.version)
    got = plant.download_model("bearing-cnn", None, tmp_path / "latest.bin")
    assert (got.version, got.parent, got.round_id, got.metrics) == (2, 1, "r1", {"acc": 0.9})
    assert (tmp_path / "latest.bin").read_bytes() == newer.read_bytes()

    got = plant.download_model("bearing-cnn", 1, tmp_path / "v1.bin")
    assert not got.promoted and (tmp_path / "v1.bin").read_bytes() == seed_file.read_bytes()
    assert [v.version for v in admin.list_versions("bearing-cnn")] == [1, 2]
    assert admin.get_model("bearing-cnn").version == 2


def test_download_resumes_after_the_client_is_cut(hub: Hub, tmp_path: Path) -> None:
    _, seed_file = hub.seed(nbytes=6 * MAX_CHUNK)
    dest = tmp_path / "model.bin"
    total = seed_file.stat().st_size

    class Cut(Exception):
        pass

    def cut_halfway(done: int, _total: int) -> None:
        if done >= total // 2:
            raise Cut

    with pytest.raises(Cut):
        hub.plant("plant-a").download_model("bearing-cnn", None, dest, progress=cut_halfway)
    held = (tmp_path / "model.bin.partial").stat().st_size
    assert 0 < held < total and not dest.exists()

    progress: list[int] = []
    hub.plant("plant-a").download_model("bearing-cnn", None, dest, progress=lambda d, t: progress.append(d))
    assert dest.read_bytes() == seed_file.read_bytes()
    assert not (tmp_path / "model.bin.partial").exists()
    received_again = progress[-1] - held
    assert received_again == total - held < total


def test_partial_download_of_a_superseded_version_starts_over(hub: Hub, tmp_path: Path) -> None:
    _, first = hub.seed(nbytes=4 * MAX_CHUNK)
    dest = tmp_path / "model.bin"

    def cut(done: int, _total: int) -> None:
        raise RuntimeError("cut")

    with pytest.raises(RuntimeError):
        hub.plant("plant-a").download_model("bearing-cnn", None, dest, progress=cut)
    newer = write_payload(tmp_path / "v2.safetensors", 3 * MAX_CHUNK, seed=3)
    hub.admin().publish_model("bearing-cnn", newer, parent=1, promote=True)

    got = hub.plant("plant-a").download_model("bearing-cnn", None, dest)
    assert got.version == 2 and dest.read_bytes() == newer.read_bytes()


def test_get_round_tells_a_plant_whether_it_is_assigned(hub: Hub) -> None:
    hub.seed()
    hub.open_round("r1", plants=("plant-a",))
    mine = hub.plant("plant-a").get_round("r1")
    assert (mine.model, mine.base_version, mine.assigned, mine.open, mine.plant) == (
        "bearing-cnn",
        1,
        True,
        True,
        "plant-a",
    )
    assert hub.plant("plant-a").get_round().round_id == "r1"
    denied = refused(grpc.StatusCode.PERMISSION_DENIED, hub.plant("plant-b").get_round, "r1")
    assert denied.details == "plant 'plant-b' is not assigned to round 'r1'"
    refused(grpc.StatusCode.NOT_FOUND, hub.plant("plant-b").get_round)
    refused(grpc.StatusCode.NOT_FOUND, hub.plant("plant-a").get_round, "no-such-round")


def test_duplicate_upload_is_idempotent_and_a_different_payload_is_refused(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 20_000, seed=1)
    first = hub.plant("plant-a").upload_update(meta_for("plant-a", "r1", payload), payload)
    again = hub.plant("plant-a").upload_update(meta_for("plant-a", "r1", payload), payload)
    assert again.duplicate and again.digest == first.digest and again.received_at == first.received_at
    assert again.bytes_sent == 0

    other = write_payload(tmp_path / "v.safetensors", 20_000, seed=2)
    err = refused(
        grpc.StatusCode.ALREADY_EXISTS, hub.plant("plant-a").upload_update, meta_for("plant-a", "r1", other), other
    )
    assert "already committed" in err.details
    assert [u.digest for u in hub.admin().list_updates("r1").updates] == [first.digest]


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("checksum", grpc.StatusCode.DATA_LOSS, "sha256 mismatch"),
        ("not-assigned", grpc.StatusCode.PERMISSION_DENIED, "not assigned"),
        ("as-other-plant", grpc.StatusCode.PERMISSION_DENIED, "names plant 'plant-b'"),
        ("closed", grpc.StatusCode.FAILED_PRECONDITION, "closed"),
        ("base-mismatch", grpc.StatusCode.FAILED_PRECONDITION, "base version 7"),
        ("unknown-round", grpc.StatusCode.NOT_FOUND, "unknown round"),
        ("over-round-limit", grpc.StatusCode.INVALID_ARGUMENT, "exceeds round"),
        ("not-safetensors", grpc.StatusCode.INVALID_ARGUMENT, "safetensors"),
        ("bad-metadata", grpc.StatusCode.INVALID_ARGUMENT, "num_samples"),
    ],
)
def test_refused_uploads_name_the_problem_and_are_never_listed(
    hub: Hub, tmp_path: Path, case: str, code: grpc.StatusCode, words: str
) -> None:
    hub.seed()
    hub.open_round("r1", plants=("plant-a", "plant-b"), max_update_bytes=1 << 20)
    hub.open_round("r-closed", plants=("plant-a",))
    hub.admin().close_round("r-closed")
    payload = write_payload(tmp_path / "u.safetensors", 30_000, seed=1)
    plant, meta = "plant-a", meta_for("plant-a", "r1", payload)
    if case == "checksum":
        meta = meta.model_copy(update={"sha256": "0" * 64})
    elif case == "not-assigned":
        plant, meta = "plant-c", meta_for("plant-c", "r1", payload)
    elif case == "as-other-plant":
        meta = meta_for("plant-b", "r1", payload)
    elif case == "closed":
        meta = meta_for("plant-a", "r-closed", payload)
    elif case == "base-mismatch":
        meta = meta_for("plant-a", "r1", payload, base_version=7)
    elif case == "unknown-round":
        meta = meta_for("plant-a", "r9", payload)
    elif case == "over-round-limit":
        payload = write_payload(tmp_path / "big.safetensors", (1 << 20) + 4096, seed=1)
        meta = meta_for("plant-a", "r1", payload)
    elif case == "not-safetensors":
        payload = tmp_path / "garbage.bin"
        payload.write_bytes(b"\x00" * 5000)
        meta = meta_for("plant-a", "r1", payload)
    elif case == "bad-metadata":
        meta = meta.model_copy(update={"num_samples": 0})

    err = refused(code, hub.plant(plant).upload_update, meta, payload)

    assert words in err.details
    assert hub.store.updates("r1") == [] and hub.store.updates("r-closed") == []
    assert not list((hub.store.root / "rounds" / "r1" / "partial").glob("*.data"))


def _raw_stub(hub: Hub, token: str) -> tuple[pb_grpc.ModelExchangeStub, tuple]:
    channel = open_channel(hub.target)
    hub.clients.append(channel)
    return pb_grpc.ModelExchangeStub(channel), (("authorization", f"Bearer {token}"),)


def test_more_bytes_than_declared_is_refused(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 10_000, seed=1)
    meta = meta_for("plant-a", "r1", payload)
    stub, md = _raw_stub(hub, hub.tokens["plant-a"])
    data = payload.read_bytes()
    requests = [
        pb.UploadRequest(start=pb.UploadStart(meta=meta_to_wire(meta), offset=0)),
        pb.UploadRequest(chunk=data),
        pb.UploadRequest(chunk=b"extra"),
    ]
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadUpdate(iter(requests), metadata=md)
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE and "more than the declared" in info.value.details()
    assert hub.store.updates("r1") == []
    assert hub.store.partial_offset("r1", "plant-a", meta.sha256) == 0


def test_resume_offset_beyond_what_the_hub_holds_is_refused(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 3 * MAX_CHUNK, seed=1)
    meta = meta_for("plant-a", "r1", payload)
    stub, md = _raw_stub(hub, hub.tokens["plant-a"])
    data = payload.read_bytes()
    # A stream that ends early leaves a resumable partial and is not committed.
    partial = [
        pb.UploadRequest(start=pb.UploadStart(meta=meta_to_wire(meta), offset=0)),
        pb.UploadRequest(chunk=data[:MAX_CHUNK]),
    ]
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadUpdate(iter(partial), metadata=md)
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE and "incomplete" in info.value.details()
    status = stub.GetUploadStatus(pb.UploadStatusRequest(round_id="r1", sha256=meta.sha256), metadata=md)
    assert status.committed_offset == MAX_CHUNK and not status.committed
    assert hub.store.updates("r1") == []

    beyond = [pb.UploadRequest(start=pb.UploadStart(meta=meta_to_wire(meta), offset=MAX_CHUNK + 1))]
    with pytest.raises(grpc.RpcError) as info:
        stub.UploadUpdate(iter(beyond), metadata=md)
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE and "beyond" in info.value.details()

    receipt = hub.plant("plant-a").upload_update(meta, payload)
    assert receipt.attempt_offsets == (MAX_CHUNK,) and receipt.bytes_sent == len(data) - MAX_CHUNK
    assert receipt.bytes_received == len(data)
    assert hub.store.blob_path(receipt.digest).read_bytes() == data


def test_closing_a_round_freezes_its_updates(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    a = write_payload(tmp_path / "a.safetensors", 8_000, seed=1)
    hub.plant("plant-a").upload_update(meta_for("plant-a", "r1", a), a)
    closed = hub.admin().close_round("r1")
    assert closed.state is RoundState.CLOSED and closed.closed_at
    b = write_payload(tmp_path / "b.safetensors", 8_000, seed=2)
    refused(grpc.StatusCode.FAILED_PRECONDITION, hub.plant("plant-b").upload_update, meta_for("plant-b", "r1", b), b)
    assert [u.meta.plant for u in hub.admin().list_updates("r1").updates] == ["plant-a"]


def test_wrong_or_missing_token_is_unauthenticated(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 8_000, seed=1)
    err = refused(
        grpc.StatusCode.UNAUTHENTICATED,
        hub.client_with_token("not-a-token").upload_update,
        meta_for("plant-a", "r1", payload),
        payload,
    )
    assert "bearer token" in err.details
    stub, _ = _raw_stub(hub, "")
    with pytest.raises(grpc.RpcError) as info:
        stub.GetRound(pb.GetRoundRequest(round_id="r1"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert hub.store.updates("r1") == []


def test_roles_are_separate(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    stub, plant_md = _raw_stub(hub, hub.tokens["plant-a"])
    with pytest.raises(grpc.RpcError) as info:
        stub.CloseRound(pb.CloseRoundRequest(round_id="r1"), metadata=plant_md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin token" in info.value.details()
    _, admin_md = _raw_stub(hub, ADMIN_TOKEN)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetRound(pb.GetRoundRequest(round_id="r1"), metadata=admin_md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The admin may fetch models too (e.g. an evaluation Job).
    hub.admin().download_model("bearing-cnn", None, tmp_path / "m.bin")


def test_open_round_needs_an_existing_base_and_is_idempotent(hub: Hub) -> None:
    refused(grpc.StatusCode.NOT_FOUND, hub.open_round, "r1")
    hub.seed()
    first = hub.open_round("r1")
    assert hub.open_round("r1") == first
    err = refused(grpc.StatusCode.ALREADY_EXISTS, hub.open_round, "r1", plants=("plant-c",))
    assert "different settings" in err.details
    refused(grpc.StatusCode.INVALID_ARGUMENT, hub.open_round, "../escape")


def test_publish_is_idempotent_and_verifies_lineage(hub: Hub, tmp_path: Path) -> None:
    v1, seed_file = hub.seed()
    admin = hub.admin()
    assert admin.publish_model("bearing-cnn", seed_file).version == v1
    refused(grpc.StatusCode.NOT_FOUND, admin.publish_model, "bearing-cnn", seed_file, parent=42)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not safetensors" * 100)
    refused(grpc.StatusCode.INVALID_ARGUMENT, admin.publish_model, "bearing-cnn", garbage)
    assert [v.version for v in admin.list_versions("bearing-cnn")] == [1]
    refused(grpc.StatusCode.NOT_FOUND, admin.promote, "bearing-cnn", 5)
    refused(grpc.StatusCode.NOT_FOUND, admin.get_model, "other-model")


def test_the_privacy_ledger_is_served_to_the_admin_only(hub: Hub) -> None:
    """The operator reads each plant's charged releases to keep plants within their ε budget."""
    assert hub.admin().privacy_ledger("bearing-cnn") == {}
    ledger = PrivacyLedger(hub.store.root, "bearing-cnn")
    local = DPRelease(mode=DPMode.LOCAL, noise_multiplier=1.1, clip_norm=1.0)
    central = DPRelease(mode=DPMode.CENTRAL, noise_multiplier=0.8, sample_rate=0.5, clip_norm=2.0)
    ledger.charge_round("r1", "plant-a", {DPMode.LOCAL: local, DPMode.CENTRAL: central})
    ledger.charge_round("r2", "plant-a", {DPMode.LOCAL: local})
    ledger.charge_round("r2", "plant-b", {DPMode.LOCAL: local})
    dp_sgd = DPRelease(mode=DPMode.SAMPLE, noise_multiplier=1.1, sample_rate=0.025, steps=40, clip_norm=1.0)
    ledger.charge_round("r3", "plant-b", {DPMode.SAMPLE: dp_sgd})
    assert hub.admin().privacy_ledger("bearing-cnn") == ledger.entries()
    assert hub.admin().privacy_ledger("bearing-cnn")["plant-b"][-1].release == dp_sgd
    assert [e.round_id for e in hub.admin().privacy_ledger("bearing-cnn")["plant-a"]] == ["r1", "r1.central", "r2"]
    assert hub.admin().privacy_ledger("other-model") == {}
    refused(grpc.StatusCode.INVALID_ARGUMENT, hub.admin().privacy_ledger, "../escape")
    stub, plant_md = _raw_stub(hub, hub.tokens["plant-a"])
    with pytest.raises(grpc.RpcError) as info:
        stub.GetPrivacyLedger(pb.GetPrivacyLedgerRequest(model="bearing-cnn"), metadata=plant_md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin token" in info.value.details()


def test_plants_upload_concurrently(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1", plants=("plant-a", "plant-b", "plant-c"))
    payloads = {
        p: write_payload(tmp_path / f"{p}.safetensors", 2 * MAX_CHUNK + i, seed=i)
        for i, p in enumerate(("plant-a", "plant-b", "plant-c"))
    }
    receipts: dict[str, str] = {}

    def run(plant: str) -> None:
        receipts[plant] = hub.plant(plant).upload_update(meta_for(plant, "r1", payloads[plant]), payloads[plant]).digest

    threads = [threading.Thread(target=run, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = {u.meta.plant: u.digest for u in hub.admin().list_updates("r1").updates}
    assert listed == receipts == {p: file_sha256(f).hexdigest() for p, f in payloads.items()}


def test_a_message_above_the_chunk_limit_is_refused(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 3 * MAX_CHUNK, seed=1)
    meta = meta_for("plant-a", "r1", payload)
    with pytest.raises(ValueError, match="chunk_size"):
        hub.plant("plant-a", chunk_size=2 * MAX_CHUNK)
    with grpc.insecure_channel(hub.target) as channel:
        stub = pb_grpc.ModelExchangeStub(channel)
        requests = [
            pb.UploadRequest(start=pb.UploadStart(meta=meta_to_wire(meta))),
            pb.UploadRequest(chunk=payload.read_bytes()),
        ]
        with pytest.raises(grpc.RpcError) as info:
            stub.UploadUpdate(iter(requests), metadata=(("authorization", f"Bearer {hub.tokens['plant-a']}"),))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert hub.store.updates("r1") == []


def test_an_upload_waits_out_a_stale_stream_holding_its_partial(
    hub: Hub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 2 * MAX_CHUNK, seed=4)
    meta = meta_for("plant-a", "r1", payload)
    outcome: dict[str, Any] = {}
    with hub.store.partial_upload("r1", "plant-a"):  # as a half-dead earlier stream would
        uploader = threading.Thread(
            target=lambda: outcome.update(receipt=hub.plant("plant-a").upload_update(meta, payload))
        )
        uploader.start()
        wait_until(
            lambda: any("ABORTED" in r.getMessage() and "in progress" in r.getMessage() for r in caplog.records),
            what="the hub to answer ABORTED while the partial is held",
        )
    uploader.join(timeout=120)
    assert outcome["receipt"].digest == meta.sha256
    assert [u.digest for u in hub.store.updates("r1")] == [meta.sha256]


def test_a_corrupt_partial_on_the_hub_costs_one_full_resend_not_a_failure(hub: Hub, tmp_path: Path) -> None:
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 3 * MAX_CHUNK, seed=5)
    meta = meta_for("plant-a", "r1", payload)
    with hub.store.partial_upload("r1", "plant-a") as partial:  # bytes that rotted on the hub's disk
        partial.begin(meta.sha256, meta.total_bytes, 0)
        partial.append(b"\xff" * MAX_CHUNK)

    receipt = hub.plant("plant-a").upload_update(meta, payload)

    assert receipt.attempt_offsets == (MAX_CHUNK, 0)
    assert hub.store.blob_path(receipt.digest).read_bytes() == payload.read_bytes()


def test_a_plant_downloads_released_versions_and_those_of_its_own_rounds_only(hub: Hub, tmp_path: Path) -> None:
    """Never-promoted versions stay with the plants whose rounds start from them or produced them."""
    v1, _ = hub.seed()
    admin = hub.admin()
    hub.open_round("r1", plants=("plant-a",))
    candidate = admin.publish_model(
        "bearing-cnn", write_payload(tmp_path / "c.bin", 10_000, seed=4), parent=v1, round_id="r1"
    )
    other_base = admin.publish_model("bearing-cnn", write_payload(tmp_path / "b.bin", 10_000, seed=5), parent=v1)
    hub.open_round("r2", plants=("plant-c",), base_version=other_base.version)

    def download(plant: str, version: int | None) -> int:
        return hub.plant(plant).download_model("bearing-cnn", version, tmp_path / f"{plant}-{version}.bin").version

    assert download("plant-a", candidate.version) == candidate.version  # its round produced it
    assert download("plant-c", other_base.version) == other_base.version  # its round starts from it
    assert download("plant-b", None) == download("plant-b", v1) == v1  # the promoted version: every plant's
    for plant, version in (
        ("plant-b", candidate.version),
        ("plant-c", candidate.version),
        ("plant-a", other_base.version),
    ):
        denied = refused(grpc.StatusCode.PERMISSION_DENIED, download, plant, version)
        assert denied.details == (
            f"plant {plant!r} may not download version {version} of 'bearing-cnn': it was never promoted, "
            "and no round assigning the plant starts from it or produced it"
        )
        assert not (tmp_path / f"{plant}-{version}.bin").exists()
    admin.promote("bearing-cnn", candidate.version)
    admin.promote("bearing-cnn", v1)  # rolled back: what was released once stays downloadable
    assert download("plant-b", candidate.version) == candidate.version
    assert hub.store.released("bearing-cnn") == {v1, candidate.version}
