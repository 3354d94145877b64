"""The store's retention: what a long campaign keeps, what it drops, and that a crash never loses a kept blob."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.exchange import ADMIN_TOKEN, FAST_RETRY, meta_for, wait_until, write_payload, write_token_book

from plantfed.contract.metrics import Metrics
from plantfed.contract.records import RoundRecord, UpdateMeta
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.fsck import fsck
from plantfed.engine.retention import RetentionPolicy, RoundView, StoreView, VersionView, finished_rounds, plan
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.engine.store import ModelStore, PrunedError
from plantfed.exchange import ExchangeError
from plantfed.exchange.auth import TokenBook
from plantfed.exchange.client import AdminClient, ExchangeClient
from plantfed.exchange.payload import PayloadCheck
from plantfed.exchange.server import build_server

PLANTS = ("a", "b", "c")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def campaign(store: ModelStore, rounds: int, *, reject: frozenset[int] = frozenset()) -> None:
    """`rounds` rounds as the operator runs them: open on the promoted version, every plant uploads, close,
    aggregate into a new version, promote it unless the round number is in `reject` (IfBetter said no)."""
    digest, _ = store.write_blob([b"initial weights"])
    store.publish_model("m", digest, promote=True)
    for n in range(1, rounds + 1):
        rid = f"r{n}"
        base = store.promoted_number("m")
        assert base is not None
        store.open_round(RoundRecord(round_id=rid, model="m", base_version=base, plants=list(PLANTS)))
        for plant in PLANTS:
            data = f"{rid} update from {plant}".encode()
            with store.partial_upload(rid, plant) as up:
                up.begin(sha(data), len(data), 0)
                up.append(data)
                up.finalize()
            store.commit_update(
                UpdateMeta(
                    plant=plant, round_id=rid, base_version=base, num_samples=1, total_bytes=len(data), sha256=sha(data)
                ),
                sha(data),
            )
        store.close_round(rid)
        version_digest, _ = store.write_blob([f"weights after {rid}".encode()])
        version = store.publish_model("m", version_digest, parent=base, round_id=rid)
        if n not in reject:
            store.promote("m", version.version)


def blobs(store: ModelStore) -> int:
    return sum(1 for p in (store.root / "blobs" / "sha256").rglob("*") if p.is_file())


# --- the rule, as a pure function -----------------------------------------------------------------------


def view(*, rounds: list[RoundView], versions: int, promoted: int, released: set[int] | None = None) -> StoreView:
    return StoreView(
        versions={"m": [VersionView(n, f"v{n}", f"r{n - 1}" if n > 1 else None) for n in range(1, versions + 1)]},
        promoted={"m": promoted},
        released={"m": released if released is not None else set(range(1, promoted + 1))},
        rounds=rounds,
    )


def rnd(n: int, *, closed: bool = True, base: int | None = None, digests: tuple[str, ...] = ()) -> RoundView:
    return RoundView(
        f"r{n}",
        "m",
        n if base is None else base,
        closed,
        float(n),
        float(n) + 0.5 if closed else None,
        frozenset(digests or (f"u{n}a", f"u{n}b")),
    )


def test_a_round_is_finished_once_promoted_or_superseded_never_while_open() -> None:
    # r1 promoted (v2 released), r2 rejected but r3 opened after it closed, r3 rejected and the newest, r4 open.
    v = view(rounds=[rnd(1), rnd(2), rnd(3), rnd(4, closed=False)], versions=4, promoted=2, released={1, 2})
    assert finished_rounds(v) == {"r1", "r2", "r3"}
    v = view(rounds=[rnd(1), rnd(2)], versions=3, promoted=2, released={1, 2})
    assert finished_rounds(v) == {"r1"}, "the newest round, rejected, waits for the next round to open"


def test_the_plan_keeps_promoted_in_use_and_newest_versions_and_shared_blobs() -> None:
    rounds = [rnd(n) for n in range(1, 8)] + [rnd(8, closed=False, base=3, digests=("u1a",))]
    v = view(rounds=rounds, versions=8, promoted=5)
    todo = plan(v, RetentionPolicy(keep_versions=2))
    # Kept: newest two (7, 8), the promoted (5) and the open round's base (3).
    assert todo.versions == {"m": {1, 2, 4, 6}}
    assert todo.rounds == {f"r{n}" for n in range(1, 8)}
    # r8 (open) committed the same bytes as r1's plant a: that blob stays.
    assert "u1a" not in todo.digests and "u1b" in todo.digests
    assert {"v1", "v2", "v4", "v6"} <= todo.digests and not {"v3", "v5", "v7", "v8"} & todo.digests


def test_pinned_versions_stay_and_a_second_plan_after_applying_is_empty() -> None:
    v = view(rounds=[rnd(n) for n in range(1, 6)], versions=6, promoted=6)
    pinned = StoreView(**{**v.__dict__, "pinned": {"m": {2}}})
    todo = plan(pinned, RetentionPolicy(keep_versions=1))
    assert todo.versions == {"m": {1, 3, 4, 5}}
    applied = StoreView(
        **{**pinned.__dict__, "pruned_versions": todo.versions, "pruned_rounds": frozenset(todo.rounds)}
    )
    assert plan(applied, RetentionPolicy(keep_versions=1)).settled


def test_keeping_updates_is_a_choice() -> None:
    v = view(rounds=[rnd(n) for n in range(1, 4)], versions=4, promoted=4)
    todo = plan(v, RetentionPolicy(keep_versions=10, prune_updates=False))
    assert todo.settled and not todo.digests


# --- on a real store ------------------------------------------------------------------------------------


def test_a_long_campaign_keeps_a_bounded_store_and_every_record(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    campaign(store, 12, reject=frozenset({5, 12}))
    assert blobs(store) == 1 + 12 * (len(PLANTS) + 1)
    run = store.apply_retention(RetentionPolicy(keep_versions=3))
    # Versions 11-13 stay (13, r12's, was rejected and is the newest; 12 is promoted), plus r12's updates: the
    # last round was rejected and no newer round decided it yet.
    assert store.pruned_versions("m") == set(range(1, 11))
    assert sorted(run.rounds) == sorted(f"r{n}" for n in range(1, 12))
    assert blobs(store) == 3 + len(PLANTS)
    assert run.bytes_freed > 0
    # Records are forever: the whole lineage and every update's metadata remain readable.
    assert [v.version for v in store.versions("m")] == list(range(1, 14))
    assert [len(store.updates(f"r{n}")) for n in range(1, 13)] == [len(PLANTS)] * 12
    assert fsck(store).findings == []
    assert store.apply_retention(RetentionPolicy(keep_versions=3)).blobs == 0

    with pytest.raises(PrunedError, match="version 4 was removed by the store's retention"):
        store.open_round(RoundRecord(round_id="again", model="m", base_version=4, plants=["a"]))
    with pytest.raises(PrunedError, match="version 4 was removed"):
        store.promote("m", 4)


def test_a_failed_round_is_finished_by_the_next_and_is_never_aggregated_after(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    campaign(store, 1)
    store.open_round(RoundRecord(round_id="failed", model="m", base_version=2, plants=["a"]))
    data = b"an update the round never aggregated (quorum not met)"
    with store.partial_upload("failed", "a") as up:
        up.begin(sha(data), len(data), 0)
        up.append(data)
        up.finalize()
    store.commit_update(
        UpdateMeta(
            plant="a", round_id="failed", base_version=2, num_samples=1, total_bytes=len(data), sha256=sha(data)
        ),
        sha(data),
    )
    store.close_round("failed")
    assert store.apply_retention(RetentionPolicy()).rounds == ["r1"], "a failed round waits for the next one"
    store.open_round(RoundRecord(round_id="retry", model="m", base_version=2, plants=["a"]))
    assert store.apply_retention(RetentionPolicy()).rounds == ["failed"]
    assert not store.has_blob(sha(data))
    with pytest.raises(PrunedError, match="round 'failed' is finished and the store's retention removed"):
        aggregate_round(store, "failed", StrategyConfig())


CRASHING_RETENTION = """
import os, signal, sys
from pathlib import Path
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.engine.retention import RetentionPolicy
from plantfed.engine.store import ModelStore

