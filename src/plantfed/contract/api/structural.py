"""What the API server does with a custom resource's body against the CRD's structural schema.

Four steps, each following the apiextensions-apiserver and kube-openapi code it stands in for, so that
the errors carry the same field paths, types and wording as `kubectl apply` shows:

* `prune`: fields the schema does not know, which `kubectl apply` (field validation Strict) refuses;
* `prune_nulls` then `openapi.apply_defaults`: nulls dropped, defaults filled in;
* `validate`: the OpenAPI v3 keywords (type, enum, bounds, lengths, patterns, required, item and
  property counts), one `FieldError` per violation, converted as `kubeOpenAPIResultToFieldErrors` does;
* `validate_list_sets`: `x-kubernetes-list-type: set` and `map` uniqueness.

Go iterates an object's properties in random order, so several errors in different fields come back from
the API server in an order that changes from request to request; here they follow the schema's order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import re2

from plantfed.contract.api import fielderrors as fe
from plantfed.contract.api.fielderrors import NIL_PATH, FieldError, go_fixed, go_float, go_json, go_quote
from plantfed.contract.api.kubeyaml import INT64_MAX, INT64_MIN

Schema = dict[str, Any]

SUPPORTED_KEYWORDS = frozenset(
    {
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
        "nullable",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)
"""The schema keywords `validate` implements; a CRD using another one must not be validated here silently."""

_META_FIELDS = ("apiVersion", "kind", "metadata")
_IN = "body"


# --- pruning and nulls --------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema) -> list[str]:
    """Drop unknown fields from a resource body (in place) and return their paths, sorted.

    The root's apiVersion, kind and metadata are never pruned (metadata is checked against ObjectMeta).
    """
    found: list[str] = []
    _prune(obj, schema, "", found, root=True)
    return sorted(found)


def _prune(value: Any, schema: Schema | None, path: str, found: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        for key in list(value):
            if root and key in _META_FIELDS:
                continue
            sub = (schema or {}).get("properties", {}).get(key)
            extra = (schema or {}).get("additionalProperties")
            key_path = f"{path}.{key}" if path else key
            if sub is not None:
                _prune(value[key], sub, key_path, found)
            elif isinstance(extra, dict):
                _prune(value[key], extra, key_path, found)
            else:
                found.append(key_path)
                del value[key]
    elif isinstance(value, list):
        items = schema.get("items") if schema else None
        for i, item in enumerate(value):
            _prune(item, items, f"{path}[{i}]", found)


def prune_nulls(value: Any, schema: Schema | None) -> None:
    """Remove (in place) map entries that are null where the schema allows no null and has no default."""
    if isinstance(value, dict):
        for key in list(value):
            sub = _field_schema(key, schema)
            if value[key] is None and sub is not None and not sub.get("nullable") and "default" not in sub:
                del value[key]
            else:
                prune_nulls(value[key], sub)
    elif isinstance(value, list):
        items = schema.get("items") if schema else None
        for item in value:
            prune_nulls(item, items)


def _field_schema(key: str, schema: Schema | None) -> Schema | None:
    if schema is None:
        return None
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


# --- kube-openapi's schema validator ------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """A kube-openapi `errors.Validation` (or, with code None, a plain error), before conversion."""

    code: str | None
    name: str
    message: str
    value: Any = None
    valid: Any = None
    values: tuple[Any, ...] = ()


def _json_type(data: Any) -> tuple[str, str]:
    """kube-openapi's schemaInfoForType: the JSON type and format of a decoded value."""
    if isinstance(data, bool):
        return "boolean", ""
    if isinstance(data, int):
        return "integer", "int64"
    if isinstance(data, float):
        return "number", "float64"
    if isinstance(data, str):
        return "string", ""
    if isinstance(data, list):
        return "array", ""
    return "object", ""


def _is_json_integer(value: float) -> bool:
    """swag's IsFloat64AJSONInteger: integral within ±(2^53 - 1), up to a relative 1e-9."""
    if not math.isfinite(value) or abs(value) > 2**53 - 1:
        return False
    rounded = float(round(value))
    if value == rounded:
        return True
    if rounded == 0:
        return False
    return abs(value - rounded) < 1e-9 * abs(rounded)


def _type_failure(path: str, type_name: str, value: Any) -> _Failure:
    detail = f"{path} in {_IN} must be of type {type_name}"
    if isinstance(value, str):
        detail += f": {go_quote(value)}"
    return _Failure("type", path, detail, value)


def _check_type(data: Any, schema: Schema, path: str) -> list[_Failure]:
    expected: str = schema.get("type", "")
    fmt: str = schema.get("format", "")
    if data is None:
        if expected and not schema.get("nullable"):
            return [_type_failure(path, expected, "null")]
        return []
    if not expected and not fmt:
        return []
    actual, actual_fmt = _json_type(data)
    float_int = actual == "number" and _is_json_integer(data) and expected == "integer"
    int_float = actual == "integer" and expected == "number"
    scalar_or_map = not isinstance(data, (str, list))
    if scalar_or_map and fmt and not (expected == actual or actual_fmt == fmt or float_int or int_float):
        return [_type_failure(path, fmt, actual_fmt)]
    if expected not in ("number", "integer") and fmt and isinstance(data, (str, list)):
        return []
    if not (expected == actual or float_int or int_float):
        return [_type_failure(path, expected, actual)]
    return []


