"""Aggregation strategies against naive references, memory bounds, robustness and server-state persistence.

The references below hold every update in memory as plain tensors and follow the published equations
directly; the engine under test streams files. They share nothing but the safetensors files' contents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from plantfed.contract.records import Codec
from plantfed.engine.aggregation import StrategyConfig, UpdateInput, aggregate
from plantfed.engine.aggregation.config import PlantStats
from plantfed.engine.aggregation.robust import coordinate_blocks
from plantfed.formats import codecs
from plantfed.formats.codecs import PayloadError

Plant = tuple[str, dict[str, torch.Tensor], int]  # name, local state, num_samples


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(3, 8, 5),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 12, 16),
        nn.ReLU(),
        nn.Linear(16, 4),
    )


def base_state() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in make_model().state_dict().items()}


def local_states(base: dict[str, torch.Tensor], count: int, seed: int, spread: float = 0.05) -> list[Plant]:
    gen = torch.Generator().manual_seed(seed)
    shift = {k: 0.02 * torch.randn(v.shape, generator=gen) for k, v in base.items() if v.is_floating_point()}
    plants = []
    for i in range(count):
        local = {
            k: v + shift[k] + spread * torch.randn(v.shape, generator=gen)
            if v.is_floating_point()
            else v + 10 * (i + 1)
            for k, v in base.items()
        }
        plants.append((f"plant-{i}", local, int(torch.randint(10, 500, (1,), generator=gen))))
    return plants


def write_round(tmp: Path, base: dict[str, torch.Tensor], plants: list[Plant], codec: Codec = Codec.NONE, exclude=()):
    tmp.mkdir(parents=True, exist_ok=True)
    base_path = tmp / "base.safetensors"
    codecs.save_state(base, base_path)
    inputs = []
    for name, local, samples in plants:
        path = tmp / f"{name}.safetensors"
        codecs.write_update(codecs.encode_update(base, local, codec, exclude=exclude), path, codec)
        inputs.append(UpdateInput(plant=name, path=path, num_samples=samples, codec=codec))
    return base_path, inputs


# --------------------------------------------------------------------------------------------- reference


def deltas_of(base, plants: list[Plant]) -> list[dict[str, torch.Tensor]]:
    return [
        {k: local[k].double() - base[k].double() for k in base if base[k].is_floating_point()} for _, local, _ in plants
    ]


def clip_factors(deltas, bound):
    if bound is None:
        return [1.0] * len(deltas)
    norms = [math.sqrt(sum(float((d * d).sum()) for d in delta.values())) for delta in deltas]
    return [min(1.0, bound / n) for n in norms]


def reference_delta(base, plants, cfg: StrategyConfig) -> dict[str, torch.Tensor]:
    deltas = deltas_of(base, plants)
    clip = clip_factors(deltas, cfg.norm_bound)
    out = {}
    for name in deltas[0]:
        values = np.stack([(d[name] * c).numpy() for d, c in zip(deltas, clip, strict=True)])
        if cfg.name.value == "median":
            out[name] = torch.from_numpy(np.asarray(np.median(values, axis=0)))
        elif cfg.name.value == "trimmedMean":
            k = int(cfg.trim_fraction * len(plants))
            ordered = np.sort(values, axis=0)
            out[name] = torch.from_numpy(np.asarray(ordered[k : len(plants) - k].mean(axis=0)))
        else:
            samples = np.array([s for _, _, s in plants], dtype=np.float64)
            out[name] = torch.from_numpy(np.asarray(np.tensordot(samples / samples.sum(), values, axes=1)))
    return out


@dataclass
class RefServer:
    """Reddi et al. 2021 Alg. 2 / Hsu et al. 2019 written out directly, in float64."""

    cfg: StrategyConfig
    m: dict | None = None
    v: dict | None = None

    def step(self, base, delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, lr = self.cfg, self.cfg.server_learning_rate
        new = dict(base)
        for name, d in delta.items():
            if c.name.value == "fedavgm":
                self.m = self.m or {}
                self.m[name] = c.momentum * self.m.get(name, 0.0) + d
                upd = lr * self.m[name]
            elif c.name.value in ("fedadam", "fedyogi"):
                self.m, self.v = self.m or {}, self.v or {}
                self.m[name] = c.beta1 * self.m.get(name, 0.0) + (1 - c.beta1) * d
                v_prev = self.v.get(name, torch.full_like(d, c.tau**2))
                if c.name.value == "fedadam":
                    self.v[name] = c.beta2 * v_prev + (1 - c.beta2) * d * d
                else:
                    self.v[name] = v_prev - (1 - c.beta2) * d * d * torch.sign(v_prev - d * d)
                upd = lr * self.m[name] / (self.v[name].sqrt() + c.tau)
            else:
                upd = lr * d
            new[name] = (base[name].double() + upd).float()
        for name, value in base.items():
            if not value.is_floating_point():
                new[name] = value
        return new


def assert_states_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol=1e-5):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == expected[name].dtype, name
        torch.testing.assert_close(
            actual[name],
            expected[name],
            rtol=1e-5,
            atol=atol,
            msg=lambda m: f"{name}: {m}",  # noqa: B023  # called within this iteration
        )


STRATEGIES = ["fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "trimmed_mean", "median"]


# ---------------------------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("norm_bound", [None, 0.5], ids=["unclipped", "clipped"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_matches_reference(tmp_path, strategy, norm_bound):
    base = base_state()
    plants = local_states(base, 6, seed=1)
    cfg = StrategyConfig(
        name=strategy,
        norm_bound=norm_bound,
        trim_fraction=0.2,
        server_learning_rate=0.5 if strategy == "fedavg" else None,
    )
    base_path, inputs = write_round(tmp_path, base, plants)
    result = aggregate(base_path, inputs, cfg, tmp_path / "out.safetensors", state_dir=tmp_path / "state")
    expected = RefServer(cfg).step(base, reference_delta(base, plants, cfg))
    for name, value in base.items():
        if not value.is_floating_point():
            expected[name] = max(local[name] for _, local, _ in plants)  # counters: the largest plant value
    assert_states_close(codecs.load_state(tmp_path / "out.safetensors"), expected)
    assert all(s.clipped for s in result.plants) == (norm_bound is not None)


@pytest.mark.parametrize("strategy", ["fedadam", "fedyogi", "fedavgm"])
def test_server_state_persists_across_rounds(tmp_path, strategy):
    cfg = StrategyConfig(name=strategy, server_learning_rate=0.05)
    ref = RefServer(cfg)
    base = base_state()
    for round_number in (1, 2):
        plants = local_states(base, 4, seed=10 + round_number)
        base_path, inputs = write_round(tmp_path / f"r{round_number}", base, plants)
        out = tmp_path / f"r{round_number}" / "out.safetensors"
        result = aggregate(base_path, inputs, cfg, out, state_dir=tmp_path / "state")
        expected = ref.step(base, reference_delta(base, plants, cfg))
        actual = codecs.load_state(out)
        assert_states_close(
            {k: v for k, v in actual.items() if v.is_floating_point()},
            {k: v for k, v in expected.items() if v.is_floating_point()},
        )
        assert result.server_step == round_number
        base = actual
    fresh = aggregate(base_path, inputs, cfg, tmp_path / "fresh.safetensors", state_dir=tmp_path / "fresh-state")
    assert fresh.server_step == 1
    # Without the persisted moments round 2 would differ: the state really is carried over.
    assert not torch.allclose(
        codecs.load_state(tmp_path / "fresh.safetensors")["4.weight"], base["4.weight"], atol=1e-7
    )


def test_weighting_follows_num_samples(tmp_path):
    base = {"w": torch.zeros(4)}
    plants = [("a", {"w": torch.full((4,), 1.0)}, 300), ("b", {"w": torch.full((4,), -1.0)}, 100)]
    base_path, inputs = write_round(tmp_path, base, plants)
    result = aggregate(base_path, inputs, StrategyConfig(), tmp_path / "out.safetensors")
    torch.testing.assert_close(codecs.load_state(tmp_path / "out.safetensors")["w"], torch.full((4,), 0.5))
    assert [s.weight for s in result.plants] == [0.75, 0.25]
    assert [s.cosine for s in result.plants] == pytest.approx([1.0, -1.0])
    assert result.aggregate_delta_norm == pytest.approx(1.0)


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam", "median"])
def test_plant_local_layers_keep_the_base_value(tmp_path, strategy):
    base = base_state()
    plants = local_states(base, 3, seed=3)
    base_path, inputs = write_round(tmp_path, base, plants)  # the updates even carry the head
    out = tmp_path / "out.safetensors"
    aggregate(
        base_path,
        inputs,
        StrategyConfig(name=strategy),
        out,
        local_patterns=("6.*", "1.running_*"),
        state_dir=tmp_path / "s",
    )
    new = codecs.load_state(out)
    for name in ("6.weight", "6.bias", "1.running_mean", "1.running_var"):
        assert torch.equal(new[name], base[name]), name
    assert not torch.equal(new["4.weight"], base["4.weight"])


def test_updates_that_omit_plant_local_layers_are_accepted(tmp_path):
    base = base_state()
    plants = local_states(base, 3, seed=4)
    base_path, inputs = write_round(tmp_path, base, plants, exclude=("6.*",))
    out = tmp_path / "out.safetensors"
    result = aggregate(base_path, inputs, StrategyConfig(), out, local_patterns=("6.*",))
    assert torch.equal(codecs.load_state(out)["6.weight"], base["6.weight"])
    with pytest.raises(PayloadError, match="missing tensor '6.bias'"):
        aggregate(base_path, inputs, StrategyConfig(), tmp_path / "out2.safetensors")
    assert result.plants[0].l2_norm > 0


@pytest.mark.parametrize("strategy", ["fedavg", "median"])
@pytest.mark.parametrize("codec", [Codec.FP16, Codec.INT8])
def test_compressed_updates_aggregate_close_to_fp32(tmp_path, codec, strategy):
    # Both a weighted mean and a median move by at most the largest per-coordinate decoding error.
    base = base_state()
    plants = local_states(base, 4, seed=5)
    cfg = StrategyConfig(name=strategy, buffer_bytes=4 * 6 * 100)
    base_path, inputs = write_round(tmp_path / "c", base, plants, codec=codec)
    aggregate(base_path, inputs, cfg, tmp_path / "c.safetensors")
    expected = RefServer(cfg).step(base, reference_delta(base, plants, cfg))
    actual = codecs.load_state(tmp_path / "c.safetensors")
    for name, value in expected.items():
        if value.is_floating_point():
            step = max(float((local[name] - base[name]).abs().max()) for _, local, _ in plants) / 127
            tolerance = step / 2 if codec is Codec.INT8 else 1e-3
            assert float((actual[name] - value).abs().max()) <= tolerance * 1.01 + 1e-6, name


def test_clipping_reports_factor_and_norm(tmp_path):
    base = {"w": torch.zeros(3)}
    plants = [("big", {"w": torch.tensor([3.0, 4.0, 0.0])}, 1), ("small", {"w": torch.tensor([0.3, 0.4, 0.0])}, 1)]
    base_path, inputs = write_round(tmp_path, base, plants)
    result = aggregate(base_path, inputs, StrategyConfig(norm_bound=1.0), tmp_path / "out.safetensors")
    big, small = result.plants
    assert (big.l2_norm, big.clipped, big.clip_factor) == (pytest.approx(5.0), True, pytest.approx(0.2))
    assert (small.clipped, small.clip_factor) == (False, 1.0)
    torch.testing.assert_close(codecs.load_state(tmp_path / "out.safetensors")["w"], torch.tensor([0.45, 0.6, 0.0]))


# ------------------------------------------------------------------------------------------------- memory


def _peak(tmp: Path, count: int, strategy: str) -> int:
    base = base_state()
    base_path, inputs = write_round(tmp, base, local_states(base, count, seed=count))
    cfg = StrategyConfig(name=strategy, buffer_bytes=16 * 1024)
    return aggregate(base_path, inputs, cfg, tmp / "out.safetensors", state_dir=tmp / "state").peak_bytes


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam"])
def test_peak_memory_does_not_grow_with_plants(tmp_path, strategy):
    two, eight = _peak(tmp_path / "two", 2, strategy), _peak(tmp_path / "eight", 8, strategy)
    assert two == eight
    largest = max(v.numel() * 4 for v in base_state().values())
    assert two <= 8 * largest  # a handful of tensor-sized buffers, never a model per plant


@pytest.mark.parametrize("strategy", ["median", "trimmed_mean"])
def test_robust_strategies_stay_within_the_block_buffer(tmp_path, strategy):
    count = 7
    base = {
        "matrix": torch.zeros(40, 30),
        "long_row": torch.zeros(2, 500),
        "vector": torch.zeros(333),
        "scalar": torch.zeros(()),
    }
    plants = local_states(base, count, seed=8, spread=1.0)
    budget = 4 * (count + 2) * 64  # 64 coordinates per block: splits rows, and the long row within itself
    cfg = StrategyConfig(name=strategy, buffer_bytes=budget, trim_fraction=0.3)
    base_path, inputs = write_round(tmp_path, base, plants)
    result = aggregate(base_path, inputs, cfg, tmp_path / "out.safetensors")
    assert 0 < result.block_peak_bytes <= budget
    expected = RefServer(cfg).step(base, reference_delta(base, plants, cfg))
    assert_states_close(codecs.load_state(tmp_path / "out.safetensors"), expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=0, max_size=4), st.integers(1, 40))
def test_coordinate_blocks_tile_the_tensor_in_order(shape, budget):
    marks = torch.zeros(shape, dtype=torch.int64)
    flat_position = 0
    for order, (index, size) in enumerate(coordinate_blocks(shape, budget), start=1):
        assert 1 <= size <= budget
        block = marks[index]
        assert block.numel() == size and not block.any()  # no overlap
        marks[index] = order
        positions = (marks.reshape(-1) == order).nonzero().reshape(-1)
        assert positions.tolist() == list(range(flat_position, flat_position + size))  # contiguous, row-major
        flat_position += size
    assert flat_position == marks.numel() and bool((marks > 0).all())  # everything covered


def test_robust_strategy_refuses_a_buffer_smaller_than_one_coordinate(tmp_path):
    base = {"w": torch.zeros(10)}
    base_path, inputs = write_round(tmp_path, base, local_states(base, 5, seed=1))
    with pytest.raises(ValueError, match="5 updates needs a buffer of at least 28 bytes; buffer_bytes=20"):
        aggregate(base_path, inputs, StrategyConfig(name="median", buffer_bytes=20), tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


# --------------------------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("attack", ["scaled", "sign_flipped"])
def test_one_poisoned_update_moves_fedavg_but_not_robust_strategies(tmp_path, attack):
    base = {"w": torch.zeros(64, 16)}
    plants = local_states(base, 9, seed=21, spread=0.01)
    plants = [(n, local, 100) for n, local, _ in plants]
    name, local, samples = plants[0]
    factor = 100.0 if attack == "scaled" else -10.0
    plants[0] = (name, {"w": local["w"] * factor}, samples)
    honest = torch.stack([local["w"] for _, local, _ in plants[1:]]).mean(0)
    base_path, inputs = write_round(tmp_path, base, plants)

    def distance(strategy: str) -> tuple[float, list[PlantStats]]:
        out = tmp_path / f"{strategy}.safetensors"
        result = aggregate(base_path, inputs, StrategyConfig(name=strategy, trim_fraction=0.2), out)
        return float((codecs.load_state(out)["w"] - honest).norm()), result.plants

    scale = float(honest.norm())
    fedavg, _ = distance("fedavg")
    assert fedavg > scale
    for strategy in ("median", "trimmed_mean"):
        robust, stats = distance(strategy)
        assert robust < 0.2 * scale, strategy
        # the per-plant statistics single the attacker out: by norm when scaled, by direction when flipped
        if attack == "scaled":
            assert stats[0].l2_norm > 50 * max(s.l2_norm for s in stats[1:])
        else:
            assert stats[0].cosine < 0 < min(s.cosine for s in stats[1:])


# ------------------------------------------------------------------------------------------------- errors


def test_invalid_update_aborts_without_writing(tmp_path):
    base = base_state()
    plants = local_states(base, 3, seed=2)
    base_path, inputs = write_round(tmp_path, base, plants)
    # encode_update refuses NaN, so a broken plant's payload is written by hand
    tensors = codecs.encode_update(base, local_states(base, 1, seed=2)[0][1], Codec.NONE)
    tensors["4.weight"][0, 0] = float("nan")
    codecs.write_update(tensors, inputs[1].path, Codec.NONE)
    with pytest.raises(PayloadError, match="plant-1.safetensors: tensor '4.weight' contains NaN"):
        aggregate(base_path, inputs, StrategyConfig(), tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.fixture
def small_round(tmp_path):
    base = base_state()
    return write_round(tmp_path, base, local_states(base, 2, seed=6))


def test_state_from_another_strategy_is_refused(tmp_path, small_round):
    base_path, inputs = small_round
    aggregate(base_path, inputs, StrategyConfig(name="fedadam"), tmp_path / "a.safetensors", state_dir=tmp_path / "s")
    with pytest.raises(PayloadError, match="written by strategy 'fedadam', not 'fedyogi'"):
        aggregate(
            base_path, inputs, StrategyConfig(name="fedyogi"), tmp_path / "b.safetensors", state_dir=tmp_path / "s"
        )
    assert not (tmp_path / "b.safetensors").exists()


def test_aggregation_restores_the_callers_torch_threads(tmp_path, small_round):
    base_path, inputs = small_round
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        aggregate(base_path, inputs, StrategyConfig(), tmp_path / "out.safetensors", threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_stateful_strategy_needs_a_state_dir(tmp_path, small_round):
    base_path, inputs = small_round
    with pytest.raises(ValueError, match="fedavgm keeps optimiser state between rounds: pass state_dir"):
        aggregate(base_path, inputs, StrategyConfig(name="fedavgm"), tmp_path / "out.safetensors")


def test_bad_inputs_are_refused(tmp_path, small_round):
    base_path, inputs = small_round
    with pytest.raises(ValueError, match="at least one update"):
        aggregate(base_path, [], StrategyConfig(), tmp_path / "out.safetensors")
    with pytest.raises(ValueError, match="plant 'plant-0' has more than one update"):
        aggregate(base_path, [inputs[0], inputs[0]], StrategyConfig(), tmp_path / "out.safetensors")
    with pytest.raises(PayloadError, match="declared codec 'int8'"):
        aggregate(
            base_path,
            [inputs[0].model_copy(update={"codec": Codec.INT8})],
            StrategyConfig(),
            tmp_path / "out.safetensors",
        )
    with pytest.raises(ValueError, match="trim_fraction"):
        StrategyConfig(name="trimmed_mean", trim_fraction=0.5)
    with pytest.raises(ValueError, match="extra"):
        StrategyConfig(name="fedavg", learning_rate=1.0)  # type: ignore[call-arg]  # the point: it is refused


def test_partial_updates_from_a_light_variant_count_only_for_the_tensors_they_carry(tmp_path):
    """A light model shares the backbone ("0.*", "1.*") but not the head: the head averages over full models only."""
    base = base_state()
    full_a, full_b, light = local_states(base, 3, seed=11)
    base_path, inputs = write_round(tmp_path, base, [full_a, full_b])
    light_name, light_local, light_samples = light
    light_path = tmp_path / "light.safetensors"
    backbone = {k: v for k, v in light_local.items() if k.startswith(("0.", "1."))}
    codecs.write_update(
        codecs.encode_update({k: base[k] for k in backbone}, backbone, Codec.NONE), light_path, Codec.NONE
    )
    inputs.append(UpdateInput(plant=light_name, path=light_path, num_samples=light_samples, partial=True))

    out = tmp_path / "out.safetensors"
    result = aggregate(base_path, inputs, StrategyConfig(), out)
    new = codecs.load_state(out)

    def mean(name, members):
        total = sum(n for _, _, n in members)
        return sum((local[name].double() - base[name].double()) * n / total for _, local, n in members)

    for name in ("0.weight", "1.weight", "1.running_mean"):
        assert torch.allclose(
            new[name].double(), base[name].double() + mean(name, [full_a, full_b, light]), atol=1e-5
        ), name
    for name in ("4.weight", "6.bias"):
        assert torch.allclose(new[name].double(), base[name].double() + mean(name, [full_a, full_b]), atol=1e-5), name
    assert {p.plant for p in result.plants} == {full_a[0], full_b[0], light_name}


def test_a_partial_update_must_still_match_what_it_carries(tmp_path):
    base = base_state()
    (plant,) = local_states(base, 1, seed=12)
    base_path, _ = write_round(tmp_path, base, [])
    path = tmp_path / "light.safetensors"
    codecs.write_update({"0.weight": torch.zeros(8, 3, 4)}, path, Codec.NONE)
    bad = UpdateInput(plant="light", path=path, num_samples=5, partial=True)
    with pytest.raises(PayloadError, match="'0.weight' has shape"):
        aggregate(base_path, [bad], StrategyConfig(), tmp_path / "out.safetensors")
    full = UpdateInput(plant="light", path=path, num_samples=5)
    with pytest.raises(PayloadError, match="missing tensor"):
        aggregate(base_path, [full], StrategyConfig(), tmp_path / "out2.safetensors")
