"""Chunk messages: read and written without protobuf in between, and sized for the hub at the other end."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.exchange import Hub, meta_for, write_payload

from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.exchange import server
from plantfed.exchange.transport import LEGACY_CHUNK, MAX_CHUNK, decode_chunk, encode_chunk, upload_chunk_size


@given(block=st.binary(max_size=1 << 12), size=st.sampled_from([0, 127, 128, 1 << 14, 1 << 20]))
def test_an_encoded_chunk_is_the_protobuf_message_and_reads_back(block: bytes, size: int) -> None:
    for payload in (block, block * (size // max(1, len(block)))):
        for message in (pb.UploadRequest, pb.PublishRequest):
            assert encode_chunk(payload) == message(chunk=payload).SerializeToString()
        view = decode_chunk(encode_chunk(payload))
        assert view is not None and bytes(view) == payload


@given(raw=st.one_of(st.binary(max_size=64), st.binary(max_size=60).map(lambda b: encode_chunk(b) + b[:3])))
def test_what_decode_chunk_reads_is_exactly_what_protobuf_reads(raw: bytes) -> None:
    view = decode_chunk(raw)
    if view is not None:
        parsed = pb.UploadRequest.FromString(raw)
        assert parsed.WhichOneof("msg") == "chunk" and parsed.chunk == bytes(view)


def test_a_hub_that_predates_max_chunk_bytes_gets_legacy_chunks() -> None:
    assert upload_chunk_size(0, MAX_CHUNK) == LEGACY_CHUNK
    assert upload_chunk_size(MAX_CHUNK, MAX_CHUNK) == MAX_CHUNK
    assert upload_chunk_size(MAX_CHUNK, 64 << 10) == 64 << 10


def test_a_client_uploads_in_the_chunks_the_hub_accepts(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_CHUNK", LEGACY_CHUNK)  # a hub that takes (and says it takes) 1 MiB chunks
    hub.seed()
    hub.open_round("r1")
    payload = write_payload(tmp_path / "u.safetensors", 3 * LEGACY_CHUNK + 5, seed=1)
    with grpc.insecure_channel(hub.target) as channel:
        status = pb_grpc.ModelExchangeStub(channel).GetUploadStatus(
            pb.UploadStatusRequest(round_id="r1"), metadata=(("authorization", f"Bearer {hub.tokens['plant-a']}"),)
        )
    assert status.max_chunk_bytes == LEGACY_CHUNK
    receipt = hub.plant("plant-a").upload_update(meta_for("plant-a", "r1", payload), payload)
    assert hub.store.blob_path(receipt.digest).read_bytes() == payload.read_bytes()
