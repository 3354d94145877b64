"""The committed gRPC stubs must be exactly what the .proto generates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from support.paths import REPO

from plantfed.contract.wire import generate


def test_committed_stubs_match_the_proto() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plantfed.contract.wire.generate", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_detects_an_edited_proto(tmp_path: Path) -> None:
    protos = tmp_path / "proto"
    shutil.copytree(generate.PROTO_ROOT, protos)
    edited = protos / generate.PROTO_FILES[0]
    edited.write_text(edited.read_text() + "\nmessage AddedWithoutRegenerating { string x = 1; }\n")
    drift = generate.drifted_files(protos, generate.OUTPUT_ROOT)
    assert "plantfed/contract/wire/v1/exchange_pb2.py" in drift
