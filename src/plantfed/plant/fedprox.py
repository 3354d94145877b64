"""FedProx's plant-side proximal term (Li et al. 2020, "Federated Optimization in Heterogeneous Networks").

On the hub FedProx aggregates exactly like FedAvg; what differs is the local objective, which gains
`mu/2 · ||w − w_global||²` so a plant with skewed data cannot drift arbitrarily far from the global model
during its local epochs. The plant runtime adds this term to each batch loss.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def proximal_term(model: nn.Module, global_params: Mapping[str, torch.Tensor], mu: float) -> torch.Tensor:
    """`mu/2 · Σ ||w − w_global||²` over the trainable parameters named in `global_params` (differentiable in w).

    Parameters absent from `global_params` (e.g. plant-local layers) are not pulled towards anything.
    """
    if mu < 0:
        raise ValueError(f"FedProx mu must be non-negative, got {mu}")
    total: torch.Tensor | None = None
    for name, param in model.named_parameters():
        if not param.requires_grad or name not in global_params:
            continue
        anchor = global_params[name]
        if anchor.shape != param.shape:
            raise ValueError(
                f"FedProx: global parameter {name!r} has shape {list(anchor.shape)}, the model has {list(param.shape)}"
            )
        term = (param - anchor.detach().to(param.device, param.dtype)).pow(2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(model.parameters(), torch.zeros(())).device)
    return 0.5 * mu * total
