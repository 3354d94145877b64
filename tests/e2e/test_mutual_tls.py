"""Mutual TLS on a live federation: the hub chart installed with tls.mutual.enabled, one plant installed
with the client certificate Secret the hub chart issued it (copied to its cluster as docs/install.md says).

The exchange refuses a client without a certificate and one whose certificate comes from another CA at the
handshake, and takes the admin token only with the operator's certificate; meanwhile a whole round runs
with every exchange call under mTLS: the operator's admin calls, the agent's model cache, and the training
and evaluation pods the agent creates with the plant's Secret mounted.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client
from support.federation.plantside import CLIENT_CERT_SECRET, ChartPlant
from support.federation.rounds import condition, create_lineage, round_manifest, wait_phase
from support.federation.world import Federation
from support.kube.pki import CertificateAuthority

from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.exchange.transport import open_channel

PLANT = "mtls-press1"
"""The plant the e2e conftest's `mtls_federation` joins (MTLS_PLANT there)."""


def held_certificate(plant: ChartPlant) -> tuple[bytes, bytes]:
    """The client certificate and key as the plant holds them: its Secret in its own cluster."""
    with plant.cluster.api_client() as api:
        data = client.CoreV1Api(api).read_namespaced_secret(CLIENT_CERT_SECRET, plant.namespace).data
    return base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"])


def refusal(
    world: Federation, token: str, cert: tuple[bytes, bytes] | None, rpc: str, request: Any
) -> tuple[grpc.StatusCode, str]:
    """Status and message of one call that must fail, made with this token and client certificate."""
    crt, key = cert or (None, None)
    with open_channel(world.hub.exchange, root_cert=world.hub.ca_pem, client_cert=crt, client_key=key) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            getattr(pb_grpc.ModelExchangeStub(channel), rpc)(
                request, metadata=(("authorization", f"Bearer {token}"),), timeout=60
            )
    return refused.value.code(), refused.value.details() or ""


def test_the_exchange_serves_only_clients_with_a_certificate_of_its_ca(
    mtls_federation: Federation, tmp_path: Path
) -> None:
    plant_token = mtls_federation.hub.plant_tokens[PLANT]
    held = held_certificate(mtls_federation.agents[PLANT])
    rogue = CertificateAuthority(tmp_path / "rogue").issue(PLANT, common_name=PLANT)

    # A round that does not exist: NOT_FOUND means the call passed the handshake and authentication.
    get_round = "GetRound", pb.GetRoundRequest(round_id="no-such-round")
    assert refusal(mtls_federation, plant_token, None, *get_round)[0] == grpc.StatusCode.UNAVAILABLE
    other_ca = (rogue.cert.read_bytes(), rogue.key.read_bytes())
    assert refusal(mtls_federation, plant_token, other_ca, *get_round)[0] == grpc.StatusCode.UNAVAILABLE
    code, message = refusal(mtls_federation, plant_token, held, *get_round)
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-round" in message, message
    # The admin token counts only with the operator's certificate: with the plant's it is refused.
    code, message = refusal(
        mtls_federation, mtls_federation.hub.admin_token, held, "ListVersions", pb.ListVersionsRequest(model="secured")
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED and "needs the admin's client certificate" in message, message


def test_a_round_runs_with_every_exchange_call_under_mutual_tls(mtls_federation: Federation) -> None:
    hub, plant = mtls_federation.hub, mtls_federation.agents[PLANT]
    create_lineage(hub, "secured", template={"plants": [PLANT], "minParticipants": 1, "pod": {"gpus": 1}})
    hub.apply(round_manifest(hub, "secured-1", "secured", plants=[PLANT], minParticipants=1))
    fr = wait_phase(hub, "federatedrounds", "secured-1", ("Succeeded",))
    assert condition(fr, "Promoted")["reason"] == "Promoted"
    assert {p["plant"]: p["state"] for p in fr["status"]["plants"]} == {PLANT: "Uploaded"}
    assert fr["status"]["evaluation"]["reported"] == 1
    with hub.admin() as admin:
        assert [u.meta.plant for u in admin.list_updates("secured-1").updates] == [PLANT]
    for component in ("train", "evaluate"):
        (job,) = plant.training_jobs("secured-1", component=component)
        pod = job.spec.template.spec
        command = pod.containers[0].command
        assert command[command.index("--client-cert") + 1].startswith("/var/run/plantfed/client-tls/"), component
        assert [v.secret.secret_name for v in pod.volumes if v.name == "client-tls"] == [CLIENT_CERT_SECRET]


def test_helm_test_of_the_plant_reaches_the_hub_with_its_certificate(mtls_federation: Federation) -> None:
    result = mtls_federation.agents[PLANT].helm_test()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"takes this token for plant {PLANT!r}" in result.stdout, result.stdout
