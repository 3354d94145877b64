"""The hub's gRPC ModelExchange service over a ModelStore.

Policy (what plants may do) lives here; durability and the invariants that need a lock (one update per
(round, plant), nothing committed after close) live in the store. Every refusal ends the call with a status
code and a message naming the problem (see `errors`).

Upload idempotency: one update per (round, plant). Re-uploading a payload with the sha256 already committed
returns the original receipt with duplicate=true and stores nothing; a different payload for a committed
(round, plant) is refused with ALREADY_EXISTS (a plant that wants to change its update must wait for the
next round). A partial upload, or one refused at verification, is never visible through `ListUpdates`.

Verification before commit: declared size and sha256, then (by default, `PayloadCheck.UPDATE`) the whole update
against the round's base model (`plantfed.exchange.payload.UpdateCheck`), so a malformed update is refused at
upload instead of failing the round's aggregation. With mutual TLS a plant's certificate must name the plant its
token belongs to, and the admin token counts only with the admin's certificate (CN `plantfed:admin`;
`plantfed.exchange.auth.certificate_name`): a token leaked to the holder of another certificate is useless.

Health: the standard `grpc.health.v1.Health` service answers for `HEALTH_SERVICE` on the exchange's port and,
with `health_address`, on a second, loopback-only server that never asks for a client certificate. That is
what the readiness probe dials: with mutual TLS it needs no client credential, and the second server serves
nothing but health (a plant call cannot reach the exchange without the mTLS handshake).
"""

from __future__ import annotations

import functools
import inspect
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from plantfed.contract.metrics import Metrics
from plantfed.contract.naming import check_name, check_sha256
from plantfed.contract.records import RoundRecord, RoundState, UpdateMeta, UpdateRecord
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.privacy.accounting import PrivacyLedger
from plantfed.engine.store import ModelStore
from plantfed.exchange import convert
from plantfed.exchange.auth import (
    ADMIN_CERT_NAME,
    PLANT_URI_PREFIX,
    Authenticator,
    Caller,
    TokenBook,
    certificate_name,
)
from plantfed.exchange.payload import PayloadCheck, UpdateCheck, check_safetensors
from plantfed.exchange.status import Refusal, describe, status_for
from plantfed.exchange.transport import HEALTH_SERVICE, MAX_CHUNK, SERVER_OPTIONS, ServerTLS

log = logging.getLogger(__name__)

_PLANT, _ADMIN, _ANY = "plant", "admin", "any"

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})


