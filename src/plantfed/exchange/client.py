"""Clients of the ModelExchange: `ExchangeClient` for plants, `AdminClient` for the hub's operator.

Both survive cut connections and hub restarts: uploads ask the hub how much it holds and send only the
rest; downloads keep `<dest>.partial` (plus a small `<dest>.partial.json` naming the blob it belongs to) and
continue from its length. Transient failures (UNAVAILABLE, ABORTED, CANCELLED, and a stream the hub ended as
stalled: DEADLINE_EXCEEDED) are retried with bounded, jittered exponential backoff. A hub at one of its limits
(RESOURCE_EXHAUSTED: too many transfers, or this plant's calls) is waited out with a longer backoff for up to
`RetryPolicy.busy_patience` seconds. Anything else raises `ExchangeError` with the hub's reason. Unary calls
wait up to `RetryPolicy.connect_timeout` for an unreachable hub; streams carry no deadline (a multi-GB
transfer may take long) and fail fast instead, leaving the waiting to the backoff, so no call can hang forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from plantfed.contract.records import EvaluationRecord, LedgerEntry, ModelVersion, RoundRecord, UpdateMeta, UpdateRecord
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.exchange import convert
from plantfed.exchange.auth import Caller
from plantfed.exchange.errors import ExchangeError
from plantfed.exchange.transport import LEGACY_CHUNK, MAX_CHUNK, encode_chunk, open_channel, upload_chunk_size
from plantfed.formats.atomic import file_sha256, fsync_dir

log = logging.getLogger(__name__)

#: Called with (bytes done, bytes total) as a transfer progresses, resumed bytes included in "done".
Progress = Callable[[int, int], None]
_T = TypeVar("_T")
_SERVICE = pb.DESCRIPTOR.services_by_name["ModelExchange"].full_name


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    #: How long one attempt waits for the hub to become reachable before it counts as failed.
    connect_timeout: float = 30.0
    #: Seconds to keep retrying while the hub answers RESOURCE_EXHAUSTED (at a limit, not broken).
    busy_patience: float = 900.0
    busy_initial_backoff: float = 1.0
    busy_max_backoff: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_backoff
        for _ in range(self.max_attempts - 1):
            yield random.uniform(delay / 2, delay)
            delay = min(self.max_backoff, delay * self.multiplier)

    def busy_delays(self) -> Iterator[float]:
        """Jittered exponential waits while the hub is at a limit, ending once they add up to `busy_patience`."""
        delay, waited = self.busy_initial_backoff, 0.0
        while waited < self.busy_patience:
            pause = min(random.uniform(delay / 2, delay), self.busy_patience - waited)
            waited += pause
            yield pause
            delay = min(self.busy_max_backoff, delay * self.multiplier)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class RoundInfo:
    """A plant's view of a round (see `ExchangeClient.get_round`)."""

    round_id: str
    model: str
    base_version: int
    open: bool
    assigned: bool
    plant: str
    max_update_bytes: int
    #: The version aggregated from this round, which its plants are asked to evaluate; None until there is one.
    candidate_version: int | None = None


