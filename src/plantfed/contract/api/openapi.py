"""Convert a pydantic JSON schema (draft 2020-12) into a Kubernetes structural OpenAPI v3 schema.

Kubernetes accepts only a subset of OpenAPI v3: no `$ref`, no `null` type, no `const`,
boolean `exclusiveMinimum`, and every node must have a `type` (a "structural" schema) so the
API server can prune unknown fields and apply defaults. Pydantic's output is close; this module
closes the gap and refuses what it cannot express rather than emitting a schema the API server
would reject.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

Schema = dict[str, Any]

_DROPPED = {"title", "$defs", "discriminator"}
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
)


class SchemaError(ValueError):
    """The pydantic schema uses a construct a structural schema cannot express."""


def to_structural(schema: Schema) -> Schema:
    """The structural equivalent of a top-level pydantic JSON schema (with its `$defs`)."""
    defs = schema.get("$defs", {})
    return _convert(schema, defs, path="")


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline `$ref` and single-element `allOf`, keeping sibling keys (they override the target)."""
    node = dict(node)
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError("allOf with more than one schema is not structural")
        node = {**parts[0], **node}
    if "$ref" in node:
        ref = node.pop("$ref")
        target = defs[ref.rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **node}
        rules = target.get("x-kubernetes-validations", []) + node.get("x-kubernetes-validations", [])
        if rules:
            merged["x-kubernetes-validations"] = rules
        return _resolve(merged, defs)
    return node


def _strip_null(node: Schema, path: str) -> Schema:
    """`X | None` becomes X: optional fields are simply omitted, never sent as null."""
    if "anyOf" not in node:
        return node
    node = dict(node)
    options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
    if len(options) != 1:
        raise SchemaError(f"{path or '<root>'}: unions other than Optional[X] are not structural")
    if node.get("default", ...) is None:
        del node["default"]
    return {**options[0], **node}


def _convert(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    node = _strip_null(_resolve(node, defs), path)
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if not isinstance(value, bool):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                value = True
            out[key] = value
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, f"{path}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if value is False:
                continue
            if value is True:
                raise SchemaError(f"{path}: free-form objects need an explicit value type")
            out[key] = _convert(value, defs, f"{path}{{}}")
        elif key == "propertyNames":
            raise SchemaError(f"{path}: constrained map keys cannot be expressed in a CRD schema")
        elif key == "description":
            out[key] = _reflow(value)
        elif key == "x-kubernetes-validations":
            out[key] = [_ordered_rule(rule) for rule in value]
        else:
            out[key] = value
    if out.get("type") == "integer" and "format" not in out:
        out["format"] = "int64"
    if "default" in out:
        out["default"] = _without_nulls(out["default"])
    # The API server checks a default against the node's CEL rules as written, without defaulting
    # inside it first, so `{}` would fail a rule that reads a field: keep such defaults whole.
    if out.get("type") == "object" and isinstance(out.get("default"), dict) and out["default"]:
        if "x-kubernetes-validations" not in out and apply_defaults({}, out) == out["default"]:
            out["default"] = {}
    if "type" not in out:
        raise SchemaError(f"{path or '<root>'}: every schema node needs a type")
    return _ordered(out)


def _without_nulls(value: Any) -> Any:
    """Defaults serialised from models carry unset optionals as null, which the API server rejects."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _ordered(node: Schema) -> Schema:
    """Stable, readable key order for the generated YAML (description and type first)."""
    rank = {key: i for i, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _reflow(text: str) -> str:
    """Docstring paragraphs as single lines, so `kubectl explain` wraps them itself."""
    paragraphs = (" ".join(line.strip() for line in p.splitlines()) for p in text.strip().split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)


def _ordered_rule(rule: dict[str, str]) -> dict[str, str]:
    order = ("rule", "message", "fieldPath", "reason")
    return {key: rule[key] for key in sorted(rule, key=lambda k: order.index(k) if k in order else len(order))}


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Default `value` the way the API server does: top-down, an absent field gets its default,
    then the defaulted value is itself defaulted. A null where the schema allows none is replaced
    by the default too (the server prunes such nulls before defaulting, keeping those with a default).
    Used to keep object defaults minimal (`{}`), by manifest validation, and by tests to check that
    server-side defaults match pydantic's.
    """
    if schema.get("type") == "object" and isinstance(value, dict):
        value = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if "default" in sub and value.get(name) is None and not sub.get("nullable"):
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            known = schema.get("properties", {})
            value = {k: v if k in known else apply_defaults(_null_default(v, extra), extra) for k, v in value.items()}
        return value
    if schema.get("type") == "array" and isinstance(value, list):
        return [apply_defaults(_null_default(v, schema["items"]), schema["items"]) for v in value]
    return value


def _null_default(value: Any, schema: Schema) -> Any:
    if value is None and "default" in schema and not schema.get("nullable"):
        return copy.deepcopy(schema["default"])
    return value


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Yield `(path, node)` for every schema node, for checks over the whole tree."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")
