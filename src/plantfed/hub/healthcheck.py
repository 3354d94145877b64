"""`plantfed healthcheck`: is the model exchange serving? (readiness probe and `helm test`).

Asks the standard gRPC health service about the exchange, which needs no secret: a SERVING answer
proves the TLS handshake (the certificate verified against --ca-file for the name dialled),
HTTP/2 and the server itself work. The readiness probe dials the exchange's loopback health port
(`plantfed exchange --health-listen`), which presents the same certificate but never asks for a
client certificate, so the probe holds no credential even when the exchange requires mutual TLS.
`helm test` dials the exchange's own port instead, so under mutual TLS it presents a certificate
(--client-cert/--client-key) that names neither a plant nor the admin: without a token it reaches
health and nothing else. With --token-file an authenticated admin call must succeed as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plantfed.exchange.transport import ClientTLS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", required=True, help="HOST:PORT of the model exchange (or its health port)")
    p.add_argument("--ca-file", type=Path, help="CA bundle to verify the exchange's certificate (enables TLS)")
    p.add_argument("--client-cert", type=Path, help="PEM client certificate, for an exchange that requires mutual TLS")
    p.add_argument("--client-key", type=Path, help="PEM private key of --client-cert")
    p.add_argument("--token-file", type=Path, help="admin token: also check an authenticated call")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the exchange")


def check(exchange: str, tls: ClientTLS, token: str | None, timeout: float) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from plantfed.contract.wire.v1 import exchange_pb2 as pb
    from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
    from plantfed.exchange.transport import HEALTH_SERVICE, open_channel

    channel = open_channel(exchange, **tls.channel_kwargs())
    try:
        try:
            # types-grpcio-health-checking declares HealthStub without its methods; Check is generated.
            answer = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(service=HEALTH_SERVICE), timeout=timeout, wait_for_ready=True
            )
            if answer.status != health_pb2.HealthCheckResponse.SERVING:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                return False, f"exchange at {exchange} is not healthy: {status}"
            if token:
                pb_grpc.ModelExchangeStub(channel).ListVersions(
                    pb.ListVersionsRequest(model="healthcheck"),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=timeout,
                )
        except grpc.RpcError as err:
            code = err.code()
            detail = err.details() or ""
            return False, f"exchange at {exchange} is not healthy: {code.name}: {detail}"
        return True, f"exchange at {exchange} is serving" + (" and accepts the admin token" if token else "")
    finally:
        channel.close()


def run(args: argparse.Namespace) -> int:
    from plantfed.exchange.transport import ClientTLS

    try:
        tls = ClientTLS.from_files(args.ca_file, args.client_cert, args.client_key)
        token = args.token_file.read_text().strip() if args.token_file else None
    except (OSError, ValueError) as exc:
        print(f"healthcheck: {exc}")
        return 1
    ok, message = check(args.exchange, tls, token, args.timeout)
    print(message)
    return 0 if ok else 1
