"""Throwaway TLS material: a CA, a server certificate for the loopback exchange and one plant's client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plantfed.exchange import ServerTLS
from plantfed.exchange.auth import ADMIN_CERT_NAME


@dataclass(frozen=True)
class Pki:
    ca_cert: bytes
    server: ServerTLS
    client_cert: bytes
    client_key: bytes


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """A certificate valid for a day (from five minutes ago); self-signed when `issuer` is None."""
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
    ca_key = new_key()
    ca = issue_cert("plantfed-test-ca", ca_key, None, ca_key, ca=True)
    server_key = new_key()
    server = issue_cert(
        "hub",
        server_key,
        ca.subject,
        ca_key,
        ca=False,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client_key = new_key()
    client = issue_cert(ADMIN_CERT_NAME, client_key, ca.subject, ca_key, ca=False)  # the admin's, for mTLS
    return Pki(
        ca_cert=pem_cert(ca),
        server=ServerTLS(cert_chain=pem_cert(server), private_key=pem_key(server_key)),
        client_cert=pem_cert(client),
        client_key=pem_key(client_key),
    )
