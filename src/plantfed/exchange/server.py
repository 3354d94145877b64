"""The hub's gRPC ModelExchange service over a ModelStore.

Policy (what plants may do) lives here; durability and the invariants that need a lock (one update per
(round, plant), nothing committed after close) live in the store. Every refusal ends the call with a status
code and a message naming the problem (see `errors`).

Serving: one `grpc.aio` server on an event loop of its own (`ExchangeServer`), so an open stream costs a
coroutine and its buffers, never a thread: a slow upload cannot starve other calls. The store's blocking work
(file reads and writes, fsync, sha256, record parsing) runs in a bounded pool of `io_threads`, one step at a
time, so the loop never blocks on the disk; an upload writes (and hashes, and with the update check judges the
values of) one chunk while the next arrives. Chunks arrive as views into gRPC's message bytes
(`transport.decode_chunk`), never copied again on the hub.
Every method is registered as request-streaming, unary ones included, so each call is authenticated from its
metadata before any message is read and a call that never sends its message ends after `first_message_s`.

Protection (`plantfed.exchange.limits`): admission caps on calls, transfers and one plant's calls
(RESOURCE_EXHAUSTED, which clients retry with backoff), a minimum transfer rate per stream (DEADLINE_EXCEEDED,
which clients resume from), and HTTP/2 connection limits. A newer upload stream for the same (round, plant)
takes over from an older one still receiving: the older stream is ended (ABORTED) and the newer one resumes
from whatever the older wrote, so a stale or trickling stream can never lock a plant out of its own upload.

Upload idempotency: one update per (round, plant). Re-uploading a payload with the sha256 already committed
returns the original receipt with duplicate=true and stores nothing; a different payload for a committed
(round, plant) is refused with ALREADY_EXISTS (a plant that wants to change its update must wait for the
next round). A partial upload, or one refused at verification, is never visible through `ListUpdates`.

Verification before commit: declared size and sha256, then (by default, `PayloadCheck.UPDATE`) the whole update
against the round's base model (`plantfed.exchange.payload.UpdateCheck`, its values judged as they arrived), so a
malformed update is refused at upload instead of failing the round's aggregation. With mutual TLS a plant's
certificate must name the plant its token belongs to, and the admin token counts only with the admin's
certificate (CN `plantfed:admin`; `plantfed.exchange.auth.certificate_name`): a token leaked to the holder of
another certificate is useless.

Health: the standard `grpc.health.v1.Health` service answers for `HEALTH_SERVICE` on the exchange's port and,
with `health_address`, on a second, loopback-only server that never asks for a client certificate. That is
what the readiness probe dials: with mutual TLS it needs no client credential, and the second server serves
nothing but health (a plant call cannot reach the exchange without the mTLS handshake). Health reports SERVING
from `start` until `stop` begins.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import signal
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from plantfed.contract.metrics import Metrics
from plantfed.contract.naming import check_name, check_sha256
from plantfed.contract.records import ModelVersion, RoundRecord, RoundState, UpdateMeta, UpdateRecord
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.engine.privacy.accounting import PrivacyLedger
from plantfed.engine.retention import RetentionPolicy
from plantfed.engine.store import CorruptStoreError, ModelStore, NotFoundError, PartialUpload
from plantfed.exchange import convert
from plantfed.exchange.auth import (
    ADMIN_CERT_NAME,
    PLANT_URI_PREFIX,
    Authenticator,
    Caller,
    TokenBook,
    certificate_name,
)
from plantfed.exchange.limits import (
    Admission,
    MinimumRate,
    NoMessage,
    Overloaded,
    ServerLimits,
    SpaceBook,
    TooSlow,
)
from plantfed.exchange.payload import PayloadCheck, UpdateCheck, check_safetensors
from plantfed.exchange.status import Refusal, describe, status_for
from plantfed.exchange.transport import (
    HEALTH_SERVICE,
    LEGACY_CHUNK,
    MAX_CHUNK,
    MAX_MESSAGE,
    ServerTLS,
    decode_chunk,
    server_options,
)
from plantfed.formats.atomic import file_sha256

log = logging.getLogger(__name__)

_PLANT, _ADMIN, _ANY = "plant", "admin", "any"
_SERVICE = pb.DESCRIPTOR.services_by_name["ModelExchange"]
_T = TypeVar("_T")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})


@dataclass(frozen=True)
class _Rpc:
    """How the gate serves one method: who may call it, whether the body is a blocking unary function, and
    whether it moves a payload (counts against `max_transfers`)."""

    role: str
    unary: bool
    transfer: bool = False


def _unary(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A unary method whose whole body is store work: it runs in the io pool as `body(self, request, caller)`."""

    def mark(body: Callable[..., Any]) -> Callable[..., Any]:
        body.rpc = _Rpc(role, unary=True)  # type: ignore[attr-defined]
        return body

    return mark


