"""The built-in regression example: remaining useful life (RUL) from synthetic run-to-failure sensor histories."""

from plantfed.tasks.rul.task import RulTask

__all__ = ["RulTask"]
