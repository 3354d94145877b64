"""gRPC model exchange between the hub and the plants: server, clients, auth (wire: `plantfed.wire.v1`).

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

from plantfed.exchange.auth import TokenBook, TokenBookError, generate_token
from plantfed.exchange.client import AdminClient, ExchangeClient, Receipt, RetryPolicy, RoundInfo
from plantfed.exchange.errors import ExchangeError
from plantfed.exchange.payload import PayloadCheck
from plantfed.exchange.server import build_server, serve
from plantfed.exchange.transport import MAX_CHUNK, ServerTLS

__all__ = [
    "MAX_CHUNK",
    "AdminClient",
    "PayloadCheck",
    "ExchangeClient",
    "ExchangeError",
    "Receipt",
    "RetryPolicy",
    "RoundInfo",
    "ServerTLS",
    "TokenBook",
    "TokenBookError",
    "build_server",
    "generate_token",
    "serve",
]
