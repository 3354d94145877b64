"""The bearing task's plant runtime against a test exchange: the seeded model and a runtime per plant."""

from __future__ import annotations

from pathlib import Path

import torch

from plantfed.formats import codecs
from plantfed.plant.runtime import ParticipationConfig, PlantRuntime
from plantfed.plant.training import LocalTrainingConfig
from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.sdk import DataSpec
from support.exchange import Hub

SMALL = {"recordings_per_class": 2, "seconds": 2.0}
"""Small synthetic plants: a round trains in seconds on a CPU."""
MODEL = "bearing"
CFG = ParticipationConfig(training=LocalTrainingConfig(epochs=1, batch_size=32, learning_rate=0.05), seed=3)


class HeadStaysHome(BearingTask):
    """The bearing task with a personalised classifier head that is never sent to the hub.

    Importable by name (`support.plant_runtime:HeadStaysHome`) because `plantfed aggregate --task` loads it so.
    """

    def local_parameter_patterns(self) -> tuple[str, ...]:
        return ("head.*",)


def seed_bearing(hub: Hub, task: BearingTask) -> Path:
    """Publish and promote the task's initial weights (seeded, so every test starts from the same model)."""
    torch.manual_seed(0)
    path = hub.tmp / "initial.safetensors"
    codecs.save_state(task.build_model("full").state_dict(), path)
    hub.admin().publish_model(MODEL, path, promote=True)
    return path


def runtime_for(hub: Hub, plant: str, task: BearingTask, index: int = 0) -> PlantRuntime:
    data = DataSpec(plant=plant, plant_index=index, num_plants=3, options=SMALL)
    return PlantRuntime(plant, task, data, hub.tmp / "plants" / plant, hub.plant(plant))
