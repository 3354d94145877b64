"""gRPC model exchange between the hub and the plants: server, clients, auth (see `plantfed.wire`)."""

from plantfed.exchange.auth import TokenBook, TokenBookError, generate_token
from plantfed.exchange.client import AdminClient, ExchangeClient, Receipt, RetryPolicy, RoundInfo
from plantfed.exchange.errors import ExchangeError
from plantfed.exchange.server import build_server, serve
from plantfed.exchange.transport import MAX_CHUNK, ServerTLS

__all__ = [
    "MAX_CHUNK",
    "AdminClient",
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
