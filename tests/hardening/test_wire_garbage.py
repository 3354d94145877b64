"""Garbage on the gRPC port (random bytes, HTTP/1, a cut HTTP/2 preface) never takes the exchange down."""

from __future__ import annotations

import os
import socket

import pytest
from support.exchange import Hub
from support.updates import MODEL, update_meta, write_good_update

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GARBAGE = {
    "random": os.urandom(4096),
    "http1": b"GET /plantfed.v1.ModelExchange/GetRound HTTP/1.1\r\nHost: hub\r\nContent-Length: 5\r\n\r\nhello",
    "truncated-h2-preface": H2_PREFACE[:11],
    "h2-preface-then-junk": H2_PREFACE + os.urandom(512),
    "huge-frame-header": H2_PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"\0" * 64,
}


def _send(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            while sock.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            pass


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_bytes_leave_the_server_serving(strict_hub: Hub, name: str) -> None:
    port = int(strict_hub.target.rsplit(":", 1)[1])
    for _ in range(3):
        _send(port, GARBAGE[name])
    # A connection left half-open mid-preface must not block others either.
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    idle.sendall(H2_PREFACE[:5])
    try:
        path = write_good_update(strict_hub.tmp / "a.safetensors")
        receipt = strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", path), path)
        assert not receipt.duplicate
        assert strict_hub.plant("plant-b").get_round("r1").model == MODEL
    finally:
        idle.close()
