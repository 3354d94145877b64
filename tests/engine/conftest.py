"""Fixtures for the model exchange: a real gRPC server on loopback over a real store directory."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from safetensors.numpy import save_file

from plantfed.exchange import AdminClient, ExchangeClient, PayloadCheck, RetryPolicy, ServerTLS, TokenBook, build_server
from plantfed.exchange.auth import ADMIN_CERT_NAME
from plantfed.records import RoundRecord, UpdateMeta
from plantfed.store import ModelStore, file_sha256

REPO = Path(__file__).resolve().parents[2]
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_payload(path: Path, nbytes: int, seed: int = 0) -> Path:
    """A safetensors update of about `nbytes` (float32 tensors), distinct per seed."""
    rng = np.random.default_rng(seed)
    n = max(1, nbytes // 4)
    save_file(
        {"layer.weight": rng.standard_normal(n).astype(np.float32), "layer.bias": np.full(3, seed, np.float32)},
        str(path),
    )
    return path


def meta_for(plant: str, round_id: str, payload: Path, *, base_version: int = 1, **extra: object) -> UpdateMeta:
    return UpdateMeta(
        plant=plant,
        round_id=round_id,
        base_version=base_version,
        num_samples=extra.pop("num_samples", 100),
        total_bytes=payload.stat().st_size,
        sha256=file_sha256(payload).hexdigest(),
        **extra,
    )


@dataclass
class Hub:
    """A running exchange: its store, address and the credentials to talk to it."""

    store: ModelStore
    target: str
    tokens: dict[str, str]
    tmp: Path
    root_cert: bytes | None = None
    clients: list = field(default_factory=list)

    def plant(self, name: str, **kwargs: object) -> ExchangeClient:
        return self.client_with_token(self.tokens[name], **kwargs)

    def client_with_token(self, token: str, **kwargs: object) -> ExchangeClient:
        kwargs.setdefault("retry", FAST_RETRY)
        client = ExchangeClient(self.target, token, root_cert=self.root_cert, **kwargs)
        self.clients.append(client)
        return client

    def admin(self, **kwargs: object) -> AdminClient:
        kwargs.setdefault("retry", FAST_RETRY)
        client = AdminClient(self.target, ADMIN_TOKEN, root_cert=self.root_cert, **kwargs)
        self.clients.append(client)
        return client

    def seed(self, model: str = "bearing-cnn", nbytes: int = 64 << 10, seed: int = 7) -> tuple[int, Path]:
        """Publish and promote initial weights; returns (version, the file published)."""
        path = write_payload(self.tmp / f"seed-{model}-{seed}.safetensors", nbytes, seed)
        return self.admin().publish_model(model, path, promote=True).version, path

    def open_round(
        self, round_id: str = "r1", plants: tuple[str, ...] = ("plant-a", "plant-b"), **kw: object
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


def write_token_book(path: Path, tokens: dict[str, str]) -> Path:
    path.write_text("# plant token\n" + "".join(f"{p} {t}\n" for p, t in tokens.items()))
    return path


@pytest.fixture
def plant_tokens() -> dict[str, str]:
    return {p: f"token-for-{p}-{os.urandom(8).hex()}" for p in PLANTS}


@pytest.fixture
def hub(tmp_path: Path, plant_tokens: dict[str, str]) -> Iterator[Hub]:
    store = ModelStore(tmp_path / "store")
    book = TokenBook(write_token_book(tmp_path / "tokens.txt", plant_tokens), reload_seconds=0)
    # These tests' payloads are synthetic safetensors files, not updates of the seeded model (tests/hardening
    # covers the default, deep check against the base model).
    server, port = build_server(
        store, book, admin_token=ADMIN_TOKEN, address="127.0.0.1:0", payload_check=PayloadCheck.FORMAT
    )
    server.start()
    hub = Hub(store=store, target=f"127.0.0.1:{port}", tokens=plant_tokens, tmp=tmp_path)
    yield hub
    for client in hub.clients:
        client.close()
    server.stop(None).wait()


# --- TLS material ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: bytes
    server: ServerTLS
    client_cert: bytes
    client_key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: str, key, issuer: x509.Name | None, issuer_key, *, ca: bool, sans: list | None = None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki() -> Pki:
    ca_key = _key()
    ca = _cert("plantfed-test-ca", ca_key, None, ca_key, ca=True)
    server_key = _key()
    server = _cert(
        "hub",
        server_key,
        ca.subject,
        ca_key,
        ca=False,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key = _key()
    client = _cert(ADMIN_CERT_NAME, client_key, ca.subject, ca_key, ca=False)  # the admin's, for mTLS
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    return Pki(
        ca_cert=pem(ca),
        server=ServerTLS(cert_chain=pem(server), private_key=_pem_key(server_key)),
        client_cert=pem(client),
        client_key=_pem_key(client_key),
    )


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


# --- the server as a separate process ---------------------------------------------------------------------


@dataclass
class ServerProcess:
    """`python -m plantfed.exchange` on a fixed port, so it can be killed and restarted on the same address."""

    store_dir: Path
    tokens_path: Path
    admin_file: Path
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantfed.exchange",
                "--store",
                str(self.store_dir),
                "--tokens",
                str(self.tokens_path),
                "--admin-token-file",
                str(self.admin_file),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--payload-check=format",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        log.close()
        wait_until(lambda: port_accepts(self.port) or self.proc.poll() is not None, what="exchange to listen")
        assert self.proc.poll() is None, self.log_path.read_text()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server_process(tmp_path: Path, plant_tokens: dict[str, str]) -> Iterator[ServerProcess]:
    admin_file = tmp_path / "admin-token"
    admin_file.write_text(ADMIN_TOKEN + "\n")
    proc = ServerProcess(
        store_dir=tmp_path / "store",
        tokens_path=write_token_book(tmp_path / "tokens.txt", plant_tokens),
        admin_file=admin_file,
        port=free_port(),
        log_path=tmp_path / "exchange.log",
    )
    yield proc
    proc.stop()
