"""Issue 20, item 8: every id an RPC accepts follows the CRDs' naming rule (`plantfed.contract.naming`).

An id with a newline, a capital, a path separator or a trailing dot is refused with INVALID_ARGUMENT naming
the id, by admin and plant RPCs alike, before anything is created or read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from support.exchange import ADMIN_TOKEN, Hub
from support.updates import MODEL, raw_upload, update_meta, upload_start, write_good_update

from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc

BAD_IDS = ["r1\n", "R1", "a/b", "r1.", "-r1", "r 1", "x" * 254]

Call = Callable[[Any, str], Any]

ADMIN_CALLS: dict[str, Call] = {
    "OpenRound": lambda s, bad: s.OpenRound(pb.Round(round_id=bad, model=MODEL, base_version=1, plants=["plant-a"])),
    "OpenRound.model": lambda s, bad: s.OpenRound(pb.Round(round_id="r2", model=bad, base_version=1, plants=["a"])),
    "OpenRound.plants": lambda s, bad: s.OpenRound(pb.Round(round_id="r2", model=MODEL, base_version=1, plants=[bad])),
    "CloseRound": lambda s, bad: s.CloseRound(pb.CloseRoundRequest(round_id=bad)),
    "ListUpdates": lambda s, bad: s.ListUpdates(pb.ListUpdatesRequest(round_id=bad)),
    "ListEvaluations": lambda s, bad: s.ListEvaluations(pb.ListEvaluationsRequest(round_id=bad)),
    "Promote": lambda s, bad: s.Promote(pb.PromoteRequest(model=bad, version=1)),
    "GetModel": lambda s, bad: s.GetModel(pb.GetModelRequest(model=bad)),
    "ListVersions": lambda s, bad: s.ListVersions(pb.ListVersionsRequest(model=bad)),
    "GetPrivacyLedger": lambda s, bad: s.GetPrivacyLedger(pb.GetPrivacyLedgerRequest(model=bad)),
}
PLANT_CALLS: dict[str, Call] = {
    "GetRound": lambda s, bad: s.GetRound(pb.GetRoundRequest(round_id=bad)),
    "GetUploadStatus": lambda s, bad: s.GetUploadStatus(pb.UploadStatusRequest(round_id=bad)),
    "SubmitEvaluation": lambda s, bad: s.SubmitEvaluation(
        pb.Evaluation(round_id=bad, plant="plant-a", version=2, num_samples=1)
    ),
    "DownloadModel": lambda s, bad: list(s.DownloadModel(pb.DownloadRequest(model=bad))),
}


def _refused(hub: Hub, token: str, call: Call, bad: str) -> grpc.RpcError:
    with grpc.insecure_channel(hub.target) as channel:
        stub = pb_grpc.ModelExchangeStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            call(_Authorized(stub, token), bad)
    return info.value


class _Authorized:
    """The stub with the bearer token on every call."""

    def __init__(self, stub: pb_grpc.ModelExchangeStub, token: str) -> None:
        self._stub, self._token = stub, token

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=(("authorization", f"Bearer {self._token}"),), timeout=30)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_admin_rpcs_refuse_ids_outside_the_naming_rule(strict_hub: Hub, bad: str) -> None:
    for rpc, call in ADMIN_CALLS.items():
        err = _refused(strict_hub, ADMIN_TOKEN, call, bad)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, rpc
        assert f"name {bad!r}" in (err.details() or ""), rpc
    assert [r.round_id for r in strict_hub.store.rounds()] == ["r1"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_plant_rpcs_refuse_ids_outside_the_naming_rule(strict_hub: Hub, bad: str) -> None:
    for rpc, call in PLANT_CALLS.items():
        err = _refused(strict_hub, strict_hub.tokens["plant-a"], call, bad)
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, rpc
        assert f"name {bad!r}" in (err.details() or ""), rpc


def test_an_update_naming_a_variant_outside_the_naming_rule_is_refused(strict_hub: Hub) -> None:
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    start = upload_start(update_meta("plant-a", "r1", path))
    start.meta.variant = "full\n"
    with pytest.raises(grpc.RpcError) as info:
        raw_upload(strict_hub, strict_hub.tokens["plant-a"], start, [path.read_bytes()])
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "variant" in (info.value.details() or "")
    assert strict_hub.store.updates("r1") == []
