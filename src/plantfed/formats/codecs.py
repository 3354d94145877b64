"""Model and update payloads as safetensors files, and the update compression codecs.

Nothing here unpickles: every file is safetensors, parsed by the `safetensors` library.

Two kinds of file:

* a **state** file holds full model weights (the global model: a `state_dict` including buffers);
* an **update** file holds what one plant sends for one round. For floating-point tensors that is the
  delta `local - base`, encoded by the round's codec; non-floating tensors (e.g. BatchNorm's
  `num_batches_tracked`) have no meaningful delta and are carried as their plain local values, in their
  own dtype, whatever the codec. Plant-local (personalised) parameters are left out entirely.

Codecs, recorded in the header's `__metadata__` under `plantfed.codec`:

* `none`: float32 deltas.
* `fp16`: float16 deltas (half the bytes; relative error ≤ 2^-11 per coordinate for normal values).
* `int8`: symmetric per-tensor quantisation. `name` holds `round(delta / s)` as int8 in [-127, 127] and
  `name::scale` holds `s = max|delta| / 127` as a float32 scalar, so the absolute error per coordinate is
  at most `s / 2` (a quarter of the bytes plus 4 per tensor).

Decoding always yields float32 deltas (and non-floating values unchanged). Readers use the `pread`
backend of `safe_open`, so reading a tensor never leaves the file mapped into the process.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from plantfed.contract.records import Codec
from plantfed.formats.atomic import atomic_output
from plantfed.formats.memory import MemoryTracker
from plantfed.formats.numerics import dot
from plantfed.formats.scan import ScanResult
from plantfed.formats.stream_writer import DTYPE_CODES, DTYPES_BY_CODE, StreamingWriter, TensorSpec

KIND_KEY = "plantfed.kind"
CODEC_KEY = "plantfed.codec"
KIND_STATE = "state"
KIND_UPDATE = "update"
SCALE_SUFFIX = "::scale"
INT8_LEVELS = 127

_FLOAT_DTYPE_FOR_CODEC: dict[Codec, torch.dtype] = {
    Codec.NONE: torch.float32,
    Codec.FP16: torch.float16,
    Codec.INT8: torch.int8,
}
_FP16_MAX = torch.finfo(torch.float16).max


class PayloadError(ValueError):
    """A model or update file is unreadable or does not match what it claims to be."""


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """Whether a parameter name matches one of the fnmatch globs (plant-local parameter patterns)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class SafetensorsFile:
    """A lazily read safetensors file; opening failures become `PayloadError`s naming the file."""

    def __init__(self, path: str | os.PathLike[str], role: str = "payload"):
        self.path = Path(path)
        self.role = role
        try:
            self._handle = safe_open(str(self.path), framework="pt", backend="pread")
        except (SafetensorError, OSError, ValueError) as err:
            raise PayloadError(f"{role} {self.path} is not a readable safetensors file: {err}") from err
        try:
            self.metadata: dict[str, str] = dict(self._handle.metadata() or {})
            names = list(self._handle.keys())
            self.specs: dict[str, TensorSpec] = {}
            for name in names:
                view = self._handle.get_slice(name)
                code = view.get_dtype()
                if code not in DTYPES_BY_CODE:
                    raise PayloadError(f"{role} {self.path}: tensor {name!r} has unsupported dtype {code}")
                self.specs[name] = TensorSpec(DTYPES_BY_CODE[code], tuple(view.get_shape()))
        except BaseException as err:
            self.close()
            if isinstance(err, (SafetensorError, OSError)):
                raise PayloadError(f"{role} {self.path} is not a readable safetensors file: {err}") from err
            raise

    def tensor(self, name: str, index: tuple[slice, ...] | None = None) -> torch.Tensor:
        """The stored tensor, or the block `index` of it (read with `get_slice`, nothing else is read)."""
        try:
            if index is None:
                return self._handle.get_tensor(name)
            return self._handle.get_slice(name)[index]
        except (SafetensorError, OSError) as err:
            raise PayloadError(f"{self.role} {self.path}: cannot read tensor {name!r}: {err}") from err

    def close(self) -> None:
        self._handle.__exit__(None, None, None)

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- states