def _check_string(data: str, schema: Schema, path: str) -> list[_Failure]:
    length = len(data)
    if "maxLength" in schema and length > schema["maxLength"]:
        detail = f"{path} in {_IN} should be at most {schema['maxLength']} chars long"
        return [_Failure("tooLong", path, detail, data, schema["maxLength"])]
    if "minLength" in schema and length < schema["minLength"]:
        detail = f"{path} in {_IN} should be at least {schema['minLength']} chars long"
        return [_Failure("tooShort", path, detail, data, schema["minLength"])]
    if "pattern" in schema and not _pattern(schema["pattern"]).search(data):
        return [_Failure("pattern", path, f"{path} in {_IN} should match '{schema['pattern']}'", data)]
    return []


_PATTERNS: dict[str, Any] = {}


def _pattern(pattern: str) -> Any:
    """Patterns are Go (RE2) regular expressions: `$` is the end of the text, `\\s` is ASCII only."""
    if pattern not in _PATTERNS:
        options = re2.Options()
        options.never_capture = True
        _PATTERNS[pattern] = re2.compile(pattern, options)
    return _PATTERNS[pattern]


def _range_failure(value: Any, type_name: str, fmt: str, prefix: str, path: str) -> _Failure | None:
    """kube-openapi's IsValueValidAgainstRange: can the value be converted to the schema's number type?"""
    if type_name != "integer":
        return None
    text = str(value) if isinstance(value, int) else go_fixed(value)
    fits = re.fullmatch(r"[-+]?[0-9]+", text) is not None and INT64_MIN <= int(text) <= INT64_MAX
    if fmt == "int32":
        fits = fits and -(2**31) <= int(text) < 2**31
    if fits:
        return None
    if fmt:
        message = f"{prefix} value must be of type {type_name} with format {fmt} in {path}"
    else:
        message = f"{prefix} value must be of type {type_name} (default format) in {path}"
    return _Failure(None, path, message)


def _bound(data: int | float, bound: float) -> str:
    """The bound as the message prints it: as an int64 for integer data, as a float64 otherwise."""
    return str(int(bound)) if isinstance(data, int) else go_float(float(bound))


def _check_number(data: int | float, schema: Schema, path: str) -> list[_Failure]:
    type_name = schema.get("type", "")
    fmt = schema.get("format", "") if type_name == "integer" and schema.get("format") in ("int32", "int64") else ""
    failures = []
    if (failure := _range_failure(data, type_name, fmt, "Checked", path)) is not None:
        failures.append(failure)
    if "minimum" in schema:
        low, exclusive = schema["minimum"], bool(schema.get("exclusiveMinimum"))
        compared = int(low) if isinstance(data, int) else float(low)
        if data < compared or (exclusive and data == compared):
            relation = "greater than" if exclusive else "greater than or equal to"
            failures.append(
                _Failure("minimum", path, f"{path} in {_IN} should be {relation} {_bound(data, low)}", data)
            )
    if "maximum" in schema:
        high, exclusive = schema["maximum"], bool(schema.get("exclusiveMaximum"))
        compared = int(high) if isinstance(data, int) else float(high)
        if data > compared or (exclusive and data == compared):
            relation = "less than" if exclusive else "less than or equal to"
            failures.append(
                _Failure("maximum", path, f"{path} in {_IN} should be {relation} {_bound(data, high)}", data)
            )
    return failures


def _enum_matches(data: Any, allowed: Any) -> bool:
    """reflect.DeepEqual after Go's type conversion to the enum value's type (enums here are strings)."""
    if isinstance(allowed, str):
        if isinstance(data, str):
            return data == allowed
        if isinstance(data, int) and not isinstance(data, bool):  # Go converts an integer to the rune it names
            return (chr(data) if 0 <= data <= 0x10FFFF and not 0xD800 <= data <= 0xDFFF else "\ufffd") == allowed
        return False
    return type(data) is type(allowed) and data == allowed


