"""A real model exchange for tests (gRPC on loopback over a real store directory) and what talks to it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from plantfed.contract.records import RoundRecord, UpdateMeta
from plantfed.engine.store import ModelStore, file_sha256
from plantfed.exchange import AdminClient, ExchangeClient, RetryPolicy, TokenBook, build_server
from support.kube.ports import free_ports

PLANTS = ("plant-a", "plant-b", "plant-c")
ADMIN_TOKEN = "admin-secret-token"
FAST_RETRY = RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=1.0, connect_timeout=30.0)


def wait_until(predicate: Callable[[], object], *, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll `predicate` until it is truthy; fail the test naming `what` if it never becomes so."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def port_accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def write_payload(path: Path, nbytes: int, seed: int = 0) -> Path:
    """A safetensors update of about `nbytes` (float32 tensors), distinct per seed."""
    rng = np.random.default_rng(seed)
    n = max(1, nbytes // 4)
    save_file(
        {"layer.weight": rng.standard_normal(n).astype(np.float32), "layer.bias": np.full(3, seed, np.float32)},
        str(path),
    )
    return path


def meta_for(plant: str, round_id: str, payload: Path, *, base_version: int = 1, **extra: Any) -> UpdateMeta:
    return UpdateMeta(
        plant=plant,
        round_id=round_id,
        base_version=base_version,
        num_samples=extra.pop("num_samples", 100),
        total_bytes=payload.stat().st_size,
        sha256=file_sha256(payload).hexdigest(),
        **extra,
    )


def new_plant_tokens(plants: Iterable[str] = PLANTS) -> dict[str, str]:
    """Fresh random tokens, so no test can pass by knowing another's."""
    return {p: f"token-for-{p}-{os.urandom(8).hex()}" for p in plants}


def write_token_book(path: Path, tokens: dict[str, str]) -> Path:
    path.write_text("# plant token\n" + "".join(f"{p} {t}\n" for p, t in tokens.items()))
    return path


@dataclass
class Hub:
    """A running exchange: its store, address and the credentials to talk to it."""

    store: ModelStore
    target: str
    tokens: dict[str, str]
    tmp: Path
    root_cert: bytes | None = None
    clients: list[ExchangeClient | AdminClient] = field(default_factory=list)

    def plant(self, name: str, **kwargs: Any) -> ExchangeClient:
        return self.client_with_token(self.tokens[name], **kwargs)

    def client_with_token(self, token: str, **kwargs: Any) -> ExchangeClient:
        kwargs.setdefault("retry", FAST_RETRY)
        client = ExchangeClient(self.target, token, root_cert=self.root_cert, **kwargs)
        self.clients.append(client)
        return client

    def admin(self, **kwargs: Any) -> AdminClient:
        kwargs.setdefault("retry", FAST_RETRY)
        client = AdminClient(self.target, ADMIN_TOKEN, root_cert=self.root_cert, **kwargs)
        self.clients.append(client)
        return client

    def seed(self, model: str = "bearing-cnn", nbytes: int = 64 << 10, seed: int = 7) -> tuple[int, Path]:
        """Publish and promote initial weights; returns (version, the file published)."""
        path = write_payload(self.tmp / f"seed-{model}-{seed}.safetensors", nbytes, seed)
        return self.admin().publish_model(model, path, promote=True).version, path

    def open_round(
        self, round_id: str = "r1", plants: tuple[str, ...] = ("plant-a", "plant-b"), **kw: Any
    ) -> RoundRecord:
        return self.admin().open_round(
            RoundRecord(
                round_id=round_id,
                model=kw.pop("model", "bearing-cnn"),
                base_version=kw.pop("base_version", 1),
                plants=list(plants),
                **kw,
            )
        )


@contextmanager
def running_hub(tmp: Path, tokens: dict[str, str], **server_options: Any) -> Iterator[Hub]:
    """An exchange on a free loopback port over `tmp/store`; `server_options` go to `build_server`."""
    store = ModelStore(tmp / "store")
    book = TokenBook(write_token_book(tmp / "tokens.txt", tokens), reload_seconds=0)
    server, port = build_server(store, book, admin_token=ADMIN_TOKEN, address="127.0.0.1:0", **server_options)
    server.start()
    hub = Hub(store=store, target=f"127.0.0.1:{port}", tokens=tokens, tmp=tmp)
    try:
        yield hub
    finally:
        for client in hub.clients:
            client.close()
        server.stop(None).wait()
