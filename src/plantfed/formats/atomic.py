"""Durable files: atomic replacement (readers see the old file or the complete new one, never a torn write)
and the one streaming sha256 everything that names a payload by its digest uses."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

READ_SIZE = 1 << 20


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync it and rename it over `path`.

    The temporary file lives in the destination directory so the final `os.replace` is a same-filesystem
    rename (atomic on POSIX). On any exception the temporary file is removed and `path` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def file_blocks(path: str | os.PathLike[str], limit: int | None = None) -> Iterator[bytes]:
    """A file's first `limit` bytes (all of it when None) in blocks of at most `READ_SIZE`."""
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            block = f.read(READ_SIZE if remaining is None else min(READ_SIZE, remaining))
            if not block:
                break
            yield block
            if remaining is not None:
                remaining -= len(block)


def file_sha256(path: str | os.PathLike[str], limit: int | None = None) -> hashlib._Hash:
    """sha256 of a file's first `limit` bytes (all of it when None), as a live hasher to continue from.

    Payloads can be gigabytes, so the file is read in 1 MiB blocks.
    """
    hasher = hashlib.sha256()
    for block in file_blocks(path, limit):
        hasher.update(block)
    return hasher
