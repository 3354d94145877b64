"""`plantfed init-model` and `plantfed healthcheck` as the processes the Jobs and probes run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plantfed.store import ModelStore
from support.kube.pki import CertificateAuthority
from support.kube.ports import free_ports


def plantfed(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plantfed", *args], capture_output=True, text=True, timeout=timeout)


def test_init_model_writes_a_promoted_first_version_once(tmp_path):
    store = tmp_path / "store"
    first = plantfed("init-model", f"--store={store}", "--model=bearing", "--task=bearing", "--seed=3")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout.splitlines()[-1])
    assert (created["created"], created["version"], created["seed"]) == (True, 1, 3)

    again = plantfed("init-model", f"--store={store}", "--model=bearing", "--task=bearing", "--seed=4")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1]) == {"model": "bearing", "created": False, "versions": 1,
                                                         "promoted": 1}
    versions = ModelStore(store).versions("bearing")
    assert [(v.version, v.promoted, v.parent, v.digest) for v in versions] == [(1, True, None, created["digest"])]


def test_init_model_seed_is_reproducible_and_from_version_copies(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for store in (a, b):
        assert plantfed("init-model", f"--store={store}", "--model=m", "--seed=9").returncode == 0
    assert ModelStore(a).promoted("m").digest == ModelStore(b).promoted("m").digest

    copy = plantfed("init-model", f"--store={a}", "--model=n", "--from-model=m", "--from-version=1")
    assert copy.returncode == 0, copy.stderr
    assert ModelStore(a).promoted("n").digest == ModelStore(a).promoted("m").digest

    missing = plantfed("init-model", f"--store={a}", "--model=o", "--from-model=nope")
    assert missing.returncode != 0
    assert "cannot start o from nope" in missing.stderr and ModelStore(a).versions("o") == []


@pytest.fixture
def exchange(tmp_path):
    """A real `plantfed exchange` over TLS on a free port."""
    ca = CertificateAuthority(tmp_path / "pki")
    cert = ca.issue("exchange", common_name="exchange", server_hosts=("localhost", "127.0.0.1"), client=False)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "plant-a").write_text("plant-a-token")
    admin = tmp_path / "admin"
    admin.write_text("admin-token")
    (port,) = free_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "plantfed", "exchange", f"--store={tmp_path / 'store'}",
                             f"--tokens={tokens}", f"--admin-token-file={admin}", f"--listen=127.0.0.1:{port}",
                             f"--tls-cert={cert.cert}", f"--tls-key={cert.key}"])
    yield f"localhost:{port}", ca.cert_file, admin
    proc.terminate()
    proc.wait(timeout=30)


def test_healthcheck_passes_against_a_serving_exchange(exchange):
    address, ca, admin = exchange
    anonymous = plantfed("healthcheck", f"--exchange={address}", f"--ca-file={ca}", "--timeout=30")
    assert anonymous.returncode == 0, anonymous.stdout + anonymous.stderr
    assert "is serving" in anonymous.stdout
    authenticated = plantfed("healthcheck", f"--exchange={address}", f"--ca-file={ca}", f"--token-file={admin}")
    assert authenticated.returncode == 0 and "accepts the admin token" in authenticated.stdout


def test_healthcheck_fails_clearly_on_an_untrusted_certificate(exchange, tmp_path):
    address, _ca, _admin = exchange
    other = CertificateAuthority(tmp_path / "other")
    result = plantfed("healthcheck", f"--exchange={address}", f"--ca-file={other.cert_file}", "--timeout=3")
    assert result.returncode == 1
    assert result.stdout.startswith(f"exchange at {address} is not healthy: ")


def test_healthcheck_fails_when_nothing_listens():
    (port,) = free_ports(1)
    result = plantfed("healthcheck", f"--exchange=127.0.0.1:{port}", "--timeout=2")
    assert result.returncode == 1
    assert "is not healthy: DEADLINE_EXCEEDED" in result.stdout or "UNAVAILABLE" in result.stdout


def test_missing_ca_file_is_named(tmp_path: Path):
    result = plantfed("healthcheck", "--exchange=127.0.0.1:1", f"--ca-file={tmp_path / 'nope.crt'}")
    assert result.returncode == 1 and "nope.crt" in result.stdout