def _transfer(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A streaming method, a coroutine `body(self, call, caller)` that reads and writes through `_Call`."""

    def mark(body: Callable[..., Any]) -> Callable[..., Any]:
        body.rpc = _Rpc(role, unary=False, transfer=True)  # type: ignore[attr-defined]
        return body

    return mark


#: Sees an upload's declared metadata before any of its bytes are accepted; may wait, and returns None to go on
#: or the reason to refuse the upload (CANCELLED). `plantfed simulate` holds each upload until its virtual
#: arrival with one.
UploadGate = Callable[[UpdateMeta], Awaitable[str | None]]


def _open_binary(path: Path) -> BinaryIO:
    return open(path, "rb")


class _IO:
    """The bounded pool for blocking store work, awaited so that a cancelled call never leaves a step running.

    A thread cannot be interrupted: when the awaiting call is cancelled (client gone), the step is waited out
    before the cancellation proceeds, so the call's cleanup (closing a partial upload, releasing its lock) never
    races a write still in progress.
    """

    def __init__(self, threads: int) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="exchange-io")

    def submit(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def settle(self, step: asyncio.Future[_T]) -> _T:
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            await self.drain(step)
            raise

    @staticmethod
    async def drain(step: asyncio.Future[Any] | None) -> None:
        """Wait until `step` has finished, whatever its outcome, even while being cancelled."""
        while step is not None and not step.done():
            try:
                await asyncio.wait([step])
            except asyncio.CancelledError:
                continue
        if step is not None and not step.cancelled():
            step.exception()  # retrieved: the caller is already ending with another error

    async def __call__(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await self.settle(self.submit(fn, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class _Call:
    """One call's messages, read and written within the hub's time limits (`ServerLimits`)."""

    def __init__(self, context: grpc.aio.ServicerContext, rpc: str, limits: ServerLimits) -> None:
        self.context = context
        self.rpc = rpc
        self._first_message_s = limits.first_message_s
        self._rate = MinimumRate.for_limits(limits, MAX_MESSAGE)
        #: Set while an upload receives chunks: only then may a newer stream of the same plant take it over.
        self.receiving = False
        self.superseded = False

    async def first(self) -> Any:
        """The call's first message; a call that does not send one in time is ended."""
        try:
            message = await asyncio.wait_for(self.context.read(), self._first_message_s)
        except TimeoutError:
            raise NoMessage(
                f"{self.rpc}: no request message within {self._first_message_s:g} s of the call's headers"
            ) from None
        if message is grpc.aio.EOF:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{self.rpc}: the call ended without a request message")
        return message

    async def start(self) -> Any:
        """The `start` message that opens a client stream."""
        first = await self.first()
        if isinstance(first, memoryview) or first.WhichOneof("msg") != "start":
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{self.rpc}: the first message must be `start`")
        return first.start

    async def _paced(self, step: Awaitable[_T], what: str) -> tuple[_T, float]:
        """`step` (waiting on the peer) within the minimum rate's patience; returns it and the seconds waited."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        patience = self._rate.patience()
        try:
            done = await (step if patience == float("inf") else asyncio.wait_for(step, patience))
        except TimeoutError:
            raise TooSlow(f"{self.rpc}: {self._rate.describe(what)}") from None
        return done, loop.time() - began

    async def chunk(self) -> bytes | memoryview | None:
        """The next `chunk` of a client stream (a view when it came as `encode_chunk` sends it), or None at its end."""
        message, waited = await self._paced(self.context.read(), "upload")
        if message is grpc.aio.EOF:
            return None
        if isinstance(message, memoryview):
            chunk: bytes | memoryview = message
        elif message.WhichOneof("msg") == "chunk":
            chunk = message.chunk
        else:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{self.rpc}: after `start`, only `chunk` messages")
        if len(chunk) > MAX_CHUNK:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{self.rpc}: chunk of {len(chunk)} bytes > {MAX_CHUNK}")
        self._rate.record(len(chunk), waited)
        return chunk

    async def write(self, message: Any, nbytes: int = 0) -> None:
        """Send a message; the peer must take `nbytes` of payload at no less than the minimum rate."""
        _, waited = await self._paced(self.context.write(message), "download")
        self._rate.record(nbytes, waited)


class _Uploads:
    """Which stream is receiving each (round, plant)'s upload; a newer stream takes over from an older one.

    Used from the event loop only. The older stream is cancelled where it waits; its cleanup waits out any store
    step in progress, closes the partial (keeping every byte written) and releases it before the newer stream
    begins, so the newer one resumes exactly from what the older one wrote. A stream already past receiving
    (verifying, committing) is not interrupted: the newer one waits for it, then finds its result.
    """

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], tuple[_Call, asyncio.Task[Any], asyncio.Event]] = {}

    async def claim(self, key: tuple[str, str], call: _Call) -> bool:
        """Make `call` the owner of `key`; returns whether it had to take over from (or wait for) another."""
        waited = False
        while (owner := self._owners.get(key)) is not None:
            other, task, released = owner
            if other.receiving and not other.superseded:
                other.superseded = True
                task.cancel()
            waited = True
            await released.wait()
        current = asyncio.current_task()
        assert current is not None, "claimed outside a task"
        self._owners[key] = (call, current, asyncio.Event())
        return waited

    def release(self, key: tuple[str, str], call: _Call) -> None:
        owner = self._owners.get(key)
        if owner is not None and owner[0] is call:
            del self._owners[key]
            owner[2].set()


async def _end_call(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    """Abort the call with the status for `exc`; unexpected errors are logged and reported as INTERNAL."""
    code = status_for(exc)
    if code is None:
        log.exception("%s failed", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"{method}: internal error ({type(exc).__name__}: {exc})")
    if isinstance(exc, CorruptStoreError):
        log.error("%s: the store is corrupt: %s", method, exc)
        await context.abort(code, f"{method}: the hub's store is corrupt: {exc}")
    await context.abort(code, describe(exc))


def _receipt(record: UpdateRecord, duplicate: bool) -> pb.UploadReceipt:
    return pb.UploadReceipt(
        round_id=record.meta.round_id,
        plant=record.meta.plant,
        digest=record.digest,
        size=record.meta.total_bytes,
        duplicate=duplicate,
        received_at=record.received_at,
        bytes_received=record.bytes_received or 0,
        upload_seconds=record.upload_seconds or 0.0,
    )


class _Retention:
    """Applies the store's retention in one background thread, after what can finish rounds or free versions
    (opening a round, promoting, start-up); requests while it runs coalesce into one more run."""

    def __init__(self, store: ModelStore, policy: RetentionPolicy | None, metrics: Metrics | None) -> None:
        self._store = store
        self._policy = policy
        self._metrics = metrics
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        #: Set after every run (tests and operators wait on it instead of sleeping).
        self.ran = threading.Event()

    def request(self) -> None:
        if self._policy is None:
            return
        self._due.set()
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="store-retention", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        assert self._policy is not None
        while True:
            self._due.wait()
            self._due.clear()
            try:
                run = self._store.apply_retention(self._policy)
            except Exception:  # a damaged record must not end retention for good; fsck names it
                log.exception("store retention failed")
            else:
                if run.bytes_freed or run.rounds or run.versions:
                    log.info(
                        "retention: dropped %d blob(s), %d bytes (versions %s, rounds %s)",
                        run.blobs,
                        run.bytes_freed,
                        run.versions,
                        run.rounds,
                    )
                if self._metrics is not None:
                    self._metrics.store_pruned_bytes.inc(run.bytes_freed)
                    for part, size in self._store.size_bytes().items():
                        self._metrics.store_bytes.labels(part).set(size)
            self.ran.set()


class ExchangeServicer:
    """The ModelExchange methods. Unary bodies are plain functions run in the io pool; streams are coroutines."""

    def __init__(
        self,
        store: ModelStore,
        auth: Authenticator,
        *,
        payload_check: PayloadCheck = PayloadCheck.UPDATE,
        local_patterns: tuple[str, ...] = (),
        metrics: Metrics | None = None,
        client_identity: bool = False,
        limits: ServerLimits | None = None,
        upload_gate: UploadGate | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        self._store = store
        self._client_identity = client_identity
        self._auth = auth
        self._metrics = metrics
        self._check = PayloadCheck(payload_check)
        self._local_patterns = tuple(local_patterns)
        self._validate = None if self._check is PayloadCheck.NONE else check_safetensors
        self.limits = limits or ServerLimits()
        self._upload_gate = upload_gate
        self.io = _IO(self.limits.io_threads)
        self._uploads = _Uploads()
        self._space = SpaceBook(self.limits)
        self.retention = _Retention(store, retention, metrics)

    def warm_up(self) -> None:
        """Import what the update check needs (torch) in the background once serving, so a restarted hub is
        reachable at once and the first upload's check does not wait for the import; apply the retention once."""
        self.retention.request()
        if self._check is PayloadCheck.UPDATE:
            import plantfed.formats.codecs  # noqa: F401

    def _update_validator(self, meta: UpdateMeta, record: RoundRecord) -> Callable[[Path], None] | None:
        """The check an update must pass before it is committed (see `PayloadCheck`)."""
        if self._check is not PayloadCheck.UPDATE:
            return self._validate
        base = self._store.get_model(record.model, record.base_version)
        return UpdateCheck(meta, self._store.blob_path(base.digest), self._local_patterns)

    def authorize(self, context: grpc.aio.ServicerContext, role: str, rpc: str) -> Caller:
        """Who is calling, from the call's metadata (and certificate) alone: nothing has been read yet."""
        caller = self._auth.caller(context.invocation_metadata())
        if caller is None:
            raise Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown bearer token (send 'authorization: Bearer <token>' metadata)",
            )
        if role == _ADMIN and not caller.admin:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, f"{rpc} needs the admin token")
        if role == _PLANT and caller.plant is None:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, f"{rpc} needs a plant token")
        if self._client_identity:
            # grpc's stub types auth_context() values as bytes; they are lists of bytes (one per certificate).
            self._check_certificate(caller, certificate_name(context.auth_context()))  # type: ignore[arg-type]
        return caller

    @staticmethod
    def _check_certificate(caller: Caller, named: str | None) -> None:
        """Under mTLS a token counts only with the certificate of its holder: the plant's, or the admin's."""
        if caller.admin and named != ADMIN_CERT_NAME:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the admin token needs the admin's client certificate (CN {ADMIN_CERT_NAME}), but the certificate "
                f"names {'nobody' if named is None else repr(named)}",
            )
        if caller.plant is not None and named != caller.plant:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token belongs to plant {caller.plant!r} but the client certificate names "
                f"{'no plant' if named is None else repr(named)} (CN or SAN URI {PLANT_URI_PREFIX}<plant>)",
            )

    async def _pump(self, call: _Call, sink: Callable[[bytes | memoryview], Any]) -> None:
        """Feed every chunk of the stream to `sink` in the io pool, one at a time, while the next one arrives."""
        step: asyncio.Future[Any] | None = None
        call.receiving = True
        try:
            while (chunk := await call.chunk()) is not None:
                if step is not None:
                    await self.io.settle(step)
                step = self.io.submit(sink, chunk)
            if step is not None:
                await self.io.settle(step)
        except BaseException:
            await self.io.drain(step)
            raise
        finally:
            call.receiving = False

    # --- plant RPCs --------------------------------------------------------------------------------------

    @_unary(_PLANT)
    def GetRound(self, request: pb.GetRoundRequest, caller: Caller) -> pb.RoundAssignment:
        plant = caller.plant
        if request.round_id:
            record = self._store.get_round(request.round_id)
            if plant not in record.plants:  # another plant's round: its model, base and candidate are not ours
                raise Refusal(
                    grpc.StatusCode.PERMISSION_DENIED, f"plant {plant!r} is not assigned to round {record.round_id!r}"
                )
        else:
            candidates = [r for r in self._store.rounds() if r.state is RoundState.OPEN and plant in r.plants]
            if not candidates:
                raise Refusal(grpc.StatusCode.NOT_FOUND, f"no open round assigns plant {plant!r}")
            record = candidates[-1]
        candidate = self._store.candidate(record.round_id)
        return pb.RoundAssignment(
            round_id=record.round_id,
            model=record.model,
            base_version=record.base_version,
            state=convert.state_to_wire(record.state),
            max_update_bytes=record.max_update_bytes,
            assigned=plant in record.plants,
            plant=plant,
            candidate_version=candidate.version if candidate is not None else 0,
        )

    @_unary(_PLANT)
    def GetUploadStatus(self, request: pb.UploadStatusRequest, caller: Caller) -> pb.UploadStatus:
        self._store.get_round(request.round_id)
        committed = self._store.get_update(request.round_id, caller.plant_name)
        if committed is not None:
            return pb.UploadStatus(committed=True, committed_sha256=committed.meta.sha256, max_chunk_bytes=MAX_CHUNK)
        if not request.sha256:
            return pb.UploadStatus(committed_offset=0, max_chunk_bytes=MAX_CHUNK)
        check_sha256(request.sha256)
        return pb.UploadStatus(
            committed_offset=self._store.partial_offset(request.round_id, caller.plant_name, request.sha256),
            max_chunk_bytes=MAX_CHUNK,
        )

    @_transfer(_PLANT)
    async def UploadUpdate(self, call: _Call, caller: Caller) -> pb.UploadReceipt:
        start = await call.start()
        if self._upload_gate is not None:
            await self._gate(start)
        admitted = await self.io(self._admit_update, start, caller)
        if isinstance(admitted, pb.UploadReceipt):
            return admitted
        meta, record = admitted
        key = (meta.round_id, meta.plant)
        try:
            if await self._uploads.claim(key, call):
                # The stream this one took over from may have committed meanwhile: decide again.
                admitted = await self.io(self._admit_update, start, caller)
                if isinstance(admitted, pb.UploadReceipt):
                    return admitted
            holder = self._store.partial_upload(meta.round_id, meta.plant)
            upload = await self.io(holder.__enter__)
            try:
                # Space is booked before the partial is touched: a refusal leaves nothing behind.
                free, held = await self.io(self._space_probe, meta.plant, meta.round_id)
                self._space.admit(key, max(0, meta.total_bytes - start.offset), free, held)
                validate = await self.io(self._update_validator, meta, record)
                observe = validate.scan.feed if isinstance(validate, UpdateCheck) else None
                await self.io(upload.begin, meta.sha256, meta.total_bytes, start.offset, observe)

                def append(chunk: bytes | memoryview) -> None:
                    upload.append(chunk)
                    self._space.wrote(key, len(chunk))

                await self._pump(call, append)
                digest, _size, received, seconds = await self.io(upload.finalize, validate)
            finally:
                self._space.release(key)
                await self.io(self._end_upload, holder, upload, meta.round_id)
            return await self.io(self._accept_update, meta, digest, received, seconds)
        finally:
            self._uploads.release(key, call)

    def _space_probe(self, plant: str, round_id: str) -> tuple[int, int]:
        """(free bytes on the store's filesystem, bytes `plant`'s unfinished uploads hold in other rounds)."""
        return shutil.disk_usage(self._store.root).free, self._store.partial_bytes(plant, besides=round_id)

    def _end_upload(self, holder: Any, upload: PartialUpload, round_id: str) -> None:
        """Release the (round, plant) upload; a partial the round can no longer accept is freed, not kept."""
        try:
            if self._store.get_round(round_id).state is RoundState.CLOSED:
                upload.discard()
        finally:
            holder.__exit__(None, None, None)

    async def _gate(self, start: pb.UploadStart) -> None:
        assert self._upload_gate is not None
        try:
            meta = convert.meta_from_wire(start.meta)
        except ValueError:
            return  # the admission refuses it, naming the problem
        refusal = await self._upload_gate(meta)
        if refusal is not None:
            raise Refusal(grpc.StatusCode.CANCELLED, refusal)

    def _admit_update(self, start: pb.UploadStart, caller: Caller) -> pb.UploadReceipt | tuple[UpdateMeta, RoundRecord]:
        """Everything decided before a byte of the payload is accepted: a receipt for a duplicate, else go."""
        meta = convert.meta_from_wire(start.meta)
        if meta.plant != caller.plant:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token belongs to plant {caller.plant!r}, but the update names plant {meta.plant!r}",
            )
        check_sha256(meta.sha256)
        existing = self._store.get_update(meta.round_id, meta.plant)
        if existing is not None:
            if existing.meta.sha256 == meta.sha256:
                return _receipt(existing, duplicate=True)
            raise Refusal(
                grpc.StatusCode.ALREADY_EXISTS,
                f"plant {meta.plant!r} already committed a different update to round {meta.round_id!r}",
            )
        record = self._store.check_accepts(meta.round_id, meta)
        if meta.total_bytes > record.max_update_bytes:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"update of {meta.total_bytes} bytes exceeds round {meta.round_id!r}'s limit of "
                f"{record.max_update_bytes} bytes",
            )
        return meta, record

    def _accept_update(self, meta: UpdateMeta, digest: str, received: int, seconds: float) -> pb.UploadReceipt:
        """The one place a verified update becomes visible to aggregation (hook metrics here)."""
        record, duplicate = self._store.commit_update(meta, digest, bytes_received=received, upload_seconds=seconds)
        if not duplicate and self._metrics is not None:
            model = self._store.get_round(meta.round_id).model
            self._metrics.bytes_received.labels(model, meta.plant).inc(received)
            if seconds > 0:
                self._metrics.upload_throughput.labels(model, meta.plant).set(received / seconds)
        if not duplicate:
            log.info(
                "round %s: committed update from %s (%d bytes, %d received, %.2fs)",
                meta.round_id,
                meta.plant,
                meta.total_bytes,
                received,
                seconds,
            )
        return _receipt(record, duplicate)

    @_transfer(_ANY)
    async def DownloadModel(self, call: _Call, caller: Caller) -> None:
        request = await call.first()
        version, offset = await self.io(self._plan_download, request, caller)
        await call.write(
            pb.DownloadResponse(
                info=pb.DownloadInfo(
                    version=convert.version_to_wire(version),
                    sha256=version.digest,
                    size=version.size,
                    start_offset=offset,
                )
            )
        )
        path = self._store.blob_path(version.digest)
        # The blob is hashed as it is read (the part before `offset` first) and the last block is held back
        # until the whole file proved to match its digest: a corrupt blob ends the call with its name, and the
        # plant never receives a complete file of wrong bytes.
        hasher = await self.io(file_sha256, path, offset) if offset else hashlib.sha256()
        blob = await self.io(_open_binary, path)

        def read() -> bytes:
            block = blob.read(LEGACY_CHUNK)  # what every client's channel accepts (see `transport`)
            hasher.update(block)
            return block

        step: asyncio.Future[bytes] | None = None
        held = b""
        try:
            await self.io(blob.seek, offset)
            step = self.io.submit(read)
            while block := await self.io.settle(step):
                step = self.io.submit(read)  # read the next block while this one is sent
                if held:
                    await self._serve(call, request.model, held)
                held = block
            if hasher.hexdigest() != version.digest or blob.tell() != version.size:
                raise CorruptStoreError(
                    f"model {version.model!r} version {version.version}: blob {path} is corrupt "
                    f"({blob.tell()} bytes hashing to {hasher.hexdigest()})"
                )
            if held:
                await self._serve(call, request.model, held)
        finally:
            await self.io.drain(step)
            await self.io(blob.close)

    async def _serve(self, call: _Call, model: str, block: bytes) -> None:
        await call.write(pb.DownloadResponse(chunk=block), len(block))
        if self._metrics is not None:
            self._metrics.bytes_served.labels(model).inc(len(block))

    def _plan_download(self, request: pb.DownloadRequest, caller: Caller) -> tuple[ModelVersion, int]:
        version = self._store.get_model(request.model, request.version or None)
        if caller.plant is not None:
            self._check_release(caller.plant, version)
        self._store.require_version_blob(version.model, version.version)
        if not self._store.has_blob(version.digest):
            raise CorruptStoreError(
                f"model {version.model!r} version {version.version} points at blob {version.digest}, which is missing"
            )
        offset = request.offset
        if request.if_sha256 and request.if_sha256 != version.digest:
            offset = 0
        if offset < 0 or offset > version.size:
            raise Refusal(
                grpc.StatusCode.OUT_OF_RANGE,
                f"download offset {offset} is outside version {version.version} of {request.model!r} "
                f"({version.size} bytes)",
            )
        return version, offset

    def _check_release(self, plant: str, version: ModelVersion) -> None:
        """A plant downloads what it needs: versions ever promoted (every plant serves those), and the base and the
        candidate of rounds that assign it; a candidate nobody promoted stays with the plants that made it."""
        if version.promoted or version.version in self._store.released(version.model):
            return
        if version.round_id is not None and plant in self._round_plants(version.round_id):
            return
        if any(
            r.model == version.model and r.base_version == version.version and plant in r.plants
            for r in self._store.rounds()
        ):
            return
        raise Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"plant {plant!r} may not download version {version.version} of {version.model!r}: it was never "
            "promoted, and no round assigning the plant starts from it or produced it",
        )

    def _round_plants(self, round_id: str) -> list[str]:
        try:
            return self._store.get_round(round_id).plants
        except NotFoundError:
            return []

    @_unary(_PLANT)
    def SubmitEvaluation(self, request: pb.Evaluation, caller: Caller) -> pb.EvaluationReceipt:
        if request.plant != caller.plant:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token belongs to plant {caller.plant!r}, but the evaluation names plant {request.plant!r}",
            )
        kept, duplicate = self._store.record_evaluation(convert.evaluation_from_wire(request))
        if not duplicate:
            log.info(
                "round %s: %s evaluated version %d on %d samples",
                kept.round_id,
                kept.plant,
                kept.version,
                kept.num_samples,
            )
        return pb.EvaluationReceipt(evaluation=convert.evaluation_to_wire(kept), duplicate=duplicate)

    @_unary(_ANY)
    def WhoAmI(self, request: pb.WhoAmIRequest, caller: Caller) -> pb.Identity:
        return pb.Identity(plant=caller.plant or "", admin=caller.admin)

    # --- admin RPCs --------------------------------------------------------------------------------------

    @_unary(_ADMIN)
    def OpenRound(self, request: pb.Round, caller: Caller) -> pb.Round:
        opened = self._store.open_round(convert.round_from_wire(request))
        self.retention.request()  # a newer round finishes the model's earlier ones
        return convert.round_to_wire(opened)

    @_unary(_ADMIN)
    def CloseRound(self, request: pb.CloseRoundRequest, caller: Caller) -> pb.Round:
        return convert.round_to_wire(self._store.close_round(request.round_id))

    @_unary(_ADMIN)
    def ListUpdates(self, request: pb.ListUpdatesRequest, caller: Caller) -> pb.ListUpdatesResponse:
        record = self._store.get_round(request.round_id)
        updates = self._store.updates(request.round_id)
        return pb.ListUpdatesResponse(
            round=convert.round_to_wire(record), updates=[convert.update_to_wire(u) for u in updates]
        )

    @_transfer(_ADMIN)
    async def PublishModel(self, call: _Call, caller: Caller) -> pb.ModelVersion:
        start = await call.start()
        check_name("model", start.model)
        check_sha256(start.sha256)
        if start.round_id:
            check_name("round", start.round_id)
        holder = self._store.blob_writer(expect_sha256=start.sha256, expect_size=start.total_bytes)
        writer = await self.io(holder.__enter__)
        try:
            await self._pump(call, writer.append)
            digest, _size = await self.io(writer.commit, self._validate)
        finally:
            await self.io(holder.__exit__, None, None, None)
        return await self.io(self._publish, start, digest)

    def _publish(self, start: pb.PublishStart, digest: str) -> pb.ModelVersion:
        version = self._store.publish_model(
            start.model,
            digest,
            parent=start.parent if start.HasField("parent") else None,
            round_id=start.round_id or None,
            metrics=dict(start.metrics),
            promote=start.promote,
        )
        log.info("published %s version %d (%d bytes)", version.model, version.version, version.size)
        return convert.version_to_wire(version)

    @_unary(_ADMIN)
    def Promote(self, request: pb.PromoteRequest, caller: Caller) -> pb.ModelVersion:
        version = self._store.promote(request.model, request.version)
        log.info("promoted %s version %d", version.model, version.version)
        self.retention.request()
        return convert.version_to_wire(version)

    @_unary(_ADMIN)
    def GetModel(self, request: pb.GetModelRequest, caller: Caller) -> pb.ModelVersion:
        return convert.version_to_wire(self._store.get_model(request.model, request.version or None))

    @_unary(_ADMIN)
    def ListVersions(self, request: pb.ListVersionsRequest, caller: Caller) -> pb.ListVersionsResponse:
        check_name("model", request.model)
        return pb.ListVersionsResponse(
            versions=[convert.version_to_wire(v) for v in self._store.versions(request.model)]
        )

    @_unary(_ADMIN)
    def ListEvaluations(self, request: pb.ListEvaluationsRequest, caller: Caller) -> pb.ListEvaluationsResponse:
        return pb.ListEvaluationsResponse(
            evaluations=[convert.evaluation_to_wire(e) for e in self._store.evaluations(request.round_id)]
        )

    @_unary(_ADMIN)
    def GetPrivacyLedger(self, request: pb.GetPrivacyLedgerRequest, caller: Caller) -> pb.PrivacyLedger:
        ledger = PrivacyLedger(self._store, request.model)  # checks the name
        return convert.ledger_to_wire(request.model, ledger.entries())


