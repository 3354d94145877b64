"""`plantfed healthcheck`: is the model exchange serving? (readiness probe and `helm test`).

A real call on the exchange's own service: with no token the exchange must answer
UNAUTHENTICATED, which proves the TLS handshake (certificate verified against --ca-file for the
name dialled), HTTP/2 and the service itself work, without the probe holding any secret. With
--token-file the call is authenticated and must succeed.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", required=True, help="HOST:PORT of the model exchange")
    p.add_argument("--ca-file", type=Path, help="CA bundle to verify the exchange's certificate (enables TLS)")
    p.add_argument("--token-file", type=Path, help="admin token: also check an authenticated call")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the exchange")


def check(exchange: str, ca: bytes | None, token: str | None, timeout: float) -> tuple[bool, str]:
    import grpc

    from plantfed.exchange.transport import open_channel
    from plantfed.wire.v1 import exchange_pb2 as pb
    from plantfed.wire.v1 import exchange_pb2_grpc as pb_grpc

    channel = open_channel(exchange, root_cert=ca)
    try:
        stub = pb_grpc.ModelExchangeStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        try:
            if token:
                stub.ListVersions(pb.ListVersionsRequest(model="healthcheck"), metadata=metadata,
                                  timeout=timeout, wait_for_ready=True)
            else:
                stub.GetRound(pb.GetRoundRequest(), timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            if not token and code is grpc.StatusCode.UNAUTHENTICATED:
                return True, f"exchange at {exchange} is serving (unauthenticated call refused as expected)"
            detail = err.details() or ""  # type: ignore[attr-defined]
            return False, f"exchange at {exchange} is not healthy: {code.name}: {detail}"
        return True, f"exchange at {exchange} is serving" + (" and accepts the admin token" if token else "")
    finally:
        channel.close()


def run(args: argparse.Namespace) -> int:
    try:
        ca = args.ca_file.read_bytes() if args.ca_file else None
        token = args.token_file.read_text().strip() if args.token_file else None
    except OSError as exc:
        print(f"healthcheck: {exc}")
        return 1
    ok, message = check(args.exchange, ca, token, args.timeout)
    print(message)
    return 0 if ok else 1
