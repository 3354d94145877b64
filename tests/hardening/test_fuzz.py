"""Bounded fuzzing of the exchange's upload handling and of the update validator (hypothesis).

Invariants: the server never crashes and answers every call with a receipt or a gRPC status other than
INTERNAL/UNKNOWN; whatever it committed verifies (sha256 and the full check against the base model); the
validator refuses any byte string with PayloadError and nothing else.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.exchange import Hub
from support.updates import MODEL, base_state, write_good_update

from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.store import file_sha256
from plantfed.formats import codecs
from plantfed.formats.scan import ValueScan

FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _mutations(good: bytes) -> st.SearchStrategy[bytes]:
    """The good payload, cut, extended, bit-flipped (header and body), or random bytes."""
    flip = st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
        lambda t: good[: t[0]] + bytes([good[t[0]] ^ t[1]]) + good[t[0] + 1 :]
    )
    header_end = 8 + int.from_bytes(good[:8], "little")
    header_flip = st.tuples(st.integers(0, header_end - 1), st.integers(1, 255)).map(
        lambda t: good[: t[0]] + bytes([good[t[0]] ^ t[1]]) + good[t[0] + 1 :]
    )
    # Same-length edits of the JSON header: plausible-looking lies about dtypes, shapes, names and the codec.
    edits = [
        (b'"F32"', b'"F16"'),
        (b'"F32"', b'"I32"'),
        (b'"I64"', b'"F64"'),
        (b"[4]", b"[5]"),
        (b"[4,2,3]", b"[4,3,2]"),
        (b"conv.bias", b"conv.bia_"),
        (b'"none"', b'"int8"'),
        (b'"update"', b'"state!"'),
    ]
    header_edit = st.sets(st.sampled_from(edits), min_size=1).map(lambda chosen: _apply_edits(good, header_end, chosen))
    return st.one_of(
        st.just(good),
        st.integers(0, len(good) - 1).map(lambda n: good[:n]),
        st.binary(max_size=64).map(lambda extra: good + extra),
        flip,
        header_flip,
        header_edit,
        st.binary(max_size=2048),
    )


def _apply_edits(good: bytes, header_end: int, edits: set[tuple[bytes, bytes]]) -> bytes:
    header = good[:header_end]
    for old, new in sorted(edits):
        header = header.replace(old, new, 1)
    return header + good[header_end:]


def _chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    if at < len(data):
        out.append(data[at:])
    return out


@pytest.fixture
def good_bytes(tmp_path: Path) -> bytes:
    return write_good_update(tmp_path / "good.safetensors").read_bytes()


def _assert_committed_updates_verify(hub: Hub) -> None:
    base = hub.store.blob_path(hub.store.get_model(MODEL, 1).digest)
    for round_record in hub.store.rounds():
        for update in hub.store.updates(round_record.round_id):
            blob = hub.store.blob_path(update.digest)
            assert file_sha256(blob).hexdigest() == update.digest == update.meta.sha256
            codecs.validate_update(blob, base, update.meta.codec, partial=update.meta.partial)


def test_random_upload_streams_never_crash_or_commit_garbage(strict_hub: Hub, good_bytes: bytes) -> None:
    strict_hub.open_round("r2", ("plant-a", "plant-b", "plant-c"), model=MODEL)
    channel = grpc.insecure_channel(strict_hub.target)
    stub = pb_grpc.ModelExchangeStub(channel)
    tokens = list(strict_hub.tokens.values()) + ["forged-token"]
    seen: set[grpc.StatusCode] = set()
    rounds = iter(range(10**6))

    @FUZZ
    @given(
        data=st.data(),
        payload=_mutations(good_bytes),
        token=st.sampled_from(tokens),
        plant=st.sampled_from(["plant-a", "plant-b", "plant-c", "plant-z", "", "../etc", "a" * 300]),
        round_id=st.sampled_from(["r1", "r2", "missing", "", "r1/../r2"]),
        base_version=st.integers(-2, 3),
        num_samples=st.integers(-5, 10**6),
        codec=st.integers(0, 6),
        variant=st.sampled_from(["full", "light", "", "x" * 100]),
        chunk_sizes=st.lists(st.integers(0, 4096), max_size=6),
        layout=st.sampled_from(["normal", "no-start", "start-twice", "empty"]),
        honest=st.booleans(),
    )
    def run(
        data, payload, token, plant, round_id, base_version, num_samples, codec, variant, chunk_sizes, layout, honest
    ):
        true_sha = hashlib.sha256(payload).hexdigest()
        sha = data.draw(st.sampled_from([true_sha, "0" * 64, "not-hex", ""]), label="sha256")
        total = data.draw(st.sampled_from([len(payload), len(payload) + 1, max(0, len(payload) - 1), -1, 2**62]))
        offset = data.draw(st.sampled_from([0, 0, 1, -1, len(payload)]), label="offset")
        if honest:  # a well-formed call from an assigned plant to a fresh round: only the payload is fuzzed
            plant, round_id = "plant-a", f"fuzz-{next(rounds)}"
            token, base_version, num_samples, codec, variant = strict_hub.tokens[plant], 1, 10, 1, "full"
            sha, total, offset, layout = true_sha, len(payload), 0, "normal"
            strict_hub.open_round(round_id, (plant,), model=MODEL)
        meta = pb.UpdateMetadata(
            plant=plant,
            round_id=round_id,
            base_version=base_version,
            num_samples=num_samples,
            codec=codec,
            total_bytes=total,
            sha256=sha,
            variant=variant,
            metrics={"loss": 0.5},
        )
        start = pb.UploadRequest(start=pb.UploadStart(meta=meta, offset=offset))
        chunks = [pb.UploadRequest(chunk=c) for c in _chunked(payload[max(0, offset) :], chunk_sizes)]
        messages = {
            "normal": [start, *chunks],
            "no-start": chunks,
            "start-twice": [start, start, *chunks],
            "empty": [],
        }[layout]
        try:
            stub.UploadUpdate(iter(messages), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        except grpc.RpcError as err:
            assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), err.details()
            seen.add(err.code())

    try:
        run()
        # After the fuzzing, an honest upload of the unmutated payload still gets through (an explicit call:
        # whether hypothesis drew one is up to its search).
        strict_hub.open_round("after-fuzz", ("plant-a",), model=MODEL)
        meta = pb.UpdateMetadata(
            plant="plant-a",
            round_id="after-fuzz",
            base_version=1,
            num_samples=10,
            codec=pb.CODEC_NONE,
            total_bytes=len(good_bytes),
            sha256=hashlib.sha256(good_bytes).hexdigest(),
            variant="full",
            metrics={"loss": 0.5},
        )
        honest = [pb.UploadRequest(start=pb.UploadStart(meta=meta)), pb.UploadRequest(chunk=good_bytes)]
        token = strict_hub.tokens["plant-a"]
        stub.UploadUpdate(iter(honest), metadata=(("authorization", f"Bearer {token}"),), timeout=30)
    finally:
        channel.close()
    _assert_committed_updates_verify(strict_hub)
    assert strict_hub.plant("plant-a").get_round("r1").model == MODEL  # still serving
    assert grpc.StatusCode.INVALID_ARGUMENT in seen  # the fuzzer reached the checks, not only auth
    committed = [
        file_sha256(strict_hub.store.blob_path(u.digest)).hexdigest() for u in strict_hub.store.updates("after-fuzz")
    ]
    assert committed == [hashlib.sha256(good_bytes).hexdigest()]


def test_validator_refuses_any_bytes_with_payload_error(tmp_path: Path, good_bytes: bytes) -> None:
    base = tmp_path / "base.safetensors"
    codecs.save_state(base_state(), base)
    target = tmp_path / "fuzzed.safetensors"

    @FUZZ
    @given(payload=_mutations(good_bytes), codec=st.sampled_from(list(codecs.Codec)), partial=st.booleans())
    def run(payload: bytes, codec: codecs.Codec, partial: bool) -> None:
        target.write_bytes(payload)
        try:
            codecs.validate_update(target, base, codec, partial=partial)
        except codecs.PayloadError:
            pass

    run()


def _outcome(check: Callable[[], object]) -> str | None:
    try:
        check()
    except codecs.PayloadError as exc:
        return str(exc)
    return None


def test_the_streamed_check_refuses_exactly_what_the_reader_refuses(tmp_path: Path, good_bytes: bytes) -> None:
    """The hub judges values while an upload arrives (`formats.scan`); for any bytes, in any pieces, that decides
    exactly as `validate_update` reading the file: the same refusal, word for word, or none."""
    base = tmp_path / "base.safetensors"
    codecs.save_state(base_state(), base)
    target = tmp_path / "fuzzed.safetensors"
    header_end = 8 + int.from_bytes(good_bytes[:8], "little")
    specials = [struct.pack("<f", v) for v in (float("nan"), float("inf"), -float("inf"), 3e38)]
    poisoned = st.tuples(st.integers(header_end, len(good_bytes) - 4), st.sampled_from(specials)).map(
        lambda t: good_bytes[: t[0]] + t[1] + good_bytes[t[0] + 4 :]
    )

    @FUZZ
    @given(
        payload=st.one_of(_mutations(good_bytes), poisoned),
        codec=st.sampled_from(list(codecs.Codec)),
        partial=st.booleans(),
        pieces=st.lists(st.integers(0, 300), max_size=8),
    )
    def run(payload: bytes, codec: codecs.Codec, partial: bool, pieces: list[int]) -> None:
        target.write_bytes(payload)
        scan = ValueScan()
        for piece in _chunked(payload, pieces):
            scan.feed(piece)
        expected = _outcome(lambda: codecs.validate_update(target, base, codec, partial=partial))
        assert _outcome(lambda: codecs.check_update(target, base, codec, scan.result(), partial=partial)) == expected

    run()
