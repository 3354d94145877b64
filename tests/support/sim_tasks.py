"""Tasks for `plantfed simulate` tests, importable by plant processes as `support.sim_tasks:<Class>`."""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from plantfed.tasks.bearing import BearingTask
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