def _deserializer(request_type: Any) -> Callable[[bytes], Any]:
    """How a method's messages are read: chunk-carrying streams take their chunks as views (`decode_chunk`)."""
    if "chunk" not in request_type.DESCRIPTOR.fields_by_name:
        return request_type.FromString

    def read(raw: bytes) -> Any:
        chunk = decode_chunk(raw)
        return request_type.FromString(raw) if chunk is None else chunk

    return read


class _Gate(grpc.GenericRpcHandler):
    """Registers every ModelExchange method as request-streaming and runs it: authenticate, admit, read, serve.

    Request-streaming because gRPC reads a unary call's message before its handler runs: a caller that sent
    only headers would hold the call (and its memory) without ever being authenticated or timed out.
    """

    def __init__(self, servicer: ExchangeServicer, metrics: Metrics | None) -> None:
        self._servicer = servicer
        self._metrics = metrics
        self._admission = Admission(servicer.limits)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in _SERVICE.methods:
            body = getattr(servicer, method.name)
            request_type = getattr(pb, method.input_type.name)
            response_type = getattr(pb, method.output_type.name)
            make = (
                grpc.stream_stream_rpc_method_handler
                if method.server_streaming
                else grpc.stream_unary_rpc_method_handler
            )
            self._handlers[f"/{_SERVICE.full_name}/{method.name}"] = make(
                self._behaviour(method.name, body), _deserializer(request_type), response_type.SerializeToString
            )

    def _ended(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.exchange_calls_ended.labels(reason).inc()

    def _counted(self, rpc: _Rpc, delta: int) -> None:
        if self._metrics is not None:
            self._metrics.exchange_calls.labels("transfer" if rpc.transfer else "other").inc(delta)

    def _behaviour(self, name: str, body: Callable[..., Any]) -> Callable[[Any, Any], Awaitable[Any]]:
        rpc: _Rpc = body.rpc  # type: ignore[attr-defined]
        servicer = self._servicer

        async def behaviour(_requests: Any, context: grpc.aio.ServicerContext) -> Any:
            call = _Call(context, name, servicer.limits)
            release: Callable[[], None] | None = None
            try:
                caller = servicer.authorize(context, rpc.role, name)
                release = self._admission.admit(caller.plant, transfer=rpc.transfer)
                self._counted(rpc, +1)
                if rpc.unary:
                    request = await call.first()
                    return await servicer.io(body, request, caller)
                return await body(call, caller)
            except grpc.aio.AbortError:
                raise
            except asyncio.CancelledError:
                if not call.superseded:
                    raise  # the client went away, or the server is stopping
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                self._ended("superseded")
                await context.abort(
                    grpc.StatusCode.ABORTED,
                    f"{name}: a newer upload stream from this plant took over; it resumes from the bytes this one "
                    "wrote",
                )
            except Exception as exc:
                self._ended(_reason(exc))
                await _end_call(context, exc, name)
            finally:
                if release is not None:
                    release()
                    self._counted(rpc, -1)

        return behaviour

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)


