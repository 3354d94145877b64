"""Read manifests the way `kubectl apply -f` reads them, so a value means here what it means on the cluster.

kubectl converts YAML to JSON with sigs.k8s.io/yaml (go-yaml v2 rules), and the API server decodes that JSON
keeping integers as int64. PyYAML's own rules differ where it matters: `y`/`n` are booleans for kubectl
and strings for PyYAML, `1e5` is a number for kubectl and a string for PyYAML, `12:30` is a string for
kubectl and 750 for PyYAML, `2026-01-01` a string for kubectl and a date for PyYAML. So plain scalars are
resolved here with go-yaml v2's rules, and every value is then normalised as the JSON round trip
normalises it (`3.0` arrives at the API server as the integer 3).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from plantfed.contract.api.fielderrors import go_fixed, go_float

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

_PLAIN = "tag:plantfed.io,2026:plain"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"

_BOOLS = {
    **dict.fromkeys(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"], True),
    **dict.fromkeys(["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"], False),
}
_NULLS = {"", "~", "null", "Null", "NULL"}
_SPECIAL_FLOATS = {
    **dict.fromkeys([".nan", ".NaN", ".NAN"], math.nan),
    **dict.fromkeys([".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"], math.inf),
    **dict.fromkeys(["-.inf", "-.Inf", "-.INF"], -math.inf),
}
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?")
_BAD_UNDERSCORE = re.compile(r"(?<![0-9])_|_(?![0-9])")


class ManifestSyntaxError(ValueError):
    """The text is not YAML (or JSON) kubectl could read, or a value cannot be represented in JSON."""


_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def _go_parse_int(text: str) -> int | None:
    """`strconv.ParseInt(s, 0, 64)`, then `ParseUint`: prefixes 0x, 0o, 0b, and a leading 0 for octal."""
    sign, body = 1, text
    if body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    base = 10
    if body[:2].lower() in ("0x", "0o", "0b"):
        base, body = {"x": 16, "o": 8, "b": 2}[body[1].lower()], body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, body = 8, body[1:]
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    value = sign * int(body, base)
    if INT64_MIN <= value <= INT64_MAX or (text[0] not in "+-" and value <= UINT64_MAX):
        return value
    return None


def resolve_plain(text: str) -> Any:
    """What go-yaml v2 makes of an unquoted scalar when decoding into `interface{}`."""
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _NULLS:
        return None
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    first = text[0]
    if first == ".":
        # strconv.ParseFloat allows underscores between digits
        digits = text.replace("_", "") if not _BAD_UNDERSCORE.search(text) else text
        if _DOT_FLOAT.fullmatch(digits) and math.isfinite(value := float(digits)):
            return value
        return text
    if not (first.isdigit() and first.isascii()) and first not in "+-":
        return text
    plain = text.replace("_", "")
    if (number := _go_parse_int(plain)) is not None:
        return number
    if _YAML_STYLE_FLOAT.fullmatch(plain) and math.isfinite(value := float(plain)):
        return value
    return text


class _KubectlLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) with go-yaml v2's scalar resolution and JSON-style mapping keys."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0]:
            return _MERGE if value == "<<" else _PLAIN
        return super().resolve(kind, value, implicit)


def _construct_plain(loader: _KubectlLoader, node: ScalarNode) -> Any:
    return resolve_plain(loader.construct_scalar(node))


def _construct_tagged(loader: _KubectlLoader, node: ScalarNode) -> Any:
    """Explicit standard tags: the scalar resolved as go-yaml resolves it, which must agree with the tag."""
    text = loader.construct_scalar(node)
    value = resolve_plain(text)
    wanted = node.tag.rsplit(":", 1)[-1]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "null": value is None,
        "timestamp": True,
    }[wanted]
    if not ok:
        raise ConstructorError(None, None, f"cannot decode {text!r} as a !!{wanted}", node.start_mark)
    if wanted == "float":
        return float(value)
    # go-yaml keeps timestamps as their text in untyped values
    return text if wanted == "timestamp" else value


def _construct_mapping(loader: _KubectlLoader, node: MappingNode) -> dict[str, Any]:
    loader.flatten_mapping(node)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[_json_key(key, key_node)] = loader.construct_object(value_node, deep=True)
    return out


def _json_key(key: Any, node: Node) -> str:
    """sigs.k8s.io/yaml turns YAML's non-string keys into JSON's string keys (`1` -> "1", `on` -> "true")."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(key, ".nan" if math.isnan(key) else go_float(key))
    raise ConstructorError(None, None, f"unsupported map key {key!r}", node.start_mark)


