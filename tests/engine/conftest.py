"""Fixtures for the model exchange: a real gRPC server on loopback over a real store directory.

The helpers behind them (and what the tests import) are in support.exchange, support.exchange_process and
support.tls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.exchange import ADMIN_TOKEN, Hub, free_port, new_plant_tokens, running_hub, write_token_book
from support.exchange_process import ServerProcess
from support.tls import Pki, make_pki

from plantfed.exchange import PayloadCheck


@pytest.fixture
def plant_tokens() -> dict[str, str]:
    return new_plant_tokens()


@pytest.fixture
def hub(tmp_path: Path, plant_tokens: dict[str, str]) -> Iterator[Hub]:
    # These tests' payloads are synthetic safetensors files, not updates of the seeded model (tests/hardening
    # covers the default, deep check against the base model).
    with running_hub(tmp_path, plant_tokens, payload_check=PayloadCheck.FORMAT) as hub:
        yield hub


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


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
