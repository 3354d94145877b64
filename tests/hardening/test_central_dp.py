"""Central DP: the hub clips each update to C and adds N(0, (σ·C·max weight)²) to the aggregate, reproducibly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from plantfed.contract.records import Codec
from plantfed.engine.aggregation import StrategyConfig, UpdateInput, aggregate
from plantfed.engine.aggregation.central_dp import tensor_generator
from plantfed.formats import codecs

SHAPES = {"w": (64, 32), "b": (64,)}


def _setup(tmp: Path, samples: tuple[int, ...] = (100, 100, 100)) -> tuple[Path, list[UpdateInput], list[dict]]:
    g = torch.Generator().manual_seed(0)
    base = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    codecs.save_state(base, tmp / "base.safetensors")
    inputs, deltas = [], []
    for k, n in enumerate(samples):
        delta = {name: torch.randn(s, generator=g) * (k + 1) for name, s in SHAPES.items()}
        path = tmp / f"u{k}.safetensors"
        codecs.write_update(codecs.encode_delta(delta, Codec.NONE), path, Codec.NONE)
        inputs.append(UpdateInput(plant=f"p{k}", path=path, num_samples=n))
        deltas.append(delta)
    return tmp / "base.safetensors", inputs, deltas


def _reference(base: Path, deltas: list[dict], weights: list[float], bound: float, std: float, seed: int) -> dict:
    norms = [torch.sqrt(sum((d[n] ** 2).sum() for n in SHAPES)).item() for d in deltas]
    clip = [min(1.0, bound / x) for x in norms]
    state = codecs.load_state(base)
    out = {}
    for name in SHAPES:
        mean = sum(w * c * d[name] for w, c, d in zip(weights, clip, deltas, strict=True))
        noise = torch.randn(SHAPES[name], generator=tensor_generator(seed, name)) * std
        out[name] = state[name] + mean + noise
    return out


def test_central_noise_matches_the_reference_and_is_reproducible(tmp_path: Path) -> None:
    base, inputs, deltas = _setup(tmp_path)
    config = StrategyConfig(norm_bound=1.0, central_noise_multiplier=0.8, noise_seed=42)
    result = aggregate(base, inputs, config, tmp_path / "out.safetensors")
    assert result.central_noise_std == pytest.approx(0.8 * 1.0 / 3)  # uniform weights: σ·C/K
    expected = _reference(base, deltas, [1 / 3] * 3, 1.0, 0.8 / 3, 42)
    got = codecs.load_state(tmp_path / "out.safetensors")
    for name in SHAPES:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5)
    aggregate(base, inputs, config, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == (tmp_path / "out.safetensors").read_bytes()
    aggregate(base, inputs, config.model_copy(update={"noise_seed": 43}), tmp_path / "other.safetensors")
    assert not torch.equal(codecs.load_state(tmp_path / "other.safetensors")["w"], got["w"])


def test_noise_is_scaled_to_the_largest_weight(tmp_path: Path) -> None:
    base, inputs, deltas = _setup(tmp_path, samples=(100, 100, 200))
    config = StrategyConfig(norm_bound=2.0, central_noise_multiplier=1.5, noise_seed=7)
    result = aggregate(base, inputs, config, tmp_path / "out.safetensors")
    assert result.central_noise_std == pytest.approx(1.5 * 2.0 * 0.5)
    expected = _reference(base, deltas, [0.25, 0.25, 0.5], 2.0, 1.5, 7)
    got = codecs.load_state(tmp_path / "out.safetensors")
    torch.testing.assert_close(got["w"], expected["w"], rtol=1e-5, atol=1e-5)


def test_without_a_seed_the_noise_is_fresh(tmp_path: Path) -> None:
    base, inputs, _ = _setup(tmp_path)
    config = StrategyConfig(norm_bound=1.0, central_noise_multiplier=1.0)
    aggregate(base, inputs, config, tmp_path / "a.safetensors")
    aggregate(base, inputs, config, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() != (tmp_path / "b.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"central_noise_multiplier": 1.0}, "needs norm_bound"),
        ({"central_noise_multiplier": 1.0, "norm_bound": 1.0, "name": "median"}, "not median"),
        ({"central_noise_multiplier": 0.0, "norm_bound": 1.0}, "greater than 0"),
    ],
)
def test_central_dp_configuration_errors_name_the_problem(fields: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        StrategyConfig(**fields)
