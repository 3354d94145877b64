"""Built-in tasks, by the short name a FederatedModel or `plantfed simulate --task` uses."""

BUILTIN_TASKS = {
    "bearing": "plantfed_participant.tasks.bearing:BearingTask",
}
