"""The agent's I/O loop without a cluster: an unreachable hub is retried, never fatal."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from kubernetes import client
from support.kube import wait_for

from plantfed.contract.metrics import Metrics
from plantfed.plant.agent.config import AgentConfig
from plantfed.plant.agent.hub import Hub
from plantfed.plant.agent.local import LocalCluster
from plantfed.plant.agent.loop import Agent, Backoff
from plantfed.plant.model_cache import ModelCache


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_api() -> client.ApiClient:
    cfg = client.Configuration(host=f"https://127.0.0.1:{closed_port()}")
    cfg.retries = 0
    return client.ApiClient(cfg)


def test_backoff_doubles_up_to_its_cap_and_resets_on_success():
    b = Backoff(1.0, cap=5.0)
    assert [b.failure() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert b.success() == 1.0 and b.failure() == 1.0


def test_heartbeats_keep_retrying_while_the_hub_is_unreachable(tmp_path: Path):
    cfg = AgentConfig(
        plant="plant-a",
        hub_kubeconfig=tmp_path / "k",
        hub_namespace="hub",
        exchange="127.0.0.1:1",
        token_file=tmp_path / "t",
        namespace="plant",
        cache_dir=tmp_path / "cache",
        data_host_path="/data",
        heartbeat_seconds=0.05,
    )
    metrics = Metrics()
    api = unreachable_api()
    agent = Agent(
        cfg,
        Hub(api, "hub", "plant-a"),
        LocalCluster(api, "plant", "plant-a"),
        ModelCache(tmp_path / "cache" / "models", None),
        metrics,
    )
    thread = threading.Thread(target=agent._heartbeats, daemon=True)
    thread.start()
    try:
        labels = {"plant": "plant-a", "target": "hub"}
        wait_for(
            lambda: (metrics.registry.get_sample_value("plantfed_agent_errors_total", labels) or 0) >= 3,
            timeout=60,
            what="three failed heartbeats",
        )
        assert thread.is_alive()
    finally:
        agent.stop.set()
        agent.heartbeat_wake.set()
        thread.join(10)
    assert not thread.is_alive()
