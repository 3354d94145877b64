"""ε accounting (opacus RDP) of each plant's participation history, and the durable per-plant ledger."""

from __future__ import annotations

import json
import math
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from plantfed.privacy import DPMode, DPRelease, PrivacyLedger, central_release, epsilon_for, release_for_update
from plantfed.privacy.accounting import RDP_ORDERS, LedgerError
from plantfed.records import DPParams

DELTA = 1e-5


def local(sigma: float) -> DPRelease:
    return DPRelease(mode=DPMode.LOCAL, noise_multiplier=sigma, clip_norm=1.0)


def test_epsilon_is_opacus_rdp_for_the_composed_history() -> None:
    history = [local(1.2)] * 10 + [central_release(2.0, 1.0, participation_rate=0.5)] * 4
    reference = RDPAccountant()
    reference.history = [(1.2, 1.0, 1)] * 10 + [(2.0, 0.5, 1)] * 4
    assert epsilon_for(history, DELTA) == pytest.approx(reference.get_epsilon(DELTA))


def test_the_orders_are_opacus_defaults_and_accounting_does_not_import_torch() -> None:
    """The operator accounts for every DP round; torch would more than double its memory."""
    assert RDP_ORDERS == RDPAccountant.DEFAULT_ALPHAS
    code = ("import sys; from plantfed.privacy import DPMode, DPRelease, epsilon_for; "
            "assert epsilon_for([DPRelease(mode=DPMode.LOCAL, noise_multiplier=1.0)], 1e-5) > 0; "
            "print(sorted(m for m in ('torch', 'opacus') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    eps = [epsilon_for([local(1.0)] * r, DELTA) for r in (1, 5, 20)]
    assert eps == sorted(eps) and eps[0] > 0
    assert epsilon_for([local(4.0)] * 5, DELTA) < epsilon_for([local(1.0)] * 5, DELTA)
    assert epsilon_for([], DELTA) == 0.0


def test_a_release_without_noise_has_no_guarantee() -> None:
    assert epsilon_for([local(1.0), local(0.0)], DELTA) == math.inf
    with pytest.raises(ValueError, match="delta"):
        epsilon_for([local(1.0)], 0.0)


@pytest.mark.parametrize(
    ("dp", "expected"),
    [
        (DPParams(), None),  # no DP: nothing charged (and no guarantee claimed)
        (DPParams(clip_norm=1.0, noise_multiplier=1.1, steps=40, sample_rate=0.02), local(1.1)),
        (DPParams(clip_norm=0.0, noise_multiplier=1.1), DPRelease(mode=DPMode.LOCAL, noise_multiplier=0.0)),
        (DPParams(clip_norm=2.0), DPRelease(mode=DPMode.LOCAL, noise_multiplier=0.0, clip_norm=2.0)),
    ],
    ids=["off", "clip-and-noise", "noise-without-clip", "clip-only"],
)
def test_an_updates_metadata_becomes_one_release_per_round(dp: DPParams, expected: DPRelease | None) -> None:
    """Local DP: one Gaussian release of the whole update per round, q = 1, whatever SGD did inside."""
    release = release_for_update(dp)
    assert release == expected
    if release is not None and release.noise_multiplier == 0:
        assert epsilon_for([release], DELTA) == math.inf


def test_ledger_is_idempotent_per_round_and_survives_a_restart(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path, "bearing")
    assert ledger.record("bearing-r1", "plant-a", local(1.0))
    assert not ledger.record("bearing-r1", "plant-a", local(1.0))  # a retried hub records it once
    ledger.record("bearing-r2", "plant-a", local(1.0))
    ledger.record("bearing-r2", "plant-b", local(2.0))
    reopened = PrivacyLedger(tmp_path, "bearing")
    assert reopened.rounds("plant-a") == ["bearing-r1", "bearing-r2"]
    assert reopened.epsilon("plant-a", DELTA) == pytest.approx(epsilon_for([local(1.0)] * 2, DELTA))
    assert reopened.epsilon("plant-c", DELTA) == 0.0
    assert reopened.plants() == ["plant-a", "plant-b"]
    on_disk = json.loads((tmp_path / "privacy" / "bearing.json").read_text())
    assert [e["round_id"] for e in on_disk["plants"]["plant-a"]] == ["bearing-r1", "bearing-r2"]
    assert not list((tmp_path / "privacy").glob(".tmp-*"))  # written by rename, no leftovers


def test_a_different_release_for_a_recorded_round_is_refused(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path, "bearing")
    ledger.record("bearing-r1", "plant-a", local(1.0))
    with pytest.raises(LedgerError, match="different release"):
        ledger.record("bearing-r1", "plant-a", local(0.5))
    assert ledger.history("plant-a") == [local(1.0)]


def test_would_exceed_stops_a_plant_before_its_budget_is_spent(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path, "bearing")
    budget = epsilon_for([local(1.5)] * 3, DELTA) + 1e-9  # exactly three rounds fit
    taken = 0
    while not ledger.would_exceed("plant-a", local(1.5), budget, DELTA):
        taken += 1
        ledger.record(f"bearing-r{taken}", "plant-a", local(1.5))
    assert taken == 3
    assert ledger.epsilon("plant-a", DELTA) <= budget


def test_corrupt_ledger_is_reported_not_reset(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path, "bearing")
    ledger.path.parent.mkdir(parents=True)
    ledger.path.write_text("{not json")
    with pytest.raises(LedgerError, match="corrupt privacy ledger"):
        ledger.epsilon("plant-a", DELTA)


def _record_many(root: str, plant: str) -> None:
    ledger = PrivacyLedger(root, "bearing")
    for r in range(20):
        ledger.record(f"bearing-r{r}", plant, local(1.0))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), p)) for p in ("plant-a", "plant-b", "plant-c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    ledger = PrivacyLedger(tmp_path, "bearing")
    assert {p: len(ledger.rounds(p)) for p in ledger.plants()} == {"plant-a": 20, "plant-b": 20, "plant-c": 20}
