"""Issue 20, item 3: a damaged store is reported by name, never served or aggregated as if it were fine.

Each test damages a real store behind a running exchange the way a flipped bit, a lost file or a hand edit
would, then checks what plants, the admin and aggregation see (a clear error naming the round, plant, model or
file) and that `plantfed store fsck` finds it (exit 1), while an intact store passes (exit 0).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from support.exchange import Hub
from support.updates import MODEL, update_meta, write_good_update

from plantfed.cli import main
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.round_aggregation import aggregate_round
from plantfed.engine.store import CorruptStoreError
from plantfed.exchange import ExchangeError


@pytest.fixture
def uploaded(strict_hub: Hub) -> dict[str, str]:
    """plant-a's and plant-b's updates committed to r1; returns plant -> digest."""
    digests = {}
    for seed, plant in enumerate(("plant-a", "plant-b"), start=1):
        path = write_good_update(strict_hub.tmp / f"{plant}.safetensors", seed=seed)
        digests[plant] = strict_hub.plant(plant).upload_update(update_meta(plant, "r1", path), path).digest
    return digests


def fsck(hub: Hub, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["store", "fsck", "--store", str(hub.store.root)])
    out = capsys.readouterr()
    return code, out.out + out.err


def flip_a_bit(path: Path, at: int = -10) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def admin_error(call: Callable[[], object]) -> ExchangeError:
    with pytest.raises(ExchangeError) as info:
        call()
    return info.value


def test_an_intact_store_passes_fsck(
    strict_hub: Hub, uploaded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    aggregate_round(strict_hub.store, "r1", StrategyConfig())
    code, out = fsck(strict_hub, capsys)
    assert code == 0, out
    assert "no problems found" in out


def test_a_flipped_bit_in_a_committed_update_stops_aggregation_naming_it(
    strict_hub: Hub, uploaded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    blob = strict_hub.store.blob_path(uploaded["plant-a"])
    flip_a_bit(blob)

    with pytest.raises(CorruptStoreError) as info:
        aggregate_round(strict_hub.store, "r1", StrategyConfig())
    assert "round 'r1'" in str(info.value) and "'plant-a'" in str(info.value) and str(blob) in str(info.value)
    assert strict_hub.store.versions(MODEL)[-1].version == 1  # nothing was published

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and f"{uploaded['plant-a']}: corrupt blob" in out


def test_a_deleted_committed_update_record_is_reported(
    strict_hub: Hub, uploaded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    (strict_hub.store.root / "rounds" / "r1" / "updates" / "plant-a.json").unlink()

    err = admin_error(lambda: strict_hub.admin().list_updates("r1"))
    assert err.code is grpc.StatusCode.INTERNAL
    assert "plant 'plant-a'" in err.details and "plant-a.json is missing" in err.details
    with pytest.raises(CorruptStoreError, match="plant-a.json is missing"):
        aggregate_round(strict_hub.store, "r1", StrategyConfig())

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and "plant-a.json is missing" in out


def test_an_update_record_claiming_another_plants_digest_is_reported(
    strict_hub: Hub, uploaded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = strict_hub.store.root / "rounds" / "r1" / "updates" / "plant-a.json"
    record = json.loads(path.read_text())
    record["digest"] = record["meta"]["sha256"] = uploaded["plant-b"]
    path.write_text(json.dumps(record))

    err = admin_error(lambda: strict_hub.admin().list_updates("r1"))
    assert err.code is grpc.StatusCode.INTERNAL
    assert (
        f"plant 'plant-a''s update record names blob {uploaded['plant-b']}, but the round committed "
        f"{uploaded['plant-a']}" in err.details
    )
    with pytest.raises(CorruptStoreError, match="but the round committed"):
        aggregate_round(strict_hub.store, "r1", StrategyConfig())

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and f"the round committed {uploaded['plant-a']}" in out


def test_a_truncated_round_record_is_a_clear_hub_side_error(
    strict_hub: Hub, uploaded: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = strict_hub.store.root / "rounds" / "r1" / "round.json"
    path.write_bytes(path.read_bytes()[:40])

    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").get_round("r1")
    assert info.value.code is grpc.StatusCode.INTERNAL
    assert "the hub's store is corrupt" in info.value.details and "rounds/r1/round.json" in info.value.details

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and "rounds/r1/round.json" in out


def test_a_version_pointing_at_a_missing_blob_is_reported_not_served(
    strict_hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    path = strict_hub.store.root / "models" / MODEL / "versions" / "1.json"
    record = json.loads(path.read_text())
    record["digest"] = "0" * 64
    path.write_text(json.dumps(record))

    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").download_model(MODEL, 1, strict_hub.tmp / "got.safetensors")
    assert info.value.code is grpc.StatusCode.INTERNAL
    assert f"model '{MODEL}' version 1 points at blob {'0' * 64}, which is missing" in info.value.details

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and "which is missing" in out


def test_a_flipped_bit_in_a_model_is_never_served(strict_hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    version = strict_hub.store.get_model(MODEL, 1)
    flip_a_bit(strict_hub.store.blob_path(version.digest))
    dest = strict_hub.tmp / "got.safetensors"

    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").download_model(MODEL, 1, dest)
    assert info.value.code is grpc.StatusCode.INTERNAL
    assert f"model '{MODEL}' version 1" in info.value.details and "is corrupt" in info.value.details
    assert not dest.exists()

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and "corrupt blob" in out


def test_a_garbage_promoted_pointer_is_a_clear_hub_side_error(
    strict_hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    (strict_hub.store.root / "models" / MODEL / "promoted.json").write_text("{garbage")

    with pytest.raises(ExchangeError) as info:
        strict_hub.plant("plant-a").download_model(MODEL, None, strict_hub.tmp / "got.safetensors")
    assert info.value.code is grpc.StatusCode.INTERNAL
    assert "the hub's store is corrupt" in info.value.details
    assert f"model '{MODEL}': corrupt promoted pointer" in info.value.details

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and "promoted.json" in out


def test_a_directory_no_round_can_be_named_does_not_hide_the_open_rounds(
    strict_hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    (strict_hub.store.root / "rounds" / "R_1").mkdir()

    assert strict_hub.plant("plant-a").get_round().round_id == "r1"

    code, out = fsck(strict_hub, capsys)
    assert code == 1 and "invalid round name 'R_1'" in out
