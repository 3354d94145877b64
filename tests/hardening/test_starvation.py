"""Nobody can starve the exchange: half-open calls, idle connections, trickling or stale uploads, crowds.

Each attack runs against the exchange as its own process (`python -m plantfed.exchange` with tight limits), so
its memory is measured from /proc and what it answers is real gRPC. Every test also checks that legitimate calls
are served during the attack and that the hub's memory stays bounded (VmHWM: the peak over the whole attack).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from support.attacker import Attacker, UploadStream, bearer, closed_by_peer, half_open_calls, idle_connections
from support.exchange import (
    ADMIN_TOKEN,
    FAST_RETRY,
    PLANTS,
    free_port,
    meta_for,
    wait_until,
    write_payload,
    write_token_book,
)
from support.exchange_process import ServerProcess
from support.scrape import sample

from plantfed.contract.records import RoundRecord
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.engine.store import ModelStore
from plantfed.exchange import AdminClient, ExchangeClient
from plantfed.exchange.transport import MAX_CHUNK

pytestmark = pytest.mark.slow

MiB = 1 << 20
#: Limits tight enough that each attack meets them within seconds (the defaults are minutes).
TIGHT = (
    "--first-message-seconds=3",
    "--max-calls-per-plant=8",
    "--connection-idle-seconds=2",
    "--handshake-timeout-seconds=2",
)


class GuardedHub:
    """An exchange process with `flags`, `bearing-cnn` v1 promoted and round r1 open for every plant."""

    def __init__(self, tmp: Path, tokens: dict[str, str], flags: tuple[str, ...]) -> None:
        tmp.mkdir(parents=True)
        admin_file = tmp / "admin-token"
        admin_file.write_text(ADMIN_TOKEN)
        self.tokens = tokens
        self.metrics_port = free_port()
        self.process = ServerProcess(
            store_dir=tmp / "store",
            tokens_path=write_token_book(tmp / "tokens.txt", tokens),
            admin_file=admin_file,
            port=free_port(),
            log_path=tmp / "exchange.log",
            args=(*flags, f"--metrics-port={self.metrics_port}"),
        )
        self.tmp = tmp
        self.store = ModelStore(tmp / "store")
        self.process.start()
        with self.admin() as admin:
            admin.publish_model("bearing-cnn", write_payload(tmp / "seed.safetensors", 2 * MiB), promote=True)
            admin.open_round(RoundRecord(round_id="r1", model="bearing-cnn", base_version=1, plants=list(PLANTS)))

    @property
    def target(self) -> str:
        return self.process.target

    def admin(self) -> AdminClient:
        return AdminClient(self.target, ADMIN_TOKEN, retry=FAST_RETRY)

    def plant(self, name: str, **kwargs) -> ExchangeClient:
        return ExchangeClient(self.target, self.tokens[name], retry=kwargs.pop("retry", FAST_RETRY), **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.metrics_port, name, **labels)

    def served(self) -> None:
        """Every plant and the admin get answers now (each call's connect timeout is the client's default)."""
        for plant in PLANTS:
            with self.plant(plant) as client:
                assert client.get_round("r1").assigned
        with self.admin() as admin:
            assert admin.list_updates("r1").round.round_id == "r1"


@pytest.fixture
def guarded_hub(tmp_path: Path, plant_tokens: dict[str, str]) -> Iterator[Callable[..., GuardedHub]]:
    hubs: list[GuardedHub] = []

    def start(*flags: str) -> GuardedHub:
        hubs.append(GuardedHub(tmp_path / f"hub{len(hubs)}", plant_tokens, flags))
        return hubs[-1]

    yield start
    for hub in hubs:
        hub.process.stop()


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    a = Attacker()
    yield a
    a.close()


def test_half_open_calls_neither_block_plants_nor_pile_up(guarded_hub, attacker: Attacker) -> None:
    hub = guarded_hub(*TIGHT)
    hub.served()
    before = hub.process.rss_bytes()

    # A stolen plant token holding calls open without a message: at most its per-plant limit is held ...
    held = attacker.launch(half_open_calls(hub.target, 200, bearer(hub.tokens["plant-c"]), connections=4))
    wait_until(
        lambda: hub.metric("plantfed_exchange_calls_in_progress", kind="other") >= 8,
        what="the stolen token's half-open calls to be held",
    )
    # ... and thousands without a valid token are refused before anything is read from them.
    anonymous = attacker.launch(half_open_calls(hub.target, 3000, bearer("guessed"), connections=50))
    for plant in ("plant-a", "plant-b"):  # while they are held, other plants are served
        with hub.plant(plant) as client:
            assert client.get_round("r1").assigned

    refused = anonymous.result(300)
    # Refused unread, or shed by gRPC itself before the hub saw them: a burst beyond what waits to be picked up
    # is cancelled, and streams beyond a connection's limit are refused (clients retry both).
    assert set(refused) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}
    assert refused.total() == 3000 and refused[grpc.StatusCode.UNAUTHENTICATED] > 0
    ended = held.result(300)
    assert set(ended) == {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert ended[grpc.StatusCode.DEADLINE_EXCEEDED] >= 8  # held, then ended for never sending a message
    assert (
        hub.metric("plantfed_exchange_calls_ended_total", reason="unauthenticated")
        == refused[grpc.StatusCode.UNAUTHENTICATED]
    )
    assert (
        hub.metric("plantfed_exchange_calls_ended_total", reason="no_message")
        == ended[grpc.StatusCode.DEADLINE_EXCEEDED]
    )
    hub.served()  # the stolen token's plant too: its calls were freed
    assert hub.process.rss_bytes("VmHWM") - before < 48 * MiB


def test_idle_connections_cost_little_and_are_closed(guarded_hub) -> None:
    hub = guarded_hub(*TIGHT)
    hub.served()
    before = hub.process.rss_bytes()
    socks = idle_connections(hub.process.port, 1000)  # half of them never finish the HTTP/2 handshake
    try:
        hub.served()
        wait_until(
            lambda: all(closed_by_peer(s) for s in socks), timeout=120, what="the hub to close every idle connection"
        )
    finally:
        for sock in socks:
            sock.close()
    hub.served()
    assert hub.process.rss_bytes("VmHWM") - before < 64 * MiB


def test_a_trickling_upload_is_ended_and_what_it_sent_is_kept(guarded_hub, attacker: Attacker) -> None:
    hub = guarded_hub(*TIGHT, "--min-transfer-rate=1048576", "--transfer-grace-seconds=1")
    payload = write_payload(hub.tmp / "u.safetensors", 3 * MiB, seed=4)
    meta = meta_for("plant-a", "r1", payload)

    async def slowloris() -> tuple[int, tuple[grpc.StatusCode, str]]:
        stream = UploadStream(hub.target, hub.tokens["plant-a"])
        await stream.start(meta)
        sent = await stream.trickle(payload.read_bytes(), every=0.2)
        return sent, await stream.outcome()

    sent, (code, details) = attacker.run(slowloris())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "stalled" in details and "minimum transfer rate" in details
    assert 0 < sent < 100
    # A byte still in flight when the hub hangs up was never received; every byte the hub says it received is kept.
    received = int(re.search(r"stalled after (\d+) bytes", details).group(1))
    assert 0 < received <= sent
    kept = hub.store.partial_offset("r1", "plant-a", meta.sha256)
    assert kept == received
    assert hub.metric("plantfed_exchange_calls_ended_total", reason="stalled") == 1
    # The plant's own client resumes from the trickled bytes and finishes.
    with hub.plant("plant-a") as client:
        receipt = client.upload_update(meta, payload)
    assert receipt.attempt_offsets == (kept,)
    assert hub.store.blob_path(receipt.digest).read_bytes() == payload.read_bytes()


def test_a_newer_upload_stream_takes_over_from_a_stale_one(guarded_hub, attacker: Attacker) -> None:
    hub = guarded_hub(*TIGHT, "--min-transfer-rate=0")  # no minimum rate: only the takeover can free it
    payload = write_payload(hub.tmp / "u.safetensors", 4 * MAX_CHUNK, seed=5)
    meta = meta_for("plant-a", "r1", payload)

    async def go_stale() -> UploadStream:
        stream = UploadStream(hub.target, hub.tokens["plant-a"])
        await stream.start(meta)
        await stream.send(payload.read_bytes()[:MAX_CHUNK])  # then nothing, as from a half-dead connection
        return stream

    stale = attacker.run(go_stale())
    wait_until(
        lambda: hub.store.partial_offset("r1", "plant-a", meta.sha256) == MAX_CHUNK,
        what="the stale stream's first chunk on the hub's disk",
    )
    with hub.plant("plant-a") as client:
        receipt = client.upload_update(meta, payload)
    assert receipt.attempt_offsets == (MAX_CHUNK,)  # resumed from what the stale stream wrote ...
    assert receipt.bytes_sent == payload.stat().st_size - MAX_CHUNK  # ... sending only the rest
    assert [u.digest for u in hub.store.updates("r1")] == [meta.sha256]
    code, details = attacker.run(stale.outcome())
    assert code == grpc.StatusCode.ABORTED and "took over" in details
    assert hub.metric("plantfed_exchange_calls_ended_total", reason="superseded") == 1


def test_transfers_over_the_limits_wait_their_turn_and_all_complete(guarded_hub) -> None:
    hub = guarded_hub(*TIGHT, "--max-transfers=3", "--max-calls-per-plant=2")
    with hub.admin() as admin:
        admin.open_round(RoundRecord(round_id="r2", model="bearing-cnn", base_version=1, plants=list(PLANTS)))
    before = hub.process.rss_bytes()
    uploads = [(plant, rid) for plant in PLANTS for rid in ("r1", "r2")]  # 6 uploads > 3 transfer slots
    payloads = {
        u: write_payload(hub.tmp / f"{u[0]}-{u[1]}.safetensors", 2 * MiB, seed=i) for i, u in enumerate(uploads)
    }
    receipts: dict[tuple[str, str], object] = {}
    errors: list[BaseException] = []
    gate = threading.Barrier(len(uploads))

    def upload(plant: str, rid: str) -> None:
        def paced(_done: int, _total: int) -> None:
            threading.Event().wait(0.05)  # a slow link: 64 KiB every 50 ms

        try:
            with hub.plant(plant, chunk_size=64 << 10) as client:
                gate.wait()
                path = payloads[(plant, rid)]
                receipts[(plant, rid)] = client.upload_update(meta_for(plant, rid, path), path, progress=paced)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=u) for u in uploads]
    for t in threads:
        t.start()
    wait_until(
        lambda: hub.metric("plantfed_exchange_calls_in_progress", kind="transfer") == 3, what="every slot in use"
    )
    hub.served()  # unary calls are not transfers: served while every transfer slot is taken
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(receipts) == sorted(uploads)
    assert hub.metric("plantfed_exchange_calls_ended_total", reason="overloaded") > 0
    for rid in ("r1", "r2"):
        committed = {u.meta.plant: u.digest for u in hub.store.updates(rid)}
        assert committed == {p: meta_for(p, rid, payloads[(p, rid)]).sha256 for p in PLANTS}
    assert hub.process.rss_bytes("VmHWM") - before < 64 * MiB


def test_the_hub_ends_a_download_nobody_reads(guarded_hub, attacker: Attacker) -> None:
    hub = guarded_hub(*TIGHT, "--min-transfer-rate=1048576", "--transfer-grace-seconds=1")
    with hub.admin() as admin:
        big = admin.publish_model("big", write_payload(hub.tmp / "big.safetensors", 64 * MiB), promote=True)

    async def stall() -> tuple[grpc.StatusCode, str]:
        channel = grpc.aio.insecure_channel(hub.target)
        call = channel.unary_stream(
            "/plantfed.v1.ModelExchange/DownloadModel",
            request_serializer=pb.DownloadRequest.SerializeToString,
            response_deserializer=pb.DownloadResponse.FromString,
        )(pb.DownloadRequest(model="big"), metadata=bearer(hub.tokens["plant-b"]))
        try:
            await call.read()  # the info message, then nothing is read
            while not await asyncio.to_thread(hub.metric, "plantfed_exchange_calls_ended_total", reason="stalled"):
                await asyncio.sleep(0.1)
            while await call.read() is not grpc.aio.EOF:  # what the hub had buffered before it gave up
                pass
            return grpc.StatusCode.OK, "read to the end"
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        finally:
            await channel.close()

    code, details = attacker.run(stall())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "download stalled" in details
    with hub.plant("plant-b") as client:  # a reading client gets the whole model
        assert client.download_model("big", None, hub.tmp / "got.safetensors").digest == big.digest
