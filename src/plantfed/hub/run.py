"""`plantfed operator`: the hub's kopf process.

kopf keeps handler progress in annotations on the objects themselves (no peering CRD, one
replica: the chart's Deployment uses the Recreate strategy), and everything a decision needs is
read from the API server and the model store on every pass, so the process holds no state that
a restart could lose.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from plantfed.contract.naming import GROUP
from plantfed.hub.config import OperatorConfig

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = GROUP
"""kopf keeps its progress and diff-base annotations under the API group's domain."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", help="namespace to watch (default: every namespace)")
    p.add_argument("--exchange", required=True, help="HOST:PORT of the model exchange's admin endpoint")
    p.add_argument("--admin-token-file", type=Path, required=True, help="file holding the exchange admin token")
    p.add_argument("--ca-file", type=Path, help="CA bundle to verify the exchange's TLS certificate (enables TLS)")
    p.add_argument(
        "--client-cert",
        type=Path,
        help="PEM client certificate with CN plantfed:admin, for an exchange that requires mutual TLS",
    )
    p.add_argument("--client-key", type=Path, help="PEM private key of --client-cert")
    p.add_argument("--store-claim", required=True, help="PVC holding the model store, mounted by aggregation/init Jobs")
    p.add_argument("--image", required=True, help="image of the aggregation and init Jobs")
    p.add_argument("--aggregation-service-account", help="ServiceAccount of the Jobs (no API access needed)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 0.0.0.0:PORT")
    p.add_argument("--liveness-port", type=int, help="serve kopf's liveness probe on 0.0.0.0:PORT/healthz")
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=5.0,
        help="how often unfinished rounds poll the exchange and participants are re-checked",
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=90.0,
        help="seconds without a heartbeat after which a plant is no longer Ready",
    )
    p.add_argument("--job-backoff-limit", type=int, default=2, help="retries of a failed aggregation/init pod")
    p.add_argument("--log-level", default="INFO")


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    return OperatorConfig(
        namespace=args.namespace,
        exchange=args.exchange,
        admin_token_file=args.admin_token_file,
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
        store_claim=args.store_claim,
        image=args.image,
        aggregation_service_account=args.aggregation_service_account,
        metrics_port=args.metrics_port,
        poll_seconds=args.poll_seconds,
        heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout),
        job_backoff_limit=args.job_backoff_limit,
    )


def run(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    from plantfed.contract.metrics import Metrics
    from plantfed.exchange import AdminClient, RetryPolicy
    from plantfed.hub.handlers import register
    from plantfed.hub.kube import Kube, load_config
    from plantfed.hub.reconciler import Reconciler

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    try:
        token, tls = cfg.admin_token(), cfg.exchange_tls()
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    load_config()
    metrics = Metrics()
    if cfg.metrics_port is not None:
        start_http_server(cfg.metrics_port, registry=metrics.registry)
    admin = AdminClient(
        cfg.exchange,
        token,
        **tls.channel_kwargs(),
        retry=RetryPolicy(max_attempts=3, max_backoff=2.0, connect_timeout=10.0),
    )
    reconciler = Reconciler(cfg, Kube(), admin, metrics)

    registry = kopf.OperatorRegistry()
    register(registry, reconciler, cfg.poll_seconds)

    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=ANNOTATION_PREFIX)
    # Only warnings from kopf itself become Events; the reconcile decisions post their own.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300

    log.info(
        "plantfed operator: namespace=%s exchange=%s store-claim=%s",
        cfg.namespace or "*",
        cfg.exchange,
        cfg.store_claim,
    )
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                liveness_endpoint=liveness,
                clusterwide=cfg.namespace is None,
                namespaces=[cfg.namespace] if cfg.namespace else (),
            )
        )
    finally:
        admin.close()
    return 0
