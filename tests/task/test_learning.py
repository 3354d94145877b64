"""A quick end-to-end check: a few epochs on one synthetic plant learn the task well above chance."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from plantfed.tasks.sdk import DataSpec


def test_a_few_epochs_beat_chance_clearly(task) -> None:
    torch.manual_seed(0)
    data = task.load_data(DataSpec("p0", options={"recordings_per_class": 3, "seconds": 5.0}))
    model = task.build_model("full")
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    device = torch.device("cpu")
    loader = DataLoader(data.train, batch_size=32, shuffle=True)
    before = task.evaluate(model, DataLoader(data.test, batch_size=256), device)
    for _ in range(6):
        model.train()
        for batch in loader:
            result = task.batch_loss(model, batch, device)
            optimiser.zero_grad()
            result.loss.backward()
            optimiser.step()
    after = task.evaluate(model, DataLoader(data.test, batch_size=256), device)
    assert after["samples"] == len(data.test)
    assert after["balanced_accuracy"] > 0.7 > before["balanced_accuracy"]
    assert after["loss"] < before["loss"]
