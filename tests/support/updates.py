"""Updates of a small model with real structure, well-formed or deliberately broken, and raw uploads of them.

For the exchange's production payload check, which validates each update against the round's base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import torch

from plantfed.contract.records import Codec, UpdateMeta
from plantfed.contract.wire.v1 import exchange_pb2 as pb
from plantfed.contract.wire.v1 import exchange_pb2_grpc as pb_grpc
from plantfed.engine.store import file_sha256
from plantfed.exchange import convert
from plantfed.formats import codecs
from support.exchange import Hub

MODEL = "press-line"


def base_state() -> dict[str, torch.Tensor]:
    """A small model with float weights and a non-float buffer, like a real state_dict."""
    g = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 2, 3, generator=g),
        "conv.bias": torch.randn(4, generator=g),
        "norm.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "head.weight": torch.randn(3, 4, generator=g),
    }


def good_delta(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {n: torch.randn(t.shape, generator=g) * 0.01 for n, t in base_state().items() if t.is_floating_point()}
    out["norm.num_batches_tracked"] = torch.tensor(9, dtype=torch.int64)
    return out


def write_raw_update(path: Path, tensors: dict[str, torch.Tensor], codec: Codec = Codec.NONE) -> Path:
    """Write stored tensors as an update file without the encoder's checks (for hostile payloads)."""
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(path),
        metadata={
            codecs.KIND_KEY: codecs.KIND_UPDATE,
            codecs.CODEC_KEY: Codec(codec).value,
        },
    )
    return path


def write_good_update(path: Path, seed: int = 1, codec: Codec = Codec.NONE) -> Path:
    codecs.write_update(codecs.encode_delta(good_delta(seed), codec), path, codec)
    return path


def update_meta(plant: str, round_id: str, payload: Path, **extra: Any) -> UpdateMeta:
    return UpdateMeta(
        plant=plant,
        round_id=round_id,
        base_version=extra.pop("base_version", 1),
        num_samples=100,
        total_bytes=extra.pop("total_bytes", payload.stat().st_size),
        sha256=extra.pop("sha256", file_sha256(payload).hexdigest()),
        **extra,
    )


def raw_upload(hub: Hub, token: str, start: pb.UploadStart, chunks: list[bytes]) -> pb.UploadReceipt:
    """One UploadUpdate call with exactly these messages (no client-side checks or retries)."""
    messages = [pb.UploadRequest(start=start)] + [pb.UploadRequest(chunk=c) for c in chunks]
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(hub.target) as channel:
        return pb_grpc.ModelExchangeStub(channel).UploadUpdate(iter(messages), metadata=metadata, timeout=30)


def upload_start(meta: UpdateMeta, offset: int = 0) -> pb.UploadStart:
    return pb.UploadStart(meta=convert.meta_to_wire(meta), offset=offset)
