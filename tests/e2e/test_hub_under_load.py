"""The chart's exchange under more concurrent slow uploads than it has threads or room for one plant's calls.

40 uploads at once (both plants, 20 rounds each, as in the run that found 8 plants failing for want of a
server slot), each from a slow link: the plant's own client, pacing its 16 KiB chunks. The exchange serves them
without a thread per stream (more in progress than its io threads), refuses the ones over a plant's limit
(RESOURCE_EXHAUSTED), and the clients wait their turn and resume: every upload completes and is committed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from support.exchange import wait_until
from support.scrape import sample

from plantfed.contract.records import Codec, RoundRecord, UpdateMeta
from plantfed.exchange import ExchangeClient, Receipt
from plantfed.formats import codecs
from plantfed.formats.atomic import file_sha256

ROUNDS = 20
CHUNK = 16 << 10
MODEL = "load"
#: The chart's exchange.limits (values.yaml) this test runs into.
IO_THREADS, PER_PLANT = 8, 16


def _update(path: Path, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    codecs.write_update(
        codecs.encode_delta({"w": torch.randn(48_000, generator=g) * 0.01}, Codec.NONE), path, Codec.NONE
    )
    return path


def test_more_concurrent_slow_uploads_than_slots_all_complete(federation, tmp_path: Path) -> None:
    hub = federation.hub
    plants = sorted(federation.agents)
    base = tmp_path / "base.safetensors"
    codecs.save_state({"w": torch.zeros(48_000)}, base)
    rounds = [f"load-{i}" for i in range(ROUNDS)]
    with hub.admin() as admin:
        admin.publish_model(MODEL, base, promote=True)
        for rid in rounds:
            admin.open_round(RoundRecord(round_id=rid, model=MODEL, base_version=1, plants=plants))
    overloaded_before = sample(hub.exchange_metrics_port, "plantfed_exchange_calls_ended_total", reason="overloaded")

    uploads = [(plant, rid) for plant in plants for rid in rounds]
    payloads = {u: _update(tmp_path / f"{u[0]}-{u[1]}.safetensors", i) for i, u in enumerate(uploads)}
    receipts: dict[tuple[str, str], Receipt] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(uploads))

    def upload(plant: str, rid: str) -> None:
        def slow_link(_done: int, _total: int) -> None:
            threading.Event().wait(0.25)  # 16 KiB every quarter second

        path = payloads[(plant, rid)]
        meta = UpdateMeta(
            plant=plant,
            round_id=rid,
            base_version=1,
            num_samples=100,
            total_bytes=path.stat().st_size,
            sha256=file_sha256(path).hexdigest(),
        )
        try:
            with ExchangeClient(hub.exchange, hub.plant_tokens[plant], root_cert=hub.ca_pem, chunk_size=CHUNK) as c:
                start.wait()
                receipts[(plant, rid)] = c.upload_update(meta, path, progress=slow_link)
        except BaseException as exc:
            errors.append(exc)

    peak = [0.0]

    def in_progress() -> float:
        now = sample(hub.exchange_metrics_port, "plantfed_exchange_calls_in_progress", kind="transfer")
        peak[0] = max(peak[0], now)
        return now

    threads = [threading.Thread(target=upload, args=u) for u in uploads]
    for t in threads:
        t.start()
    wait_until(lambda: in_progress() >= len(plants) * PER_PLANT, timeout=120, what="every plant at its limit")
    with hub.admin() as admin:  # other calls are served meanwhile
        assert any(v.version == 1 for v in admin.list_versions(MODEL))
    while any(t.is_alive() for t in threads):
        in_progress()
        for t in threads:
            t.join(timeout=0.2)

    assert not errors, errors
    assert sorted(receipts) == sorted(uploads)
    # More streams at once than the exchange has threads, never more than the plants' limits allow ...
    assert IO_THREADS < peak[0] <= len(plants) * PER_PLANT
    # ... so some were refused for capacity, and waited their turn instead of failing.
    assert (
        sample(hub.exchange_metrics_port, "plantfed_exchange_calls_ended_total", reason="overloaded")
        > overloaded_before
    )
    with hub.admin() as admin:
        for rid in rounds:
            committed = {u.meta.plant: u.digest for u in admin.list_updates(rid).updates}
            assert committed == {p: receipts[(p, rid)].digest for p in plants}, rid
