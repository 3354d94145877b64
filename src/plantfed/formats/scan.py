"""Judge a safetensors file's values while its bytes arrive, so a received update is never read back to check it.

`ValueScan` is fed the file's bytes in order, in pieces of any size. From the header it learns every tensor's
dtype, shape and byte range, refusing what `safetensors` refuses (duplicate keys, gaps, overlaps, sizes that do
not match the shape); over each tensor's bytes it records, for a floating-point tensor, the largest magnitude
bit pattern (above the all-ones exponent: a NaN; equal to it: an infinity) and, for an int8 tensor, the largest
magnitude. `result()` hands these findings over (`ScanResult`) only when the scan saw a header it could read
and exactly the bytes it describes; for anything else it is None and the caller reads the file as it would have
without a scan. A result never stands in for the parser: `codecs.check_update` trusts it only where
`safetensors` reads the same names, dtypes and shapes from the file (so the same byte ranges).

Only numpy: no torch import on the hub's receive path. The work per byte is one masked maximum over blocks of
`BLOCK` elements, through a scratch buffer of one block, so the bytes are not copied and memory stays flat.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest header the scan buffers; a bigger one (tens of thousands of tensors) is left to the reader.
MAX_HEADER_BYTES = 4 << 20
#: Elements judged per numpy call: the scratch buffer's size.
BLOCK = 1 << 16


@dataclass(frozen=True)
class _Float:
    """A floating-point dtype judged by its bits: the unsigned view, the magnitude mask and the exponent mask."""

    bits: type[np.unsignedinteger[Any]]
    magnitude: int
    exponent: int


_FLOATS: dict[str, _Float] = {
    "F16": _Float(np.uint16, 0x7FFF, 0x7C00),
    "BF16": _Float(np.uint16, 0x7FFF, 0x7F80),
    "F32": _Float(np.uint32, 0x7FFF_FFFF, 0x7F80_0000),
    "F64": _Float(np.uint64, 0x7FFF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000),
}
#: Byte size of every dtype the scan can place; a tensor of another dtype ends the scan (the reader decides).
ITEMSIZE: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


@dataclass
class Findings:
    """What the scan saw in one tensor's values."""

    #: float dtypes: the largest `bits & magnitude` (compare with `exponent`); int8: the largest |value|.
    peak: int = 0

    def problem(self, code: str) -> str | None:
        """'NaN' or 'Inf' for a floating-point tensor holding one (NaN first, as a reader reports it), else None."""
        spec = _FLOATS.get(code)
        if spec is None or self.peak < spec.exponent:
            return None
        return "NaN" if self.peak > spec.exponent else "Inf"


@dataclass(frozen=True)
class ScanResult:
    """Each tensor's dtype code and shape as the scan read them, and its findings (dtypes it judges only)."""

    layout: dict[str, tuple[str, tuple[int, ...]]]
    findings: dict[str, Findings]

    def describes(self, layout: Mapping[str, tuple[str, tuple[int, ...]]]) -> bool:
        """Whether a reader found exactly these tensors, dtypes and shapes in the file."""
        return dict(layout) == self.layout


@dataclass
class _Region:
    name: str
    code: str
    shape: tuple[int, ...]
    begin: int
    end: int
    findings: Findings | None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _natural(value: object) -> bool:
    return type(value) is int and value >= 0


