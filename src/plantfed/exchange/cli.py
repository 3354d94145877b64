"""`plantfed exchange` / `python -m plantfed.exchange`: run the hub's model exchange server."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plantfed.engine.retention import DEFAULT_KEEP_VERSIONS, RetentionPolicy
from plantfed.exchange.limits import ServerLimits
from plantfed.exchange.payload import PayloadCheck

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, required=True, help="model store directory (the hub's PVC)")
    parser.add_argument(
        "--tokens",
        type=Path,
        required=True,
        help="plant token book: a directory with one file per plant (a mounted Secret) or a file of "
        "'<plant> <token or sha256:hex>' lines; re-read when it changes",
    )
    parser.add_argument(
        "--admin-token-file", type=Path, required=True, help="file holding the admin token (or sha256:hex)"
    )
    parser.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT to listen on (default %(default)s)")
    parser.add_argument("--tls-cert", type=Path, help="PEM server certificate chain (enables TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM server private key")
    parser.add_argument(
        "--client-ca",
        type=Path,
        help="PEM CA that client certificates must chain to (mTLS); a plant's certificate must then name the "
        "plant its token belongs to (SAN URI spiffe://plantfed/plant/<plant>, else the subject CN), and the admin "
        "token is accepted only with a certificate whose CN is plantfed:admin",
    )
    parser.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="also serve the gRPC health service (only it) on this loopback address, with the exchange's "
        "certificate but never asking for a client certificate: the readiness probe's port under mTLS",
    )
    limits = parser.add_argument_group("limits", "what callers may hold of the hub (plantfed.exchange.limits)")
    for name, (kind, default, meaning) in ServerLimits.defaults().items():
        limits.add_argument(
            ServerLimits.flag(name),
            dest=f"limit_{name}",
            metavar="SECONDS" if name.endswith("_s") else "N",
            type=kind,
            default=default,
            help=f"{meaning} (%(default)s)",
        )
    parser.add_argument(
        "--token-reload-seconds", type=float, default=2.0, help="how often to check the token book for changes"
    )
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (all interfaces)")
    parser.add_argument(
        "--payload-check",
        choices=[c.value for c in PayloadCheck],
        default=PayloadCheck.UPDATE.value,
        help="update: check each update against the round's base model before committing it (names, shapes, "
        "dtypes, NaN/Inf; the default); format: only that it is a safetensors file; none: no check",
    )
    parser.add_argument(
        "--no-validate-payloads",
        dest="payload_check",
        action="store_const",
        const=PayloadCheck.NONE.value,
        help="same as --payload-check=none",
    )
    parser.add_argument(
        "--keep-versions",
        type=int,
        default=DEFAULT_KEEP_VERSIONS,
        metavar="N",
        help="store retention: keep the blobs of each model's newest N versions besides the promoted and in-use "
        "ones, and drop finished rounds' update blobs (records stay; docs/install.md, 'Store retention'); "
        "0 keeps everything (default %(default)s)",
    )
    parser.add_argument(
        "--local-pattern",
        action="append",
        default=[],
        help="parameter-name glob of plant-local parameters updates leave out (repeatable; as for aggregate)",
    )


def run(args: argparse.Namespace) -> int:
    # Imported here so that building the `plantfed` parser (also for `plantfed healthcheck`, the exchange's
    # readiness probe) never pays for grpc servers, the store or torch.
    from prometheus_client import start_http_server

    from plantfed.contract.metrics import Metrics
    from plantfed.engine.store import ModelStore
    from plantfed.exchange.auth import TokenBook, TokenBookError
    from plantfed.exchange.server import serve
    from plantfed.exchange.transport import ServerTLS

    if (args.tls_cert is None) != (args.tls_key is None):
        log.error("--tls-cert and --tls-key go together")
        return 2
    if args.client_ca and not args.tls_cert:
        log.error("--client-ca needs --tls-cert and --tls-key")
        return 2
    try:
        book = TokenBook(args.tokens, reload_seconds=args.token_reload_seconds)
        admin = args.admin_token_file.read_text()
        tls = ServerTLS.from_files(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
        limits = ServerLimits(**{name: getattr(args, f"limit_{name}") for name in ServerLimits.defaults()})
    except (OSError, TokenBookError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    metrics = None
    if args.metrics_port is not None:
        metrics = Metrics()
        start_http_server(args.metrics_port, registry=metrics.registry)
    try:
        serve(
            ModelStore(args.store),
            book,
            admin_token=admin,
            address=args.listen,
            tls=tls,
            limits=limits,
            payload_check=PayloadCheck(args.payload_check),
            local_patterns=tuple(args.local_pattern),
            metrics=metrics,
            health_address=args.health_listen,
            retention=RetentionPolicy(keep_versions=args.keep_versions) if args.keep_versions > 0 else None,
        )
    except (OSError, TokenBookError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plantfed exchange", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)
