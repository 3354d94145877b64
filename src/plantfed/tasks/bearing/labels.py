"""The bearing task's fixed label set.

Every plant's model has the same four outputs, so updates from any plant average by name; a plant that has
no healthy recordings simply never shows the model that class.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("normal", "ball", "inner", "outer")
NUM_CLASSES = len(CLASSES)


def class_index(label: str, source: object) -> int:
    """Index of a label name; `source` names the file it came from, for the error."""
    try:
        return CLASSES.index(label)
    except ValueError:
        raise ValueError(f"{source}: unknown label {label!r}; expected one of {', '.join(CLASSES)}") from None
