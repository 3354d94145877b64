"""gRPC channel/server settings shared by both ends: chunk sizing, keepalive, connection limits, TLS credentials.

Payloads travel as chunks of at most `MAX_CHUNK` bytes, so message limits are sized to one chunk plus the
metadata of a start message; nothing anywhere depends on a whole model fitting in one message.

Chunk sizes and compatibility: the hub accepts upload chunks of up to `MAX_CHUNK` (4 MiB) and says so in
`UploadStatus.max_chunk_bytes`; a client sends chunks that large only to a hub that said so, and
`LEGACY_CHUNK` (1 MiB, what every earlier hub and client accepts) otherwise, for publishing, and for downloads,
so a newer end talks to an older one either way. Fewer, larger messages cut the per-message work of both ends
(Python, asyncio, protobuf) on a multi-GB upload.

A chunk message is one length-delimited `chunk` field (number 2 in `UploadRequest`, `PublishRequest` and
`DownloadResponse`). `encode_chunk` and `decode_chunk` write and read exactly that encoding without a protobuf
message in between, which would copy the payload twice more; any other encoding is parsed by protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import grpc

from plantfed.exchange.limits import ServerLimits

HEALTH_SERVICE = "plantfed.wire.v1.ModelExchange"
"""The service the exchange reports on through the standard `grpc.health.v1.Health` service."""

MAX_CHUNK = 4 << 20
#: What hubs and clients before `UploadStatus.max_chunk_bytes` accept; still the size of publish and download chunks.
LEGACY_CHUNK = 1 << 20
#: One chunk plus room for the start message (metadata, metrics map) of a stream.
MAX_MESSAGE = MAX_CHUNK + (256 << 10)
#: The `chunk` field's tag (field 2, wire type 2: length-delimited) in every chunk-carrying message.
_CHUNK_TAG = 0x12
_CHUNK_FIELD = 2

_COMMON = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]

SERVER_OPTIONS = _COMMON + [
    # Accept client keepalive pings (every 30 s, also while idle) instead of answering them with GOAWAY, but
    # close a connection that pings more often than every 10 s without data (two strikes): a ping flood costs
    # the hub as much as calls do.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.so_reuseport", 0),
    # Call metadata is a bearer token and a user agent; anything near this is not a client of ours.
    ("grpc.max_metadata_size", 16 << 10),
]


def upload_chunk_size(advertised: int, wanted: int) -> int:
    """The chunk size to upload in, at most `wanted`, to a hub whose `UploadStatus.max_chunk_bytes` is `advertised`
    (0 from a hub that predates the field, which takes `LEGACY_CHUNK`)."""
    return min(wanted, advertised or LEGACY_CHUNK)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk(block: bytes | memoryview) -> bytes:
    """The serialized `UploadRequest`/`PublishRequest` carrying `block` as its `chunk`, built with one copy."""
    return b"".join((bytes((_CHUNK_TAG,)), _varint(len(block)), block))


def decode_chunk(raw: bytes) -> memoryview | None:
    """The `chunk` of a serialized chunk message, as a view into `raw` (no copy); None for any other message.

    Only the encoding `encode_chunk` writes (one `chunk` field filling the whole message) is recognised, so the
    result is always exactly what protobuf would parse; everything else is left to protobuf.
    """
    if len(raw) < 2 or raw[0] != _CHUNK_TAG:
        return None
    length, shift, at = 0, 0, 1
    while at < len(raw) and at <= 5:  # 5 varint bytes hold any length a message can have
        byte = raw[at]
        length |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return memoryview(raw)[at:] if length == len(raw) - at else None
        shift += 7
    return None


def server_options(limits: ServerLimits) -> list[tuple[str, int]]:
    """The exchange server's channel arguments: `SERVER_OPTIONS` plus the connection limits of `limits`."""
    return SERVER_OPTIONS + [
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.max_concurrent_streams", limits.max_streams_per_connection),
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(limits.connection_idle_s * 1000)),
        ("grpc.keepalive_time_ms", int(limits.keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(limits.keepalive_timeout_s * 1000)),
    ]


CHANNEL_OPTIONS = _COMMON + [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A restarted hub is found again within seconds, not after the default 2 minutes of backoff.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.enable_retries", 0),
]


class ChannelCredentials(TypedDict):
    """`open_channel`'s (and the exchange clients') PEM keyword arguments."""

    root_cert: bytes | None
    client_cert: bytes | None
    client_key: bytes | None


@dataclass(frozen=True)
class ServerTLS:
    """PEM server certificate chain and key; `client_ca` turns on mutual TLS (clients must present a cert)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: Path, key: Path, client_ca: Path | None = None) -> ServerTLS:
        return cls(
            cert_chain=Path(cert).read_bytes(),
            private_key=Path(key).read_bytes(),
            client_ca=Path(client_ca).read_bytes() if client_ca else None,
        )

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def _read(path: Path | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


@dataclass(frozen=True)
class ClientTLS:
    """What a client trusts and presents: the exchange's CA (TLS), and its own certificate for mutual TLS.

    Read once from the files every client CLI takes (`--ca-file`, `--client-cert`, `--client-key`), so each one
    checks their combinations alike; the fields are `open_channel`'s and the clients' keyword arguments.
    """

    root_cert: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None

    @classmethod
    def from_files(
        cls, ca_file: Path | None, client_cert: Path | None = None, client_key: Path | None = None
    ) -> ClientTLS:
        """Raises ValueError naming the flags for a half pair or a client certificate without TLS; OSError unread."""
        if (client_cert is None) != (client_key is None):
            raise ValueError("--client-cert and --client-key go together")
        if client_cert is not None and ca_file is None:
            raise ValueError("--client-cert needs TLS: pass --ca-file too")
        return cls(root_cert=_read(ca_file), client_cert=_read(client_cert), client_key=_read(client_key))

    def channel_kwargs(self) -> ChannelCredentials:
        return {"root_cert": self.root_cert, "client_cert": self.client_cert, "client_key": self.client_key}


def open_channel(
    target: str,
    *,
    root_cert: bytes | None = None,
    client_cert: bytes | None = None,
    client_key: bytes | None = None,
    server_name: str | None = None,
) -> grpc.Channel:
    """A TLS channel when `root_cert` is given (plus a client cert for mTLS), else plaintext."""
    options: list[tuple[str, int | str]] = list(CHANNEL_OPTIONS)
    if root_cert is None:
        if client_cert or client_key:
            raise ValueError("a client certificate needs TLS: pass root_cert too")
        return grpc.insecure_channel(target, options=options)
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    creds = grpc.ssl_channel_credentials(
        root_certificates=root_cert, private_key=client_key, certificate_chain=client_cert
    )
    return grpc.secure_channel(target, creds, options=options)
