"""Mutual TLS as a chart option (issue 7, item 4): what each chart renders with it off and on.

Off by default, TLS itself staying on. On, the exchange requires client certificates from its own CA and
the hub chart issues one per client in cert-manager's Secret format: per plant, for the operator (the
admin's name), and for the `helm test` pod. The plant chart hands the plant's to the agent, which mounts
it into the training and evaluation pods it creates; that path is followed through the agent's own flag
parsing and Job builder. Stability across upgrades needs a cluster: tests/charts/test_chart_install.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from agent.agent_objects import NOW, fm, fr, pp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helmchart import Manifests, flags

from plantfed.cli import build_parser
from plantfed.contract.api.round import RoundEvaluation
from plantfed.contract.naming import PLANT_KEY
from plantfed.exchange.auth import ADMIN_CERT_NAME, PLANT_URI_PREFIX, certificate_name
from plantfed.plant.agent.config import from_args
from plantfed.plant.agent.decide import evaluation_spec, training_spec
from plantfed.plant.agent.jobspec import training_job

MUTUAL = ("--set", "tls.mutual.enabled=true")
CERT_MANAGER = ("--set", "tls.certManager.enabled=true")
CLIENT_SECRET = "plantfed-client-tls"
#: Every client certificate the hub chart issues with PLANTS_VALUES (plant-a, plant-b) and `helm test` on.
CLIENTS = {
    "plantfed-operator-tls": ADMIN_CERT_NAME,
    "plantfed-healthcheck-tls": "plantfed:healthcheck",
    "plantfed-plant-plant-a-tls": "plant-a",
    "plantfed-plant-plant-b-tls": "plant-b",
}


def hub(helm, *args: str) -> Manifests:
    return helm.render_hub(*args, "-f", str(helm.plants_file))


def container(m: Manifests, kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    obj = m.get(kind, name)
    pod = obj["spec"] if kind == "Pod" else obj["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


def secret_at(pod: dict[str, Any], c: dict[str, Any], path: str) -> dict[str, Any]:
    """The Secret volume source mounted at the directory holding `path`."""
    mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount.get("readOnly") is True, mount
    return next(v for v in pod["volumes"] if v["name"] == mount["name"])["secret"]


def client_tls_source(pod: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    """The Secret the container's `--client-cert`/`--client-key` read, as the `plantfed` CLI parses its command;
    checked to be one volume holding exactly that pair."""
    args = build_parser().parse_args(c["command"][1:])
    cert, key = secret_at(pod, c, str(args.client_cert)), secret_at(pod, c, str(args.client_key))
    assert cert == key
    assert cert["items"] == [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]
    assert (args.client_cert.name, args.client_key.name) == ("tls.crt", "tls.key")
    return cert


def test_mutual_tls_is_off_by_default_and_tls_stays_on(helm):
    m = hub(helm)
    _pod, exchange = container(m, "Deployment", "plantfed-exchange")
    f = flags(exchange["command"])
    assert "--tls-cert" in f and "--client-ca" not in f
    for where, c in m.containers():
        assert not any(a.startswith(("--client-cert", "--client-key")) for a in c["command"]), where
    assert sorted(s["metadata"]["name"] for s in m.of("Secret") if s["type"] == "kubernetes.io/tls") == [
        "plantfed-ca",
        "plantfed-exchange-tls",
    ]


@pytest.mark.parametrize("issuance", [(), CERT_MANAGER], ids=["helm", "cert-manager"])
def test_the_exchange_requires_certificates_from_its_own_ca(helm, issuance):
    m = hub(helm, *MUTUAL, *issuance)
    pod, exchange = container(m, "Deployment", "plantfed-exchange")
    f = flags(exchange["command"])
    assert f["--client-ca"] == "/etc/plantfed/tls/ca.crt"
    assert (
        secret_at(pod, exchange, f["--client-ca"])["secretName"]
        == secret_at(pod, exchange, f["--tls-cert"])["secretName"]
    )
    # The readiness probe still dials the loopback health port without any client credential.
    assert flags(exchange["readinessProbe"]["exec"]["command"]) == {
        "--exchange": "localhost:8444",
        "--ca-file": "/etc/plantfed/tls/ca.crt",
        "--timeout": "5",
    }


@pytest.mark.parametrize("issuance", [(), CERT_MANAGER], ids=["helm", "cert-manager"])
def test_operator_and_helm_test_present_their_own_certificates(helm, issuance):
    m = hub(helm, *MUTUAL, *issuance)
    pod, operator = container(m, "Deployment", "plantfed-operator")
    assert client_tls_source(pod, operator)["secretName"] == "plantfed-operator-tls"
    assert flags(operator["command"])["--ca-file"] == "/etc/plantfed/tls/ca.crt"
    pod, test = container(m, "Pod", "plantfed-healthcheck")
    assert client_tls_source(pod, test)["secretName"] == "plantfed-healthcheck-tls"
    assert "--token-file" not in flags(test["command"]), (
        "the test pod holds no token: its certificate reaches health only"
    )
    # Nothing else gets one: the exchange is the server, and aggregation and init Jobs never call it.
    _pod, exchange = container(m, "Deployment", "plantfed-exchange")
    assert not any(a.startswith("--client-cert") for a in exchange["command"])
    without_tests = hub(helm, *MUTUAL, *issuance, "--set", "tests.enabled=false")
    assert "plantfed-healthcheck-tls" not in {
        o["metadata"]["name"] for o in without_tests if o["kind"] in ("Secret", "Certificate")
    }


def test_helm_issues_each_client_a_certificate_in_cert_manager_format_from_the_exchanges_ca(helm):
    m = hub(helm, *MUTUAL)
    ca_pem = base64.b64decode(m.get("Secret", "plantfed-ca")["data"]["tls.crt"])
    assert base64.b64decode(m.get("Secret", "plantfed-exchange-tls")["data"]["ca.crt"]) == ca_pem
    ca = x509.load_pem_x509_certificate(ca_pem)
    for name, identity in CLIENTS.items():
        secret = m.get("Secret", name)
        assert secret["type"] == "kubernetes.io/tls" and sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        assert data["ca.crt"] == ca_pem
        cert = x509.load_pem_x509_certificate(data["tls.crt"])
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(data["tls.key"], password=None)
        spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
        # What the exchange reads from it once the handshake verified it.
        assert certificate_name({"x509_pem_cert": [data["tls.crt"]]}) == identity, name
        # A DNS name under .invalid: TLS clients never match a client certificate's CN against a host.
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [f"{name}.client.invalid"]
    for plant in ("plant-a", "plant-b"):
        assert m.get("Secret", f"plantfed-plant-{plant}-tls")["metadata"]["labels"][PLANT_KEY] == plant


@pytest.mark.parametrize(
    ("issuer_args", "issuer"),
    [
        ((), {"name": "plantfed-ca", "kind": "Issuer", "group": "cert-manager.io"}),
        (
            (
                "--set",
                "tls.certManager.issuerRef.name=corp-ca",
                "--set",
                "tls.certManager.issuerRef.kind=ClusterIssuer",
            ),
            {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        ),
    ],
    ids=["bootstrapped-ca", "own-issuer"],
)
def test_cert_manager_issues_client_certificates_from_the_exchanges_issuer(helm, issuer_args, issuer):
    m = hub(helm, *MUTUAL, *CERT_MANAGER, *issuer_args)
    assert not [s for s in m.of("Secret") if s["type"] == "kubernetes.io/tls"], "cert-manager writes every Secret"
    assert m.get("Certificate", "plantfed-exchange")["spec"]["issuerRef"] == issuer
    for name, identity in CLIENTS.items():
        spec = m.get("Certificate", name)["spec"]
        assert spec["secretName"] == name and spec["issuerRef"] == issuer
        assert spec["commonName"] == identity
        assert spec["usages"] == ["client auth", "digital signature"]
        assert (spec["duration"], spec["renewBefore"]) == ("8760h", "720h")
        plant = identity if identity.startswith("plant-") else None
        assert spec.get("uris") == ([f"{PLANT_URI_PREFIX}{plant}"] if plant else None), name
        if plant:
            assert spec["secretTemplate"]["labels"] == {PLANT_KEY: plant}


# --- plant chart ----------------------------------------------------------------------------------------


def agent_config(helm, *args: str):
    """The agent's configuration as the agent itself parses the command the plant chart renders."""
    m = helm.render_plant(*args)
    pod, agent = container(m, "Deployment", "plantfed-agent")
    return pod, agent, from_args(build_parser().parse_args(agent["command"][1:]))


