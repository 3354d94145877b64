"""Issue 20, item 9: temporary files of killed aggregations, uploads and record writes do not pile up.

A killed process's scratch entries are removed at exchange start-up and by every aggregation Job
(`ModelStore.sweep_leftovers`), but only once unused (nobody holds their lock) and older than the grace period,
so nothing in use is ever removed. The leftovers here are made by real processes SIGKILLed mid-write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.exchange import Hub
from support.updates import MODEL, update_meta, write_good_update

from plantfed.cli import main
from plantfed.engine.store import LEFTOVER_GRACE_SECONDS, ModelStore

_HOLD = """
import sys, time
from plantfed.engine.store import ModelStore
store = ModelStore(sys.argv[1])
with store.scratch_dir(prefix="aggregate-") as tmp, store.blob_writer() as blob:
    (tmp / "model.safetensors").write_bytes(b"half an aggregate")
    blob.append(b"half a blob")
    print("holding", flush=True)
    time.sleep(600)
"""


def _killed_mid_write(root: Path) -> subprocess.Popen[str]:
    """A process holding a scratch directory and a blob being written; returns it still running."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def _age(paths: list[Path], seconds: float) -> None:
    past = time.time() - seconds
    for path in paths:
        os.utime(path, (past, past))


def test_leftovers_of_a_killed_aggregation_are_swept_but_nothing_in_use(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    live = _killed_mid_write(store.root)
    try:
        held = sorted((store.root / "tmp").iterdir())
        assert {p.name.split("-")[0] for p in held} == {"aggregate", "blob"}
        _age(held, 2 * LEFTOVER_GRACE_SECONDS)
        assert store.sweep_leftovers() == []  # in use, however old
        assert sorted((store.root / "tmp").iterdir()) == held
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()

    fresh = _killed_mid_write(store.root)
    fresh.send_signal(signal.SIGKILL)
    fresh.wait()
    torn = store.root / "rounds" / "r1" / ".round.json.abc123.tmp"  # what a killed atomic write leaves
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b'{"round_id": "r1", "mo')
    _age([torn], 2 * LEFTOVER_GRACE_SECONDS)
    young = sorted(p for p in (store.root / "tmp").iterdir() if p not in held)
    assert len(young) == 2

    removed = store.sweep_leftovers()

    assert sorted(removed) == sorted([*held, torn])  # the killed, old ones
    assert sorted((store.root / "tmp").iterdir()) == young  # within the grace period: kept for now
    assert sorted(store.sweep_leftovers(now=time.time() + 2 * LEFTOVER_GRACE_SECONDS)) == young
    assert list((store.root / "tmp").iterdir()) == []


def test_the_aggregation_job_sweeps_what_a_killed_run_left(strict_hub: Hub) -> None:
    killed = _killed_mid_write(strict_hub.store.root)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = sorted((strict_hub.store.root / "tmp").iterdir())
    _age(left, 2 * LEFTOVER_GRACE_SECONDS)
    path = write_good_update(strict_hub.tmp / "a.safetensors")
    strict_hub.plant("plant-a").upload_update(update_meta("plant-a", "r1", path), path)

    assert main(["aggregate", "--store", str(strict_hub.store.root), "--round", "r1"]) == 0

    assert list((strict_hub.store.root / "tmp").iterdir()) == []
    assert [v.round_id for v in strict_hub.store.versions(MODEL)] == [None, "r1"]
