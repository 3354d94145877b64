"""The full and light models: small, and aggregatable by parameter name."""

from __future__ import annotations

from fnmatch import fnmatch

import pytest
import torch

from plantfed.tasks.sdk import load_task


def _is_local(task, name: str) -> bool:
    return any(fnmatch(name, pattern) for pattern in task.local_parameter_patterns())


def test_built_in_name_resolves_to_the_task() -> None:
    task = load_task("bearing")
    assert task.name == "bearing" and task.variants == ("full", "light")


def test_models_are_small_and_the_light_one_is_lighter(task) -> None:
    sizes = {v: sum(p.numel() for p in task.build_model(v).parameters()) for v in task.variants}
    assert sizes["full"] <= 300_000
    assert sizes["light"] < sizes["full"] / 2


def test_unknown_variant_is_refused(task) -> None:
    with pytest.raises(ValueError, match="unknown model variant 'tiny'"):
        task.build_model("tiny")


def test_shared_parameters_have_identical_names_and_shapes(task) -> None:
    full, light = task.build_model("full").state_dict(), task.build_model("light").state_dict()
    shared = full.keys() & light.keys()
    assert any(k.startswith("blocks.0.") for k in shared)
    assert all(full[k].shape == light[k].shape for k in shared)
    # Everything the light model has beyond the shared backbone is its head, which stays on the plant.
    assert {k for k in light if k not in shared} == {k for k in light if _is_local(task, k)} != set()
    assert not any(_is_local(task, k) for k in full)


def test_by_name_average_of_full_and_light_loads_into_both(task) -> None:
    torch.manual_seed(0)
    full, light = task.build_model("full"), task.build_model("light")
    updates = [full.state_dict(), light.state_dict()]
    names = set().union(*updates)
    average = {n: torch.stack([u[n].float() for u in updates if n in u]).mean(0) for n in names}
    shared = updates[0].keys() & updates[1].keys()

    fresh_full, fresh_light = task.build_model("full"), task.build_model("light")
    fresh_full.load_state_dict({k: average[k] for k in fresh_full.state_dict()})
    fresh_light.load_state_dict({k: average[k] for k in fresh_light.state_dict()})
    for name in shared:
        expected = (updates[0][name] + updates[1][name]) / 2
        assert torch.allclose(fresh_full.state_dict()[name], expected)
        assert torch.equal(fresh_full.state_dict()[name], fresh_light.state_dict()[name])
    x = torch.randn(3, 1, 2048)
    assert fresh_full(x).shape == fresh_light(x).shape == (3, 4)


@pytest.mark.parametrize("window", [256, 1024, 2048, 4096])
def test_models_take_any_window_length(task, window: int) -> None:
    for variant in task.variants:
        assert task.build_model(variant)(torch.randn(2, 1, window)).shape == (2, 4)


def test_batch_loss_counts_correct_predictions(task) -> None:
    model = task.build_model("full").eval()
    x = torch.randn(8, 1, 2048)
    y = model(x).argmax(dim=1)
    result = task.batch_loss(model, (x, y), torch.device("cpu"))
    assert result.count == 8 and result.stats["accuracy"] == 8 and result.loss.requires_grad
    assert sum(v for k, v in result.stats.items() if k.startswith("macro_f1.tp.")) == 8
    assert sum(v for k, v in result.stats.items() if k.startswith("macro_f1.fp.")) == 0
    wrong = task.batch_loss(model, (x, (y + 1) % 4), torch.device("cpu"))
    assert wrong.stats["accuracy"] == 0 and wrong.loss.item() > result.loss.item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_loss_and_evaluate_run_on_cuda(task, small) -> None:
    from torch.utils.data import DataLoader

    from plantfed.tasks.sdk import DataSpec

    data = task.load_data(DataSpec("p", options=small))
    torch.manual_seed(0)
    model = task.build_model("full").eval()
    on_cpu = task.evaluate(model, DataLoader(data.test, batch_size=64), torch.device("cpu"))
    on_gpu = task.evaluate(model.to("cuda"), DataLoader(data.test, batch_size=64), torch.device("cuda"))
    assert on_gpu["accuracy"] == pytest.approx(on_cpu["accuracy"], abs=0.02)
    assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=1e-3)
    result = task.batch_loss(model.train(), next(iter(DataLoader(data.train, batch_size=8))), torch.device("cuda"))
    result.loss.backward()
    assert result.loss.is_cuda and result.count == 8
