"""Issue 20, item 4: the store's disk is not the attacker's.

An upload is admitted only if its remaining declared bytes fit the store's free space (less what uploads in
progress are still owed and a reserve) and its plant's unfinished uploads stay within a per-plant limit; a refusal
is RESOURCE_EXHAUSTED with the reason (clients retry it) and leaves nothing behind. A closed round's partial
uploads are freed, including one whose stream was still open when the round closed.

The free-space limit is set against the real filesystem's free space at the start of each test, so "the store
is nearly full" holds without a small filesystem or any mock.
"""

from __future__ import annotations

import errno
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.exchange import Hub, running_hub, wait_until
from support.updates import MODEL, base_state, raw_upload, update_meta, upload_start, write_good_update

from plantfed.contract.records import RoundRecord, RoundState
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.store import BusyError
from plantfed.exchange import ExchangeError, RetryPolicy
from plantfed.exchange.limits import ServerLimits
from plantfed.exchange.status import describe, status_for
from plantfed.formats import codecs

ROOM = 64 << 20
"""What the nearly full store leaves for uploads: far more than the small updates here, far less than 3 GiB."""


def _hub(tmp: Path, tokens: dict[str, str], **limits: int) -> Iterator[Hub]:
    with running_hub(tmp, tokens, limits=ServerLimits(**limits)) as hub:
        base = tmp / "base.safetensors"
        codecs.save_state(base_state(), base)
        hub.admin().publish_model(MODEL, base, promote=True)
        hub.open_round("r1", ("plant-a", "plant-b"), model=MODEL)
        hub.open_round("r2", ("plant-a", "plant-b"), model=MODEL)
        yield hub


@pytest.fixture
def nearly_full(tmp_path: Path, plant_tokens: dict[str, str]) -> Iterator[Hub]:
    reserve = max(0, shutil.disk_usage(tmp_path).free - ROOM)
    yield from _hub(tmp_path, plant_tokens, store_reserve_bytes=reserve)


def _partials(hub: Hub, round_id: str) -> list[Path]:
    pdir = hub.store.root / "rounds" / round_id / "partial"
    return sorted(pdir.iterdir()) if pdir.is_dir() else []


def test_an_upload_that_cannot_fit_is_refused_before_any_byte(nearly_full: Hub) -> None:
    path = write_good_update(nearly_full.tmp / "a.safetensors")
    start = upload_start(update_meta("plant-a", "r1", path))
    start.meta.total_bytes = 3 << 30
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(nearly_full, nearly_full.tokens["plant-a"], start, [path.read_bytes()[:100]])
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"needs {3 << 30} more bytes" in (info.value.details() or "")
    assert "store_reserve_bytes" in (info.value.details() or "")
    assert _partials(nearly_full, "r1") == []

    # What fits is still accepted: honest plants are not locked out by the refused one.
    for plant in ("plant-a", "plant-b"):
        good = write_good_update(nearly_full.tmp / f"{plant}.safetensors", seed=len(plant))
        nearly_full.plant(plant).upload_update(update_meta(plant, "r1", good), good)
    assert {u.meta.plant for u in nearly_full.store.updates("r1")} == {"plant-a", "plant-b"}


