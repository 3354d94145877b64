"""The exchange as its own process: SIGKILLed mid-upload, restarted on the same store, the upload resumes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.exchange import ADMIN_TOKEN, FAST_RETRY, meta_for, wait_until, write_payload
from support.exchange_process import ServerProcess

from plantfed.contract.records import RoundRecord
from plantfed.engine.store import ModelStore
from plantfed.exchange import AdminClient, ExchangeClient, Receipt
from plantfed.exchange.transport import MAX_CHUNK

pytestmark = pytest.mark.slow


def test_upload_resumes_after_the_server_process_is_killed(
    server_process: ServerProcess, plant_tokens: dict[str, str], tmp_path: Path
) -> None:
    server_process.start()
    target = f"127.0.0.1:{server_process.port}"
    with AdminClient(target, ADMIN_TOKEN, retry=FAST_RETRY) as admin:
        admin.publish_model("bearing-cnn", write_payload(tmp_path / "seed.safetensors", 4096), promote=True)
        admin.open_round(RoundRecord(round_id="r1", model="bearing-cnn", base_version=1, plants=["plant-a"]))

    payload = write_payload(tmp_path / "update.safetensors", 8 * MAX_CHUNK, seed=3)
    total = payload.stat().st_size
    meta = meta_for("plant-a", "r1", payload)
    observer = ModelStore(server_process.store_dir)
    stalled_at: list[int] = []
    release = threading.Event()

    def stall_once_past_half(done: int, _total: int) -> None:
        if done >= total // 2 and not stalled_at:
            stalled_at.append(done)
            release.wait()

    outcome: dict[str, Receipt | BaseException] = {}

    def upload() -> None:
        try:
            with ExchangeClient(target, plant_tokens["plant-a"], retry=FAST_RETRY) as client:
                outcome["receipt"] = client.upload_update(meta, payload, progress=stall_once_past_half)
        except BaseException as exc:
            outcome["error"] = exc

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        wait_until(lambda: stalled_at, what="the client to stall past half")
        wait_until(
            lambda: observer.partial_offset("r1", "plant-a", meta.sha256) == stalled_at[0],
            what="the hub to hold every byte sent before the stall",
        )
        server_process.kill()
        server_process.start()
    finally:
        release.set()
        uploader.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    receipt = outcome["receipt"]
    assert isinstance(receipt, Receipt)

    held = stalled_at[0]
    assert 0 < held < total
    assert receipt.attempt_offsets[0] == 0 and receipt.attempt_offsets[-1] == held
    # The hub wrote every byte exactly once: only the bytes it did not hold were re-sent.
    assert receipt.bytes_received == total
    assert observer.blob_path(receipt.digest).read_bytes() == payload.read_bytes()
    assert [u.digest for u in observer.updates("r1")] == [meta.sha256]

    server_process.stop()
    assert server_process.proc is not None and server_process.proc.returncode == 0  # SIGTERM: graceful
    server_process.start()
    with AdminClient(target, ADMIN_TOKEN, retry=FAST_RETRY) as admin:
        listed = admin.list_updates("r1").updates
    assert [u.meta for u in listed] == [meta]


def test_cli_refuses_an_unreadable_token_book_with_the_reason(tmp_path: Path) -> None:
    admin = tmp_path / "admin"
    admin.write_text(ADMIN_TOKEN)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantfed.exchange",
            "--store",
            str(tmp_path / "s"),
            "--tokens",
            str(tmp_path / "missing"),
            "--admin-token-file",
            str(admin),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot read token book" in result.stderr and "missing" in result.stderr
