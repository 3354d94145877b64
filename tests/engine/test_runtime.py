"""The plant training runtime against a real exchange: what leaves the plant, and what stays."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from support.exchange import Hub
from support.plant_runtime import CFG, MODEL, HeadStaysHome, runtime_for, seed_bearing

from plantfed.contract.records import Codec, DPMode
from plantfed.exchange.errors import ExchangeError
from plantfed.formats import codecs
from plantfed.plant.runtime import ParticipationConfig, RoundNotForThisPlant, hash_round
from plantfed.plant.training import pick_device, train_local
from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.sdk import dataset_size


def test_update_is_a_delta_of_the_declared_samples_and_only_metrics_travel(hub: Hub) -> None:
    task = BearingTask()
    base_path = seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    runtime = runtime_for(hub, "plant-a", task)

    report = runtime.participate("r1", CFG)

    (record,) = hub.store.updates("r1")
    train_size = dataset_size(task.load_data(runtime.data).train)
    assert record.meta.num_samples == report.num_samples == train_size
    assert record.meta.base_version == 1
    assert {"train_loss", "global_test_accuracy", "local_val_accuracy"} <= set(record.meta.metrics)
    base = codecs.load_state(base_path)
    new = codecs.apply_update(base, dict(codecs.iter_update(hub.store.blob_path(record.digest))))
    assert set(new) == set(base)
    moved = [name for name in base if base[name].is_floating_point() and not torch.equal(base[name], new[name])]
    assert moved, "training changed no weight"


def test_personal_layers_never_leave_the_plant_and_survive_the_next_round(hub: Hub) -> None:
    task = HeadStaysHome()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    runtime = runtime_for(hub, "plant-a", task)
    runtime.participate("r1", CFG)

    (record,) = hub.store.updates("r1")
    sent = {name for name, _ in codecs.iter_update(hub.store.blob_path(record.digest))}
    assert sent and not any(name.startswith("head.") for name in sent)
    personal = codecs.load_state(runtime.state_dir / "personal.safetensors")
    assert set(personal) == {n for n in task.build_model().state_dict() if n.startswith("head.")}

    global_state = codecs.load_state(hub.store.blob_path(hub.store.promoted(MODEL).digest))
    model = runtime.build_model(global_state, "full", seed=0)
    for name, tensor in personal.items():
        assert torch.equal(model.state_dict()[name], tensor), f"{name} was overwritten by the global model"


def test_int8_update_is_smaller_and_close_to_the_fp32_one(hub: Hub) -> None:
    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a", "plant-b"), model=MODEL)
    fp32 = runtime_for(hub, "plant-a", task).participate("r1", CFG)
    int8 = runtime_for(hub, "plant-b", task).participate(
        "r1", ParticipationConfig(training=CFG.training, seed=3, codec=Codec.INT8)
    )
    assert int8.payload_bytes < fp32.payload_bytes / 3
    updates = {u.meta.plant: u for u in hub.store.updates("r1")}
    assert updates["plant-b"].meta.codec is Codec.INT8


def test_a_plant_not_assigned_is_told_so_before_training(hub: Hub) -> None:
    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-b",), model=MODEL)
    with pytest.raises((RoundNotForThisPlant, ExchangeError), match="not assigned"):
        runtime_for(hub, "plant-a", task).participate("r1", CFG)
    assert hub.store.updates("r1") == []


def test_clipping_bounds_the_uploaded_update(hub: Hub) -> None:
    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    cfg = ParticipationConfig(training=CFG.training, seed=3, clip_norm=0.05)
    report = runtime_for(hub, "plant-a", task).participate("r1", cfg)
    (record,) = hub.store.updates("r1")
    delta = dict(codecs.iter_update(hub.store.blob_path(record.digest)))
    norm = torch.sqrt(sum((t.double().pow(2).sum() for t in delta.values() if t.is_floating_point()), torch.zeros(())))
    assert report.update_norm > 0.05
    assert float(norm) == pytest.approx(0.05, rel=1e-3)


def test_a_light_plant_and_a_full_plant_aggregate_into_one_global_model(hub: Hub) -> None:
    from plantfed.engine.aggregation import StrategyConfig
    from plantfed.engine.round_aggregation import aggregate_round

    task = BearingTask()
    base_path = seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a", "plant-b"), model=MODEL)
    runtime_for(hub, "plant-a", task).participate("r1", CFG)
    light = runtime_for(hub, "plant-b", task, index=1)
    light.participate("r1", ParticipationConfig(training=CFG.training, seed=3, variant="light"))

    updates = {u.meta.plant: u for u in hub.store.updates("r1")}
    assert updates["plant-b"].meta.partial and not updates["plant-a"].meta.partial
    light_sent = {name for name, _ in codecs.iter_update(hub.store.blob_path(updates["plant-b"].digest))}
    assert light_sent < set(codecs.load_state(base_path)), "a light update carries a subset of the full model"

    outcome = aggregate_round(hub.store, "r1", StrategyConfig())
    new = codecs.load_state(hub.store.blob_path(outcome.version.digest))
    assert set(new) == set(codecs.load_state(base_path))
    assert {p.plant for p in outcome.result.plants} == {"plant-a", "plant-b"}
    light_model = light.build_model(new, "light", seed=0)
    shared = next(iter(light_sent))
    assert torch.equal(light_model.state_dict()[shared], new[shared])


def test_the_aggregate_command_leaves_the_tasks_personal_layers_out(hub: Hub) -> None:
    """`plantfed aggregate --task` (what the operator's Job runs) takes the plant-local patterns from the task."""
    from plantfed.cli import main

    task = HeadStaysHome()
    base_path = seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    runtime_for(hub, "plant-a", task).participate("r1", CFG)
    hub.store.close_round("r1")

    assert (
        main(["aggregate", f"--store={hub.store.root}", "--round=r1", "--task=support.plant_runtime:HeadStaysHome"])
        == 0
    )

    base = codecs.load_state(base_path)
    new = codecs.load_state(hub.store.blob_path(hub.store.candidate("r1").digest))
    assert all(torch.equal(new[n], base[n]) for n in base if n.startswith("head.")), "the global head never moves"
    assert any(
        not torch.equal(new[n], base[n]) for n in base if not n.startswith("head.") and base[n].is_floating_point()
    )


def test_the_version_a_round_publishes_carries_what_the_aggregation_measured(hub: Hub) -> None:
    """The aggregation Job exits before any scrape: the operator reads its numbers from the version record."""
    from prometheus_client import generate_latest

    from plantfed.contract.metrics import Metrics
    from plantfed.engine.aggregation import StrategyConfig
    from plantfed.engine.round_aggregation import aggregate_round

    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a", "plant-b"), model=MODEL)
    runtime_for(hub, "plant-a", task).participate("r1", CFG)
    runtime_for(hub, "plant-b", task, index=1).participate("r1", CFG)
    outcome = aggregate_round(hub.store, "r1", StrategyConfig())

    # Read back as the operator does: over the exchange's admin API.
    (produced,) = [v for v in hub.admin().list_versions(MODEL) if v.round_id == "r1"]
    summary = produced.aggregation
    assert summary is not None and summary == outcome.version.aggregation
    assert summary.strategy == "fedavg" and summary.peak_bytes > 0 and summary.seconds == outcome.seconds
    assert set(summary.plants) == {"plant-a", "plant-b"}
    for values in summary.plants.values():
        assert values["l2_norm"] > 0 and -1.0 <= values["cosine"] <= 1.0
        assert "epsilon" not in values  # no DP accounting, no ε

    metrics = Metrics()
    metrics.record_aggregation(MODEL, summary)
    text = generate_latest(metrics.registry).decode()
    assert f'plantfed_update_l2_norm{{model="{MODEL}",plant="plant-a"}}' in text
    assert f'plantfed_aggregation_duration_seconds_count{{model="{MODEL}",strategy="fedavg"}} 1.0' in text
    assert "plantfed_dp_epsilon_spent{" not in text


def test_a_version_no_round_produced_carries_no_aggregation(hub: Hub) -> None:
    seed_bearing(hub, BearingTask())
    (seeded,) = hub.admin().list_versions(MODEL)
    assert seeded.aggregation is None


def _stored(hub: Hub, round_id: str, plant: str) -> dict[str, torch.Tensor]:
    (record,) = [u for u in hub.store.updates(round_id) if u.meta.plant == plant]
    return dict(codecs.iter_update(hub.store.blob_path(record.digest)))


@pytest.mark.parametrize("dp_mode", [DPMode.LOCAL, DPMode.SAMPLE])
def test_dp_noise_differs_between_plants_that_would_otherwise_upload_the_same_update(hub: Hub, dp_mode: DPMode) -> None:
    """Two plants with the same data, seed and round train identically; only unpredictable noise tells them apart.

    With noise drawn from the seed and round id (both known to the hub) the hub could subtract it again.
    """
    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a", "plant-b"), model=MODEL)
    clipped = ParticipationConfig(training=CFG.training, seed=3, clip_norm=1.0, dp_mode=dp_mode)
    noised = replace(clipped, noise_multiplier=0.5)
    hub.open_round("r2", plants=("plant-a", "plant-b"), model=MODEL)
    for plant in ("plant-a", "plant-b"):
        runtime = runtime_for(hub, plant, task, index=0)
        runtime.participate("r1", noised)
    a, b = _stored(hub, "r1", "plant-a"), _stored(hub, "r1", "plant-b")
    assert any(not torch.equal(a[n], b[n]) for n in a if a[n].is_floating_point())
    if dp_mode is DPMode.LOCAL:  # without noise the same two plants upload bit-identical updates
        for plant in ("plant-a", "plant-b"):
            runtime_for(hub, plant, task, index=0).participate("r2", clipped)
        a, b = _stored(hub, "r2", "plant-a"), _stored(hub, "r2", "plant-b")
        assert all(torch.equal(a[n], b[n]) for n in a)


def test_a_dp_sgd_update_declares_its_steps_and_rate_and_is_not_clipped_again(hub: Hub) -> None:
    task = BearingTask()
    seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    cfg = ParticipationConfig(
        training=CFG.training, seed=3, clip_norm=0.01, noise_multiplier=0.8, dp_mode=DPMode.SAMPLE
    )
    report = runtime_for(hub, "plant-a", task).participate("r1", cfg)
    (record,) = hub.store.updates("r1")
    batches = -(-record.meta.num_samples // CFG.training.batch_size)
    dp = record.meta.dp
    assert (dp.mode, dp.clip_norm, dp.noise_multiplier) == (DPMode.SAMPLE, 0.01, 0.8)
    assert (dp.steps, dp.sample_rate) == (batches, pytest.approx(1 / batches))
    # 0.01 bounds each record's gradient, not the update: the update is DP-SGD's output, uploaded as it is.
    assert report.update_norm > 0.01
    norm = float(
        torch.sqrt(
            sum(
                (t.double().pow(2).sum() for t in _stored(hub, "r1", "plant-a").values() if t.is_floating_point()),
                torch.zeros((), dtype=torch.float64),
            )
        )
    )
    assert norm == pytest.approx(report.update_norm, rel=1e-4)


@pytest.mark.parametrize(("optimizer", "codec"), [("sgd", Codec.NONE), ("adam", Codec.FP16), ("sgd", Codec.INT8)])
def test_the_update_is_bit_identical_to_the_plain_copying_computation(hub: Hub, optimizer: str, codec: Codec) -> None:
    """The in-place delta, freed optimiser state and streamed encoding change no bit of what a plant sends.

    The reference does it the plain way, from the same seeded training: keep a copy of the base, subtract it,
    encode the whole delta in memory (what the runtime did before it stopped copying the model).
    """
    task = BearingTask()
    base_path = seed_bearing(hub, task)
    hub.open_round("r1", plants=("plant-a",), model=MODEL)
    cfg = replace(CFG, training=replace(CFG.training, optimizer=optimizer), codec=codec)
    runtime = runtime_for(hub, "plant-a", task)
    runtime.participate("r1", cfg)
    (record,) = hub.store.updates("r1")
    with codecs.SafetensorsFile(hub.store.blob_path(record.digest)) as sent:
        uploaded = {name: sent.tensor(name) for name in sent.specs}

    model = runtime.build_model(codecs.load_state(base_path), "full", cfg.seed * 1_000_003 + hash_round("r1"))
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seed = cfg.seed * 1_000_003 + hash_round("r1")
    train_local(task, model, task.load_data(runtime.data).train, cfg.training, pick_device("cpu"), seed=seed)
    trained = model.state_dict()
    plain = {n: trained[n] - base[n] if base[n].is_floating_point() else trained[n] for n in trained}
    expected = codecs.encode_delta(plain, codec)

    assert set(uploaded) == set(expected)
    for name, tensor in expected.items():
        assert uploaded[name].dtype == tensor.dtype and torch.equal(uploaded[name], tensor), name
