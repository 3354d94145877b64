"""The agent's configuration: exactly the flags `charts/plantfed-plant/templates/agent.yaml` renders.

Everything that describes the plant's own cluster (data volume, GPU pool, image, cache) comes from these
flags, never from the hub: a hub must not be able to make a plant mount an arbitrary host path or run
another image.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantfed.contract.api.common import Toleration

DEFAULT_IMAGE = "ghcr.io/plantfed/plantfed:latest"


class ConfigError(ValueError):
    """A flag value the agent cannot work with; the message names the flag."""


@dataclass(frozen=True)
class AgentConfig:
    plant: str
    hub_kubeconfig: Path
    hub_namespace: str
    exchange: str
    token_file: Path
    namespace: str
    cache_dir: Path
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    client_cert_secret: str | None = None
    """Secret (cert-manager format) with the plant's client certificate, mounted into training pods (mTLS)."""
    kubeconfig: Path | None = None
    cache_claim: str | None = None
    data_claim: str | None = None
    data_host_path: str | None = None
    gpus: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    image: str = DEFAULT_IMAGE
    training_service_account: str | None = None
    metrics_port: int | None = None
    data_options: tuple[str, ...] = ()
    plant_index: int | None = None
    num_plants: int | None = None
    heartbeat_seconds: float = 30.0
    sync_seconds: float = 10.0
    backoff_limit: int = 1
    job_ttl_seconds: int = 3600
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.data_claim is None) == (self.data_host_path is None):
            raise ConfigError("set exactly one of --data-claim and --data-host-path")
        if self.data_host_path is not None and not self.data_host_path.startswith("/"):
            raise ConfigError(f"--data-host-path must be absolute, got {self.data_host_path!r}")
        if self.gpus < 0:
            raise ConfigError(f"--gpus must be >= 0, got {self.gpus}")
        if self.heartbeat_seconds <= 0 or self.sync_seconds <= 0:
            raise ConfigError("--heartbeat-seconds and --sync-seconds must be > 0")
        mtls = (self.client_cert, self.client_key, self.client_cert_secret)
        if any(v is not None for v in mtls) and any(v is None for v in mtls):
            # The agent and its training pods both call the exchange: under mTLS neither may go without.
            raise ConfigError("--client-cert, --client-key and --client-cert-secret go together")
        if self.client_cert is not None and self.ca_file is None:
            raise ConfigError("--client-cert needs TLS: pass --ca-file too")


def parse_node_selector(text: str) -> dict[str, str]:
    """`k=v,k2=v2` (what the chart renders from training.nodeSelector) → dict."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--node-selector expects key=value[,key=value...], got {pair!r}")
        out[key] = value
    return out


def parse_tolerations(text: str) -> tuple[dict[str, Any], ...]:
    """A JSON list of pod tolerations, each checked against the CRD's Toleration model."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--tolerations-json is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise ConfigError("--tolerations-json must be a JSON list of tolerations")
    try:
        return tuple(Toleration.from_dict(item).to_dict() for item in items)
    except ValueError as exc:
        raise ConfigError(f"--tolerations-json: {exc}") from None


def add_hub_arguments(p: argparse.ArgumentParser) -> None:
    """How a plant reaches its hub: shared by the agent and `plantfed reach-hub`, which checks them."""
    p.add_argument("--plant", required=True, help="this plant's id (its PlantParticipant's name on the hub)")
    p.add_argument(
        "--hub-kubeconfig", type=Path, required=True, help="kubeconfig of the plant's ServiceAccount on the hub"
    )
    p.add_argument("--hub-namespace", default="plantfed-system", help="namespace of the hub release")
    p.add_argument("--exchange", required=True, help="host:port of the hub's model exchange")
    p.add_argument("--token-file", type=Path, required=True, help="file holding this plant's exchange token")
    p.add_argument("--ca-file", type=Path, help="CA certificate of the exchange (enables TLS)")
    p.add_argument("--client-cert", type=Path, help="the plant's client certificate, for mutual TLS (tls.crt)")
    p.add_argument("--client-key", type=Path, help="private key of --client-cert (tls.key)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_hub_arguments(p)
    p.add_argument(
        "--client-cert-secret",
        help="Secret in --namespace holding --client-cert/--client-key (keys tls.crt, tls.key), "
        "mounted into training pods",
    )
    p.add_argument("--kubeconfig", type=Path, help="the plant's own cluster (default: in-cluster config)")
    p.add_argument("--namespace", required=True, help="namespace for training Jobs in the plant's cluster")
    p.add_argument("--cache-dir", type=Path, required=True, help="model cache directory (the cache PVC's mount)")
    p.add_argument(
        "--cache-claim", help="PVC of the model cache, mounted into training Jobs (default: --cache-dir as hostPath)"
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-claim", help="PVC holding the plant's training data (mounted read-only)")
    data.add_argument("--data-host-path", help="directory on the GPU node holding the training data")
    p.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task data option passed to every training run (repeatable)",
    )
    p.add_argument("--plant-index", type=int, help="partition of a shared or synthetic data source (demos)")
    p.add_argument("--num-plants", type=int, help="partitions of a shared or synthetic data source (demos)")
    p.add_argument("--gpus", type=int, default=1, help="most GPUs one training Job may request (0: CPU only)")
    p.add_argument("--node-selector", default="", help="k=v,... for training pods (e.g. the GPU node pool)")
    p.add_argument("--tolerations-json", default="[]", help="JSON list of tolerations for training pods")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="image of training pods")
    p.add_argument("--training-service-account", help="ServiceAccount of training pods (one without API rights)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument(
        "--heartbeat-seconds", type=float, default=30.0, help="heartbeat interval (the hub's timeout is 90s)"
    )
    p.add_argument("--sync-seconds", type=float, default=10.0, help="full resync interval (watches wake it earlier)")
    p.add_argument("--backoff-limit", type=int, default=1, help="retries of a failed training pod")
    p.add_argument("--job-ttl-seconds", type=int, default=3600, help="delete finished training Jobs after this long")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        help="also keep this FederatedModel's promoted version cached (repeatable)",
    )


def from_args(args: argparse.Namespace) -> AgentConfig:
    return AgentConfig(
        plant=args.plant,
        hub_kubeconfig=args.hub_kubeconfig,
        hub_namespace=args.hub_namespace,
        exchange=args.exchange,
        token_file=args.token_file,
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
        client_cert_secret=args.client_cert_secret,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        cache_dir=args.cache_dir,
        cache_claim=args.cache_claim,
        data_claim=args.data_claim,
        data_host_path=args.data_host_path,
        data_options=tuple(args.data_option),
        plant_index=args.plant_index,
        num_plants=args.num_plants,
        gpus=args.gpus,
        node_selector=parse_node_selector(args.node_selector),
        tolerations=parse_tolerations(args.tolerations_json),
        image=args.image,
        training_service_account=args.training_service_account,
        metrics_port=args.metrics_port,
        heartbeat_seconds=args.heartbeat_seconds,
        sync_seconds=args.sync_seconds,
        backoff_limit=args.backoff_limit,
        job_ttl_seconds=args.job_ttl_seconds,
        models=tuple(args.models),
    )
