"""The built-in bearing-fault task: CWRU or plant vibration files, or a synthetic multi-vendor fleet."""

from plantfed.tasks.bearing.task import BearingTask

__all__ = ["BearingTask"]
