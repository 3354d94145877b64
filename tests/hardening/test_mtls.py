"""Issue 7, item 4: mutual TLS with per-plant client certificates bound to the plant's token.

Certificates are in the cert-manager Secret format (tls.crt, tls.key, ca.crt). Token rotation is covered by
tests/engine/test_exchange_auth.py::test_rotated_plant_token_takes_effect_on_a_running_hub.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.exchange import ADMIN_TOKEN, FAST_RETRY
from support.tls import issue_cert, make_pki, new_key, pem_key
from support.updates import MODEL, base_state, update_meta, write_good_update

from plantfed.contract.records import RoundRecord, RoundState
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.store import ModelStore
from plantfed.exchange import AdminClient, ExchangeClient, ExchangeError, ServerTLS, TokenBook, build_server
from plantfed.exchange.auth import ADMIN_CERT_NAME, PLANT_URI_PREFIX
from plantfed.formats import codecs

TOKENS = {"plant-a": "tok-a", "plant-b": "tok-b"}


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, cn: str | None, uris: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        """(tls.crt, tls.key) of a client certificate with this CN (None: an empty subject) and SAN URIs."""
        key = new_key()
        sans: list[x509.GeneralName] | None = [x509.UniformResourceIdentifier(u) for u in uris] or None
        if cn is not None:
            cert = issue_cert(cn, key, self.cert.subject, self.key, ca=False, sans=sans)
        else:
            template = issue_cert("template", key, self.cert.subject, self.key, ca=False)
            cert = x509.CertificateBuilder(
                subject_name=x509.Name([]),
                issuer_name=template.issuer,
                public_key=key.public_key(),
                serial_number=x509.random_serial_number(),
                not_valid_before=template.not_valid_before_utc,
                not_valid_after=template.not_valid_after_utc,
            ).sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)


def new_ca(name: str) -> Ca:
    key = new_key()
    return Ca(issue_cert(name, key, None, key, ca=True), key)


@dataclass
class MtlsHub:
    target: str
    store: ModelStore
    ca: Ca
    server_ca: bytes
    tmp: Path

    def plant(self, plant: str, cert: tuple[bytes, bytes] | None, *, token: str | None = None, **kw) -> ExchangeClient:
        crt, key = cert or (None, None)
        kw.setdefault("root_cert", self.server_ca)
        return ExchangeClient(
            self.target, token or TOKENS[plant], client_cert=crt, client_key=key, retry=FAST_RETRY, **kw
        )

    def admin(self, cert: tuple[bytes, bytes]) -> AdminClient:
        crt, key = cert
        return AdminClient(
            self.target, ADMIN_TOKEN, root_cert=self.server_ca, client_cert=crt, client_key=key, retry=FAST_RETRY
        )

    def upload(self, client: ExchangeClient, plant: str, seed: int = 1):
        path = write_good_update(self.tmp / f"{plant}-{seed}.safetensors", seed=seed)
        return client.upload_update(update_meta(plant, "r1", path), path)


@pytest.fixture
def mtls_hub(tmp_path: Path) -> Iterator[MtlsHub]:
    pki = make_pki()  # server certificate for localhost/127.0.0.1 and its CA
    clients = new_ca("plant-client-ca")
    tls = ServerTLS(cert_chain=pki.server.cert_chain, private_key=pki.server.private_key, client_ca=clients.pem)
    store = ModelStore(tmp_path / "store")
    server, port = build_server(store, TokenBook.from_tokens(TOKENS), admin_token=ADMIN_TOKEN, tls=tls)
    server.start()
    hub = MtlsHub(f"127.0.0.1:{port}", store, clients, pki.ca_cert, tmp_path)
    base = tmp_path / "base.safetensors"
    codecs.save_state(base_state(), base)
    with hub.admin(clients.issue(ADMIN_CERT_NAME)) as admin:
        admin.publish_model(MODEL, base, promote=True)
        admin.open_round(RoundRecord(round_id="r1", model=MODEL, base_version=1, plants=list(TOKENS)))
    yield hub
    server.stop(None).wait()


def _refused(call) -> ExchangeError:
    with pytest.raises(ExchangeError) as info:
        call()
    return info.value


def test_plant_with_its_own_certificate_uploads(mtls_hub: MtlsHub) -> None:
    by_cn = mtls_hub.ca.issue("plant-a")
    by_uri = mtls_hub.ca.issue("edge-gpu-17.plant-b.example", (f"{PLANT_URI_PREFIX}plant-b",))
    with mtls_hub.plant("plant-a", by_cn) as a, mtls_hub.plant("plant-b", by_uri) as b:
        mtls_hub.upload(a, "plant-a")
        mtls_hub.upload(b, "plant-b")
    assert sorted(u.meta.plant for u in mtls_hub.store.updates("r1")) == ["plant-a", "plant-b"]


def test_a_plant_presenting_another_plants_certificate_is_refused(mtls_hub: MtlsHub) -> None:
    b_cert = mtls_hub.ca.issue("plant-b")
    with mtls_hub.plant("plant-a", b_cert) as a:
        err = _refused(lambda: mtls_hub.upload(a, "plant-a"))
        assert err.code == grpc.StatusCode.PERMISSION_DENIED
        assert "token belongs to plant 'plant-a'" in err.details and "'plant-b'" in err.details
        assert _refused(lambda: a.get_round("r1")).code == grpc.StatusCode.PERMISSION_DENIED
    assert mtls_hub.store.updates("r1") == []


@pytest.mark.parametrize(
    ("cn", "uris"),
    [
        ("plant-a", (f"{PLANT_URI_PREFIX}plant-b",)),  # the SAN URI wins over the CN
        ("plant-a", (f"{PLANT_URI_PREFIX}plant-a", f"{PLANT_URI_PREFIX}plant-b")),  # ambiguous
        (None, ()),  # names no plant
    ],
    ids=["uri-names-another-plant", "two-plant-uris", "no-name"],
)
def test_a_certificate_that_does_not_name_exactly_this_plant_is_refused(
    mtls_hub: MtlsHub, cn: str | None, uris: tuple[str, ...]
) -> None:
    with mtls_hub.plant("plant-a", mtls_hub.ca.issue(cn, uris)) as a:
        assert _refused(lambda: mtls_hub.upload(a, "plant-a")).code == grpc.StatusCode.PERMISSION_DENIED
    assert mtls_hub.store.updates("r1") == []


@pytest.mark.parametrize(
    "cert",
    [("plant-a", ()), ("plantfed-operator", ()), (ADMIN_CERT_NAME, (f"{PLANT_URI_PREFIX}plant-a",))],
    ids=["a-plants-certificate", "another-name", "admin-cn-but-a-plant-uri"],
)
def test_the_admin_token_counts_only_with_the_admins_certificate(mtls_hub: MtlsHub, cert) -> None:
    """A leaked admin token is useless to the holder of any other certificate from the CA, a plant's included."""
    with mtls_hub.admin(mtls_hub.ca.issue(*cert)) as admin:
        err = _refused(lambda: admin.close_round("r1"))
        assert err.code == grpc.StatusCode.PERMISSION_DENIED
        assert f"needs the admin's client certificate (CN {ADMIN_CERT_NAME})" in err.details
        assert _refused(lambda: admin.list_versions(MODEL)).code == grpc.StatusCode.PERMISSION_DENIED
    assert mtls_hub.store.get_round("r1").state is RoundState.OPEN
    with mtls_hub.admin(mtls_hub.ca.issue(ADMIN_CERT_NAME)) as admin:
        assert [v.version for v in admin.list_versions(MODEL)] == [1]


