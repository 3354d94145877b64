"""`plantfed agent`: wire the flags to real clients and run until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from plantfed.plant.agent.config import ConfigError, add_arguments, from_args

__all__ = ["add_arguments", "run"]

log = logging.getLogger("plantfed.agent")


def run(args: argparse.Namespace) -> int:
    from kubernetes import client, config
    from prometheus_client import start_http_server

    from plantfed.contract.metrics import Metrics
    from plantfed.exchange.client import ExchangeClient, RetryPolicy
    from plantfed.exchange.transport import ClientTLS
    from plantfed.plant.agent.hub import Hub
    from plantfed.plant.agent.local import LocalCluster
    from plantfed.plant.agent.loop import Agent, default_cache

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = from_args(args)
        token = cfg.token_file.read_text().strip()
        tls = ClientTLS.from_files(cfg.ca_file, cfg.client_cert, cfg.client_key)
        hub_api = config.new_client_from_config(config_file=str(cfg.hub_kubeconfig))
        if cfg.kubeconfig is not None:
            local_api = config.new_client_from_config(config_file=str(cfg.kubeconfig))
        else:
            config.load_incluster_config()
            local_api = client.ApiClient()
    except (ConfigError, OSError, config.ConfigException) as exc:
        log.error("%s", exc)
        return 2
    if not token:
        log.error("%s is empty: it must hold this plant's exchange token", cfg.token_file)
        return 2
    metrics = Metrics()
    if cfg.metrics_port is not None:
        start_http_server(cfg.metrics_port, registry=metrics.registry)
    # Few, short attempts: the cache worker has its own backoff, and must not sit in one call for minutes.
    exchange = ExchangeClient(
        cfg.exchange,
        token,
        **tls.channel_kwargs(),
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.5, max_backoff=5.0, connect_timeout=10.0),
    )
    agent = Agent(
        cfg,
        Hub(hub_api, cfg.hub_namespace, cfg.plant),
        LocalCluster(local_api, cfg.namespace, cfg.plant),
        default_cache(cfg, exchange),
        metrics,
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping (training Jobs keep running)", signum)
        agent.stop.set()
        agent.sync_wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "plant %s: hub namespace %s, exchange %s, training Jobs in %s",
        cfg.plant,
        cfg.hub_namespace,
        cfg.exchange,
        cfg.namespace,
    )
    runner = threading.Thread(target=agent.run, args=(time.monotonic,), name="sync", daemon=True)
    runner.start()
    while runner.is_alive() and not agent.stop.is_set():
        runner.join(0.5)
    exchange.close()
    return 0