def _reason(exc: Exception) -> str:
    """The `exchange_calls_ended_total` reason for a call ended with `exc` ("refused" for everything else)."""
    if isinstance(exc, Refusal) and exc.code is grpc.StatusCode.UNAUTHENTICATED:
        return "unauthenticated"
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, NoMessage):
        return "no_message"
    if isinstance(exc, TooSlow):
        return "stalled"
    return "refused"


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None, what: str) -> int:
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind the {what} to {address}")
    return port


def _check_loopback(address: str) -> None:
    host = address.rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the health address must be loopback ({', '.join(sorted(LOOPBACK_HOSTS))}), not {host!r}")


class ExchangeServer:
    """The exchange (and its health service) on an event loop in a thread of its own.

    Built bound (`port`, `health_port`); `start` serves, `stop(grace)` lets calls in progress finish for up to
    `grace` seconds and returns an event that is set once everything has stopped. Usable from any thread.
    """

    def __init__(
        self,
        servicer: ExchangeServicer,
        *,
        address: str,
        tls: ServerTLS | None,
        health_address: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if health_address is not None:
            _check_loopback(health_address)
        self._servicer = servicer
        self._stopped = threading.Event()
        self._stopping = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="exchange-loop", daemon=True)
        self._thread.start()
        try:
            self.port, self.health_port = self._on_loop(self._build(address, tls, health_address, metrics))
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            raise

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._servicer.io.shutdown()
            self._loop.close()
            self._stopped.set()

    def _on_loop(self, coro: Awaitable[_T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    async def _build(
        self, address: str, tls: ServerTLS | None, health_address: str | None, metrics: Metrics | None
    ) -> tuple[int, int | None]:
        self._health = health.aio.HealthServicer()
        await self._set_health(serving=False)
        self._server = grpc.aio.server(options=server_options(self._servicer.limits))
        self._server.add_generic_rpc_handlers((_Gate(self._servicer, metrics),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        port = _bind(self._server, address, tls.credentials() if tls else None, "exchange")
        self._health_server = None
        health_port = None
        if health_address is not None:
            # The exchange's own certificate, but never asking for a client's (see the module docstring).
            self._health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
            probe_tls = ServerTLS(tls.cert_chain, tls.private_key).credentials() if tls else None
            health_port = _bind(self._health_server, health_address, probe_tls, "health service")
        return port, health_port

    async def _set_health(self, *, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", HEALTH_SERVICE):
            await self._health.set(service, status)

    def start(self) -> None:
        async def start() -> None:
            await self._server.start()
            if self._health_server is not None:
                await self._health_server.start()
            await self._set_health(serving=True)

        self._on_loop(start())
        threading.Thread(target=self._servicer.warm_up, name="exchange-warm-up", daemon=True).start()

    def stop(self, grace: float | None) -> threading.Event:
        """Stop serving (NOT_SERVING at once), give calls in progress `grace` seconds; returns the stopped event."""
        if self._stopping or self._stopped.is_set():
            return self._stopped
        self._stopping = True

        async def stop() -> None:
            try:
                await self._health.enter_graceful_shutdown()
                if self._health_server is not None:
                    await self._health_server.stop(None)
                await self._server.stop(grace)
            finally:
                self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        return self._stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)


def build_server(
    store: ModelStore,
    token_book: TokenBook,
    *,
    admin_token: str,
    address: str = "127.0.0.1:0",
    tls: ServerTLS | None = None,
    payload_check: PayloadCheck = PayloadCheck.UPDATE,
    local_patterns: tuple[str, ...] = (),
    metrics: Metrics | None = None,
    health_address: str | None = None,
    limits: ServerLimits | None = None,
    upload_gate: UploadGate | None = None,
    retention: RetentionPolicy | None = None,
) -> tuple[ExchangeServer, int]:
    """A ready-to-start server bound to `address`; returns it with the bound port (for `:0`).

    `admin_token` is the admin credential: the token itself or `sha256:<hex>`. With mutual TLS (`tls.client_ca`)
    a plant's calls must also present a client certificate naming the plant its token belongs to, and admin calls
    the admin's (`ADMIN_CERT_NAME`). `health_address` adds the loopback-only health server (`health_port`);
    `limits` bounds what callers may hold (`plantfed.exchange.limits`; defaults: `ServerLimits()`).
    `upload_gate` sees every upload's declared metadata first (`UploadGate`). `retention` (None: keep everything)
    is applied in the background after rounds open, promotions and start-up (`plantfed.engine.retention`).
    """
    servicer = ExchangeServicer(
        store,
        Authenticator(token_book, admin_token),
        payload_check=payload_check,
        local_patterns=local_patterns,
        metrics=metrics,
        client_identity=tls is not None and tls.client_ca is not None,
        limits=limits,
        upload_gate=upload_gate,
        retention=retention,
    )
    server = ExchangeServer(servicer, address=address, tls=tls, health_address=health_address, metrics=metrics)
    return server, server.port


def serve(
    store: ModelStore,
    token_book: TokenBook,
    *,
    admin_token: str,
    address: str,
    tls: ServerTLS | None = None,
    grace_seconds: float = 10.0,
    health_address: str | None = None,
    **kwargs: Any,
) -> None:
    """Run until SIGTERM/SIGINT, then let in-flight calls finish for up to `grace_seconds`.

    Health reports NOT_SERVING until the exchange has started and again as soon as it starts stopping.
    What killed processes left in the store is removed first (`ModelStore.sweep_leftovers`).
    """
    for path in store.sweep_leftovers():
        log.info("removed leftover %s", path)
    server, port = build_server(
        store, token_book, admin_token=admin_token, address=address, tls=tls, health_address=health_address, **kwargs
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping (grace %.0fs)", signum, grace_seconds)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    if health_address:
        log.info("health service on %s", health_address)
    host = address.rsplit(":", 1)[0]
    log.info("plantfed exchange listening on %s:%d (%s)", host, port, "TLS" if tls else "plaintext")
    try:
        stopping.wait()
    finally:
        server.stop(grace_seconds).wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
