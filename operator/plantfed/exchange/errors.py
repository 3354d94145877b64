"""One table from store/validation errors to gRPC status codes, and the error the clients raise.

Codes are chosen so a client can act on them: UNAVAILABLE/ABORTED are worth retrying, DATA_LOSS means
re-send from zero, everything else needs a human or a different request.
"""

from __future__ import annotations

import grpc
from pydantic import ValidationError

from plantfed import store

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (store.InvalidNameError, grpc.StatusCode.INVALID_ARGUMENT),
    (store.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (store.ConflictError, grpc.StatusCode.ALREADY_EXISTS),
    (store.RoundClosedError, grpc.StatusCode.FAILED_PRECONDITION),
    (store.BaseMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (store.NotCandidateError, grpc.StatusCode.FAILED_PRECONDITION),
    (store.NotAssignedError, grpc.StatusCode.PERMISSION_DENIED),
    (store.ChecksumError, grpc.StatusCode.DATA_LOSS),
    (store.OffsetError, grpc.StatusCode.OUT_OF_RANGE),
    (store.BusyError, grpc.StatusCode.ABORTED),
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
)

#: Transient: the same request may succeed later (hub restarting, connection cut, a stale stream's lock).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})


class Refusal(Exception):
    """A request the hub's policy turns down, carrying the status code to end the call with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status a handler should end with for `exc`, or None if it is an unexpected (internal) error."""
    if isinstance(exc, Refusal):
        return exc.code
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return None


def describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()]
        return "invalid metadata: " + "; ".join(parts)
    return str(exc)


class ExchangeError(Exception):
    """A call the hub refused (or that could not reach it), with the gRPC status code and the hub's reason."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> ExchangeError:
        return cls(err.code(), err.details() or "")  # type: ignore[attr-defined]

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE
