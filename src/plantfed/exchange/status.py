"""One table from the hub's store and validation errors to the gRPC status codes clients act on
(see `plantfed.exchange.errors` for what each code means to a client)."""

from __future__ import annotations

import errno

import grpc
from pydantic import ValidationError

from plantfed.contract.naming import InvalidNameError
from plantfed.engine import store
from plantfed.exchange.limits import Overloaded, TooSlow

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidNameError, grpc.StatusCode.INVALID_ARGUMENT),
    (store.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (store.ConflictError, grpc.StatusCode.ALREADY_EXISTS),
    (store.RoundClosedError, grpc.StatusCode.FAILED_PRECONDITION),
    (store.BaseMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (store.NotCandidateError, grpc.StatusCode.FAILED_PRECONDITION),
    (store.NotAssignedError, grpc.StatusCode.PERMISSION_DENIED),
    (store.ChecksumError, grpc.StatusCode.DATA_LOSS),
    (store.OffsetError, grpc.StatusCode.OUT_OF_RANGE),
    (store.BusyError, grpc.StatusCode.ABORTED),
    (store.CorruptStoreError, grpc.StatusCode.INTERNAL),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TooSlow, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
)


_SHOWN_ERRORS = 5


class Refusal(Exception):
    """A request the hub's policy turns down, carrying the status code to end the call with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def status_for(exc: BaseException) -> grpc.StatusCode | None:
    """The status a handler should end with for `exc`, or None if it is an unexpected (internal) error."""
    if isinstance(exc, Refusal):
        return exc.code
    if _disk_full(exc):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return None


def describe(exc: BaseException) -> str:
    if _disk_full(exc):
        return (
            f"the hub's store is full ({exc}); retry later: an upload resumes where the hub's copy ends, and "
            "closing rounds frees their unfinished uploads"
        )
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in errors[:_SHOWN_ERRORS]]
        if len(errors) > _SHOWN_ERRORS:
            parts.append(f"and {len(errors) - _SHOWN_ERRORS} more")  # a hostile record must not bloat the reply
        return "invalid metadata: " + "; ".join(parts)
    return str(exc)
