"""The hub's model store: durable, content-addressed, safe under concurrent writers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.exchange import wait_until

from plantfed.contract.records import RoundRecord, RoundState, UpdateMeta
from plantfed.engine.store import (
    BaseMismatchError,
    BusyError,
    ChecksumError,
    ConflictError,
    InvalidNameError,
    ModelStore,
    NotAssignedError,
    NotFoundError,
    OffsetError,
    RoundClosedError,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta(plant: str, data: bytes, round_id: str = "r1", base: int = 1) -> UpdateMeta:
    return UpdateMeta(
        plant=plant, round_id=round_id, base_version=base, num_samples=10, total_bytes=len(data), sha256=sha(data)
    )


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def seeded(store: ModelStore, plants: tuple[str, ...] = ("a", "b")) -> None:
    digest, _ = store.write_blob([b"initial weights"])
    store.publish_model("m", digest, promote=True)
    store.open_round(RoundRecord(round_id="r1", model="m", base_version=1, plants=list(plants)))


def upload(store: ModelStore, plant: str, data: bytes, round_id: str = "r1") -> str:
    with store.partial_upload(round_id, plant) as up:
        up.begin(sha(data), len(data), 0)
        up.append(data)
        digest, *_ = up.finalize()
    return digest


def test_blobs_are_content_addressed_and_read_only(store: ModelStore, tmp_path: Path) -> None:
    digest, size = store.write_blob([b"abc", b"def"])
    assert (digest, size) == (sha(b"abcdef"), 6)
    path = store.blob_path(digest)
    assert path == store.root / "blobs" / "sha256" / digest[:2] / digest
    assert path.read_bytes() == b"abcdef" and not path.stat().st_mode & 0o222
    src = tmp_path / "f.bin"
    src.write_bytes(b"abcdef")
    assert store.import_file(src) == (digest, 6) and src.exists()
    assert list((store.root / "tmp").iterdir()) == []


def test_a_blob_failing_its_declared_checksum_never_appears(store: ModelStore) -> None:
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        store.write_blob([b"payload"], expect_sha256="0" * 64)
    with pytest.raises(ChecksumError, match="size mismatch"):
        store.write_blob([b"payload"], expect_size=99)
    with pytest.raises(OffsetError, match="more than the declared"):
        store.write_blob([b"payload"], expect_size=3)
    assert not store.has_blob(sha(b"payload"))
    assert list((store.root / "tmp").iterdir()) == []


def test_versions_have_lineage_and_one_promoted_pointer(store: ModelStore) -> None:
    d1, _ = store.write_blob([b"v1"])
    d2, _ = store.write_blob([b"v2"])
    v1 = store.publish_model("m", d1, promote=True)
    v2 = store.publish_model("m", d2, parent=1, round_id="r1", metrics={"acc": 0.5})
    assert (v1.version, v2.version, v2.parent, v2.round_id, v2.size) == (1, 2, 1, "r1", 2)
    assert store.promoted("m").version == 1 and not store.get_model("m", 2).promoted
    store.promote("m", 2)
    assert store.get_model("m").version == 2
    assert [(v.version, v.promoted) for v in store.versions("m")] == [(1, False), (2, True)]
    assert store.publish_model("m", d2, parent=1, round_id="r1").version == 2  # idempotent
    with pytest.raises(NotFoundError, match="parent version 9"):
        store.publish_model("m", d2, parent=9)
    with pytest.raises(NotFoundError, match="no promoted version"):
        store.get_model("other")
    with pytest.raises(NotFoundError, match="not in the store"):
        store.publish_model("m", "f" * 64)


def test_everything_survives_a_restart(store: ModelStore) -> None:
    seeded(store)
    data = b"update from a" * 1000
    upload_digest = upload(store, "a", data)
    store.commit_update(meta("a", data), upload_digest, bytes_received=len(data), upload_seconds=1.5)
    partial_data = b"half of b's update"
    with store.partial_upload("r1", "b") as up:
        up.begin(sha(partial_data * 2), len(partial_data) * 2, 0)
        up.append(partial_data)

    reopened = ModelStore(store.root)

    assert reopened.promoted("m").version == 1
    assert reopened.get_round("r1").state is RoundState.OPEN and reopened.get_round("r1").opened_at
    [record] = reopened.updates("r1")
    assert (record.meta, record.digest, record.bytes_received) == (meta("a", data), upload_digest, len(data))
    assert reopened.partial_offset("r1", "b", sha(partial_data * 2)) == len(partial_data)
    assert reopened.partial_offset("r1", "b", sha(b"some other payload")) == 0


def test_partial_upload_resumes_and_counts_every_byte_written(store: ModelStore) -> None:
    seeded(store)
    data = bytes(range(256)) * 64
    digest = sha(data)
    with store.partial_upload("r1", "a") as up:
        up.begin(digest, len(data), 0)
        up.append(data[:5000])
    with store.partial_upload("r1", "a") as up:
        with pytest.raises(OffsetError, match="beyond the 5000 bytes held"):
            up.begin(digest, len(data), 5001)
        up.begin(digest, len(data), 4000)  # re-sends 1000 bytes
        up.append(data[4000:])
        got, size, received, seconds = up.finalize()
    assert (got, size, received) == (digest, len(data), len(data) + 1000) and seconds >= 0
    assert store.blob_path(digest).read_bytes() == data
    assert store.partial_offset("r1", "a", digest) == 0


def test_a_different_payload_restarts_the_partial(store: ModelStore) -> None:
    seeded(store)
    with store.partial_upload("r1", "a") as up:
        up.begin(sha(b"x" * 100), 100, 0)
        up.append(b"x" * 60)
    with store.partial_upload("r1", "a") as up:
        with pytest.raises(OffsetError):
            up.begin(sha(b"y" * 100), 100, 60)
        up.begin(sha(b"y" * 100), 100, 0)
        up.append(b"y" * 100)
        assert up.finalize()[0] == sha(b"y" * 100)


def test_corrupt_or_oversized_partials_are_discarded(store: ModelStore) -> None:
    seeded(store)
    with store.partial_upload("r1", "a") as up:
        up.begin(sha(b"good"), 4, 0)
        up.append(b"evil")
        with pytest.raises(ChecksumError):
            up.finalize()
    assert store.partial_offset("r1", "a", sha(b"good")) == 0 and not store.has_blob(sha(b"evil"))
    with store.partial_upload("r1", "a") as up:
        up.begin(sha(b"good"), 4, 0)
        with pytest.raises(OffsetError, match="more than the declared 4"):
            up.append(b"good!")
    assert store.partial_offset("r1", "a", sha(b"good")) == 0


def test_one_writer_per_partial_upload(store: ModelStore) -> None:
    seeded(store)
    with store.partial_upload("r1", "a"):
        with pytest.raises(BusyError), store.partial_upload("r1", "a"):
            pass
        with store.partial_upload("r1", "b"):
            pass


def test_commit_is_idempotent_and_guarded_by_the_round(store: ModelStore) -> None:
    seeded(store, plants=("a", "b"))
    data = b"a's update"
    digest = upload(store, "a", data)
    record, duplicate = store.commit_update(meta("a", data), digest)
    assert not duplicate
    assert store.commit_update(meta("a", data), digest) == (record, True)
    other = upload(store, "a", b"another")
    with pytest.raises(ConflictError, match="already committed"):
        store.commit_update(meta("a", b"another"), other)
    with pytest.raises(NotAssignedError):
        store.commit_update(meta("c", b"another"), other)
    with pytest.raises(BaseMismatchError, match="base version 5"):
        store.commit_update(meta("b", b"another", base=5), other)

    store.close_round("r1")
    with pytest.raises(RoundClosedError):
        store.commit_update(meta("b", b"another"), other)
    assert [u.meta.plant for u in store.updates("r1")] == ["a"]
    assert store.close_round("r1").state is RoundState.CLOSED


def test_closing_a_round_drops_idle_partials(store: ModelStore) -> None:
    seeded(store)
    with store.partial_upload("r1", "a") as up:
        up.begin(sha(b"x" * 10), 10, 0)
        up.append(b"x" * 5)
    store.close_round("r1")
    assert list((store.root / "rounds" / "r1" / "partial").iterdir()) == []


def test_rounds_validate_their_settings(store: ModelStore) -> None:
    with pytest.raises(NotFoundError, match="no version 1"):
        store.open_round(RoundRecord(round_id="r1", model="m", base_version=1, plants=["a"]))
    seeded(store)
    with pytest.raises(InvalidNameError, match="more than once"):
        store.open_round(RoundRecord(round_id="r2", model="m", base_version=1, plants=["a", "a"]))
    with pytest.raises(ConflictError):
        store.open_round(RoundRecord(round_id="r1", model="m", base_version=1, plants=["a"]))
    with pytest.raises(NotFoundError, match="unknown round"):
        store.get_round("nope")
    assert [r.round_id for r in store.rounds()] == ["r1"]


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "-lead", "x" * 300, "spa ce"])
def test_unsafe_names_are_refused(store: ModelStore, name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid model name"):
        store.versions(name)


def test_a_corrupt_record_is_reported_by_path(store: ModelStore) -> None:
    seeded(store)
    (store.root / "rounds" / "r1" / "round.json").write_text("{not json")
    with pytest.raises(Exception, match=r"corrupt store record .*round.json"):
        store.get_round("r1")


def test_concurrent_threads_never_share_a_version(store: ModelStore) -> None:
    digests = [store.write_blob([f"blob {i}".encode()])[0] for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda d: store.publish_model("m", d).version, digests))
    assert sorted(versions) == list(range(1, 25))


_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from plantfed.engine.store import ModelStore
    root, tag, go, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    store = ModelStore(root)
    digests = [store.write_blob([f"{tag}-{i}".encode()])[0] for i in range(count)]
    Path(root, f"ready-{tag}").touch()
    while not go.exists():
        time.sleep(0.001)
    print(json.dumps({d: store.publish_model("m", d).version for d in digests}))
    """
)


def test_two_processes_allocating_versions_never_collide(store: ModelStore, tmp_path: Path) -> None:
    go = tmp_path / "go"
    count = 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(store.root), tag, str(go), str(count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    wait_until(lambda: all((store.root / f"ready-{t}").exists() for t in ("p1", "p2")), what="writers ready")
    go.touch()
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    allocated = {**results[0], **results[1]}
    assert sorted(allocated.values()) == list(range(1, 2 * count + 1))
    assert {v.version: v.digest for v in store.versions("m")} == {n: d for d, n in allocated.items()}
