"""The plant's model cache keeps serving the last good model while the hub is unreachable."""

from __future__ import annotations

from pathlib import Path

from support.exchange import Hub

from plantfed.exchange.client import ExchangeClient, RetryPolicy
from plantfed.plant.model_cache import ModelCache


def test_refresh_caches_the_promoted_model_and_keeps_it_when_the_hub_is_gone(hub: Hub, tmp_path: Path) -> None:
    version, published = hub.seed(model="bearing")
    cache = ModelCache(tmp_path / "cache", hub.plant("plant-a"))
    current, problem = cache.refresh("bearing")
    assert problem is None and current.version == version
    assert cache.current_path("bearing").read_bytes() == published.read_bytes()

    dead = ExchangeClient("127.0.0.1:9", hub.tokens["plant-a"], retry=RetryPolicy(max_attempts=1, connect_timeout=1.0))
    offline = ModelCache(tmp_path / "cache", dead)
    current, problem = offline.refresh("bearing")
    assert current.version == version and "hub unreachable" in problem
    assert offline.current_path("bearing").read_bytes() == published.read_bytes()
