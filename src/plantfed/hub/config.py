"""What `plantfed operator` was started with; one immutable value shared by every handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plantfed.exchange.transport import ClientTLS

STORE_MOUNT = "/var/lib/plantfed/store"
"""Where aggregation and init Jobs mount the model store claim (the exchange uses the same path)."""


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str | None
    """Namespace to watch and create Jobs in; None watches every namespace (Jobs go next to their owner)."""
    exchange: str
    admin_token_file: Path
    store_claim: str
    image: str
    ca_file: Path | None = None
    client_cert: Path | None = None
    """The admin's client certificate (CN plantfed:admin) when the exchange requires mutual TLS."""
    client_key: Path | None = None
    aggregation_service_account: str | None = None
    metrics_port: int | None = None
    poll_seconds: float = 5.0
    heartbeat_timeout: timedelta = timedelta(seconds=90)
    job_backoff_limit: int = 2
    job_cpu: str = "500m"
    job_memory: str = "2Gi"
    job_memory_limit: str = "8Gi"
    job_labels: dict[str, str] = field(default_factory=dict)

    def admin_token(self) -> str:
        token = self.admin_token_file.read_text().strip()
        if not token:
            raise ValueError(f"admin token file {self.admin_token_file} is empty")
        return token

    def exchange_tls(self) -> ClientTLS:
        """Raises ValueError for a half certificate pair, OSError for a file it cannot read."""
        from plantfed.exchange.transport import ClientTLS  # grpc: not for building the CLI parser

        return ClientTLS.from_files(self.ca_file, self.client_cert, self.client_key)
