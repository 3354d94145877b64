"""Checks that an uploaded payload is a well-formed safetensors file, without loading a tensor.

safetensors parses only a JSON header and validates every tensor's offsets against the file, so this is
cheap on a multi-GB update and never executes anything from the payload (no pickle anywhere).
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError, safe_open


class InvalidPayloadError(ValueError):
    """The payload is not a usable safetensors file."""


def check_safetensors(path: Path) -> None:
    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except SafetensorError as exc:
        raise InvalidPayloadError(f"payload is not a valid safetensors file: {exc}") from exc