def parse_header(raw: bytes, data_start: int) -> list[_Region] | None:
    """The tensors of a safetensors header, ordered by offset and at absolute file offsets; None if malformed."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
    except (ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    regions = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            return None
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in ITEMSIZE or not isinstance(shape, list) or not all(_natural(n) for n in shape):
            return None
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_natural(n) for n in offsets):
            return None
        begin, end = offsets
        if end - begin != math.prod(shape) * ITEMSIZE[code]:
            return None
        judged = code in _FLOATS or code == "I8"
        regions.append(
            _Region(name, code, tuple(shape), data_start + begin, data_start + end, Findings() if judged else None)
        )
    regions.sort(key=lambda r: (r.begin, r.end))
    at = data_start
    for region in regions:
        if region.begin != at:
            return None
        at = region.end
    return regions


class ValueScan:
    """Fed a safetensors file's bytes in order (`feed`); `result()` once all of them went through. Never raises."""

    def __init__(self) -> None:
        self._fed = 0
        self._head = bytearray()
        self._regions: list[_Region] | None = None
        self._next = 0  # the region the next data byte belongs to
        self._end = 0  # where the last region ends
        self._carry = b""  # a split element's first bytes
        self._failed = False
        self._scratch = np.empty(BLOCK, dtype=np.uint64)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._failed:
            return
        try:
            self._feed(memoryview(data).cast("B"))
        except Exception:  # a scan that cannot go on leaves the decision to the reader
            self._failed = True

    def result(self) -> ScanResult | None:
        """The findings of a complete scan of a well-formed file, else None."""
        if self._failed or self._regions is None or self._fed != self._end or self._carry:
            return None
        return ScanResult(
            layout={r.name: (r.code, r.shape) for r in self._regions},
            findings={r.name: r.findings for r in self._regions if r.findings is not None},
        )

    def _feed(self, piece: memoryview) -> None:
        if self._regions is None:
            piece = self._header(piece)
            if self._regions is None:
                return
        if self._fed + len(piece) > self._end:
            self._failed = True  # more bytes than the header describes
            return
        while len(piece):
            region = self._regions[self._next]
            take = min(len(piece), region.end - self._fed)
            if region.findings is not None:
                self._values(region, piece[:take])
            self._fed += take
            piece = piece[take:]
            if self._fed == region.end:
                self._next += 1

    def _header(self, piece: memoryview) -> memoryview:
        """Buffer the length prefix and the header; once complete, parse it and return the rest of `piece`."""
        while True:
            need = 8
            if len(self._head) >= 8:
                length = int.from_bytes(self._head[:8], "little")
                if not 0 < length <= MAX_HEADER_BYTES:
                    self._failed = True
                    return piece[:0]
                need += length
            take = min(len(piece), need - len(self._head))
            self._head += piece[:take]
            piece = piece[take:]
            self._fed += take
            if len(self._head) < need:
                return piece
            if need > 8:
                break
        regions = parse_header(bytes(self._head[8:]), need)
        self._head = bytearray()
        if regions is None:
            self._failed = True
            return piece[:0]
        self._regions, self._end = regions, regions[-1].end if regions else need
        while self._next < len(regions) and regions[self._next].end == self._fed:
            self._next += 1  # empty tensors at the start of the data
        return piece

    def _values(self, region: _Region, piece: memoryview) -> None:
        size = ITEMSIZE[region.code]
        if self._carry:
            need = size - len(self._carry)
            self._carry += bytes(piece[:need])
            piece = piece[need:]
            if len(self._carry) < size:
                return
            self._judge(region, memoryview(self._carry))
            self._carry = b""
        whole = len(piece) - len(piece) % size
        if whole:
            self._judge(region, piece[:whole])
        if whole < len(piece):
            self._carry = bytes(piece[whole:])

    def _judge(self, region: _Region, piece: memoryview) -> None:
        findings = region.findings
        assert findings is not None
        spec = _FLOATS.get(region.code)
        if spec is None:  # int8
            values = np.frombuffer(piece, dtype=np.int8)
            findings.peak = max(findings.peak, int(values.max()), -int(values.min()))
            return
        bits = np.frombuffer(piece, dtype=spec.bits)
        scratch = self._scratch.view(spec.bits)
        for start in range(0, len(bits), BLOCK):
            block = bits[start : start + BLOCK]
            masked = np.bitwise_and(block, spec.magnitude, out=scratch[: len(block)])
            findings.peak = max(findings.peak, int(masked.max()))
