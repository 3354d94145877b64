"""Helm post-renderer for the e2e hub: moves the exchange's fixed ports to free ones, nothing else.

Fake nodes run every pod on this machine's loopback, so the chart's fixed ports (gRPC 8443, the
loopback health port 8444, and one metrics port shared by the exchange and operator pods) would
collide with each other and with anything else on the machine. `helm install --post-renderer`
runs this on the rendered manifests (stdin to stdout); everything else is the chart as released.

    helm install ... --post-renderer python --post-renderer-args hub_postrender.py \
        --post-renderer-args --grpc=PORT --post-renderer-args --health=PORT --post-renderer-args --metrics=PORT
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import yaml

CHART_GRPC, CHART_HEALTH = 8443, 8444


def rewrite_exchange(container: dict[str, Any], grpc: int, health: int, metrics: int) -> None:
    replace = {
        f"--listen=0.0.0.0:{CHART_GRPC}": f"--listen=0.0.0.0:{grpc}",
        f"--health-listen=127.0.0.1:{CHART_HEALTH}": f"--health-listen=127.0.0.1:{health}",
    }
    command = [replace.get(arg, arg) for arg in container["command"]]
    container["command"] = [re.sub(r"^--metrics-port=\d+$", f"--metrics-port={metrics}", a) for a in command]
    for port in container["ports"]:
        port["containerPort"] = {"grpc": grpc, "metrics": metrics}[port["name"]]
    probe = container["readinessProbe"]["exec"]["command"]
    container["readinessProbe"]["exec"]["command"] = [
        f"--exchange=localhost:{health}" if a == f"--exchange=localhost:{CHART_HEALTH}" else a for a in probe
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("grpc", "health", "metrics"):
        parser.add_argument(f"--{name}", type=int, required=True)
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-exchange"):
            rewrite_exchange(doc["spec"]["template"]["spec"]["containers"][0], args.grpc, args.health, args.metrics)
    yaml.safe_dump_all(docs, sys.stdout)


if __name__ == "__main__":
    main()