@dataclass(frozen=True)
class Receipt:
    """The hub's confirmation of a committed update, plus what this client sent to get it."""

    round_id: str
    plant: str
    digest: str
    size: int
    duplicate: bool
    received_at: float
    bytes_received: int
    upload_seconds: float
    #: Payload bytes this call put on the wire, over all attempts.
    bytes_sent: int
    #: The offset each attempt started from (a resumed attempt starts above 0).
    attempt_offsets: tuple[int, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RoundUpdates:
    round: RoundRecord
    updates: list[UpdateRecord]


class _Transient(Exception):
    """A failure worth another attempt (the hub may be restarting or the connection was cut)."""

    def __init__(self, err: ExchangeError) -> None:
        super().__init__(str(err))
        self.error = err


class _Busy(_Transient):
    """The hub is at one of its limits: worth waiting for, on a budget of its own."""


def _failure(err: grpc.RpcError, *, stream: bool) -> Exception:
    """What a failed attempt means: `_Busy`, `_Transient`, or the `ExchangeError` to raise.

    A stream carries no client deadline, so DEADLINE_EXCEEDED on one is the hub ending it as stalled: the next
    attempt resumes. On a unary call it is this client's own timeout, which already waited long enough.
    """
    exc = ExchangeError.from_rpc(err)
    if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return _Busy(exc)
    if exc.retryable or (stream and exc.code == grpc.StatusCode.DEADLINE_EXCEEDED):
        return _Transient(exc)
    return exc


def _file_chunks(path: Path, offset: int, chunk_size: int) -> Iterator[tuple[bytes, int]]:
    """The file from `offset` as serialized chunk messages (`encode_chunk`) of up to `chunk_size` bytes each,
    with the payload bytes each carries."""
    with open(path, "rb") as f:
        f.seek(offset)
        while block := f.read(chunk_size):
            yield encode_chunk(block), len(block)


class _Client:
    """Channel, auth metadata, retries and the download path shared by both clients."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        root_cert: bytes | None = None,
        client_cert: bytes | None = None,
        client_key: bytes | None = None,
        server_name: str | None = None,
        chunk_size: int = MAX_CHUNK,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        if not 0 < chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK}, got {chunk_size}")
        self._channel = open_channel(
            target, root_cert=root_cert, client_cert=client_cert, client_key=client_key, server_name=server_name
        )
        self._stub = pb_grpc.ModelExchangeStub(self._channel)
        # The payload streams, with their messages serialized here (`_file_chunks`) instead of by the stub.
        self._upload_raw: grpc.StreamUnaryMultiCallable[bytes, pb.UploadReceipt] = self._channel.stream_unary(
            f"/{_SERVICE}/UploadUpdate", request_serializer=None, response_deserializer=pb.UploadReceipt.FromString
        )
        self._publish_raw: grpc.StreamUnaryMultiCallable[bytes, pb.ModelVersion] = self._channel.stream_unary(
            f"/{_SERVICE}/PublishModel", request_serializer=None, response_deserializer=pb.ModelVersion.FromString
        )
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._chunk_size = chunk_size
        self._retry = retry

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., _T], request: Any, *, stream: bool = False, **kwargs: Any) -> _T:
        """One attempt of a call; failures worth another become `_Transient` (or `_Busy`), others `ExchangeError`."""
        try:
            return fn(request, metadata=self._metadata, **kwargs)
        except grpc.RpcError as err:
            raise _failure(err, stream=stream) from err

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """Run `attempt` until it succeeds, a non-transient error occurs, or the retry budgets are spent.

        A busy hub draws on `busy_delays`, any other transient failure on `delays`: waiting for capacity
        must not use up the attempts meant for a hub that is down.
        """
        delays, busy = self._retry.delays(), self._retry.busy_delays()
        while True:
            try:
                return attempt()
            except _Transient as transient:
                delay = next(busy if isinstance(transient, _Busy) else delays, None)
                if delay is None:
                    raise transient.error from None
                log.warning("exchange call failed (%s); retrying in %.1fs", transient.error, delay)
                time.sleep(delay)

    def _unary(self, fn: Callable[..., _T], request: Any) -> _T:
        return self._retrying(lambda: self._call(fn, request, wait_for_ready=True, timeout=self._retry.connect_timeout))

    def download_model(
        self, model: str, version: int | None, dest_path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> ModelVersion:
        """Download a version (None: the promoted one) to `dest_path`, resuming a previous partial download.

        The file appears at `dest_path` only complete and sha256-verified (atomic rename).
        """
        dest = Path(dest_path)
        partial = dest.with_name(dest.name + ".partial")
        sidecar = dest.with_name(dest.name + ".partial.json")
        dest.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> ModelVersion:
            held_sha = ""
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                held_sha = json.loads(sidecar.read_text())["sha256"]
            offset = partial.stat().st_size if held_sha and partial.exists() else 0
            request = pb.DownloadRequest(model=model, version=version or 0, offset=offset, if_sha256=held_sha)
            try:
                stream = self._stub.DownloadModel(request, metadata=self._metadata)
                first = next(stream)
                info = first.info
                found = convert.version_from_wire(info.version)
                sidecar.write_text(json.dumps({"sha256": info.sha256, "model": model, "version": found.version}))
                with open(partial, "r+b" if partial.exists() else "w+b") as f:
                    f.truncate(info.start_offset)
                    f.seek(info.start_offset)
                    done = info.start_offset
                    for msg in stream:
                        f.write(msg.chunk)
                        done += len(msg.chunk)
                        if progress:
                            progress(done, info.size)
                    f.flush()
                    os.fsync(f.fileno())
            except grpc.RpcError as err:
                raise _failure(err, stream=True) from err
            if done != info.size or file_sha256(partial).hexdigest() != info.sha256:
                partial.unlink(missing_ok=True)
                sidecar.unlink(missing_ok=True)
                raise ExchangeError(
                    grpc.StatusCode.DATA_LOSS,
                    f"downloaded {model} version {found.version} does not match its sha256; partial discarded",
                )
            os.replace(partial, dest)
            sidecar.unlink(missing_ok=True)
            fsync_dir(dest.parent)
            return found

        return self._retrying(attempt)

    def who_am_i(self) -> Caller:
        """Whom the exchange takes this client's credentials for (a plant, or the admin)."""
        msg = self._unary(self._stub.WhoAmI, pb.WhoAmIRequest())
        return Caller(plant=msg.plant or None, admin=msg.admin)


class ExchangeClient(_Client):
    """What a plant (runtime, agent, simulator) uses: learn the round, upload the update, fetch models."""

    def get_round(self, round_id: str = "") -> RoundInfo:
        """The round (empty: the newest open round this plant is assigned to) as this plant sees it."""
        msg = self._unary(self._stub.GetRound, pb.GetRoundRequest(round_id=round_id))
        return RoundInfo(
            round_id=msg.round_id,
            model=msg.model,
            base_version=msg.base_version,
            open=msg.state == pb.ROUND_STATE_OPEN,
            assigned=msg.assigned,
            plant=msg.plant,
            max_update_bytes=msg.max_update_bytes,
            candidate_version=msg.candidate_version or None,
        )

    def submit_evaluation(self, evaluation: EvaluationRecord) -> tuple[EvaluationRecord, bool]:
        """Report this plant's score of its round's candidate; returns (the kept record, duplicate)."""
        msg = self._unary(self._stub.SubmitEvaluation, convert.evaluation_to_wire(evaluation))
        return convert.evaluation_from_wire(msg.evaluation), msg.duplicate

    def upload_update(
        self, meta: UpdateMeta, payload_path: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Receipt:
        """Upload a payload file as this plant's update; resumes from what the hub holds after any cut.

        `meta.sha256`/`meta.total_bytes` are filled from the file when empty; a declared size that differs
        from the file's is an error.
        """
        path = Path(payload_path)
        size = path.stat().st_size
        if meta.sha256 and meta.total_bytes != size:
            raise ValueError(f"meta.total_bytes={meta.total_bytes} but {path} holds {size} bytes")
        if not meta.sha256:
            meta = meta.model_copy(update={"sha256": file_sha256(path).hexdigest(), "total_bytes": size})
        wire_meta = convert.meta_to_wire(meta)
        sent = 0
        offsets: list[int] = []

        def attempt() -> pb.UploadReceipt:
            nonlocal sent
            status = self._call(
                self._stub.GetUploadStatus,
                pb.UploadStatusRequest(round_id=meta.round_id, sha256=meta.sha256),
                wait_for_ready=True,
                timeout=self._retry.connect_timeout,
            )
            offset = size if status.committed else status.committed_offset
            offsets.append(offset)
            chunk_size = upload_chunk_size(status.max_chunk_bytes, self._chunk_size)

            def requests() -> Iterator[bytes]:
                nonlocal sent
                yield pb.UploadRequest(start=pb.UploadStart(meta=wire_meta, offset=offset)).SerializeToString()
                if status.committed:
                    return
                done = offset
                for message, moved in _file_chunks(path, offset, chunk_size):
                    yield message
                    sent += moved
                    done += moved
                    if progress:
                        progress(done, size)

            return self._call(self._upload_raw, requests(), stream=True)

        try:
            msg = self._retrying(attempt)
        except ExchangeError as err:
            # The hub discards bytes that fail its check; if the file is what we declared, send it once more.
            if err.code != grpc.StatusCode.DATA_LOSS or file_sha256(path).hexdigest() != meta.sha256:
                raise
            log.warning("hub reported %s; the local file is intact, uploading it again from the start", err)
            msg = self._retrying(attempt)
        return Receipt(
            round_id=msg.round_id,
            plant=msg.plant,
            digest=msg.digest,
            size=msg.size,
            duplicate=msg.duplicate,
            received_at=msg.received_at,
            bytes_received=msg.bytes_received,
            upload_seconds=msg.upload_seconds,
            bytes_sent=sent,
            attempt_offsets=tuple(offsets),
        )


class AdminClient(_Client):
    """What the operator and aggregation Jobs use: rounds, publishing and promoting model versions."""

    def open_round(self, record: RoundRecord) -> RoundRecord:
        return convert.round_from_wire(self._unary(self._stub.OpenRound, convert.round_to_wire(record)))

    def close_round(self, round_id: str) -> RoundRecord:
        return convert.round_from_wire(self._unary(self._stub.CloseRound, pb.CloseRoundRequest(round_id=round_id)))

    def list_updates(self, round_id: str) -> RoundUpdates:
        msg = self._unary(self._stub.ListUpdates, pb.ListUpdatesRequest(round_id=round_id))
        return RoundUpdates(
            round=convert.round_from_wire(msg.round), updates=[convert.update_from_wire(u) for u in msg.updates]
        )

    def publish_model(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        parent: int | None = None,
        round_id: str | None = None,
        metrics: dict[str, float] | None = None,
        promote: bool = False,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Upload a model file as the model's next version (idempotent for the same blob, parent, round)."""
        source = Path(path)
        size = source.stat().st_size
        start = pb.PublishStart(
            model=model,
            round_id=round_id or "",
            metrics=metrics or {},
            total_bytes=size,
            sha256=file_sha256(source).hexdigest(),
            promote=promote,
        )
        if parent is not None:
            start.parent = parent

        chunk_size = min(self._chunk_size, LEGACY_CHUNK)  # a hub of any version accepts these (see `transport`)

        def requests() -> Iterator[bytes]:
            yield pb.PublishRequest(start=start).SerializeToString()
            done = 0
            for message, moved in _file_chunks(source, 0, chunk_size):
                yield message
                done += moved
                if progress:
                    progress(done, size)

        msg = self._retrying(lambda: self._call(self._publish_raw, requests(), stream=True))
        return convert.version_from_wire(msg)

    def promote(self, model: str, version: int) -> ModelVersion:
        return convert.version_from_wire(
            self._unary(self._stub.Promote, pb.PromoteRequest(model=model, version=version))
        )

    def get_model(self, model: str, version: int | None = None) -> ModelVersion:
        return convert.version_from_wire(
            self._unary(self._stub.GetModel, pb.GetModelRequest(model=model, version=version or 0))
        )

    def list_versions(self, model: str) -> list[ModelVersion]:
        msg = self._unary(self._stub.ListVersions, pb.ListVersionsRequest(model=model))
        return [convert.version_from_wire(v) for v in msg.versions]

    def list_evaluations(self, round_id: str) -> list[EvaluationRecord]:
        msg = self._unary(self._stub.ListEvaluations, pb.ListEvaluationsRequest(round_id=round_id))
        return [convert.evaluation_from_wire(e) for e in msg.evaluations]

    def privacy_ledger(self, model: str) -> dict[str, list[LedgerEntry]]:
        """Each plant's DP releases charged in the lineage, in recording order (empty when none)."""
        return convert.ledger_from_wire(
            self._unary(self._stub.GetPrivacyLedger, pb.GetPrivacyLedgerRequest(model=model))
        )
