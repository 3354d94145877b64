"""What one participant pass reads from the API server: the body kopf's watch delivered, re-read only on 409.

At 100 plants the heartbeat events and the per-plant ticks were 20 GETs a second (bench/bench_operator.py);
the pass now decides from the watched body and re-reads only when the status patch finds it stale.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from plantfed.contract.metrics import Metrics
from plantfed.hub.config import OperatorConfig
from plantfed.hub.reconciler import Reconciler

NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)


def participant(rv: str, heartbeat: datetime) -> dict[str, Any]:
    return {
        "metadata": {"name": "a", "namespace": "hub", "generation": 1, "resourceVersion": rv},
        "spec": {"plantId": "a", "capacity": {"gpus": 1}, "data": {"hostPath": {"path": "/data"}}},
        "status": {"lastHeartbeatTime": heartbeat.isoformat()},
    }


class ApiServer:
    """The two calls a participant pass makes, on one stored object; a patch from a stale body gets 409."""

    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored, self.gets, self.patches = stored, 0, 0

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        return self.stored

    def patch_status(self, plural: str, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["resourceVersion"] != self.stored["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.patches += 1
        return body


def reconciler(api: ApiServer) -> Reconciler:
    cfg = OperatorConfig(namespace="hub", exchange="x:1", admin_token_file=Path("/t"), store_claim="s", image="i")
    return Reconciler(cfg, api, admin=None, metrics=Metrics(), clock=lambda: NOW)  # type: ignore[arg-type]


def test_a_participant_pass_decides_from_the_watched_body_without_a_get() -> None:
    body = participant("7", NOW - timedelta(seconds=5))
    api = ApiServer(body)
    reconciler(api).participant("hub", "a", seen=body)
    assert (api.gets, api.patches) == (0, 1)  # Ready written, from the body the watch delivered


def test_a_stale_watched_body_is_refused_and_the_pass_decides_again_from_a_fresh_read() -> None:
    api = ApiServer(participant("8", NOW - timedelta(seconds=5)))
    reconciler(api).participant("hub", "a", seen=participant("7", NOW - timedelta(minutes=10)))
    assert (api.gets, api.patches) == (1, 1)


def test_without_a_watched_body_the_pass_reads_the_object() -> None:
    api = ApiServer(participant("7", NOW - timedelta(seconds=5)))
    reconciler(api).participant("hub", "a")
    assert api.gets == 1
