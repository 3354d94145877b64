"""Hostile clients of the exchange: half-open calls, idle connections, trickling and stale upload streams.

They speak real gRPC (grpc.aio, from an event loop in a thread of their own, so thousands of calls need no
thousands of threads) or raw TCP, and report what the hub answered, so tests assert on status codes and counts.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc

from plantfed.contract.records import UpdateMeta
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.exchange.convert import meta_to_wire

_T = TypeVar("_T")
SERVICE = "/plantfed.v1.ModelExchange/"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Attacker:
    """An event loop in a daemon thread; `run` waits for a coroutine, `launch` leaves it running."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="attacker", daemon=True)
        self._thread.start()

    def launch(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 300) -> _T:
        return self.launch(coro).result(timeout)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)


def channels(target: str, count: int) -> list[grpc.aio.Channel]:
    """`count` channels with a connection each (no subchannel sharing between them)."""
    return [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(count)]


async def half_open_calls(
    target: str, count: int, metadata: Sequence[tuple[str, str]] = (), *, connections: int = 1
) -> Counter[grpc.StatusCode]:
    """`count` GetRound calls that send their headers and never their message; how each one ended, by code."""
    pool = channels(target, connections)
    try:
        calls = []
        for i in range(count):
            method = pool[i % connections].stream_unary(
                SERVICE + "GetRound",
                request_serializer=pb.GetRoundRequest.SerializeToString,
                response_deserializer=pb.RoundAssignment.FromString,
            )
            calls.append(method(metadata=tuple(metadata)))
        ended: Counter[grpc.StatusCode] = Counter()
        for call in calls:
            try:
                await call
                ended[grpc.StatusCode.OK] += 1
            except grpc.aio.AioRpcError as err:
                ended[err.code()] += 1
        return ended
    finally:
        for channel in pool:
            await channel.close()


class UploadStream:
    """An upload stream written by hand: `start`, then chunks whenever the test says, then its outcome.

    Create and use it on the attacker's loop (inside a coroutine given to `Attacker.run`).
    """

    def __init__(self, target: str, token: str) -> None:
        self._channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        method = self._channel.stream_unary(
            SERVICE + "UploadUpdate",
            request_serializer=pb.UploadRequest.SerializeToString,
            response_deserializer=pb.UploadReceipt.FromString,
        )
        self._call = method(metadata=bearer(token))

    async def start(self, meta: UpdateMeta, offset: int = 0) -> None:
        await self._call.write(pb.UploadRequest(start=pb.UploadStart(meta=meta_to_wire(meta), offset=offset)))

    async def send(self, chunk: bytes) -> bool:
        """Send a chunk; False once the hub has ended the call."""
        if self._call.done():
            return False
        try:
            await self._call.write(pb.UploadRequest(chunk=chunk))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return False
        return True

    async def trickle(self, data: bytes, every: float) -> int:
        """Send `data` one byte at a time, `every` seconds apart, until the hub ends the call; bytes sent."""
        sent = 0
        for i in range(len(data)):
            if not await self.send(data[i : i + 1]):
                break
            sent += 1
            await asyncio.sleep(every)
        return sent

    async def outcome(self) -> tuple[grpc.StatusCode, str]:
        try:
            await self._call
            return grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        finally:
            await self._channel.close()


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """`count` TCP connections to the hub: every other one says the HTTP/2 preface and settings, then nothing."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if i % 2:
            sock.sendall(H2_PREFACE + EMPTY_SETTINGS)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the hub has closed this connection (drains whatever it sent first, e.g. SETTINGS or GOAWAY)."""
    try:
        while data := sock.recv(65536):
            del data
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True
