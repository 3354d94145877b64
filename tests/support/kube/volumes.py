"""A pod's volumes as host directories, ready to be bind-mounted at their mountPaths.

Contents are written once when the pod starts (no live update of ConfigMap/Secret volumes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .podenv import ConfigError, DataLookup, Pod, field_value, resource_value


class VolumeNotReady(RuntimeError):
    """A volume cannot be set up yet (kubelet: FailedMount); retried until the pod goes away."""


@dataclass(frozen=True)
class VolumeContext:
    core: client.CoreV1Api
    lookup: DataLookup
    node_allocatable: Mapping[str, str]


def _write_file(path: Path, data: str | bytes, mode: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode(errors="surrogateescape") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(raw)
    os.chmod(tmp, mode if mode is not None else 0o644)
    tmp.replace(path)


def _project_keys(
    target: Path,
    data: Mapping[str, str],
    items: list[dict[str, Any]] | None,
    default_mode: int | None,
    what: str,
    optional: bool,
) -> None:
    if items:
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise VolumeNotReady(f"{what}: key {item['key']!r} not found")
            _write_file(target / item["path"], data[item["key"]], item.get("mode", default_mode))
    else:
        for key, value in data.items():
            _write_file(target / key, value, default_mode)


def _keyed_source(
    ctx: VolumeContext,
    namespace: str,
    kind: str,
    source: Mapping[str, Any],
    target: Path,
    default_mode: int | None,
) -> None:
    name = source.get("name") or source.get("secretName")
    data = ctx.lookup(kind, namespace, name)
    optional = bool(source.get("optional"))
    if data is None:
        if optional:
            return
        raise VolumeNotReady(f'{kind.lower()} "{name}" not found')
    _project_keys(
        target,
        data,
        source.get("items"),
        source.get("defaultMode", default_mode),
        f"{kind} {namespace}/{name}",
        optional,
    )


def _downward(ctx: VolumeContext, pod: Pod, items: list[dict[str, Any]], target: Path, mode: int | None) -> None:
    first = pod["spec"]["containers"][0]["name"]
    for item in items:
        if item.get("fieldRef"):
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            value = resource_value(pod, item["resourceFieldRef"], ctx.node_allocatable, first)
        _write_file(target / item["path"], value, item.get("mode", mode))


def _service_account_token(
    ctx: VolumeContext, pod: Pod, source: Mapping[str, Any], target: Path, mode: int | None
) -> None:
    meta = pod["metadata"]
    spec: dict[str, Any] = {
        "audiences": [source["audience"]] if source.get("audience") else [],
        "expirationSeconds": source.get("expirationSeconds", 3600),
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
    }
    account = pod["spec"].get("serviceAccountName") or "default"
    try:
        response = ctx.core.create_namespaced_service_account_token(account, meta["namespace"], {"spec": spec})
    except ApiException as exc:
        raise VolumeNotReady(f"token for serviceaccount {account!r}: {exc.status} {exc.reason}") from exc
    _write_file(target / source["path"], response.status.token, mode if mode is not None else 0o600)


def _projected(ctx: VolumeContext, pod: Pod, volume: Mapping[str, Any], target: Path) -> None:
    namespace = pod["metadata"]["namespace"]
    mode = volume.get("defaultMode")
    for source in volume.get("sources") or []:
        if source.get("serviceAccountToken"):
            _service_account_token(ctx, pod, source["serviceAccountToken"], target, mode)
        elif source.get("configMap"):
            _keyed_source(ctx, namespace, "ConfigMap", source["configMap"], target, mode)
        elif source.get("secret"):
            _keyed_source(ctx, namespace, "Secret", source["secret"], target, mode)
        elif source.get("downwardAPI"):
            _downward(ctx, pod, source["downwardAPI"].get("items") or [], target, mode)
        else:
            raise ConfigError(f"unsupported projected volume source {sorted(source)}")


def _claim_path(ctx: VolumeContext, namespace: str, claim: str) -> Path:
    try:
        pvc = ctx.core.read_namespaced_persistent_volume_claim(claim, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found') from exc
        raise
    if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
        raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound')
    pv = ctx.core.read_persistent_volume(pvc.spec.volume_name)
    source = pv.spec.host_path or pv.spec.local
    if source is None:
        raise ConfigError(
            f"persistentvolume {pv.metadata.name} is neither hostPath nor local; "
            "the fake nodes can only mount directories"
        )
    path = Path(source.path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _host_path(volume: Mapping[str, Any]) -> Path:
    path = Path(volume["path"])
    kind = volume.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind in ("Directory", "File") and not path.exists():
        raise VolumeNotReady(f"hostPath {path} does not exist ({kind})")
    return path


def materialize(pod: Pod, root: Path, ctx: VolumeContext) -> dict[str, Path]:
    """Create every volume of ``pod`` under ``root``; return volume name -> host path."""
    namespace = pod["metadata"]["namespace"]
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        target = root / name
        if volume.get("emptyDir") is not None:
            target.mkdir(parents=True, exist_ok=True)
        elif volume.get("configMap"):
            target.mkdir(parents=True, exist_ok=True)
            _keyed_source(ctx, namespace, "ConfigMap", volume["configMap"], target, None)
        elif volume.get("secret"):
            target.mkdir(parents=True, exist_ok=True)
            _keyed_source(ctx, namespace, "Secret", volume["secret"], target, None)
        elif volume.get("projected"):
            target.mkdir(parents=True, exist_ok=True)
            _projected(ctx, pod, volume["projected"], target)
        elif volume.get("downwardAPI"):
            target.mkdir(parents=True, exist_ok=True)
            _downward(
                ctx, pod, volume["downwardAPI"].get("items") or [], target, volume["downwardAPI"].get("defaultMode")
            )
        elif volume.get("hostPath"):
            target = _host_path(volume["hostPath"])
        elif volume.get("persistentVolumeClaim"):
            target = _claim_path(ctx, namespace, volume["persistentVolumeClaim"]["claimName"])
        elif volume.get("ephemeral"):
            target = _claim_path(ctx, namespace, f"{pod['metadata']['name']}-{name}")
        else:
            kinds = sorted(k for k, v in volume.items() if k != "name" and v is not None)
            raise ConfigError(f"volume {name!r}: unsupported volume type {kinds}")
        paths[name] = target
    return paths