def _detached(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tied weights (shared storage) are cloned since safetensors refuses aliases."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state entry {name!r} is a {type(value).__name__}, not a tensor")
        tensor = value.detach().cpu().contiguous()
        key = tensor.untyped_storage().data_ptr()
        if tensor.numel() and key in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def save_state(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> None:
    """Write full model weights atomically (temp file + rename), tagged as a state file."""
    extra = dict(metadata or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; got {key!r}: {value!r}")
    extra[KIND_KEY] = KIND_STATE
    tensors = _detached(state)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=extra)


def load_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read full model weights; refuses an update payload passed by mistake."""
    with SafetensorsFile(path, role="model") as f:
        if f.metadata.get(KIND_KEY) == KIND_UPDATE:
            raise PayloadError(f"{path} is an update payload (deltas), not model weights")
        return {name: f.tensor(name) for name in f.specs}


# --------------------------------------------------------------------------------------------- encoding


def encode_tensor(name: str, delta: torch.Tensor, codec: Codec) -> dict[str, torch.Tensor]:
    """Encode one float delta; returns the stored entries (`name`, plus `name::scale` for int8)."""
    delta = delta.detach().to(torch.float32)
    if not torch.isfinite(delta).all():
        raise ValueError(f"tensor {name!r}: delta contains NaN or Inf; refusing to encode it")
    if codec is Codec.NONE:
        return {name: delta.contiguous()}
    amax = float(delta.abs().max()) if delta.numel() else 0.0
    if codec is Codec.FP16:
        if amax > _FP16_MAX:
            raise ValueError(f"tensor {name!r}: delta magnitude {amax:.3g} overflows float16; use codec none")
        return {name: delta.to(torch.float16).contiguous()}
    if codec is Codec.INT8:
        scale = amax / INT8_LEVELS
        if scale == 0.0:
            quantised = torch.zeros_like(delta, dtype=torch.int8)
        else:
            quantised = torch.round(delta / scale).clamp_(-INT8_LEVELS, INT8_LEVELS).to(torch.int8)
        return {name: quantised.contiguous(), name + SCALE_SUFFIX: torch.tensor(scale, dtype=torch.float32)}
    raise ValueError(f"unknown codec {codec!r}")


def encode_delta(delta: Mapping[str, torch.Tensor], codec: Codec) -> dict[str, torch.Tensor]:
    """Encode an already computed update: float tensors are deltas, non-float tensors are plain values.

    For callers that transform the delta first (clipping, DP noise) and so cannot use `encode_update`.
    """
    codec = Codec(codec)
    out: dict[str, torch.Tensor] = {}
    for name, value in delta.items():
        if SCALE_SUFFIX in name:
            raise ValueError(f"tensor name {name!r} contains the reserved suffix {SCALE_SUFFIX!r}")
        if value.is_floating_point():
            out.update(encode_tensor(name, value, codec))
        else:
            out[name] = value.detach().cpu().contiguous()
    return out


def encode_update(
    base_state: Mapping[str, torch.Tensor],
    local_state: Mapping[str, torch.Tensor],
    codec: Codec,
    *,
    exclude: Sequence[str] = (),
) -> dict[str, torch.Tensor]:
    """The encoded update `local - base` (float tensors) / `local` (non-float), minus `exclude`d names."""
    unknown = sorted(n for n in local_state if n not in base_state and not matches_any(n, exclude))
    if unknown:
        raise ValueError(f"local state has tensors the base model lacks: {unknown}")
    delta: dict[str, torch.Tensor] = {}
    for name, base in base_state.items():
        if matches_any(name, exclude):
            continue
        if name not in local_state:
            raise ValueError(f"local state lacks tensor {name!r}")
        local = local_state[name]
        if local.shape != base.shape:
            raise ValueError(f"tensor {name!r}: local shape {list(local.shape)} differs from base {list(base.shape)}")
        if base.is_floating_point():
            delta[name] = local.detach().cpu().float() - base.detach().cpu().float()
        else:
            if local.dtype != base.dtype:
                raise ValueError(f"tensor {name!r}: local dtype {local.dtype} differs from base {base.dtype}")
            delta[name] = local
    return encode_delta(delta, codec)


def write_update(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str], codec: Codec) -> None:
    """Write encoded update tensors atomically, recording the codec in the header."""
    codec = Codec(codec)
    expected = _FLOAT_DTYPE_FOR_CODEC[codec]
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            if codec is not Codec.INT8:
                raise ValueError(f"tensor {name!r}: scale entries only belong to int8 updates, not {codec.value}")
            if name[: -len(SCALE_SUFFIX)] not in tensors:
                raise ValueError(f"tensor {name!r}: scale without its quantised tensor")
        elif tensor.is_floating_point() and codec is not Codec.INT8 and tensor.dtype != expected:
            raise ValueError(f"tensor {name!r}: dtype {tensor.dtype} is not the {codec.value} codec's {expected}")
        elif codec is Codec.INT8 and tensor.is_floating_point():
            raise ValueError(f"tensor {name!r}: float tensor in an int8 update (encode it first)")
    with atomic_output(path) as tmp:
        save_file(_detached(tensors), str(tmp), metadata={KIND_KEY: KIND_UPDATE, CODEC_KEY: codec.value})


def stream_update(delta: Mapping[str, torch.Tensor], path: str | os.PathLike[str], codec: Codec) -> str:
    """Encode `delta` (as `encode_delta`) and write it tensor by tensor; returns the file's sha256 (hex).

    The same update file `write_update(encode_delta(delta, codec), ...)` writes, without holding an encoded copy
    of the whole update or the serialised file in memory: each tensor is encoded, written and hashed, then
    dropped. A tensor that cannot be encoded (NaN/Inf, fp16 overflow) leaves nothing at `path`.
    """
    codec = Codec(codec)
    specs: dict[str, TensorSpec] = {}
    for name, value in delta.items():
        if SCALE_SUFFIX in name:
            raise ValueError(f"tensor name {name!r} contains the reserved suffix {SCALE_SUFFIX!r}")
        if value.is_floating_point():
            specs[name] = TensorSpec(_FLOAT_DTYPE_FOR_CODEC[codec], tuple(value.shape))
            if codec is Codec.INT8:
                specs[name + SCALE_SUFFIX] = TensorSpec(torch.float32, ())
        else:
            specs[name] = TensorSpec(value.dtype, tuple(value.shape))
    with StreamingWriter(path, specs, {KIND_KEY: KIND_UPDATE, CODEC_KEY: codec.value}, digest=True) as writer:
        for name, value in delta.items():
            encoded = encode_tensor(name, value, codec) if value.is_floating_point() else {name: value}
            for entry, tensor in encoded.items():
                writer.write(entry, tensor)
            del encoded
    return writer.sha256


# --------------------------------------------------------------------------------------------- decoding


class UpdateReader:
    """Lazy reader of one update file: lists its tensors and decodes them (or blocks of them) to float32.

    Non-floating tensors are returned as stored (they are values, not deltas).
    """

    def __init__(self, path: str | os.PathLike[str], codec: Codec | None = None):
        self.file = SafetensorsFile(path, role="update")
        try:
            declared = self.file.metadata.get(CODEC_KEY)
            kind = self.file.metadata.get(KIND_KEY)
            if kind != KIND_UPDATE or declared is None:
                raise PayloadError(
                    f"update {path}: header lacks plantfed update metadata "
                    f"({KIND_KEY}={kind!r}, {CODEC_KEY}={declared!r})"
                )
            try:
                self.codec = Codec(declared)
            except ValueError:
                raise PayloadError(f"update {path}: header names unknown codec {declared!r}") from None
            if codec is not None and Codec(codec) is not self.codec:
                raise PayloadError(
                    f"update {path}: declared codec {Codec(codec).value!r} "
                    f"but the payload header says {self.codec.value!r}"
                )
        except BaseException:
            self.file.close()
            raise
        self.names = [n for n in self.file.specs if not n.endswith(SCALE_SUFFIX)]
        self._scales: dict[str, float] = {}

    @property
    def path(self) -> Path:
        return self.file.path

    def scale(self, name: str) -> float:
        if name not in self._scales:
            key = name + SCALE_SUFFIX
            spec = self.file.specs.get(key)
            if spec is None:
                raise PayloadError(f"update {self.path}: int8 tensor {name!r} has no {key!r} entry")
            if spec.dtype != torch.float32 or spec.numel != 1:
                raise PayloadError(f"update {self.path}: tensor {key!r} must be one float32, got {spec.describe()}")
            value = float(self.file.tensor(key).reshape(()))
            if not math.isfinite(value) or value < 0:
                raise PayloadError(f"update {self.path}: tensor {key!r} is {value}, not a finite non-negative scale")
            self._scales[name] = value
        return self._scales[name]

    def stored(self, name: str, index: tuple[slice, ...] | None = None) -> torch.Tensor:
        return self.file.tensor(name, index)

    def scaled(self, name: str) -> bool:
        """Whether `name` is stored as int8 levels times its `::scale` (else its stored values are the delta)."""
        specs = self.file.specs
        return specs[name].dtype == torch.int8 and self.codec is Codec.INT8 and name + SCALE_SUFFIX in specs

    def decode(self, name: str, stored: torch.Tensor) -> torch.Tensor:
        """Float32 delta from stored values (the same tensor when already float32)."""
        if stored.dtype == torch.int8 and self.scaled(name):
            return stored.to(torch.float32).mul_(self.scale(name))
        if stored.is_floating_point():
            return stored.to(torch.float32)
        return stored

    def read(self, name: str, index: tuple[slice, ...] | None = None) -> torch.Tensor:
        return self.decode(name, self.stored(name, index))

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> UpdateReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def iter_update(path: str | os.PathLike[str], *, codec: Codec | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield `(name, float32 delta)` (non-float tensors: their value) one tensor at a time.

    Only decodes; call `validate_update` first for a payload from an untrusted source.
    """
    with UpdateReader(path, codec) as reader:
        for name in reader.names:
            yield name, reader.read(name)


def decode_update(tensors: Mapping[str, torch.Tensor], codec: Codec) -> dict[str, torch.Tensor]:
    """In-memory counterpart of `iter_update` for tensors returned by `encode_update`/`encode_delta`."""
    codec = Codec(codec)
    out: dict[str, torch.Tensor] = {}
    for name, stored in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if codec is Codec.INT8 and stored.dtype == torch.int8 and name + SCALE_SUFFIX in tensors:
            out[name] = stored.to(torch.float32) * tensors[name + SCALE_SUFFIX].float()
        elif stored.is_floating_point():
            out[name] = stored.to(torch.float32)
        else:
            out[name] = stored
    return out


def apply_update(
    base_state: Mapping[str, torch.Tensor],
    update: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """`base + delta` for float tensors, the carried value for non-float ones; names absent keep the base.

    `update` is decoded (`decode_update`'s dict or `iter_update`'s pairs). The result keeps base dtypes.
    """
    pairs = update.items() if isinstance(update, Mapping) else update
    out = {name: tensor.clone() for name, tensor in base_state.items()}
    for name, value in pairs:
        if name not in base_state:
            raise PayloadError(f"update tensor {name!r} is not in the base model")
        base = base_state[name]
        if value.shape != base.shape:
            raise PayloadError(
                f"update tensor {name!r}: shape {list(value.shape)} does not match base {list(base.shape)}"
            )
        if base.is_floating_point():
            out[name] = (base.float() + value.float()).to(base.dtype)
        else:
            out[name] = value.to(base.dtype).clone()
    return out


# ------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class UpdateSummary:
    """What validation learned while reading an update once: its size and L2 norm."""

    num_tensors: int
    l2_norm: float
    file_bytes: int


def check_header(
    reader: UpdateReader, base: Mapping[str, TensorSpec], exclude: Sequence[str] = (), *, partial: bool = False
) -> None:
    """Refuse missing, unexpected, misshapen or wrongly typed tensors relative to the base model.

    A `partial` update (from a lighter model variant) may omit tensors, but what it carries must still match.
    """
    where = f"update {reader.path}"
    specs = reader.file.specs
    for name in specs:
        if name.endswith(SCALE_SUFFIX):
            owner = name[: -len(SCALE_SUFFIX)]
            if reader.codec is not Codec.INT8:
                raise PayloadError(f"{where}: unexpected tensor {name!r} (scale entries only exist in int8 updates)")
            if owner not in specs or owner not in base or not base[owner].dtype.is_floating_point:
                raise PayloadError(f"{where}: unexpected tensor {name!r} (no float tensor {owner!r} to scale)")
        elif name not in base:
            raise PayloadError(f"{where}: unexpected tensor {name!r} (not in the base model)")
    for name, base_spec in base.items():
        spec = specs.get(name)
        if spec is None:
            if partial or matches_any(name, exclude):
                continue
            raise PayloadError(f"{where}: missing tensor {name!r}")
        if spec.shape != base_spec.shape:
            raise PayloadError(
                f"{where}: tensor {name!r} has shape {list(spec.shape)}, the base model has {list(base_spec.shape)}"
            )
        expected = _FLOAT_DTYPE_FOR_CODEC[reader.codec] if base_spec.dtype.is_floating_point else base_spec.dtype
        if spec.dtype != expected:
            raise PayloadError(
                f"{where}: tensor {name!r} has dtype {spec.describe()}, "
                f"expected {TensorSpec(expected, spec.shape).describe()} for codec {reader.codec.value}"
            )
        if reader.codec is Codec.INT8 and base_spec.dtype.is_floating_point:
            reader.scale(name)


def checked_squared_norm(
    reader: UpdateReader, name: str, delta: torch.Tensor, tracker: MemoryTracker | None = None
) -> float:
    """‖delta‖², refusing NaN/Inf: the sum of squares is finite iff every value is, so one pass does both."""
    squared = dot(delta, delta, tracker)
    if not math.isfinite(squared):
        _refuse_non_finite(reader, name, "NaN" if torch.isnan(delta).any() else "Inf")
    return squared


def _refuse_non_finite(reader: UpdateReader, name: str, problem: str) -> None:
    raise PayloadError(f"update {reader.path}: tensor {name!r} contains {problem}")


@contextlib.contextmanager
def _checked_reader(
    path: str | os.PathLike[str], base_path: str | os.PathLike[str], codec: Codec, exclude: Sequence[str], partial: bool
) -> Iterator[UpdateReader]:
    """The update, open, once its header passed `check_header` against the base model's."""
    with SafetensorsFile(base_path, role="model") as base_file:
        base = dict(base_file.specs)
    with UpdateReader(path, codec) as reader:
        check_header(reader, base, exclude, partial=partial)
        yield reader


def validate_update(
    path: str | os.PathLike[str],
    base_path: str | os.PathLike[str],
    codec: Codec,
    *,
    exclude: Sequence[str] = (),
    tracker: MemoryTracker | None = None,
    partial: bool = False,
) -> UpdateSummary:
    """Check an update against the base model and its declared codec; raise `PayloadError` naming the problem.

    Reads the update once, tensor by tensor, refusing: an unreadable/truncated/non-safetensors file, a
    codec that differs from the header's, missing or unexpected tensors, wrong shapes or dtypes, NaN/Inf.
    Tensors matching `exclude` (plant-local parameters) may be absent and do not count towards the norm.
    """
    tracker = tracker or MemoryTracker()
    squared = 0.0
    with _checked_reader(path, base_path, codec, exclude, partial) as reader:
        for name in reader.names:
            tensor_squared = _read_and_check(reader, name, tracker)
            if not matches_any(name, exclude):
                squared += tensor_squared
        count = len(reader.names)
    return UpdateSummary(num_tensors=count, l2_norm=math.sqrt(squared), file_bytes=Path(path).stat().st_size)


def _read_and_check(reader: UpdateReader, name: str, tracker: MemoryTracker) -> float:
    """‖delta‖² of one tensor read from the file, refusing NaN/Inf (0.0 for non-floating values)."""
    stored = reader.stored(name)
    with tracker.live(stored):
        delta = reader.decode(name, stored)
        if not delta.is_floating_point():
            return 0.0
        with tracker.live(delta):
            return checked_squared_norm(reader, name, delta, tracker)


def check_update(
    path: str | os.PathLike[str],
    base_path: str | os.PathLike[str],
    codec: Codec,
    scan: ScanResult | None,
    *,
    exclude: Sequence[str] = (),
    partial: bool = False,
) -> None:
    """`validate_update`'s checks, judging the values from `scan` (made while the file's bytes arrived).

    The header, shapes, dtypes and int8 scales are read from the file as always; the values only where the scan
    does not describe the file exactly as `safetensors` reads it (then the whole file, as `validate_update`).
    The same update is refused with the same message either way; no norm is computed.
    """
    with _checked_reader(path, base_path, codec, exclude, partial) as reader:
        specs = reader.file.specs
        if scan is None or not scan.describes({n: (DTYPE_CODES[s.dtype], s.shape) for n, s in specs.items()}):
            scan = None
        tracker = MemoryTracker()
        for name in reader.names:
            if scan is None:
                _read_and_check(reader, name, tracker)
                continue
            findings = scan.findings.get(name)
            if findings is None:
                continue  # neither floating point nor int8: values, not deltas, and never checked
            if reader.scaled(name):
                with np.errstate(over="ignore"):  # decoded as float32 levels x scale, like `decode`
                    decoded_peak = np.float32(findings.peak) * np.float32(reader.scale(name))
                if not np.isfinite(decoded_peak):
                    _refuse_non_finite(reader, name, "Inf")
            elif problem := findings.problem(DTYPE_CODES[specs[name].dtype]):
                _refuse_non_finite(reader, name, problem)
