"""DP-SGD on a plant (privacy mode `sample`): opacus does the clipping and noise, the update declares its cost.

These run the product's `train_local` with real opacus and torch on the bearing task's synthetic data.
"""

from __future__ import annotations

import math

import pytest
import torch
from opacus.accountants import RDPAccountant
from torch import nn

from plantfed.contract.records import DPMode
from plantfed.engine.privacy import epsilon_for, release_for_update
from plantfed.plant.privacy import global_l2_norm
from plantfed.plant.training import LocalTrainingConfig, LocalTrainingResult, SampleDP, train_local
from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.sdk import DataSpec

DELTA = 1e-5
CPU = torch.device("cpu")
TASK = BearingTask()


@pytest.fixture(scope="module")
def train_set():
    return TASK.load_data(
        DataSpec(plant="plant-a", plant_index=0, num_plants=3, options={"recordings_per_class": 1, "seconds": 2.0})
    ).train


def trained(
    train_set, cfg: LocalTrainingConfig, seed: int = 0
) -> tuple[dict[str, torch.Tensor], LocalTrainingResult, nn.Module]:
    """(update = trained − initial weights, training result, the model) from one fixed initialisation."""
    torch.manual_seed(0)
    model = TASK.build_model("full")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_local(TASK, model, train_set, cfg, CPU, seed=seed)
    after = model.state_dict()
    return {k: after[k] - before[k] for k in before if before[k].is_floating_point()}, result, model


def test_the_update_declares_exactly_what_opacus_accounted(train_set) -> None:
    cfg = LocalTrainingConfig(epochs=2, batch_size=32, sample_dp=SampleDP(clip_norm=1.0, noise_multiplier=1.3))
    _, result, _ = trained(train_set, cfg)
    batches = math.ceil(len(train_set) / 32)
    dp = result.dp
    assert dp is not None and dp.mode is DPMode.SAMPLE
    assert (dp.noise_multiplier, dp.clip_norm) == (1.3, 1.0)
    assert dp.sample_rate == pytest.approx(1 / batches)  # Poisson sampling at the loader's batch rate
    assert dp.steps == result.steps == 2 * batches  # every noisy step is charged, empty batches included
    reference = RDPAccountant()
    reference.history = [(1.3, 1 / batches, 2 * batches)]
    charged = release_for_update(dp)
    assert charged is not None
    assert epsilon_for([charged], DELTA) == pytest.approx(reference.get_epsilon(DELTA))


def test_per_record_clipping_bounds_the_update_which_plain_sgd_does_not(train_set) -> None:
    """Without noise, each step moves at most lr·C·(records in the batch)/(expected batch size)."""
    clip, lr, batch = 0.01, 0.05, 32
    base = LocalTrainingConfig(batch_size=batch, learning_rate=lr, momentum=0.0)
    private, result, _ = trained(train_set, LocalTrainingConfig(**{**base.__dict__, "sample_dp": SampleDP(clip, 0.0)}))
    expected_batch = int(len(train_set) / math.ceil(len(train_set) / batch))
    bound = lr * clip * result.samples_seen / expected_batch
    assert 0 < global_l2_norm(private) <= bound * (1 + 1e-5)
    plain, _, _ = trained(train_set, base)
    assert global_l2_norm(plain) > 10 * bound


def test_noise_and_sampling_cannot_be_recomputed_from_the_seed(train_set) -> None:
    """The hub knows the fleet's seed and the round id; DP randomness must not follow from them."""
    private = LocalTrainingConfig(batch_size=64, sample_dp=SampleDP(clip_norm=1.0, noise_multiplier=1.0))
    first, _, _ = trained(train_set, private, seed=7)
    second, _, _ = trained(train_set, private, seed=7)
    assert any(not torch.equal(first[k], second[k]) for k in first)
    plain = LocalTrainingConfig(batch_size=64)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            trained(train_set, plain, seed=7)[0].values(), trained(train_set, plain, seed=7)[0].values(), strict=True
        )
    )


def test_the_model_leaves_dp_sgd_as_it_came_in(train_set) -> None:
    """Same tensor names (the update must match the global model), no hooks, no per-sample gradients left."""
    cfg = LocalTrainingConfig(batch_size=64, sample_dp=SampleDP(clip_norm=1.0, noise_multiplier=1.0))
    _, _, model = trained(train_set, cfg)
    assert list(model.state_dict()) == list(TASK.build_model("full").state_dict())
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(getattr(p, "grad_sample", None) is None for p in model.parameters())
    after_plain = train_local(TASK, model, train_set, LocalTrainingConfig(batch_size=64, max_steps=2), CPU)
    assert after_plain.dp is None and after_plain.steps == 2


def test_dp_sgd_refuses_fedprox_and_models_it_cannot_privatise(train_set) -> None:
    private = SampleDP(clip_norm=1.0, noise_multiplier=1.0)
    with pytest.raises(ValueError, match="DP-SGD and FedProx do not combine"):
        train_local(
            TASK, TASK.build_model("full"), train_set, LocalTrainingConfig(fedprox_mu=0.1, sample_dp=private), CPU
        )
    width = train_set[0][0].shape[-1]
    batch_norm = nn.Sequential(nn.BatchNorm1d(1), nn.Flatten(), nn.Linear(width, 4))
    with pytest.raises(ValueError, match="cannot be trained with DP-SGD.*BatchNorm"):
        train_local(TASK, batch_norm, train_set, LocalTrainingConfig(sample_dp=private), CPU)
    with pytest.raises(ValueError, match="clip norm > 0"):
        SampleDP(clip_norm=0.0, noise_multiplier=1.0)
