"""Validate plantfed manifests in Python the way the API server does (what `plantfed simulate -f` loads).

Minimal implementation on the `policy` branch: the pydantic models' checks only, with API-server-style
messages. The `manifest` branch replaces this file at merge with the full validation (the CEL rules'
Python twins and the API server's exact messages); this interface is the contract between the two:

    class ManifestError(ValueError)            # str() is the API-server-style message, field paths included
    def load_manifests(source: str | Path) -> list[KubeModel]
    def validate_manifest(doc: Mapping[str, Any]) -> FederatedModel | FederatedRound | PlantParticipant
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from plantfed.contract.api.base import KubeModel
from plantfed.contract.api.common import API_VERSION, GROUP
from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound

KINDS: dict[str, type[FederatedModel] | type[FederatedRound] | type[PlantParticipant]] = {
    cls.kind_name: cls for cls in (FederatedModel, FederatedRound, PlantParticipant)
}


class ManifestError(ValueError):
    """A manifest the API server would refuse; str() is its message, with field paths."""


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_manifest(doc: Mapping[str, Any]) -> FederatedModel | FederatedRound | PlantParticipant:
    """The typed object for one manifest, or ManifestError saying what the API server would say."""
    if not isinstance(doc, Mapping):
        raise ManifestError(f"a manifest must be a mapping, got {type(doc).__name__}")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    name = (doc.get("metadata") or {}).get("name", "")
    if kind not in KINDS or api_version != API_VERSION:
        known = ", ".join(sorted(KINDS))
        raise ManifestError(
            f'no matches for kind "{kind}" in version "{api_version}" (plantfed knows {known} in {API_VERSION})'
        )
    cls = KINDS[kind]
    try:
        return cls.from_object(doc)
    except ValidationError as err:
        causes = "; ".join(f"{_path(e['loc'])}: {e['msg']}" for e in err.errors())
        raise ManifestError(f'{cls.plural}.{GROUP} "{name}" is invalid: {causes}') from None


def load_manifests(source: str | Path) -> list[KubeModel]:
    """Every document of a (multi-document) YAML file, validated; ManifestError names the document."""
    path = Path(source)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML: {err}") from None
    objects: list[KubeModel] = []
    for index, doc in enumerate(docs, start=1):
        try:
            objects.append(validate_manifest(doc))
        except ManifestError as err:
            raise ManifestError(f"{path} (document {index}): {err}") from None
    return objects
