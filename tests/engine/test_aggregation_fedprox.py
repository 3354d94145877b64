"""FedProx's plant-side proximal term: its value, its gradient, and its effect on local drift."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plantfed.plant.fedprox import proximal_term


def model_and_anchor() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model, anchor


def test_value_and_gradient_match_the_formula():
    model, anchor = model_and_anchor()
    mu = 0.3
    term = proximal_term(model, anchor, mu)
    expected = 0.5 * mu * sum(float(((p.detach() - anchor[n]) ** 2).sum()) for n, p in model.named_parameters())
    assert term.item() == pytest.approx(expected, rel=1e-6)
    term.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, mu * (param.detach() - anchor[name]))


def test_parameters_without_anchor_or_frozen_are_not_pulled():
    model, anchor = model_and_anchor()
    model[2].weight.requires_grad_(False)
    partial = {k: v for k, v in anchor.items() if not k.startswith("0.")}  # layer 0 plant-local
    term = proximal_term(model, partial, 1.0)
    assert term.item() == pytest.approx(0.5 * float(((model[2].bias.detach() - anchor["2.bias"]) ** 2).sum()))
    assert proximal_term(model, {}, 1.0).item() == 0.0


def test_proximal_term_limits_local_drift():
    torch.manual_seed(1)
    x, y = torch.randn(64, 4), torch.randn(64, 2) * 3

    def drift(mu: float) -> float:
        model, _ = model_and_anchor()
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(100):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y) + proximal_term(model, anchor, mu)
            loss.backward()
            opt.step()
        return sum(float(((p.detach() - anchor[n]) ** 2).sum()) for n, p in model.named_parameters()) ** 0.5

    free, held = drift(0.0), drift(1.0)
    assert held < 0.8 * free


def test_bad_arguments_are_refused():
    model, anchor = model_and_anchor()
    with pytest.raises(ValueError, match="non-negative"):
        proximal_term(model, anchor, -0.1)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \[1\]"):
        proximal_term(model, {**anchor, "0.weight": torch.zeros(1)}, 0.1)