after = int(sys.argv[2])
unlink = Path.unlink

def dying_unlink(self, *args, **kwargs):
    global after
    if "blobs" in self.parts:
        if after == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        after -= 1
    return unlink(self, *args, **kwargs)

Path.unlink = dying_unlink
ModelStore(sys.argv[1]).apply_retention(RetentionPolicy(keep_versions=2))
"""


@pytest.mark.parametrize("deleted_before_the_kill", [0, 5])
def test_retention_killed_midway_loses_nothing_kept_and_a_rerun_finishes(
    tmp_path: Path, deleted_before_the_kill: int
) -> None:
    store = ModelStore(tmp_path / "store")
    campaign(store, 6)
    before = {v.version: v.digest for v in store.versions("m")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHING_RETENTION), str(store.root), str(deleted_before_the_kill)],
        env={**os.environ},
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    # Markers were written before any blob went: everything the store still references is there.
    assert store.pruned_versions("m") == {1, 2, 3, 4, 5}
    assert fsck(store).findings == []
    for number in (6, 7):
        assert store.has_blob(before[number])
    store.apply_retention(RetentionPolicy(keep_versions=2))
    assert blobs(store) == 2
    assert fsck(store).findings == []


def test_the_exchange_applies_retention_after_promotions_and_reports_the_store_size(
    tmp_path: Path, plant_tokens: dict[str, str]
) -> None:
    metrics = Metrics()
    book = TokenBook(write_token_book(tmp_path / "tokens.txt", plant_tokens), reload_seconds=0)
    server, port = build_server(
        ModelStore(tmp_path / "store"),
        book,
        admin_token=ADMIN_TOKEN,
        metrics=metrics,
        payload_check=PayloadCheck.FORMAT,
        retention=RetentionPolicy(keep_versions=1),
    )
    server.start()
    target = f"127.0.0.1:{port}"
    store = ModelStore(tmp_path / "store")
    try:
        admin = AdminClient(target, ADMIN_TOKEN, retry=FAST_RETRY)
        plant = ExchangeClient(target, plant_tokens["plant-a"], retry=FAST_RETRY)
        admin.publish_model("m", write_payload(tmp_path / "seed.safetensors", 40_000), promote=True)
        for n in (1, 2):
            admin.open_round(RoundRecord(round_id=f"r{n}", model="m", base_version=n, plants=["plant-a"]))
            payload = write_payload(tmp_path / f"u{n}.safetensors", 40_000, seed=n)
            plant.upload_update(meta_for("plant-a", f"r{n}", payload, base_version=n), payload)
            admin.close_round(f"r{n}")
            aggregate = write_payload(tmp_path / f"v{n + 1}.safetensors", 40_000, seed=10 + n)
            admin.publish_model("m", aggregate, parent=n, round_id=f"r{n}")
            admin.promote("m", n + 1)
        registry = metrics.registry
        wait_until(
            lambda: store.pruned_versions("m") == {1, 2} and store.round_pruned("r2"),
            what="the retention after the last promotion",
        )
        current = tmp_path / "current.safetensors"
        plant.download_model("m", None, current)
        wait_until(
            lambda: registry.get_sample_value("plantfed_store_bytes", {"part": "blobs"}) == current.stat().st_size,
            what="the store size after the retention: the promoted version's blob alone",
        )
        assert (registry.get_sample_value("plantfed_store_pruned_bytes_total") or 0) > 0
        with pytest.raises(ExchangeError, match="version 1 was removed by the store's retention") as err:
            plant.download_model("m", 1, tmp_path / "old.safetensors")
        assert err.value.code.name == "NOT_FOUND"
    finally:
        server.stop(None).wait()
