"""Read a Prometheus /metrics endpoint the way Prometheus would, for tests that assert on exported series."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """A /metrics endpoint now: sample name -> labels -> value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def sample(port: int, name: str, **labels: str) -> float:
    return scrape(port).get(name, {}).get(frozenset(labels.items()), 0.0)
