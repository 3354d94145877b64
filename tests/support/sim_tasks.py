"""Tasks for `plantfed simulate` tests, importable by plant processes as `support.sim_tasks:<Class>`."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.rul import RulTask
from plantfed.tasks.rul.task import RMSE
from plantfed.tasks.sdk import DataSpec, PlantData


class HangingBearingTask(BearingTask):
    """The bearing task, except that the plant named by data option `hang` never gets through `plantfed train`."""

    def load_data(self, spec: DataSpec) -> PlantData:
        hang = spec.options.get("hang")
        if hang == spec.plant and "train" in sys.argv:
            threading.Event().wait()  # a stuck data mount: the process never returns
        return super().load_data(replace(spec, options={k: v for k, v in spec.options.items() if k != "hang"}))


class CrashingBearingTask(BearingTask):
    """The bearing task, except that the plant named by data option `crash` is SIGKILLed in its first `train`.

    The marker file in data option `crash_dir` makes it happen once: the plant's next round trains normally.
    """

    def load_data(self, spec: DataSpec) -> PlantData:
        crash, marker = spec.options.get("crash"), Path(spec.options.get("crash_dir", ".")) / "crashed"
        if crash == spec.plant and "train" in sys.argv and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, or a node going away, mid-Job
        kept = {k: v for k, v in spec.options.items() if k not in ("crash", "crash_dir")}
        return super().load_data(replace(spec, options=kept))


class NanRulTask(RulTask):
    """The rul task with a bug: its RMSE on the validation split is NaN (say, a division by an empty count)."""

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable[Any], device: torch.device) -> dict[str, float]:
        scores = super().evaluate(model, loader, device)
        scores[RMSE] = math.nan
        return scores


class DiskGoneInBaselinesRulTask(RulTask):
    """The rul task, except that the hub side (simulate's own process, where the baselines train) cannot read data.

    Plants (`plantfed train` / `evaluate` processes) load normally: the run fails late, after every round.
    """

    def load_data(self, spec: DataSpec) -> PlantData:
        if not {"train", "evaluate"} & set(sys.argv):
            raise OSError(f"{spec.plant}: data volume unreadable")
        return super().load_data(spec)
