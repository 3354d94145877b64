"""The update check judged while the bytes arrive (`formats.scan`) decides exactly as reading the file would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file

from plantfed.contract.records import Codec
from plantfed.formats import codecs
from plantfed.formats.codecs import PayloadError, SafetensorsFile
from plantfed.formats.scan import ValueScan

NAN, INF = float("nan"), float("inf")


def _raw(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header


def scanned(data: bytes, cuts: list[int] | None = None) -> ValueScan:
    """A scan fed `data` in pieces of the sizes in `cuts` (the rest in one piece)."""
    scan, at = ValueScan(), 0
    for size in cuts or []:
        scan.feed(data[at : at + size])
        at += size
    scan.feed(data[at:])
    return scan


def update_file(path: Path, tensors: dict[str, torch.Tensor], codec: Codec = Codec.NONE) -> Path:
    save_file(tensors, str(path), metadata={codecs.KIND_KEY: codecs.KIND_UPDATE, codecs.CODEC_KEY: codec.value})
    return path


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 97), max_size=12))
def test_the_scan_reads_the_layout_and_values_in_any_pieces(cuts: list[int]) -> None:
    tensors = {
        "a": torch.tensor([1.0, -2.0, 3.0]),
        "empty": torch.zeros(0),
        "half": torch.tensor([1.0, NAN, INF], dtype=torch.float16),
        "brain": torch.tensor([[1.0, -INF]], dtype=torch.bfloat16),
        "double": torch.tensor([NAN], dtype=torch.float64),
        "levels": torch.tensor([-128, 5, 127], dtype=torch.int8),
        "count": torch.tensor([7]),
    }
    result = scanned(save(tensors, metadata={"k": "v"}), cuts).result()
    assert result is not None
    assert result.layout == {
        "a": ("F32", (3,)),
        "empty": ("F32", (0,)),
        "half": ("F16", (3,)),
        "brain": ("BF16", (1, 2)),
        "double": ("F64", (1,)),
        "levels": ("I8", (3,)),
        "count": ("I64", (1,)),
    }
    problems = {name: f.problem(result.layout[name][0]) for name, f in result.findings.items()}
    assert problems == {"a": None, "empty": None, "half": "NaN", "brain": "Inf", "double": "NaN", "levels": None}
    assert result.findings["levels"].peak == 128
    assert "count" not in result.findings  # integer values are never judged


@pytest.mark.parametrize(
    "data",
    [
        save({"a": torch.zeros(4)})[:-1],  # truncated
        save({"a": torch.zeros(4)}) + b"\0",  # more than the header describes
        _raw(
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
        )
        + b"\0" * 4,  # duplicate key
        _raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}') + b"\0" * 8,  # a gap before the tensor
        _raw(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}') + b"\0" * 4,  # size does not match shape
        _raw(b'{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}') + b"\0" * 8,  # a dtype the scan cannot place
        (1 << 40).to_bytes(8, "little"),  # a header too large to buffer
        b"garbage",
    ],
    ids=["truncated", "extra", "duplicate-key", "gap", "wrong-size", "unknown-dtype", "huge-header", "garbage"],
)
def test_a_scan_of_anything_but_a_whole_well_formed_file_has_no_result(data: bytes) -> None:
    assert scanned(data).result() is None


def _outcome(check: Callable[[], object]) -> str | None:
    try:
        check()
    except PayloadError as exc:
        return str(exc)
    return None


CASES = {
    "good": ({"w": torch.tensor([0.5, -0.25]), "n": torch.tensor(3)}, Codec.NONE),
    "nan": ({"w": torch.tensor([0.5, NAN]), "n": torch.tensor(3)}, Codec.NONE),
    "inf": ({"w": torch.tensor([-INF, 0.5]), "n": torch.tensor(3)}, Codec.NONE),
    "nan-and-inf": ({"w": torch.tensor([INF, NAN]), "n": torch.tensor(3)}, Codec.NONE),
    "huge-but-finite": ({"w": torch.tensor([3e38, -3e38]), "n": torch.tensor(3)}, Codec.NONE),
    "fp16-inf": ({"w": torch.tensor([1.0, INF], dtype=torch.float16), "n": torch.tensor(3)}, Codec.FP16),
    "int8-overflowing-scale": (
        {"w": torch.tensor([127, -3], dtype=torch.int8), "w::scale": torch.tensor(3e37), "n": torch.tensor(3)},
        Codec.INT8,
    ),
    "int8-large-finite-scale": (
        {"w": torch.tensor([2, -3], dtype=torch.int8), "w::scale": torch.tensor(3e37), "n": torch.tensor(3)},
        Codec.INT8,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_scanned_check_decides_like_reading_without_reading_a_value(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors, codec = CASES[case]
    base = tmp_path / "base.safetensors"
    codecs.save_state({"w": torch.zeros(2), "n": torch.tensor(1)}, base)
    path = update_file(tmp_path / "u.safetensors", tensors, codec)
    expected = _outcome(lambda: codecs.validate_update(path, base, codec))
    scan = scanned(path.read_bytes(), [9, 1, 3])

    read: list[str] = []
    tensor = SafetensorsFile.tensor

    def reading(self: SafetensorsFile, name: str, index: int | None = None) -> object:
        read.append(name)
        return tensor(self, name)

    monkeypatch.setattr(SafetensorsFile, "tensor", reading)
    assert _outcome(lambda: codecs.check_update(path, base, codec, scan.result())) == expected
    assert [n for n in read if not n.endswith(codecs.SCALE_SUFFIX)] == []
    assert (expected is None) == (case in ("good", "huge-but-finite", "int8-large-finite-scale"))


def test_a_scan_that_does_not_describe_the_file_is_not_trusted(tmp_path: Path) -> None:
    base = tmp_path / "base.safetensors"
    codecs.save_state({"w": torch.zeros(2)}, base)
    clean = scanned(save({"w": torch.zeros(3)}, metadata={codecs.KIND_KEY: "update", codecs.CODEC_KEY: "none"}))
    path = update_file(tmp_path / "u.safetensors", {"w": torch.tensor([NAN, 1.0])})
    with pytest.raises(PayloadError, match="tensor 'w' contains NaN"):
        codecs.check_update(path, base, Codec.NONE, clean.result())
    with pytest.raises(PayloadError, match="tensor 'w' contains NaN"):
        codecs.check_update(path, base, Codec.NONE, None)