def test_the_plants_certificate_secret_reaches_the_agent_and_every_pod_it_starts(helm):
    pod, agent, cfg = agent_config(helm, "--set", f"hub.clientCertSecret={CLIENT_SECRET}")
    assert client_tls_source(pod, agent)["secretName"] == CLIENT_SECRET
    assert cfg.client_cert_secret == CLIENT_SECRET
    assert (cfg.client_cert, cfg.client_key) == (
        Path("/etc/plantfed/client-tls/tls.crt"),
        Path("/etc/plantfed/client-tls/tls.key"),
    )
    assert flags(agent["command"])["--ca-file"] == "/etc/plantfed/exchange/ca.crt"

    training = fr("r1", {"plant-a": "Assigned"}, uid="u-r1")
    scoring = fr("r1", {"plant-a": "Uploaded"}, uid="u-r1", phase="Evaluating")
    scoring.status.evaluation = RoundEvaluation(version=2, start_time=NOW, expected=1)
    for spec in (training_spec(training, fm(), pp(), 1, NOW), evaluation_spec(scoring, fm(), pp(), NOW)):
        job_pod = training_job(spec, cfg)["spec"]["template"]["spec"]
        (c,) = job_pod["containers"]
        assert c["command"][1] == spec.purpose
        assert client_tls_source(job_pod, c)["secretName"] == CLIENT_SECRET, spec.purpose


def test_without_a_client_certificate_nothing_is_mounted(helm):
    pod, agent, cfg = agent_config(helm)
    assert cfg.client_cert_secret is None and cfg.client_cert is None
    assert not any(v["name"] == "client-tls" for v in pod["volumes"])
    job_pod = training_job(training_spec(fr("r1", {"plant-a": "Assigned"}), fm(), pp(), 1, NOW), cfg)["spec"][
        "template"
    ]["spec"]
    assert "--client-cert" not in job_pod["containers"][0]["command"]
    assert not any(v["name"] == "client-tls" for v in job_pod["volumes"])
