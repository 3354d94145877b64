"""The default update check judges an upload's values while its bytes arrive (the hub never reads it back).

A bad value anywhere is still refused before anything is committed, naming the tensor: in the last chunk of a
multi-chunk upload, and in the part of a resumed upload that an earlier stream delivered.
"""

from __future__ import annotations

import grpc
import pytest
import torch
from support.exchange import Hub
from support.updates import raw_upload, update_meta, upload_start, write_raw_update

from plantfed.exchange import ExchangeError
from plantfed.exchange.transport import MAX_CHUNK
from plantfed.formats import codecs

BIG = (3 * MAX_CHUNK) // 4  # float32 elements: the update spans four chunks


@pytest.fixture
def big_hub(strict_hub: Hub) -> Hub:
    """`strict_hub` plus model "big" (a small tensor, then a 12 MiB one) and its round "big-r1" for plant-a."""
    base = strict_hub.tmp / "big-base.safetensors"
    codecs.save_state({"first": torch.zeros(1000), "last": torch.zeros(BIG)}, base)
    strict_hub.admin().publish_model("big", base, promote=True)
    strict_hub.open_round("big-r1", ("plant-a",), model="big")
    return strict_hub


def _delta(*, first: float = 1e-3, last_element: float = 1e-3) -> dict[str, torch.Tensor]:
    first_values = torch.full((1000,), 1e-3)
    first_values[0] = first
    last_values = torch.full((BIG,), 1e-3)
    last_values[-1] = last_element
    return {"first": first_values, "last": last_values}


def _refused_and_nothing_kept(hub: Hub, err: ExchangeError, tensor: str, sha256: str) -> None:
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"tensor {tensor!r} contains NaN" in err.details and "round 'big-r1'" in err.details
    assert hub.store.updates("big-r1") == []
    assert hub.store.partial_offset("big-r1", "plant-a", sha256) == 0  # the refused bytes are not kept either


def test_a_nan_in_the_last_chunk_of_a_big_upload_is_refused_naming_the_tensor(big_hub: Hub) -> None:
    path = write_raw_update(big_hub.tmp / "u.safetensors", _delta(last_element=float("nan")))
    assert path.stat().st_size > 3 * MAX_CHUNK
    meta = update_meta("plant-a", "big-r1", path)
    with pytest.raises(ExchangeError) as info:
        big_hub.plant("plant-a").upload_update(meta, path)
    _refused_and_nothing_kept(big_hub, info.value, "last", meta.sha256)
    good = write_raw_update(big_hub.tmp / "good.safetensors", _delta())
    assert not big_hub.plant("plant-a").upload_update(update_meta("plant-a", "big-r1", good), good).duplicate


def test_a_nan_in_the_part_received_before_a_resume_is_refused(big_hub: Hub) -> None:
    path = write_raw_update(big_hub.tmp / "u.safetensors", _delta(first=float("nan")))
    meta = update_meta("plant-a", "big-r1", path)
    data = path.read_bytes()
    half = len(data) // 2
    with pytest.raises(grpc.RpcError) as cut:  # an earlier stream delivered the NaN, then ended
        chunks = [data[at : min(at + MAX_CHUNK, half)] for at in range(0, half, MAX_CHUNK)]
        raw_upload(big_hub, big_hub.tokens["plant-a"], upload_start(meta), chunks)
    assert "upload incomplete" in cut.value.details()
    assert big_hub.store.partial_offset("big-r1", "plant-a", meta.sha256) == half

    progress: list[int] = []
    with pytest.raises(ExchangeError) as info:
        big_hub.plant("plant-a").upload_update(meta, path, progress=lambda done, _total: progress.append(done))
    assert progress and min(progress) > half  # the client sent only the rest
    _refused_and_nothing_kept(big_hub, info.value, "first", meta.sha256)
