"""gRPC model exchange between the hub and the plants: server, clients, auth (wire: `plantfed.contract.wire.v1`).

Hub::

    python -m plantfed.exchange --store /data/store --tokens /etc/plantfed/plant-tokens \
        --admin-token-file /etc/plantfed/admin/token --listen 0.0.0.0:50051 --tls-cert tls.crt --tls-key tls.key

Plant::

    with ExchangeClient("hub:50051", token, root_cert=ca_pem) as hub:
        info = hub.get_round()                                   # newest open round for this plant
        hub.download_model(info.model, info.base_version, "base.safetensors")
        ...train, write update.safetensors...
        hub.upload_update(UpdateMeta(plant=info.plant, round_id=info.round_id, base_version=info.base_version,
                                     num_samples=n, total_bytes=0, sha256=""), "update.safetensors")

Token-book format: `plantfed.exchange.auth`. Upload idempotency policy: `plantfed.exchange.server`.
"""

import importlib
from typing import Any

# Resolved on first use (PEP 562): importing one submodule, e.g. for the CLI parser or a health check,
# must not drag in the server, the store and torch.
_EXPORTS = {
    "TokenBook": "plantfed.exchange.auth",
    "TokenBookError": "plantfed.exchange.auth",
    "generate_token": "plantfed.exchange.auth",
    "AdminClient": "plantfed.exchange.client",
    "ExchangeClient": "plantfed.exchange.client",
    "Receipt": "plantfed.exchange.client",
    "RetryPolicy": "plantfed.exchange.client",
    "RoundInfo": "plantfed.exchange.client",
    "ExchangeError": "plantfed.exchange.errors",
    "ServerLimits": "plantfed.exchange.limits",
    "PayloadCheck": "plantfed.exchange.payload",
    "ExchangeServer": "plantfed.exchange.server",
    "build_server": "plantfed.exchange.server",
    "serve": "plantfed.exchange.server",
    "MAX_CHUNK": "plantfed.exchange.transport",
    "ClientTLS": "plantfed.exchange.transport",
    "ServerTLS": "plantfed.exchange.transport",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_CHUNK",
    "AdminClient",
    "ClientTLS",
    "PayloadCheck",
    "ExchangeClient",
    "ExchangeError",
    "ExchangeServer",
    "Receipt",
    "RetryPolicy",
    "RoundInfo",
    "ServerLimits",
    "ServerTLS",
    "TokenBook",
    "TokenBookError",
    "build_server",
    "generate_token",
    "serve",
]
