"""`plantfed init-model` and `plantfed healthcheck` as the processes the Jobs and probes run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.kube.pki import CertificateAuthority
from support.kube.ports import free_ports

from plantfed.engine.store import ModelStore


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
    assert json.loads(again.stdout.splitlines()[-1]) == {
        "model": "bearing",
        "created": False,
        "versions": 1,
        "promoted": 1,
    }
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


def start_exchange(tmp_path: Path, ca: CertificateAuthority, *extra: str) -> subprocess.Popen:
    """A real `plantfed exchange` over TLS (certificate for localhost and 127.0.0.1) with one plant token."""
    cert = ca.issue("exchange", common_name="exchange", server_hosts=("localhost", "127.0.0.1"), client=False)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "plant-a").write_text("plant-a-token")
    admin = tmp_path / "admin"
    admin.write_text("admin-token")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plantfed",
            "exchange",
            f"--store={tmp_path / 'store'}",
            f"--tokens={tokens}",
            f"--admin-token-file={admin}",
            f"--tls-cert={cert.cert}",
            f"--tls-key={cert.key}",
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.communicate(timeout=30)


@pytest.fixture
def exchange(tmp_path):
    """A real `plantfed exchange` over TLS on a free port."""
    ca = CertificateAuthority(tmp_path / "pki")
    (port,) = free_ports(1)
    proc = start_exchange(tmp_path, ca, f"--listen=127.0.0.1:{port}")
    yield f"localhost:{port}", ca.cert_file, tmp_path / "admin"
    stop(proc)


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


@pytest.fixture
def mtls_exchange(tmp_path):
    """An exchange that requires client certificates, with its health service on a loopback port (the chart's)."""
    ca = CertificateAuthority(tmp_path / "pki")
    port, health = free_ports(2)
    proc = start_exchange(
        tmp_path, ca, f"--listen=127.0.0.1:{port}", f"--client-ca={ca.cert_file}", f"--health-listen=127.0.0.1:{health}"
    )
    yield f"localhost:{port}", f"localhost:{health}", ca
    stop(proc)


def test_readiness_probe_passes_under_mtls_without_a_client_certificate(mtls_exchange):
    exchange, health, ca = mtls_exchange
    probe = plantfed("healthcheck", f"--exchange={health}", f"--ca-file={ca.cert_file}", "--timeout=30")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.strip() == f"exchange at {health} is serving"
    # The exchange's own port still refuses a client without a certificate: the probe could not use it.
    direct = plantfed("healthcheck", f"--exchange={exchange}", f"--ca-file={ca.cert_file}", "--timeout=3")
    assert direct.returncode == 1 and "is not healthy" in direct.stdout


def test_helm_test_passes_under_mtls_with_a_certificate_that_names_no_client(mtls_exchange, tmp_path):
    """`helm test`'s healthcheck dials the exchange's own port: its certificate gets it to health and, with
    the admin token, no further (the admin token counts only with CN plantfed:admin)."""
    exchange, _health, ca = mtls_exchange
    cert = ca.issue("healthcheck", common_name="plantfed:healthcheck")
    tls = (f"--ca-file={ca.cert_file}", f"--client-cert={cert.cert}", f"--client-key={cert.key}")
    probe = plantfed("healthcheck", f"--exchange={exchange}", *tls, "--timeout=30")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.strip() == f"exchange at {exchange} is serving"
    admin = plantfed(
        "healthcheck", f"--exchange={exchange}", *tls, f"--token-file={tmp_path / 'admin'}", "--timeout=30"
    )
    assert admin.returncode == 1 and "PERMISSION_DENIED" in admin.stdout and "plantfed:admin" in admin.stdout
    half = plantfed("healthcheck", f"--exchange={exchange}", f"--ca-file={ca.cert_file}", f"--client-cert={cert.cert}")
    assert half.returncode == 1 and "--client-cert and --client-key go together" in half.stdout


def test_readiness_probe_fails_against_a_wrong_ca(mtls_exchange, tmp_path):
    _exchange, health, ca = mtls_exchange
    assert plantfed("healthcheck", f"--exchange={health}", f"--ca-file={ca.cert_file}", "--timeout=30").returncode == 0
    other = CertificateAuthority(tmp_path / "other")
    probe = plantfed("healthcheck", f"--exchange={health}", f"--ca-file={other.cert_file}", "--timeout=3")
    assert probe.returncode == 1
    assert probe.stdout.startswith(f"exchange at {health} is not healthy: ")


def test_the_health_port_serves_nothing_but_health(mtls_exchange):
    """A plant token on the port that skips mTLS reaches no exchange method."""
    import grpc

    from plantfed.contract.wire.v1 import exchange_pb2 as pb
    from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
    from plantfed.exchange.transport import open_channel

    _exchange, health, ca = mtls_exchange
    assert plantfed("healthcheck", f"--exchange={health}", f"--ca-file={ca.cert_file}", "--timeout=30").returncode == 0
    with open_channel(health, root_cert=ca.cert_pem) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.ModelExchangeStub(channel).GetRound(
                pb.GetRoundRequest(), metadata=(("authorization", "Bearer plant-a-token"),), timeout=10
            )
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_exchange_refuses_a_health_port_off_loopback(tmp_path):
    port, health = free_ports(2)
    proc = start_exchange(
        tmp_path,
        CertificateAuthority(tmp_path / "pki"),
        f"--listen=127.0.0.1:{port}",
        f"--health-listen=0.0.0.0:{health}",
    )
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "the health address must be loopback" in err