def test_a_plant_token_with_the_admins_certificate_is_refused(mtls_hub: MtlsHub) -> None:
    with mtls_hub.plant("plant-a", mtls_hub.ca.issue(ADMIN_CERT_NAME)) as a:
        assert _refused(lambda: a.get_round("r1")).code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("client", ["plaintext", "no-certificate", "certificate-from-another-ca", "untrusted-server"])
def test_connections_without_a_valid_mutual_handshake_are_refused(mtls_hub: MtlsHub, client: str) -> None:
    rogue = new_ca("rogue-ca")
    good_crt, good_key = mtls_hub.ca.issue("plant-a")
    rogue_crt, rogue_key = rogue.issue("plant-a")
    ssl = grpc.ssl_channel_credentials
    channel = {
        "plaintext": lambda: grpc.insecure_channel(mtls_hub.target),
        "no-certificate": lambda: grpc.secure_channel(mtls_hub.target, ssl(mtls_hub.server_ca)),
        "certificate-from-another-ca": lambda: grpc.secure_channel(
            mtls_hub.target, ssl(mtls_hub.server_ca, private_key=rogue_key, certificate_chain=rogue_crt)
        ),
        "untrusted-server": lambda: grpc.secure_channel(
            mtls_hub.target, ssl(rogue.pem, private_key=good_key, certificate_chain=good_crt)
        ),
    }[client]()
    with channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.ModelExchangeStub(channel).GetRound(
            pb.GetRoundRequest(round_id="r1"), metadata=(("authorization", f"Bearer {TOKENS['plant-a']}"),), timeout=30
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # ...and the same plant with its own certificate is served (the refusals were about the handshake).
    with mtls_hub.plant("plant-a", (good_crt, good_key)) as a:
        assert a.get_round("r1").assigned


def test_train_cli_flags_reach_the_client(mtls_hub: MtlsHub, tmp_path: Path) -> None:
    """`plantfed train/evaluate --client-cert/--client-key` (files as mounted from a cert-manager Secret)."""
    from plantfed.cli import _plant_runtime, build_parser

    secret = tmp_path / "secret"
    secret.mkdir()
    crt, key = mtls_hub.ca.issue("plant-a")
    (secret / "tls.crt").write_bytes(crt)
    (secret / "tls.key").write_bytes(key)
    (secret / "ca.crt").write_bytes(mtls_hub.server_ca)
    (secret / "token").write_text(TOKENS["plant-a"])
    argv = [
        "evaluate",
        "--exchange",
        mtls_hub.target,
        "--plant",
        "plant-a",
        "--token-file",
        str(secret / "token"),
        "--ca-file",
        str(secret / "ca.crt"),
        "--state-dir",
        str(tmp_path / "state"),
        "--client-cert",
        str(secret / "tls.crt"),
        "--client-key",
        str(secret / "tls.key"),
    ]
    args = build_parser().parse_args([*argv, "--model", MODEL])
    runtime = _plant_runtime(args)
    try:
        assert runtime.client.get_round("r1").assigned
    finally:
        runtime.client.close()
    half = build_parser().parse_args([*argv[:-2], "--model", MODEL])  # --client-cert without --client-key
    assert half.client_key is None
    with pytest.raises(SystemExit, match="go together"):
        _plant_runtime(half)
