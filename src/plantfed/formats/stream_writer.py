"""Write a safetensors file one tensor at a time.

`safetensors.torch.save_file` needs every tensor in memory at once. Aggregation produces the new global
model (and the server optimiser state) tensor by tensor and must not hold a whole model, so this writer
emits the header first (all shapes and dtypes are known from the base model) and then streams each
tensor's bytes in header order. The layout is the documented safetensors format: an 8-byte little-endian
header length, a JSON header padded with spaces to 8-byte alignment, then the tensors back to back.
Everything written here is read back through `safetensors.safe_open`, which validates it. With `digest=True`
the writer also hashes the bytes as it writes them (`sha256`), so nobody has to read the file again to name it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch

from plantfed.formats.atomic import atomic_output

DTYPE_CODES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
DTYPES_BY_CODE: dict[str, torch.dtype] = {code: dtype for dtype, code in DTYPE_CODES.items()}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's dtype and shape, as read from (or written to) a safetensors header."""

    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def describe(self) -> str:
        return f"{DTYPE_CODES.get(self.dtype, str(self.dtype))}{list(self.shape)}"


class StreamingWriter:
    """Context manager: `write(name, tensor)` for every spec, in order; the file appears atomically on exit.

    If the block raises, or not every declared tensor was written, nothing is left at `path`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        specs: Mapping[str, TensorSpec],
        metadata: Mapping[str, str] | None = None,
        *,
        digest: bool = False,
    ):
        if sys.byteorder != "little":
            raise RuntimeError("safetensors is little-endian; this writer does not byte-swap")
        for name, spec in specs.items():
            if spec.dtype not in DTYPE_CODES:
                raise ValueError(f"tensor {name!r}: dtype {spec.dtype} cannot be written to safetensors here")
        self._path = Path(path)
        self._specs = dict(specs)
        self._metadata = dict(metadata or {})
        self._order = list(self._specs)
        self._next = 0
        self._hasher = hashlib.sha256() if digest else None

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything written (with `digest=True`); complete once every tensor is written."""
        if self._hasher is None:
            raise ValueError("StreamingWriter(digest=True) hashes what it writes; this one does not")
        return self._hasher.hexdigest()

    def _emit(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        if self._hasher is not None:
            self._hasher.update(data)

    def _header(self) -> bytes:
        header: dict[str, object] = {}
        if self._metadata:
            header["__metadata__"] = self._metadata
        offset = 0
        for name in self._order:
            spec = self._specs[name]
            header[name] = {
                "dtype": DTYPE_CODES[spec.dtype],
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + spec.nbytes],
            }
            offset += spec.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        return raw + b" " * (-(len(raw) + 8) % 8)

    def __enter__(self) -> StreamingWriter:
        self._atomic = atomic_output(self._path)
        tmp = self._atomic.__enter__()
        try:
            self._file = open(tmp, "wb")
            header = self._header()
            self._emit(struct.pack("<Q", len(header)))
            self._emit(header)
        except BaseException:
            self._atomic.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._next >= len(self._order):
            raise ValueError(f"tensor {name!r} was not declared (all declared tensors are written)")
        expected = self._order[self._next]
        if name != expected:
            raise ValueError(f"tensors must be written in header order: expected {expected!r}, got {name!r}")
        spec = self._specs[name]
        if tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise ValueError(
                f"tensor {name!r}: got {TensorSpec(tensor.dtype, tuple(tensor.shape)).describe()}, "
                f"declared {spec.describe()}"
            )
        data = tensor.detach().cpu().contiguous().reshape(-1)
        if data.numel():
            self._emit(data.view(torch.uint8).numpy().data)
        self._next += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()
        if exc is None and self._next != len(self._order):
            missing = self._order[self._next]
            exc = ValueError(f"streaming write of {self._path} ended before tensor {missing!r} was written")
            self._atomic.__exit__(type(exc), exc, None)
            raise exc
        self._atomic.__exit__(exc_type, exc, tb)
