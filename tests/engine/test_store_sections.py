"""The store's sections: the privacy ledger and the server optimiser's state live in the store and go through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plantfed.contract.naming import InvalidNameError
from plantfed.contract.records import Codec, DPMode, DPRelease, LedgerEntry, RoundRecord, UpdateMeta
from plantfed.engine.aggregation import StrategyConfig, UpdateInput, aggregate
from plantfed.engine.aggregation.server_optim import STATE_FILE
from plantfed.engine.privacy import PrivacyLedger
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.engine.store import LedgerError, ModelStore, NotFoundError
from plantfed.formats import codecs

MODEL = "press-line"
SHAPES = {"w": (6, 3), "b": (6,)}
RELEASE = DPRelease(mode=DPMode.LOCAL, noise_multiplier=1.0, clip_norm=1.0)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")


def test_the_ledger_is_a_store_section_written_only_when_changed(store: ModelStore) -> None:
    assert store.read_ledger(MODEL).plants == {}
    with store.editing_ledger(MODEL) as ledger:
        ledger.plants["plant-a"] = [LedgerEntry(round_id="r1", release=RELEASE)]
    path = store.root / "privacy" / f"{MODEL}.json"
    assert store.ledger_path(MODEL) == path
    assert json.loads(path.read_text())["plants"]["plant-a"][0]["round_id"] == "r1"
    written = path.stat().st_mtime_ns
    with store.editing_ledger(MODEL):
        pass
    assert path.stat().st_mtime_ns == written  # an edit that changed nothing rewrites nothing
    assert not [p for p in path.parent.iterdir() if p != path]  # atomic writes leave no temporary files


def test_a_failed_ledger_edit_changes_nothing(store: ModelStore) -> None:
    PrivacyLedger(store, MODEL).record("r1", "plant-a", RELEASE)
    with pytest.raises(RuntimeError), store.editing_ledger(MODEL) as ledger:
        ledger.plants["plant-b"] = [LedgerEntry(round_id="r1", release=RELEASE)]
        raise RuntimeError("the charge failed half way")
    assert PrivacyLedger(store, MODEL).plants() == ["plant-a"]


def test_a_ledger_opened_by_root_path_is_the_same_section(store: ModelStore) -> None:
    PrivacyLedger(store.root, MODEL).record("r1", "plant-a", RELEASE)
    assert PrivacyLedger(store, MODEL).rounds("plant-a") == ["r1"]


def test_a_corrupt_ledger_is_an_error_naming_the_file(store: ModelStore) -> None:
    store.ledger_path(MODEL).parent.mkdir(parents=True, exist_ok=True)
    store.ledger_path(MODEL).write_text('{"plants": {"plant-a": [{"round_id": 3}]}}')
    with pytest.raises(LedgerError, match=r"corrupt privacy ledger .*press-line\.json"):
        store.read_ledger(MODEL)
    with pytest.raises(LedgerError), store.editing_ledger(MODEL):
        pass
    assert "round_id" in store.ledger_path(MODEL).read_text()  # kept for a human to look at, never reset


def test_section_names_are_checked_like_every_store_name(store: ModelStore) -> None:
    for call in (
        lambda: store.ledger_path("../escape"),
        lambda: store.server_state_dir("../escape", 1),
        lambda: PrivacyLedger(store, "a/b"),
    ):
        with pytest.raises(InvalidNameError):
            call()


def _publish(store: ModelStore, tmp: Path, seed: int, parent: int | None = None, round_id: str | None = None) -> int:
    g = torch.Generator().manual_seed(seed)
    path = tmp / f"model-{seed}.safetensors"
    codecs.save_state({n: torch.randn(s, generator=g) for n, s in SHAPES.items()}, path)
    return store.publish_model(MODEL, store.import_file(path)[0], parent=parent, round_id=round_id).version


def test_server_state_is_staged_as_a_copy_and_kept_once_per_version(store: ModelStore, tmp_path: Path) -> None:
    v1 = _publish(store, tmp_path, 1)
    v2 = _publish(store, tmp_path, 2, parent=v1, round_id="r1")
    with store.scratch_dir() as scratch:
        staged = store.stage_server_state(MODEL, v1, scratch / "state")
        assert list(staged.iterdir()) == []  # no state before the first stateful round
        (staged / STATE_FILE).write_bytes(b"first")
        kept = store.keep_server_state(MODEL, v2, staged)
    assert not scratch.exists()
    assert kept == store.server_state_dir(MODEL, v2) == store.root / "server-state" / MODEL / f"after-v{v2}"
    with store.scratch_dir() as scratch:
        retry = store.stage_server_state(MODEL, v2, scratch / "state")
        (retry / STATE_FILE).write_bytes(b"second")  # the optimiser rewrites its copy ...
        assert (kept / STATE_FILE).read_bytes() == b"first"  # ... never the kept state
        store.keep_server_state(MODEL, v2, retry)
    assert (kept / STATE_FILE).read_bytes() == b"first"  # a retried aggregation does not replace it
    assert store.server_state_dir(MODEL, v1) is None
    with store.scratch_dir() as scratch, pytest.raises(NotFoundError, match="no version 9"):
        store.keep_server_state(MODEL, 9, store.stage_server_state(MODEL, v1, scratch / "state"))


def _round_with_updates(store: ModelStore, tmp: Path, round_id: str, base: int, seed: int) -> None:
    store.open_round(RoundRecord(round_id=round_id, model=MODEL, base_version=base, plants=["plant-a", "plant-b"]))
    g = torch.Generator().manual_seed(seed)
    for plant in ("plant-a", "plant-b"):
        path = tmp / f"{round_id}-{plant}.safetensors"
        delta = {n: 0.1 * torch.randn(s, generator=g) for n, s in SHAPES.items()}
        codecs.write_update(codecs.encode_delta(delta, Codec.NONE), path, Codec.NONE)
        digest, size = store.import_file(path)
        meta = UpdateMeta(
            plant=plant, round_id=round_id, base_version=base, num_samples=10, total_bytes=size, sha256=digest
        )
        store.commit_update(meta, digest)
    store.close_round(round_id)


def _inputs(store: ModelStore, round_id: str) -> list[UpdateInput]:
    return [
        UpdateInput(plant=u.meta.plant, path=store.blob_path(u.digest), num_samples=u.meta.num_samples)
        for u in store.updates(round_id)
    ]


def test_rounds_of_a_stateful_strategy_carry_the_optimiser_state_through_the_store(
    store: ModelStore, tmp_path: Path
) -> None:
    """FedAdam over two rounds from the store equals the engine run with one persistent state directory."""
    config = StrategyConfig(name="fedadam")
    v1 = _publish(store, tmp_path, 1)
    _round_with_updates(store, tmp_path, "r1", v1, seed=11)
    first = aggregate_round(store, "r1", config)
    _round_with_updates(store, tmp_path, "r2", first.version.version, seed=12)
    second = aggregate_round(store, "r2", config)
    assert first.result is not None and second.result is not None
    assert (first.result.server_step, second.result.server_step) == (1, 2)

    reference = tmp_path / "reference"
    reference.mkdir()
    base = store.blob_path(store.get_model(MODEL, v1).digest)
    for round_id in ("r1", "r2"):
        out = reference / f"{round_id}.safetensors"
        aggregate(base, _inputs(store, round_id), config, out, state_dir=reference / "state")
        base = out
    got = codecs.load_state(store.blob_path(second.version.digest))
    want = codecs.load_state(base)
    assert all(torch.equal(got[n], want[n]) for n in SHAPES)
    assert not list((store.root / "tmp").iterdir())  # scratch space is cleaned up


def test_a_store_written_before_the_sections_keeps_its_ledger_and_optimiser_state(tmp_path: Path) -> None:
    """The on-disk layout is unchanged: files at the old paths are picked up, not reset."""
    root = tmp_path / "store"
    store = ModelStore(root)
    v1 = _publish(store, tmp_path, 1)
    _round_with_updates(store, tmp_path, "r1", v1, seed=21)
    config = StrategyConfig(name="fedavgm")
    old_state = root / "server-state" / MODEL / f"after-v{v1}"
    base = store.blob_path(store.get_model(MODEL, v1).digest)
    aggregate(base, _inputs(store, "r1"), config, tmp_path / "warmup.safetensors", state_dir=old_state)
    (root / "privacy").mkdir()
    (root / "privacy" / f"{MODEL}.json").write_text(
        json.dumps({"plants": {"plant-a": [{"round_id": "r0", "release": RELEASE.model_dump(mode="json")}]}})
    )

    outcome = aggregate_round(ModelStore(root), "r1", config)

    assert outcome.result is not None and outcome.result.server_step == 2  # continued from the existing momentum
    assert PrivacyLedger(root, MODEL).rounds("plant-a") == ["r0"]
