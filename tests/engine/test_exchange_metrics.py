"""The exchange counts what it accepts and serves, per model and plant, for the convergence dashboard."""

from __future__ import annotations

from pathlib import Path

from support.exchange import ADMIN_TOKEN, FAST_RETRY, meta_for, write_payload, write_token_book

from plantfed.contract.metrics import Metrics
from plantfed.contract.records import RoundRecord
from plantfed.engine.store import ModelStore
from plantfed.exchange.auth import TokenBook
from plantfed.exchange.client import AdminClient, ExchangeClient
from plantfed.exchange.payload import PayloadCheck
from plantfed.exchange.server import build_server


def test_accepted_bytes_and_served_bytes_are_counted(tmp_path: Path, plant_tokens: dict[str, str]) -> None:
    metrics = Metrics()
    book = TokenBook(write_token_book(tmp_path / "tokens.txt", plant_tokens), reload_seconds=0)
    server, port = build_server(
        ModelStore(tmp_path / "store"),
        book,
        admin_token=ADMIN_TOKEN,
        metrics=metrics,
        payload_check=PayloadCheck.FORMAT,
    )
    server.start()
    target = f"127.0.0.1:{port}"
    try:
        admin = AdminClient(target, ADMIN_TOKEN, retry=FAST_RETRY)
        seed = write_payload(tmp_path / "seed.safetensors", 50_000)
        admin.publish_model("m", seed, promote=True)
        admin.open_round(RoundRecord(round_id="r1", model="m", base_version=1, plants=["plant-a"]))
        plant = ExchangeClient(target, plant_tokens["plant-a"], retry=FAST_RETRY)
        payload = write_payload(tmp_path / "update.safetensors", 30_000, seed=2)
        plant.upload_update(meta_for("plant-a", "r1", payload), payload)
        plant.upload_update(meta_for("plant-a", "r1", payload), payload)
        plant.download_model("m", None, tmp_path / "global.safetensors")
    finally:
        server.stop(None).wait()

    value = metrics.registry.get_sample_value
    labels = {"model": "m", "plant": "plant-a"}
    assert value("plantfed_update_bytes_received_total", labels) == payload.stat().st_size
    assert value("plantfed_model_bytes_served_total", {"model": "m"}) == seed.stat().st_size
    assert value("plantfed_upload_throughput_bytes_per_second", labels) > 0
