"""The plant's local copy of global models, so plant inference keeps working while the hub is down.

Downloads are resumable and verified by the exchange client; the cache only decides what to fetch and
remembers which version is "current" (the last promoted model this plant successfully received).
"""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from plantfed.contract.records import ModelVersion
from plantfed.exchange.client import ExchangeClient
from plantfed.exchange.errors import ExchangeError
from plantfed.formats.atomic import write_atomic


class ModelCache:
    def __init__(self, root: Path, client: ExchangeClient | None):
        self.root = Path(root)
        self.client = client

    def path_for(self, model: str, version: int) -> Path:
        return self.root / model / f"v{version}.safetensors"

    def _current_file(self, model: str) -> Path:
        return self.root / model / "current.json"

    def current(self, model: str) -> ModelVersion | None:
        """The last promoted version this plant holds, or None before the first successful download."""
        f = self._current_file(model)
        if not f.exists():
            return None
        return ModelVersion.model_validate_json(f.read_text())

    def fetch(self, model: str, version: int | None) -> tuple[Path, int]:
        """Return a local path for `version` (None = latest promoted), downloading it when missing."""
        if version is not None and self.path_for(model, version).exists():
            return self.path_for(model, version), version
        if self.client is None:
            raise RuntimeError(f"model {model} v{version} is not cached and no hub connection is configured")
        dest = self.path_for(model, version) if version is not None else self.root / model / "latest.download"
        dest.parent.mkdir(parents=True, exist_ok=True)
        info = self.client.download_model(model, version, dest)
        final = self.path_for(model, info.version)
        if dest != final:
            os.replace(dest, final)
        return final, info.version

    def refresh(self, model: str) -> tuple[ModelVersion | None, str | None]:
        """Pull the latest promoted model; on any hub failure keep serving the cached one.

        Returns the version now current and, when the hub could not be reached, why.
        """
        try:
            path, version = self.fetch(model, None)
        except (ExchangeError, grpc.RpcError, OSError, RuntimeError) as exc:
            detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
            return self.current(model), f"hub unreachable, serving cached model: {detail}"
        info = ModelVersion(
            model=model,
            version=version,
            digest="",
            size=path.stat().st_size,
            created_at=path.stat().st_mtime,
            promoted=True,
        )
        write_atomic(self._current_file(model), info.model_dump_json().encode())
        return info, None

    def current_path(self, model: str) -> Path | None:
        cur = self.current(model)
        return self.path_for(model, cur.version) if cur else None

    def versions(self, model: str) -> list[int]:
        d = self.root / model
        return sorted(int(p.stem[1:]) for p in d.glob("v*.safetensors")) if d.exists() else []
