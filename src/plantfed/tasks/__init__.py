"""Tasks: the bring-your-own-task SDK and the built-in tasks.

Task authors import from here, the one documented path::

    from plantfed.tasks import BatchResult, DataSpec, PlantData, Task
"""

from plantfed.tasks.sdk import (
    BUILTIN_TASKS,
    BatchResult,
    DataSpec,
    PlantData,
    Task,
    load_task,
    require_own_data,
)

__all__ = ["BUILTIN_TASKS", "BatchResult", "DataSpec", "PlantData", "Task", "load_task", "require_own_data"]