def test_a_plant_holds_at_most_its_limit_of_unfinished_uploads_and_closing_frees_them(
    tmp_path: Path, plant_tokens: dict[str, str]
) -> None:
    path = write_good_update(tmp_path / "a.safetensors")
    size = path.stat().st_size
    for hub in _hub(tmp_path, plant_tokens, plant_partial_bytes=size + size // 4):
        half = path.read_bytes()[: size // 2]
        with pytest.raises(grpc.RpcError) as cut:
            raw_upload(hub, hub.tokens["plant-a"], upload_start(update_meta("plant-a", "r1", path)), [half])
        assert cut.value.code() is grpc.StatusCode.OUT_OF_RANGE  # incomplete: held for resume
        assert hub.store.partial_bytes("plant-a") == len(half)

        start = upload_start(update_meta("plant-a", "r2", path))
        with pytest.raises(grpc.RpcError) as refused:
            raw_upload(hub, hub.tokens["plant-a"], start, [path.read_bytes()])
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "plant 'plant-a' would hold" in (refused.value.details() or "")
        assert "plant_partial_bytes" in (refused.value.details() or "")
        other = write_good_update(tmp_path / "b.safetensors", seed=2)
        hub.plant("plant-b").upload_update(update_meta("plant-b", "r2", other), other)  # another plant is not held

        hub.admin().close_round("r1")
        assert _partials(hub, "r1") == []
        raw_upload(hub, hub.tokens["plant-a"], start, [path.read_bytes()])
        assert {u.meta.plant for u in hub.store.updates("r2")} == {"plant-a", "plant-b"}


def test_a_partial_still_streaming_when_its_round_closes_is_freed_when_the_stream_ends(nearly_full: Hub) -> None:
    path = write_good_update(nearly_full.tmp / "a.safetensors")
    data = path.read_bytes()
    release = threading.Event()

    def messages() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(start=upload_start(update_meta("plant-a", "r1", path)))
        yield pb.UploadRequest(chunk=data[: len(data) // 2])
        release.wait(60)

    outcome: list[grpc.RpcError] = []

    def stream() -> None:
        metadata = (("authorization", f"Bearer {nearly_full.tokens['plant-a']}"),)
        with grpc.insecure_channel(nearly_full.target) as channel:
            try:
                pb_grpc.ModelExchangeStub(channel).UploadUpdate(messages(), metadata=metadata, timeout=120)
            except grpc.RpcError as err:
                outcome.append(err)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        wait_until(lambda: _receiving(nearly_full), what="plant-a's stream to hold its upload")
        nearly_full.admin().close_round("r1")
        assert _partials(nearly_full, "r1") != []  # busy: its stream still holds it
    finally:
        release.set()
        thread.join()
    assert outcome and outcome[0].code() is not grpc.StatusCode.OK
    assert _partials(nearly_full, "r1") == []


def _receiving(hub: Hub) -> bool:
    """Whether a stream holds plant-a's upload to r1 (its lock is taken)."""
    try:
        with hub.store.partial_upload("r1", "plant-a"):
            return False
    except BusyError:
        return True


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_resource_exhausted_with_a_clear_message(code: int) -> None:
    exc = OSError(code, "No space left on device")
    assert status_for(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the hub's store is full" in describe(exc)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 48 MiB filesystem (tmpfs; mounting needs root, as CI and the fake nodes have)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.fail("this test mounts a 48 MiB tmpfs and needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path) -> Path:
    """Fill `disk` to the last byte (what some other writer on the volume did), leaving the hub no room at all."""
    import os

    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = 1 << 20
        while block:
            try:
                os.write(fd, b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                block //= 2
    finally:
        os.close(fd)
    return filler


def test_on_a_full_disk_honest_calls_are_resource_exhausted_and_closing_a_round_frees_its_partials(
    small_disk: Path, plant_tokens: dict[str, str]
) -> None:
    path = write_good_update(small_disk / "a.safetensors")
    data = path.read_bytes()
    for hub in _hub(small_disk, plant_tokens, store_reserve_bytes=0):
        with pytest.raises(grpc.RpcError) as cut:
            raw_upload(hub, hub.tokens["plant-a"], upload_start(update_meta("plant-a", "r1", path)), [data[:-1024]])
        assert cut.value.code() is grpc.StatusCode.OUT_OF_RANGE  # held for resume
        assert _partials(hub, "r1") != []
        filler = _fill(small_disk)

        with pytest.raises(grpc.RpcError) as full:
            raw_upload(hub, hub.tokens["plant-b"], upload_start(update_meta("plant-b", "r2", path)), [data])
        assert full.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, full.value.details()
        assert "cannot take this upload now" in (full.value.details() or ""), full.value.details()

        impatient = hub.admin(retry=RetryPolicy(max_attempts=1, busy_patience=0))  # clients wait this out
        with pytest.raises(ExchangeError, match="RESOURCE_EXHAUSTED"):
            impatient.open_round(RoundRecord(round_id="r3", model=MODEL, base_version=1, plants=["plant-a"]))

        hub.admin().close_round("r1")  # frees the partial first, so its own record fits
        assert _partials(hub, "r1") == []
        assert hub.store.get_round("r1").state is RoundState.CLOSED

        filler.unlink()
        hub.plant("plant-b").upload_update(update_meta("plant-b", "r2", path), path)
        assert {u.meta.plant for u in hub.store.updates("r2")} == {"plant-b"}
