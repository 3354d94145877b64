"""Small builders for the pod manifests tests send to fake nodes (images are ignored)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PLACEHOLDER_IMAGE = "plantfed.invalid/fake-node:ignored"


def python_command(code: str) -> list[str]:
    """Run ``code`` with ``python`` from the pod's PATH (the test venv's interpreter)."""
    return ["python", "-u", "-c", code]


def container(
    name: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    volume_mounts: Sequence[Mapping[str, Any]] = (),
    resources: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "image": PLACEHOLDER_IMAGE,
        "command": list(command),
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        "volumeMounts": [dict(m) for m in volume_mounts],
    }
    if resources:
        spec["resources"] = dict(resources)
    spec.update(extra)
    return spec


def pod(
    name: str,
    containers: Sequence[Mapping[str, Any]],
    *,
    restart_policy: str = "Never",
    node_selector: Mapping[str, str] | None = None,
    volumes: Sequence[Mapping[str, Any]] = (),
    init_containers: Sequence[Mapping[str, Any]] = (),
    labels: Mapping[str, str] | None = None,
    **spec_extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "containers": [dict(c) for c in containers],
        "volumes": [dict(v) for v in volumes],
        "terminationGracePeriodSeconds": 10,
    }
    if init_containers:
        spec["initContainers"] = [dict(c) for c in init_containers]
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    spec.update(spec_extra)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": spec,
    }
