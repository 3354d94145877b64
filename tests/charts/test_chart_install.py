"""The hub chart installed and upgraded with real Helm against a real API server.

What only a cluster can show: generated certificates and tokens survive `helm upgrade` (they are
looked up, not re-generated), a changed name re-signs the server certificate with the same CA,
adding a plant keeps the other plants' tokens and client certificates (and does not restart the
exchange), and a plant's ServiceAccount can really touch only its own PlantParticipant. The hub's pods are
pinned to a node that does not exist: nothing here needs them running, and the e2e tests run them.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
import yaml
from helmchart import HUB, REPO
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from support.crds import apply_crds

from plantfed.contract.naming import API_VERSION, GROUP, VERSION

PIN = [
    "--set",
    "exchange.nodeSelector.plantfed\\.io/test=none",
    "--set",
    "operator.nodeSelector.plantfed\\.io/test=none",
    # Nothing runs here, so neither would the uninstall hook's Job (helm would wait out its timeout on it).
    "--set",
    "operator.stopOnUninstall=false",
]
PLANT_A = {"name": "plant-a", "labels": {"region": "eu"}, "data": {"pvc": {"claimName": "vibration"}}}
PLANT_B = {"name": "plant-b", "data": {"hostPath": {"path": "/data"}}}


def secrets(cluster, namespace: str) -> dict[str, dict[str, str]]:
    with cluster.api_client() as api:
        items = client.CoreV1Api(api).list_namespaced_secret(namespace).items
    return {str(s.metadata.name): {k: str(v) for k, v in (s.data or {}).items()} for s in items}


def helm_release(cluster, namespace: str, verb: str, values: dict, tmp_path: Path) -> None:
    path = tmp_path / f"{verb}-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(values))
    cluster.helm(
        verb,
        "plantfed",
        str(HUB),
        "-n",
        namespace,
        "--set",
        "crds.enabled=false",
        "--set",
        "tests.enabled=false",
        *PIN,
        "-f",
        str(path),
    )


@pytest.fixture
def hub(control_plane, namespace, tmp_path):
    apply_crds(control_plane)
    helm_release(control_plane, namespace, "install", {"plants": [PLANT_A]}, tmp_path)
    try:
        yield namespace
    finally:
        control_plane.helm("uninstall", "plantfed", "-n", namespace, check=False)


def test_upgrades_keep_certificates_and_tokens(control_plane, hub, tmp_path):
    before = secrets(control_plane, hub)
    for name in ("plantfed-ca", "plantfed-exchange-tls", "plantfed-admin-token", "plantfed-plant-tokens"):
        assert before[name], name

    helm_release(control_plane, hub, "upgrade", {"plants": [PLANT_A]}, tmp_path)
    after = secrets(control_plane, hub)
    for name in ("plantfed-ca", "plantfed-exchange-tls", "plantfed-admin-token", "plantfed-plant-tokens"):
        assert after[name] == before[name], f"{name} changed on a plain upgrade"

    # A new plant and a new external name: plant-a's token and the CA stay, the server certificate
    # is re-signed for the new name by the same CA.
    helm_release(
        control_plane,
        hub,
        "upgrade",
        {"plants": [PLANT_A, PLANT_B], "tls": {"extraDnsNames": ["hub.example.com"]}},
        tmp_path,
    )
    grown = secrets(control_plane, hub)
    assert grown["plantfed-plant-tokens"]["plant-a"] == before["plantfed-plant-tokens"]["plant-a"]
    assert grown["plantfed-plant-tokens"]["plant-b"] not in before["plantfed-plant-tokens"].values()
    assert grown["plantfed-admin-token"] == before["plantfed-admin-token"]
    assert grown["plantfed-ca"] == before["plantfed-ca"]
    tls = grown["plantfed-exchange-tls"]
    assert tls["ca.crt"] == before["plantfed-exchange-tls"]["ca.crt"]
    assert tls["tls.crt"] != before["plantfed-exchange-tls"]["tls.crt"]
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(tls["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "hub.example.com" in names


def test_client_certificates_survive_upgrades_and_a_new_plant_does_not_roll_the_exchange(control_plane, hub, tmp_path):
    """Under mutual TLS the copies plants hold stay valid across upgrades, and the exchange (which reads its
    certificate at start) restarts only when that changes, not when a plant's client certificate is added."""
    from cryptography import x509

    def exchange_checksum() -> str:
        with control_plane.api_client() as api:
            dep = client.AppsV1Api(api).read_namespaced_deployment("plantfed-exchange", hub)
        return dep.spec.template.metadata.annotations["checksum/tls"]

    plain = secrets(control_plane, hub)
    mutual = {"tls": {"mutual": {"enabled": True}}}
    helm_release(control_plane, hub, "upgrade", {"plants": [PLANT_A], **mutual}, tmp_path)
    first = secrets(control_plane, hub)
    clients = ("plantfed-operator-tls", "plantfed-plant-plant-a-tls")
    for name in clients:
        assert first[name]["ca.crt"] == plain["plantfed-exchange-tls"]["ca.crt"], name
    for name in ("plantfed-ca", "plantfed-exchange-tls"):
        assert first[name] == plain[name], f"turning mutual TLS on changed {name}"
    checksum = exchange_checksum()

    helm_release(control_plane, hub, "upgrade", {"plants": [PLANT_A], **mutual}, tmp_path)
    again = secrets(control_plane, hub)
    for name in clients:
        assert again[name] == first[name], f"{name} changed on a plain upgrade"

    helm_release(control_plane, hub, "upgrade", {"plants": [PLANT_A, PLANT_B], **mutual}, tmp_path)
    grown = secrets(control_plane, hub)
    for name in clients:
        assert grown[name] == first[name], f"{name} changed when plant-b was added"
    added = grown["plantfed-plant-plant-b-tls"]
    assert added["ca.crt"] == first["plantfed-exchange-tls"]["ca.crt"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(added["tls.crt"]))
    assert cert.subject.rfc4514_string() == "CN=plant-b"
    assert exchange_checksum() == checksum, "adding a plant restarted the exchange"