def _construct_other(loader: _KubectlLoader, suffix: str, node: Any) -> Any:
    """Application tags (`!foo`) carry no meaning for kubectl: the node is read as untagged."""
    if isinstance(node, ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return _construct_mapping(loader, node)


def _construct_str(loader: _KubectlLoader, node: ScalarNode) -> str:
    return loader.construct_scalar(node)


def _construct_seq(loader: _KubectlLoader, node: SequenceNode) -> list[Any]:
    return loader.construct_sequence(node, deep=True)


def _refuse_binary(loader: _KubectlLoader, node: Node) -> Any:
    raise ConstructorError(None, None, "!!binary values are not supported in manifests", node.start_mark)


_KubectlLoader.add_constructor(_PLAIN, _construct_plain)
_KubectlLoader.add_constructor(_STR, _construct_str)
for _tag in ("int", "float", "bool", "null", "timestamp"):
    _KubectlLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _construct_tagged)
_KubectlLoader.add_constructor("tag:yaml.org,2002:binary", _refuse_binary)
_KubectlLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_KubectlLoader.add_constructor("tag:yaml.org,2002:omap", _construct_mapping)
_KubectlLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_KubectlLoader.add_multi_constructor("", _construct_other)


def to_json_value(value: Any, path: str = "") -> Any:
    """The value as the API server sees it after kubectl's JSON round trip.

    Integral floats become integers (Go's encoding/json writes 3.0 as `3` and the server decodes it as
    int64), integers beyond int64 become floats (as the server decodes them), NaN and infinities are
    refused (JSON has no such numbers), and dates from other YAML readers become their ISO text.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ManifestSyntaxError(f"{path or 'value'}: json: unsupported value: {go_float(value)}")
        if value == int(value) and abs(value) < 1e21:
            # Go writes it as its shortest digits; the server keeps those as int64 when they fit.
            written = int(go_fixed(value))
            if INT64_MIN <= written <= INT64_MAX:
                return written
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ManifestSyntaxError(f"{path or 'object'}: map key {key!r} is not a string")
            out[key] = to_json_value(item, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [to_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise ManifestSyntaxError(f"{path or 'value'}: {type(value).__name__} cannot be represented in JSON")


def load_documents(text: str) -> list[Any]:
    """The non-empty documents of a YAML stream (or a JSON stream), as JSON values.

    Lists (`kind: List` as `kubectl get -o yaml` writes it, or `FederatedRoundList`) are expanded into their
    items, as kubectl does.
    """
    stripped = text.lstrip()
    try:
        if stripped.startswith("{"):
            docs = _json_stream(stripped)
        else:
            docs = list(yaml.load_all(text, Loader=_KubectlLoader))
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ManifestSyntaxError(f"error converting YAML to JSON: {exc}") from None
    out: list[Any] = []
    for doc in docs:
        if doc is None:
            continue
        doc = to_json_value(doc)
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            out.extend(item for item in doc["items"] if item is not None)
        else:
            out.append(doc)
    return out


def _json_stream(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs, position = [], 0
    while position < len(text):
        doc, position = decoder.raw_decode(text, position)
        docs.append(doc)
        while position < len(text) and text[position].isspace():
            position += 1
    return docs
