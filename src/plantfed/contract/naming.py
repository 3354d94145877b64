"""Naming rules every layer shares: what may name a model, round, plant or blob, and how long it may be."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class InvalidNameError(ValueError):
    """A model, round or plant name that is unsafe as a path component, or a malformed digest."""


def check_name(kind: str, name: str) -> str:
    """Names become path components, so only a conservative character set is accepted."""
    if not isinstance(name, str) or not _NAME.match(name) or name in {".", ".."}:
        raise InvalidNameError(
            f"invalid {kind} name {name!r}: use 1-253 characters from [A-Za-z0-9._-], starting alphanumeric"
        )
    return name


def check_sha256(digest: str) -> str:
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise InvalidNameError(f"invalid sha256 {digest!r}: expected 64 lowercase hex characters")
    return digest