def test_plant_service_account_reaches_only_its_own_participant(control_plane, hub, tmp_path):
    helm_release(control_plane, hub, "upgrade", {"plants": [PLANT_A, PLANT_B]}, tmp_path)
    # The token controller fills the plant's long-lived token Secret.
    deadline = time.monotonic() + 60
    while not secrets(control_plane, hub).get("plantfed-plant-plant-a-token", {}).get("token"):
        assert time.monotonic() < deadline, "token Secret for plant-a never got a token"
        time.sleep(1)

    kubeconfig = control_plane.service_account_kubeconfig(hub, "plantfed-plant-plant-a")
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        custom = client.CustomObjectsApi(api)
        mine = custom.get_namespaced_custom_object(GROUP, VERSION, hub, "plantparticipants", "plant-a")
        assert mine["spec"]["plantId"] == "plant-a" and mine["metadata"]["labels"]["region"] == "eu"
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, hub, "plantparticipants", "plant-a", {"status": {"agentVersion": "test"}}
        )
        custom.list_namespaced_custom_object(GROUP, VERSION, hub, "federatedrounds")
        custom.list_namespaced_custom_object(GROUP, VERSION, hub, "federatedmodels")

        def forbidden(call, *args) -> None:
            with pytest.raises(ApiException) as err:
                call(*args)
            assert err.value.status == 403, f"{call.__name__}{args} was allowed"

        forbidden(custom.get_namespaced_custom_object, GROUP, VERSION, hub, "plantparticipants", "plant-b")
        forbidden(
            custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            hub,
            "plantparticipants",
            "plant-b",
            {"status": {"agentVersion": "forged"}},
        )
        forbidden(custom.list_namespaced_custom_object, GROUP, VERSION, hub, "plantparticipants")
        forbidden(
            custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            hub,
            "federatedrounds",
            {"apiVersion": API_VERSION, "kind": "FederatedRound", "metadata": {"name": "x"}},
        )
        core = client.CoreV1Api(api)
        forbidden(core.list_namespaced_secret, hub)
        forbidden(core.read_namespaced_secret, "plantfed-plant-tokens", hub)


def test_plant_agent_rights_are_its_namespace_jobs_and_nothing_more(control_plane, namespace):
    control_plane.helm(
        "install",
        "plantfed",
        str(REPO / "charts" / "plantfed-plant"),
        "-n",
        namespace,
        "--set",
        "plant.id=plant-a",
        "--set",
        "hub.exchange=hub.example.com:8443",
        "--set",
        "hub.existingSecret=plantfed-hub-credentials",
        "--set",
        "data.existingClaim=vibration",
        "--set",
        "agent.nodeSelector.plantfed\\.io/test=none",
    )
    try:
        kubeconfig = control_plane.service_account_kubeconfig(namespace, "plantfed-agent")
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
            job = {
                "metadata": {"name": "train-r1"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "nodeSelector": {"plantfed.io/test": "none"},
                            "containers": [{"name": "train", "image": "plantfed", "command": ["plantfed", "train"]}],
                        }
                    }
                },
            }
            batch.create_namespaced_job(namespace, job)
            batch.list_namespaced_job(namespace)
            core.list_namespaced_pod(namespace)
            core.create_namespaced_secret(namespace, {"metadata": {"name": "upload-r1"}, "stringData": {"token": "t"}})
            core.read_namespaced_secret("upload-r1", namespace)
            core.delete_namespaced_secret("upload-r1", namespace)
            batch.delete_namespaced_job("train-r1", namespace)

            def forbidden(call, *args) -> None:
                with pytest.raises(ApiException) as err:
                    call(*args)
                assert err.value.status == 403, f"{call.__name__}{args} was allowed"

            forbidden(core.list_namespaced_secret, namespace)  # no browsing other Secrets
            forbidden(core.list_secret_for_all_namespaces)
            forbidden(batch.list_job_for_all_namespaces)
            forbidden(batch.create_namespaced_job, "default", job)
            forbidden(core.list_node)
            forbidden(
                core.create_namespaced_pod,
                namespace,
                {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            )
    finally:
        control_plane.helm("uninstall", "plantfed", "-n", namespace, check=False)
