"""`plantfed aggregate` (the aggregation Job) charges each aggregated plant's DP releases once, and reports ε."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plantfed.cli import main
from plantfed.contract.records import Codec, DPParams, RoundRecord, UpdateMeta
from plantfed.engine.aggregation import StrategyConfig
from plantfed.engine.privacy import PrivacyLedger, central_release, epsilon_for, release_for_update
from plantfed.engine.round_aggregation import charge_privacy
from plantfed.engine.store import ModelStore
from plantfed.formats import codecs

MODEL, ROUND, DELTA = "press-line", "press-line-r1", 1e-5
SHAPES = {"w": (8, 4), "b": (8,)}
LOCAL_DP = {
    "plant-a": DPParams(clip_norm=1.0, noise_multiplier=1.1, steps=1, sample_rate=1.0),
    "plant-b": DPParams(clip_norm=1.0, noise_multiplier=0.9, steps=1, sample_rate=1.0),
}


def dp_round(root: Path, dp: dict[str, DPParams] = LOCAL_DP) -> ModelStore:
    """A store holding a base version and one update per plant (with its declared DP parameters), committed."""
    store = ModelStore(root)
    g = torch.Generator().manual_seed(0)
    codecs.save_state({n: torch.randn(s, generator=g) for n, s in SHAPES.items()}, root / "base.safetensors")
    base = store.publish_model(MODEL, store.import_file(root / "base.safetensors")[0], promote=True)
    store.open_round(RoundRecord(round_id=ROUND, model=MODEL, base_version=base.version, plants=sorted(dp)))
    for plant, params in dp.items():
        path = root / f"{plant}.safetensors"
        codecs.write_update(
            codecs.encode_delta({n: torch.randn(s, generator=g) for n, s in SHAPES.items()}, Codec.NONE),
            path,
            Codec.NONE,
        )
        digest, size = store.import_file(path)
        store.commit_update(
            UpdateMeta(
                plant=plant,
                round_id=ROUND,
                base_version=base.version,
                num_samples=50,
                dp=params,
                total_bytes=size,
                sha256=digest,
            ),
            digest,
        )
    store.close_round(ROUND)
    return store


def aggregate(root: Path, *central: str) -> dict:
    out = root / "result.json"
    argv = [
        "aggregate",
        f"--store={root / 'store'}",
        f"--round={ROUND}",
        "--plants=plant-a,plant-b",
        f"--dp-delta={DELTA!r}",
        f"--result={out}",
        *central,
    ]
    assert main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    "central", [(), ("--norm-bound=1.0", "--central-noise-multiplier=0.8")], ids=["local", "local+central"]
)
def test_a_rerun_aggregation_job_charges_each_plant_once(tmp_path: Path, central: tuple[str, ...]) -> None:
    store = dp_round(tmp_path / "store")
    expected = {p: [release] for p, dp in LOCAL_DP.items() if (release := release_for_update(dp)) is not None}
    if central:
        for history in expected.values():
            history.append(central_release(0.8, 1.0))
    # A Job that charged the ledger and died before publishing: its retry must not charge again.
    config = StrategyConfig(norm_bound=1.0, central_noise_multiplier=0.8) if central else StrategyConfig()
    charge_privacy(store, MODEL, ROUND, store.updates(ROUND), config)

    first = aggregate(tmp_path, *central)
    again = aggregate(tmp_path, *central)  # the Job retried after it published

    assert (first["reused"], again["reused"]) == (False, True)
    assert first["version"] == again["version"] == 2
    ledger = PrivacyLedger(store.root, MODEL)
    assert {p: ledger.history(p) for p in LOCAL_DP} == expected
    assert ledger.rounds("plant-a") == ([ROUND, f"{ROUND}.central"] if central else [ROUND])
    epsilon = {p: epsilon_for(h, DELTA) for p, h in expected.items()}
    assert first["epsilon"] == again["epsilon"] == pytest.approx(epsilon)
    assert first["dp_delta"] == DELTA
    assert epsilon["plant-b"] > epsilon["plant-a"] > 0  # less noise, more ε


def test_updates_that_were_only_clipped_charge_nothing(tmp_path: Path) -> None:
    """Under central DP plants clip but the hub adds the noise: without --central-noise-multiplier, no release."""
    store = dp_round(tmp_path / "store", {p: DPParams(clip_norm=1.0) for p in LOCAL_DP})
    result = aggregate(tmp_path)
    assert result["epsilon"] == {} and result["version"] == 2
    assert PrivacyLedger(store.root, MODEL).entries() == {}