def _end_call(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    """Abort the call with the status for `exc`; unexpected errors are logged and reported as INTERNAL."""
    code = status_for(exc)
    if code is None:
        log.exception("%s failed", method, exc_info=exc)
        context.abort(grpc.StatusCode.INTERNAL, f"{method}: internal error ({type(exc).__name__}: {exc})")
    context.abort(code, describe(exc))


def _rpc(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate the caller for `role`, pass it to the handler, and turn exceptions into statuses."""

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        name = handler.__name__
        if inspect.isgeneratorfunction(handler):

            @functools.wraps(handler)
            def streaming(self: ExchangeServicer, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                try:
                    caller = self._authorize(context, role, name)
                    yield from handler(self, request, context, caller)
                except grpc.RpcError:
                    raise
                except Exception as exc:
                    _end_call(context, exc, name)

            return streaming

        @functools.wraps(handler)
        def unary(self: ExchangeServicer, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                caller = self._authorize(context, role, name)
                return handler(self, request, context, caller)
            except grpc.RpcError:
                raise
            except Exception as exc:
                _end_call(context, exc, name)

        return unary

    return wrap


def _first_start(requests: Iterator[Any], rpc: str) -> Any:
    first = next(requests, None)
    if first is None or first.WhichOneof("msg") != "start":
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: the first message must be `start`")
    return first.start


def _chunks(requests: Iterator[Any], rpc: str) -> Iterator[bytes]:
    for msg in requests:
        if msg.WhichOneof("msg") != "chunk":
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: after `start`, only `chunk` messages")
        if len(msg.chunk) > MAX_CHUNK:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"{rpc}: chunk of {len(msg.chunk)} bytes > {MAX_CHUNK}")
        yield msg.chunk


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


class ExchangeServicer(pb_grpc.ModelExchangeServicer):
    def __init__(
        self,
        store: ModelStore,
        auth: Authenticator,
        *,
        payload_check: PayloadCheck = PayloadCheck.UPDATE,
        local_patterns: tuple[str, ...] = (),
        metrics: Metrics | None = None,
        client_identity: bool = False,
    ) -> None:
        self._store = store
        self._client_identity = client_identity
        self._auth = auth
        self._metrics = metrics
        self._check = PayloadCheck(payload_check)
        self._local_patterns = tuple(local_patterns)
        self._validate = None if self._check is PayloadCheck.NONE else check_safetensors

    def _update_validator(self, meta: UpdateMeta, record: RoundRecord) -> Callable[[Path], None] | None:
        """The check an update must pass before it is committed (see `PayloadCheck`)."""
        if self._check is not PayloadCheck.UPDATE:
            return self._validate
        base = self._store.get_model(record.model, record.base_version)
        return UpdateCheck(meta, self._store.blob_path(base.digest), self._local_patterns)

    def _authorize(self, context: grpc.ServicerContext, role: str, rpc: str) -> Caller:
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
            self._check_certificate(caller, certificate_name(context.auth_context()))
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

    # --- plant RPCs --------------------------------------------------------------------------------------

    @_rpc(_PLANT)
    def GetRound(self, request: pb.GetRoundRequest, context: Any, caller: Caller) -> pb.RoundAssignment:
        plant = caller.plant
        if request.round_id:
            record = self._store.get_round(request.round_id)
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

    @_rpc(_PLANT)
    def GetUploadStatus(self, request: pb.UploadStatusRequest, context: Any, caller: Caller) -> pb.UploadStatus:
        self._store.get_round(request.round_id)
        committed = self._store.get_update(request.round_id, caller.plant)
        if committed is not None:
            return pb.UploadStatus(committed=True, committed_sha256=committed.meta.sha256)
        if not request.sha256:
            return pb.UploadStatus(committed_offset=0)
        check_sha256(request.sha256)
        return pb.UploadStatus(
            committed_offset=self._store.partial_offset(request.round_id, caller.plant, request.sha256)
        )

    @_rpc(_PLANT)
    def UploadUpdate(
        self, request_iterator: Iterator[pb.UploadRequest], context: Any, caller: Caller
    ) -> pb.UploadReceipt:
        start = _first_start(request_iterator, "UploadUpdate")
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
        with self._store.partial_upload(meta.round_id, meta.plant) as upload:
            upload.begin(meta.sha256, meta.total_bytes, start.offset)
            for chunk in _chunks(request_iterator, "UploadUpdate"):
                upload.append(chunk)
            digest, _size, received, seconds = upload.finalize(self._update_validator(meta, record))
        return self._accept_update(meta, digest, received, seconds)

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

    @_rpc(_ANY)
    def DownloadModel(self, request: pb.DownloadRequest, context: Any, caller: Caller) -> Iterator[pb.DownloadResponse]:
        version = self._store.get_model(request.model, request.version or None)
        offset = request.offset
        if request.if_sha256 and request.if_sha256 != version.digest:
            offset = 0
        if offset < 0 or offset > version.size:
            raise Refusal(
                grpc.StatusCode.OUT_OF_RANGE,
                f"download offset {offset} is outside version {version.version} of {request.model!r} "
                f"({version.size} bytes)",
            )
        yield pb.DownloadResponse(
            info=pb.DownloadInfo(
                version=convert.version_to_wire(version),
                sha256=version.digest,
                size=version.size,
                start_offset=offset,
            )
        )
        with open(self._store.blob_path(version.digest), "rb") as f:
            f.seek(offset)
            while block := f.read(MAX_CHUNK):
                if self._metrics is not None:
                    self._metrics.bytes_served.labels(request.model).inc(len(block))
                yield pb.DownloadResponse(chunk=block)

    @_rpc(_PLANT)
    def SubmitEvaluation(self, request: pb.Evaluation, context: Any, caller: Caller) -> pb.EvaluationReceipt:
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

    # --- admin RPCs --------------------------------------------------------------------------------------

    @_rpc(_ADMIN)
    def OpenRound(self, request: pb.Round, context: Any, caller: Caller) -> pb.Round:
        return convert.round_to_wire(self._store.open_round(convert.round_from_wire(request)))

    @_rpc(_ADMIN)
    def CloseRound(self, request: pb.CloseRoundRequest, context: Any, caller: Caller) -> pb.Round:
        return convert.round_to_wire(self._store.close_round(request.round_id))

    @_rpc(_ADMIN)
    def ListUpdates(self, request: pb.ListUpdatesRequest, context: Any, caller: Caller) -> pb.ListUpdatesResponse:
        record = self._store.get_round(request.round_id)
        updates = self._store.updates(request.round_id)
        return pb.ListUpdatesResponse(
            round=convert.round_to_wire(record), updates=[convert.update_to_wire(u) for u in updates]
        )

    @_rpc(_ADMIN)
    def PublishModel(
        self, request_iterator: Iterator[pb.PublishRequest], context: Any, caller: Caller
    ) -> pb.ModelVersion:
        start = _first_start(request_iterator, "PublishModel")
        check_name("model", start.model)
        check_sha256(start.sha256)
        if start.round_id:
            check_name("round", start.round_id)
        digest, _size = self._store.write_blob(
            _chunks(request_iterator, "PublishModel"),
            expect_sha256=start.sha256,
            expect_size=start.total_bytes,
            validate=self._validate,
        )
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

    @_rpc(_ADMIN)
    def Promote(self, request: pb.PromoteRequest, context: Any, caller: Caller) -> pb.ModelVersion:
        version = self._store.promote(request.model, request.version)
        log.info("promoted %s version %d", version.model, version.version)
        return convert.version_to_wire(version)

    @_rpc(_ADMIN)
    def GetModel(self, request: pb.GetModelRequest, context: Any, caller: Caller) -> pb.ModelVersion:
        return convert.version_to_wire(self._store.get_model(request.model, request.version or None))

    @_rpc(_ADMIN)
    def ListVersions(self, request: pb.ListVersionsRequest, context: Any, caller: Caller) -> pb.ListVersionsResponse:
        check_name("model", request.model)
        return pb.ListVersionsResponse(
            versions=[convert.version_to_wire(v) for v in self._store.versions(request.model)]
        )

    @_rpc(_ADMIN)
    def ListEvaluations(
        self, request: pb.ListEvaluationsRequest, context: Any, caller: Caller
    ) -> pb.ListEvaluationsResponse:
        return pb.ListEvaluationsResponse(
            evaluations=[convert.evaluation_to_wire(e) for e in self._store.evaluations(request.round_id)]
        )

    @_rpc(_ADMIN)
    def GetPrivacyLedger(self, request: pb.GetPrivacyLedgerRequest, context: Any, caller: Caller) -> pb.PrivacyLedger:
        ledger = PrivacyLedger(self._store.root, request.model)  # checks the name
        return convert.ledger_to_wire(request.model, ledger.entries())


def build_server(
    store: ModelStore,
    token_book: TokenBook,
    *,
    admin_token: str,
    address: str = "127.0.0.1:0",
    tls: ServerTLS | None = None,
    max_workers: int = 32,
    payload_check: PayloadCheck = PayloadCheck.UPDATE,
    local_patterns: tuple[str, ...] = (),
    metrics: Metrics | None = None,
    health_servicer: health.HealthServicer | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int]:
    """A ready-to-start server bound to `address`; returns it with the bound port (for `:0`).

    `admin_token` is the admin credential: the token itself or `sha256:<hex>`. With mutual TLS (`tls.client_ca`)
    a plant's calls must also present a client certificate naming the plant its token belongs to, and admin calls
    the admin's (`ADMIN_CERT_NAME`). Each open stream occupies a worker thread, so `max_workers` bounds concurrent
    uploads plus downloads. `interceptors` wrap every RPC (`plantfed simulate` delays uploads to their virtual
    arrival with one).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="exchange"),
        options=SERVER_OPTIONS,
        interceptors=tuple(interceptors),
    )
    servicer = ExchangeServicer(
        store,
        Authenticator(token_book, admin_token),
        payload_check=payload_check,
        local_patterns=local_patterns,
        metrics=metrics,
        client_identity=tls is not None and tls.client_ca is not None,
    )
    pb_grpc.add_ModelExchangeServicer_to_server(servicer, server)
    if health_servicer is None:
        health_servicer = health.HealthServicer()
        _set_health(health_servicer, serving=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, tls.credentials())
    if port == 0:
        raise OSError(f"could not bind the exchange to {address}")
    return server, port


