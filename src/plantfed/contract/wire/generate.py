"""Regenerate (or check) the committed gRPC stubs from `proto/plantfed/contract/wire/v1/exchange.proto`.

The stubs are committed so an install needs no protoc; `--check` lets CI fail when someone edits the
.proto without regenerating. Usage: `python -m plantfed.contract.wire.generate [--check]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[4]
PROTO_ROOT = REPO_ROOT / "proto"
OUTPUT_ROOT = REPO_ROOT / "src"
PROTO_FILES = ("plantfed/contract/wire/v1/exchange.proto",)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generated_names(proto: str) -> list[str]:
    stem = proto.removesuffix(".proto")
    return [stem + suffix for suffix in GENERATED_SUFFIXES]


def generate_into(out_dir: Path, proto_root: Path = PROTO_ROOT) -> None:
    """Run protoc (from grpcio-tools) over every .proto, writing stubs under `out_dir`."""
    from grpc_tools import protoc

    if not proto_root.is_dir():
        raise SystemExit(f"proto sources not found at {proto_root} (run from a source checkout)")
    include = str(Path(protoc.__file__).parent / "_proto")
    for proto in PROTO_FILES:
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_root}",
                f"-I{include}",
                f"--python_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                f"--pyi_out={out_dir}",
                proto,
            ]
        )
        if rc != 0:
            raise SystemExit(f"protoc failed on {proto} (exit {rc})")


def drifted_files(proto_root: Path = PROTO_ROOT, output_root: Path = OUTPUT_ROOT) -> list[str]:
    """Stub paths (relative to `output_root`) whose committed content differs from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        generate_into(Path(tmp), proto_root)
        drift = []
        for proto in PROTO_FILES:
            for name in generated_names(proto):
                fresh = (Path(tmp) / name).read_bytes()
                committed = output_root / name
                if not committed.exists() or committed.read_bytes() != fresh:
                    drift.append(name)
        return drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plantfed.contract.wire.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if committed stubs differ from the .proto")
    args = parser.parse_args(argv)
    if args.check:
        drift = drifted_files()
        if drift:
            print("stale generated stubs (run `python -m plantfed.contract.wire.generate`): " + ", ".join(drift))
            return 1
        print("generated stubs are up to date")
        return 0
    generate_into(OUTPUT_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
