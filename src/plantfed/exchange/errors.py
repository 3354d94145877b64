"""The error exchange clients raise, and which status codes are worth retrying.

Codes are chosen so a client can act on them: UNAVAILABLE/ABORTED are worth retrying, RESOURCE_EXHAUSTED
means the hub is at one of its limits (wait and retry), DEADLINE_EXCEEDED on a stream means the hub ended it
as stalled (resume), DATA_LOSS means re-send from zero, everything else needs a human or a different request
(`plantfed.exchange.status` maps the hub's errors to them; `plantfed.exchange.client` retries).
"""

from __future__ import annotations

import grpc

#: Transient: the same request may succeed later (hub restarting, connection cut, a stale stream's lock).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})


class ExchangeError(Exception):
    """A call the hub refused (or that could not reach it), with the gRPC status code and the hub's reason."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> ExchangeError:
        return cls(err.code(), err.details() or "")

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE
