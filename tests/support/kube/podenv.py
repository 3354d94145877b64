"""A container's environment and argv, resolved the way the kubelet resolves them.

Pods are handled as JSON-shaped dicts (camelCase keys), exactly as the API serves them.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

Pod = dict[str, Any]
# (kind, namespace, name) -> the object's data as str values, or None when it does not exist.
DataLookup = Callable[[str, str, str], "Mapping[str, str] | None"]


class ConfigError(RuntimeError):
    """The pod spec references something missing; the kubelet reports CreateContainerConfigError."""


_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Pod, path: str) -> str:
    """The downward-API value of ``fieldRef.fieldPath`` for this pod."""
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    spec = pod.get("spec", {})
    keyed = _FIELD_LABEL.match(path)
    if keyed:
        return str(meta.get(keyed.group(1), {}).get(keyed.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
        "status.hostIPs": status.get("hostIP", "127.0.0.1"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.podIPs": status.get("podIP", "127.0.0.1"),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {}) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef.fieldPath {path!r}")
    return str(simple[path] or "")


def resource_value(
    pod: Pod, ref: Mapping[str, Any], node_allocatable: Mapping[str, str], default_container: str
) -> str:
    """``resourceFieldRef``: a request or limit divided by the divisor, rounded up."""
    container_name = ref.get("containerName") or default_container
    container = next((c for c in pod["spec"]["containers"] if c["name"] == container_name), None)
    if container is None:
        raise ConfigError(f"resourceFieldRef names unknown container {container_name!r}")
    kind, _, resource = ref["resource"].partition(".")
    resources = container.get("resources", {}) or {}
    quantity = (resources.get(kind) or {}).get(resource)
    if quantity is None:
        quantity = node_allocatable.get(resource, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    return str(math.ceil(parse_quantity(quantity) / (divisor or Decimal(1))))


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes a ``$``."""

    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REFERENCE.sub(substitute, text)


def _key_ref(lookup: DataLookup, kind: str, namespace: str, ref: Mapping[str, Any]) -> str | None:
    data = lookup(kind, namespace, ref["name"])
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
    return data[ref["key"]]


def container_env(
    pod: Pod,
    container: Mapping[str, Any],
    base: Mapping[str, str],
    lookup: DataLookup,
    node_allocatable: Mapping[str, str],
) -> dict[str, str]:
    """``base`` (PATH, service variables...) overlaid with envFrom, then env, in order."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            data = lookup(kind, namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref["name"]}" not found')
            env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var or var["valueFrom"] is None:
            env[name] = expand(var.get("value") or "", env)
            continue
        source = var["valueFrom"]
        if source.get("fieldRef"):
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif source.get("resourceFieldRef"):
            env[name] = resource_value(pod, source["resourceFieldRef"], node_allocatable, container["name"])
        elif source.get("secretKeyRef") or source.get("configMapKeyRef"):
            kind, ref = (
                ("Secret", source["secretKeyRef"])
                if source.get("secretKeyRef")
                else ("ConfigMap", source["configMapKeyRef"])
            )
            value = _key_ref(lookup, kind, namespace, ref)
            if value is not None:
                env[name] = value
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with ``$(VAR)`` expanded. Images are not run, so command is required."""
    command = container.get("command") or []
    if not command:
        raise ConfigError(
            f"container {container['name']!r} has no command: the fake nodes ignore images, "
            "so every container must set command (a program on the test PATH)"
        )
    return [expand(part, env) for part in [*command, *(container.get("args") or [])]]


def decode_object_data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A ConfigMap's data+binaryData or a Secret's (base64) data, as text values."""
    if kind == "Secret":
        return {
            k: base64.b64decode(v).decode(errors="surrogateescape") for k, v in (obj.get("data") or {}).items()
        } | dict(obj.get("stringData") or {})
    binary = {k: base64.b64decode(v).decode(errors="surrogateescape") for k, v in (obj.get("binaryData") or {}).items()}
    return dict(obj.get("data") or {}) | binary