def _set_health(servicer: health.HealthServicer, *, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", HEALTH_SERVICE):
        servicer.set(service, status)


def build_health_server(
    address: str, tls: ServerTLS | None, servicer: health.HealthServicer
) -> tuple[grpc.Server, int]:
    """A server with only the health service, on a loopback address, TLS without client authentication.

    It presents the exchange's own certificate, so a probe still checks that certificate against its CA; it
    never asks for a client certificate, so a probe needs no credential even when the exchange requires mTLS.
    Refuses any address but loopback: nothing outside the pod should reach a port that skips mTLS.
    """
    host = address.rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the health address must be loopback ({', '.join(sorted(LOOPBACK_HOSTS))}), not {host!r}")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, ServerTLS(tls.cert_chain, tls.private_key).credentials())
    if port == 0:
        raise OSError(f"could not bind the health service to {address}")
    return server, port


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
    """
    servicer = health.HealthServicer()
    _set_health(servicer, serving=False)
    server, port = build_server(
        store, token_book, admin_token=admin_token, address=address, tls=tls, health_servicer=servicer, **kwargs
    )
    health_server = build_health_server(health_address, tls, servicer)[0] if health_address else None
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping (grace %.0fs)", signum, grace_seconds)
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    if health_server is not None:
        health_server.start()
        log.info("health service on %s", health_address)
    _set_health(servicer, serving=True)
    host = address.rsplit(":", 1)[0]
    log.info("plantfed exchange listening on %s:%d (%s)", host, port, "TLS" if tls else "plaintext")
    try:
        stopping.wait()
    finally:
        servicer.enter_graceful_shutdown()
        if health_server is not None:
            health_server.stop(None)
        server.stop(grace_seconds).wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
