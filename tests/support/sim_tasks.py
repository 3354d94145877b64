"""Tasks for `plantfed simulate` tests, importable by plant processes as `support.sim_tasks:<Class>`."""

from __future__ import annotations

import sys
import threading
from dataclasses import replace

from plantfed.tasks.bearing import BearingTask
from plantfed.tasks.sdk import DataSpec, PlantData


class HangingBearingTask(BearingTask):
    """The bearing task, except that the plant named by data option `hang` never gets through `plantfed train`."""

    def load_data(self, spec: DataSpec) -> PlantData:
        hang = spec.options.get("hang")
        if hang == spec.plant and "train" in sys.argv:
            threading.Event().wait()  # a stuck data mount: the process never returns
        return super().load_data(replace(spec, options={k: v for k, v in spec.options.items() if k != "hang"}))