def _validate_node(data: Any, schema: Schema, path: str) -> Iterator[_Failure]:
    """kube-openapi's SchemaValidator.Validate: type, string, number, slice, enum, then object validators."""
    yield from _check_type(data, schema, path)
    if data is None:
        if schema.get("enum"):
            yield _enum_failure(data, schema, path)
        return
    if isinstance(data, str):
        yield from _check_string(data, schema, path)
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        yield from _check_number(data, schema, path)
    elif isinstance(data, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(data):
                yield from _validate_node(item, items, f"{path}[{i}]")
        if "minItems" in schema and len(data) < schema["minItems"]:
            detail = f"{path} in {_IN} should have at least {schema['minItems']} items"
            yield _Failure("minItems", path, detail, len(data), schema["minItems"])
        if "maxItems" in schema and len(data) > schema["maxItems"]:
            detail = f"{path} in {_IN} should have at most {schema['maxItems']} items"
            yield _Failure("maxItems", path, detail, len(data), schema["maxItems"])
    if schema.get("enum") and not any(_enum_matches(data, allowed) for allowed in schema["enum"]):
        yield _enum_failure(data, schema, path)
    if isinstance(data, dict):
        yield from _validate_object(data, schema, path)


def _enum_failure(data: Any, schema: Schema, path: str) -> _Failure:
    values = tuple(schema["enum"])
    listed = "[" + " ".join(str(v) for v in values) + "]"
    return _Failure("enum", path, f"{path} in {_IN} should be one of {listed}", data, values=values)


def _validate_object(data: dict[str, Any], schema: Schema, path: str) -> Iterator[_Failure]:
    size = len(data)
    if "minProperties" in schema and size < schema["minProperties"]:
        detail = f"{path} in {_IN} should have at least {schema['minProperties']} properties"
        yield _Failure("minProperties", path, detail, size, schema["minProperties"])
    if "maxProperties" in schema and size > schema["maxProperties"]:
        detail = f"{path} in {_IN} should have at most {schema['maxProperties']} properties"
        yield _Failure("maxProperties", path, detail, size, schema["maxProperties"])
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in data.items():
            if key not in properties:
                yield from _validate_node(value, extra, f"{path}.{key}")
    for name, sub in properties.items():
        if name in data:
            yield from _validate_node(data[name], sub, f"{path}.{name}" if path else name)
    for name in schema.get("required", ()):
        if name not in data:
            yield _Failure("required", f"{path}.{name}", f"{path}.{name} in {_IN} is required")


def _to_field_error(failure: _Failure) -> FieldError:
    """apiextensions' kubeOpenAPIResultToFieldErrors."""
    if failure.code is None:
        return fe.invalid(NIL_PATH, "", failure.message)
    path = failure.name.removeprefix(".") if failure.name and failure.name != "." else NIL_PATH
    value = "" if failure.value is None else failure.value
    if failure.code == "required":
        return fe.required(path)
    if failure.code == "enum":
        return fe.not_supported(path, failure.value, [v if isinstance(v, str) else go_json(v) for v in failure.values])
    if failure.code == "tooLong":
        return fe.too_long(path, failure.valid)
    if failure.code in ("maxItems", "maxProperties"):
        return fe.too_many(path, failure.value, failure.valid)
    if failure.code == "type":
        return fe.type_invalid(path, value, failure.message)
    return fe.invalid(path, value, failure.message)


def validate(obj: Any, schema: Schema) -> list[FieldError]:
    """Errors of a (pruned, defaulted) resource body against its CRD schema, as the API server reports them."""
    seen: dict[str, _Failure] = {}
    for failure in _validate_node(obj, schema, ""):
        seen.setdefault(failure.message, failure)  # kube-openapi's Result keeps each message once
    return [_to_field_error(f) for f in seen.values()]


# --- x-kubernetes-list-type ---------------------------------------------------------------------


def _identity(value: Any) -> Any:
    """Equality as Go's interface{} comparison sees it: an int64 never equals a float64."""
    if isinstance(value, (dict, list)):
        return ("compound", go_json(value))
    return (type(value).__name__, value)


def validate_list_sets(obj: Any, schema: Schema, path: str | None = None) -> list[FieldError]:
    """Duplicate items in `set` lists and duplicate keys in `map` lists (structurallisttype)."""
    errors: list[FieldError] = []
    if isinstance(obj, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if key in properties:
                errors += validate_list_sets(value, properties[key], fe.child(path, key))
            elif isinstance(extra, dict):
                errors += validate_list_sets(value, extra, fe.index(path, key))
    elif isinstance(obj, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            errors += [fe.duplicate(fe.index(path, i), obj[i]) for i in _repeats([_identity(v) for v in obj])]
        elif list_type == "map":
            errors += _map_list_errors(obj, schema["x-kubernetes-list-map-keys"], path)
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(obj):
                errors += validate_list_sets(item, items, fe.index(path, i))
    return errors


def _repeats(keys: list[Any]) -> list[int]:
    """Indices of the second appearance of each repeated key (what the API server reports)."""
    seen: dict[Any, int] = {}
    second = []
    for i, key in enumerate(keys):
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            second.append(i)
    return second


def _map_list_errors(items: list[Any], keys: list[str], path: str | None) -> list[FieldError]:
    for i, item in enumerate(items):
        if item is not None and not isinstance(item, dict):
            return [fe.invalid(fe.index(path, i), item, "must be an object for an array of list-type map")]
    present = [{k: item[k] for k in keys if k in item} if isinstance(item, dict) else {} for item in items]
    errors = []
    for i in _repeats([go_json(p) if len(keys) > 1 else _identity(p.get(keys[0], _UNSET)) for p in present]):
        errors.append(fe.duplicate(fe.index(path, i), present[i]))
    return errors


_UNSET = object()
