"""Update payloads: safetensors round trips, codec error bounds, and refusal of corrupt payloads."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from plantfed.contract.records import Codec
from plantfed.formats import codecs
from plantfed.formats.codecs import PayloadError
from plantfed.formats.stream_writer import StreamingWriter, TensorSpec


def conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(6, 32, 7),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Conv1d(32, 64, 5),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def trained_copy(state: dict[str, torch.Tensor], seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v + 7 for k, v in state.items()
    }


@pytest.fixture
def states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    base = {k: v.clone() for k, v in conv_model().state_dict().items()}
    return base, trained_copy(base, seed=1)


def write(path: Path, base, local, codec: Codec, exclude=()) -> Path:
    codecs.write_update(codecs.encode_update(base, local, codec, exclude=exclude), path, codec)
    return path


# ------------------------------------------------------------------------------------------ state files


def test_state_round_trip_keeps_buffers_dtypes_and_metadata(tmp_path, states):
    base, _ = states
    path = tmp_path / "model.safetensors"
    codecs.save_state(base, path, metadata={"task": "conv1d"})
    loaded = codecs.load_state(path)
    assert loaded.keys() == base.keys()
    for name in base:
        assert loaded[name].dtype == base[name].dtype and torch.equal(loaded[name], base[name]), name
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["task"] == "conv1d"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_state_with_tied_weights_is_saved(tmp_path):
    shared = torch.randn(4, 3)
    codecs.save_state({"embed.weight": shared, "head.weight": shared}, tmp_path / "tied.safetensors")
    loaded = codecs.load_state(tmp_path / "tied.safetensors")
    assert torch.equal(loaded["embed.weight"], shared) and torch.equal(loaded["head.weight"], shared)


def test_load_state_refuses_an_update_payload(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.NONE)
    with pytest.raises(PayloadError, match="update payload"):
        codecs.load_state(path)


def test_failed_save_leaves_previous_file_intact(tmp_path, states):
    base, _ = states
    path = tmp_path / "model.safetensors"
    codecs.save_state(base, path)
    with pytest.raises(TypeError, match="not a tensor"):
        codecs.save_state({"w": [1, 2, 3]}, path)  # type: ignore[dict-item]
    assert torch.equal(codecs.load_state(path)["0.weight"], base["0.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# --------------------------------------------------------------------------------------- update codecs


def test_none_codec_round_trip_is_exact_and_non_float_is_a_value(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.NONE)
    decoded = dict(codecs.iter_update(path, codec=Codec.NONE))
    assert torch.equal(decoded["1.num_batches_tracked"], local["1.num_batches_tracked"])
    rebuilt = codecs.apply_update(base, codecs.iter_update(path))
    for name in base:
        assert rebuilt[name].dtype == base[name].dtype
        torch.testing.assert_close(rebuilt[name], local[name], rtol=0, atol=1e-6)


def test_fp16_error_is_within_half_precision(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.FP16)
    for name, delta in codecs.iter_update(path, codec=Codec.FP16):
        if not delta.is_floating_point():
            continue
        exact = local[name] - base[name]
        assert delta.dtype == torch.float32
        bound = exact.abs() * 2.0**-11 + 2.0**-24  # half a unit in the last place, plus fp16 subnormal spacing
        assert torch.all((delta - exact).abs() <= bound), name


def test_int8_error_is_at_most_half_a_quantisation_step(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.INT8)
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["plantfed.codec"] == "int8"
        assert f.get_slice("0.weight").get_dtype() == "I8"
        scale = float(f.get_tensor("0.weight::scale"))
    exact = local["0.weight"] - base["0.weight"]
    assert scale == pytest.approx(float(exact.abs().max()) / 127, rel=1e-6)
    for name, delta in codecs.iter_update(path):
        if delta.is_floating_point():
            exact = local[name] - base[name]
            step = float(exact.abs().max()) / 127
            assert float((delta - exact).abs().max()) <= step / 2 * (1 + 1e-5) + 1e-12, name


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32), min_size=1, max_size=64),
)
def test_int8_encoding_bound_holds_for_any_values(values):
    delta = torch.tensor(values, dtype=torch.float32)
    encoded = codecs.encode_tensor("w", delta, Codec.INT8)
    decoded = codecs.decode_update(encoded, Codec.INT8)["w"]
    step = float(delta.abs().max()) / 127
    assert float((decoded - delta).abs().max()) <= step / 2 * (1 + 1e-5) + 1e-30


def test_all_zero_delta_encodes_to_zero(tmp_path, states):
    base, _ = states
    path = write(tmp_path / "u.safetensors", base, base, Codec.INT8)
    for name, delta in codecs.iter_update(path):
        if delta.is_floating_point():
            assert not delta.any(), name


def test_compressed_payload_sizes_for_a_conv1d_model(tmp_path, states):
    base, local = states
    sizes = {c: write(tmp_path / f"{c.value}.safetensors", base, local, c).stat().st_size for c in Codec}
    assert 0.45 < sizes[Codec.FP16] / sizes[Codec.NONE] < 0.6
    assert 0.2 < sizes[Codec.INT8] / sizes[Codec.NONE] < 0.4


def test_excluded_parameters_are_never_sent(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.NONE, exclude=("8.*",))
    with safe_open(str(path), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("8.")]
    codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE, exclude=("8.*",))
    with pytest.raises(PayloadError, match="missing tensor '8.bias'"):
        codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)


def test_fp16_overflow_is_refused_at_encode():
    with pytest.raises(ValueError, match="'w'.*overflows float16"):
        codecs.encode_tensor("w", torch.tensor([1e6]), Codec.FP16)


def test_encode_refuses_mismatched_states(states):
    base, local = states
    with pytest.raises(ValueError, match="lacks tensor '0.bias'"):
        codecs.encode_update(base, {k: v for k, v in local.items() if k != "0.bias"}, Codec.NONE)
    with pytest.raises(ValueError, match="base model lacks"):
        codecs.encode_update(base, {**local, "extra": torch.zeros(1)}, Codec.NONE)


def test_iter_update_refuses_codec_mismatch(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.FP16)
    with pytest.raises(PayloadError, match="declared codec 'int8' but the payload header says 'fp16'"):
        list(codecs.iter_update(path, codec=Codec.INT8))


# ------------------------------------------------------------------------------------------ validation


def _base_file(tmp_path: Path, base) -> Path:
    path = tmp_path / "base.safetensors"
    if not path.exists():
        codecs.save_state(base, path)
    return path


def _raw_update(tmp_path: Path, tensors, codec: str = "none", name: str = "bad.safetensors") -> Path:
    path = tmp_path / name
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(path),
        metadata={"plantfed.kind": "update", "plantfed.codec": codec},
    )
    return path


def _good_tensors(base, local):
    return codecs.encode_update(base, local, Codec.NONE)


def test_valid_update_passes_and_reports_its_norm(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.INT8)
    summary = codecs.validate_update(path, _base_file(tmp_path, base), Codec.INT8)
    exact = torch.cat([(local[k] - base[k]).reshape(-1) for k in base if base[k].is_floating_point()])
    assert summary.l2_norm == pytest.approx(float(exact.norm()), rel=1e-2)
    assert summary.file_bytes == path.stat().st_size


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            lambda t: t.__setitem__(
                "3.weight",
                torch.where(
                    torch.arange(t["3.weight"].numel()).reshape(t["3.weight"].shape) == 5, float("nan"), t["3.weight"]
                ),
            ),
            "'3.weight' contains NaN",
        ),
        (lambda t: t["8.bias"].__setitem__(0, float("inf")), "'8.bias' contains Inf"),
        (
            lambda t: t.__setitem__("8.weight", torch.zeros(10, 65)),
            r"'8.weight' has shape \[10, 65\], the base model has \[10, 64\]",
        ),
        (lambda t: t.pop("1.running_var"), "missing tensor '1.running_var'"),
        (
            lambda t: t.__setitem__("9.weight", torch.zeros(2)),
            r"unexpected tensor '9.weight' \(not in the base model\)",
        ),
        (
            lambda t: t.__setitem__("0.bias", t["0.bias"].double()),
            "'0.bias' has dtype F64.*expected F32.* for codec none",
        ),
        (
            lambda t: t.__setitem__("1.num_batches_tracked", t["1.num_batches_tracked"].int()),
            "'1.num_batches_tracked' has dtype I32.*expected I64",
        ),
    ],
    ids=["nan", "inf", "shape", "missing", "extra", "float-dtype", "int-dtype"],
)
def test_corrupt_update_is_refused_naming_the_problem(tmp_path, states, corrupt, message):
    base, local = states
    tensors = _good_tensors(base, local)
    corrupt(tensors)
    with pytest.raises(PayloadError, match=message):
        codecs.validate_update(_raw_update(tmp_path, tensors), _base_file(tmp_path, base), Codec.NONE)


def test_codec_mismatch_is_refused(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.FP16)
    with pytest.raises(PayloadError, match="declared codec 'none' but the payload header says 'fp16'"):
        codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)


def test_header_lying_about_the_codec_is_refused(tmp_path, states):
    base, local = states
    tensors = codecs.encode_update(base, local, Codec.FP16)
    path = _raw_update(tmp_path, tensors, codec="none")
    with pytest.raises(PayloadError, match="has dtype F16.*expected F32.* for codec none"):
        codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)


def test_int8_without_scale_or_with_bad_scale_is_refused(tmp_path, states):
    base, local = states
    tensors = codecs.encode_update(base, local, Codec.INT8)
    del tensors["0.weight::scale"]
    with pytest.raises(PayloadError, match=r"'0.weight' has no '0.weight::scale'"):
        codecs.validate_update(_raw_update(tmp_path, tensors, "int8"), _base_file(tmp_path, base), Codec.INT8)
    tensors = codecs.encode_update(base, local, Codec.INT8)
    tensors["0.bias::scale"] = torch.tensor(-1.0)
    with pytest.raises(PayloadError, match=r"'0.bias::scale' is -1.0"):
        codecs.validate_update(
            _raw_update(tmp_path, tensors, "int8", "neg.safetensors"), _base_file(tmp_path, base), Codec.INT8
        )


def test_truncated_file_is_refused(tmp_path, states):
    base, local = states
    path = write(tmp_path / "u.safetensors", base, local, Codec.NONE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(PayloadError, match="not a readable safetensors file"):
        codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)


@pytest.mark.parametrize(
    "content", [b"", b"\x00" * 7, b"garbage bytes that are not a model" * 10, struct.pack("<Q", 1 << 40) + b"{}"]
)
def test_garbage_is_refused(tmp_path, states, content):
    base, _ = states
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(PayloadError, match="not a readable safetensors file"):
        codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)


def test_plain_safetensors_without_update_metadata_is_refused(tmp_path, states):
    base, local = states
    path = tmp_path / "plain.safetensors"
    save_file(_good_tensors(base, local), str(path))
    with pytest.raises(PayloadError, match="lacks plantfed update metadata"):
        codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)


# -------------------------------------------------------------------------------------- streaming writer


def test_streaming_writer_output_is_read_by_safetensors(tmp_path):
    tensors = {
        "f32": torch.randn(3, 5),
        "bf16": torch.randn(4).bfloat16(),
        "i64": torch.arange(3),
        "scalar": torch.tensor(2.5),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "i8": torch.tensor([-127, 0, 127], dtype=torch.int8),
    }
    specs = {k: TensorSpec(v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    path = tmp_path / "s.safetensors"
    with StreamingWriter(path, specs, {"k": "v"}) as writer:
        for name, value in tensors.items():
            writer.write(name, value)
    loaded = load_file(str(path))
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert header_len % 8 == 0
    assert json.loads(path.read_bytes()[8 : 8 + header_len])["__metadata__"] == {"k": "v"}


def test_streaming_writer_leaves_nothing_when_incomplete_or_out_of_order(tmp_path):
    specs = {"a": TensorSpec(torch.float32, (2,)), "b": TensorSpec(torch.float32, (2,))}
    path = tmp_path / "s.safetensors"
    with pytest.raises(ValueError, match="ended before tensor 'b'"):
        with StreamingWriter(path, specs) as writer:
            writer.write("a", torch.zeros(2))
    with pytest.raises(ValueError, match="expected 'a', got 'b'"):
        with StreamingWriter(path, specs) as writer:
            writer.write("b", torch.zeros(2))
    with pytest.raises(ValueError, match=r"'a': got F32\[3\], declared F32\[2\]"):
        with StreamingWriter(path, specs) as writer:
            writer.write("a", torch.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_huge_but_finite_values_are_not_mistaken_for_inf(tmp_path):
    base = {"w": torch.zeros(3)}
    local = {"w": torch.tensor([3e20, -4e20, 0.0])}  # squares overflow float32, not float64
    path = write(tmp_path / "u.safetensors", base, local, Codec.NONE)
    summary = codecs.validate_update(path, _base_file(tmp_path, base), Codec.NONE)
    assert summary.l2_norm == pytest.approx(5e20, rel=1e-6)
