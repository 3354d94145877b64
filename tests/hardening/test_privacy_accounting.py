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
from pydantic import ValidationError

from plantfed.contract.records import DPParams
from plantfed.engine.privacy import (
    DPMode,
    DPRelease,
    PrivacyLedger,
    central_release,
    dearest_epsilon,
    epsilon_for,
    plant_release_alternatives,
    release_for_update,
)
from plantfed.engine.privacy.accounting import RDP_ORDERS, LedgerError

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
    code = (
        "import sys; from plantfed.engine.privacy import DPMode, DPRelease, epsilon_for; "
        "assert epsilon_for([DPRelease(mode=DPMode.LOCAL, noise_multiplier=1.0)], 1e-5) > 0; "
        "print(sorted(m for m in ('torch', 'opacus') if m in sys.modules))"
    )
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
        (DPParams(clip_norm=2.0), DPRelease(mode=DPMode.LOCAL, noise_multiplier=0.0, clip_norm=2.0)),
        (
            DPParams(mode=DPMode.SAMPLE, clip_norm=1.0, noise_multiplier=1.1, steps=40, sample_rate=0.025),
            DPRelease(mode=DPMode.SAMPLE, noise_multiplier=1.1, sample_rate=0.025, steps=40, clip_norm=1.0),
        ),
    ],
    ids=["off", "clip-and-noise", "clip-only", "dp-sgd"],
)
def test_an_updates_metadata_becomes_one_release_per_round(dp: DPParams, expected: DPRelease | None) -> None:
    """Local DP: one release of the whole update per round (q = 1, whatever SGD did inside); DP-SGD: what it did."""
    release = release_for_update(dp)
    assert release == expected
    if release is not None and release.noise_multiplier == 0:
        assert epsilon_for([release], DELTA) == math.inf


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"noise_multiplier": 1.0}, "unbounded sensitivity"),
        ({"mode": DPMode.CENTRAL, "clip_norm": 1.0, "noise_multiplier": 1.0}, "central DP is added by the hub"),
        ({"mode": DPMode.SAMPLE, "clip_norm": 1.0, "noise_multiplier": 1.0, "sample_rate": 0.1}, "steps >= 1"),
        ({"mode": DPMode.SAMPLE, "clip_norm": 1.0, "noise_multiplier": 1.0, "steps": 10}, "sample_rate > 0"),
        ({"mode": DPMode.SAMPLE, "noise_multiplier": 1.0, "steps": 10, "sample_rate": 0.1}, "clip_norm > 0"),
    ],
    ids=[
        "noise-without-clip",
        "plant-declares-central",
        "dp-sgd-without-steps",
        "dp-sgd-without-rate",
        "dp-sgd-without-clip",
    ],
)
def test_declarations_that_cannot_be_charged_are_refused(fields: dict, problem: str) -> None:
    """An update whose DP claim the accountant cannot price is refused outright, never charged as free."""
    with pytest.raises(ValidationError, match=problem):
        DPParams(**fields)


def test_dp_sgd_rounds_compose_like_opacus_over_a_plants_training() -> None:
    """Ten rounds of one epoch each cost what opacus's own accountant says for the same 400 noisy steps."""
    one_round = DPRelease(mode=DPMode.SAMPLE, noise_multiplier=1.1, sample_rate=0.025, steps=40, clip_norm=1.0)
    reference = RDPAccountant()
    reference.history = [(1.1, 0.025, 400)]
    assert epsilon_for([one_round] * 10, DELTA) == pytest.approx(reference.get_epsilon(DELTA))


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


def test_pricing_the_next_round_stops_a_plant_before_its_budget_is_spent(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path, "bearing")
    budget = epsilon_for([local(1.5)] * 3, DELTA) + 1e-9  # exactly three rounds fit
    taken = 0
    while dearest_epsilon(ledger.history("plant-a"), [[local(1.5)]], DELTA) <= budget:
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


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("epochs", [1, 3])
def test_a_first_dp_sgd_round_is_priced_at_the_dearest_data_size(sigma: float, epochs: int) -> None:
    """The hub prices a plant's first DP-SGD round without knowing its data size N; no N may cost more."""
    alternatives = plant_release_alternatives(
        DPMode.SAMPLE, clip_norm=1.0, noise_multiplier=sigma, epochs=epochs, history=[]
    )
    priced = dearest_epsilon([], [[a] for a in alternatives], DELTA)
    if sigma == 0.5:  # here q = 1 is not the dearest case: b = 3..4 batches per epoch cost more
        assert priced > epsilon_for([alternatives[0]], DELTA)
    batch = 64
    for n in [1, 64, 65, 100, 200, 1000, 2560, 10_000, 16_384, 16_385, 100_000, 1_000_000]:
        batches = math.ceil(n / batch)
        real = DPRelease(
            mode=DPMode.SAMPLE, noise_multiplier=sigma, sample_rate=1 / batches, steps=epochs * batches, clip_norm=1.0
        )
        assert epsilon_for([real], DELTA) <= priced * (1 + 1e-9), f"N = {n}"


def test_a_later_dp_sgd_round_is_priced_like_the_plants_last_one() -> None:
    last = DPRelease(mode=DPMode.SAMPLE, noise_multiplier=1.0, sample_rate=0.025, steps=40, clip_norm=1.0)
    history = [local(1.0), last, local(1.0)]  # the latest DP-SGD round counts, whatever came after it
    nxt = plant_release_alternatives(DPMode.SAMPLE, clip_norm=1.0, noise_multiplier=1.5, epochs=2, history=history)
    assert nxt == [DPRelease(mode=DPMode.SAMPLE, noise_multiplier=1.5, sample_rate=0.025, steps=80, clip_norm=1.0)]
    local_next = plant_release_alternatives(DPMode.LOCAL, clip_norm=1.0, noise_multiplier=1.5, epochs=2, history=[last])
    assert local_next == [local(1.5)]
