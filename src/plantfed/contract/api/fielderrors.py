"""Field errors worded and formatted exactly as the Kubernetes API server words them.

`FieldError` mirrors apimachinery's `field.Error`: its `message` is what a `StatusCause` carries and what
`kubectl apply` prints after the field path, and `aggregate` joins several the way `ErrorList.ToAggregate`
does (`[a, b]`). Values are rendered as Go renders them (`%v`, `%q`, `encoding/json`), because a
message that differs from the cluster's by a quote or an exponent is a different message to a user
comparing the two.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

NIL_PATH = "<nil>"
"""How apimachinery prints the field path of an error about the whole object."""


class _Omit:
    """field.OmitValueType: the error names no value (CEL rules on objects and arrays)."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()

INVALID = "FieldValueInvalid"
TYPE_INVALID = "FieldValueTypeInvalid"
REQUIRED = "FieldValueRequired"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
INTERNAL = "InternalError"
UNKNOWN_FIELD = "FieldUnknown"
"""Not a Kubernetes cause type: unknown fields are refused in a BadRequest message that carries no causes."""

_TYPE_TEXT = {
    INVALID: "Invalid value",
    TYPE_INVALID: "Invalid value",
    REQUIRED: "Required value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    INTERNAL: "Internal error",
    UNKNOWN_FIELD: "Unknown field",
}
_WITHOUT_VALUE = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL, UNKNOWN_FIELD}


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: the (field path, type, message) of a Kubernetes `StatusCause`."""

    field: str
    type: str
    detail: str = ""
    bad_value: Any = OMIT

    @property
    def message(self) -> str:
        """The error without its field path (Go's `ErrorBody`), as a `StatusCause.message`."""
        text = _TYPE_TEXT[self.type]
        if self.type not in _WITHOUT_VALUE and self.bad_value is not OMIT:
            text = f"{text}: {go_value(self.bad_value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, INVALID, detail, value)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, TYPE_INVALID, detail, value)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, detail, "")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, detail, "")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, DUPLICATE, "", value)


def not_supported(path: str, value: Any, supported: Sequence[str]) -> FieldError:
    detail = "supported values: " + ", ".join(go_quote(v) for v in supported) if supported else ""
    return FieldError(path, NOT_SUPPORTED, detail, value)


def too_long(path: str, max_length: int) -> FieldError:
    if max_length < 0:
        return FieldError(path, TOO_LONG, "value is too long", "<value omitted>")
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError(path, TOO_LONG, f"may not be more than {max_length} {unit}", "<value omitted>")


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    detail = (
        f"must have at most {maximum} {'item' if maximum == 1 else 'items'}" if maximum >= 0 else "has too many items"
    )
    return FieldError(path, TOO_MANY, detail, actual if actual >= 0 else OMIT)


def unknown_field(path: str) -> FieldError:
    return FieldError(path, UNKNOWN_FIELD, f'unknown field "{path}"')


def aggregate(errors: Iterable[FieldError]) -> str:
    """`ErrorList.ToAggregate().Error()`: duplicates dropped, one error as is, several as `[a, b]`."""
    texts = list(dict.fromkeys(str(e) for e in errors))
    if len(texts) == 1:
        return texts[0]
    return "[" + ", ".join(texts) + "]"


def child(parent: str | None, name: str) -> str:
    """`field.Path.Child`; None is the nil (root) path."""
    return name if not parent else f"{parent}.{name}"


def index(parent: str | None, position: int | str) -> str:
    """`field.Path.Index` and `.Key`: both print as `[i]` after the parent."""
    return f"{parent or ''}[{position}]"


# --- values as Go prints them -------------------------------------------------------------------


def go_value(value: Any) -> str:
    """A bad value as `field.Error` prints it: `%v` for numbers and booleans, `%q` for strings, else JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    return go_json(value)


_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


def go_quote(text: str) -> str:
    """`strconv.Quote`: printable characters as they are, everything else escaped."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-tripping decimal digits of |value| and the exponent of the first digit."""
    mantissa, _, exponent = f"{abs(value):.17e}".partition("e")
    for precision in range(1, 18):
        candidate = f"{abs(value):.{precision - 1}e}"
        if float(candidate) == abs(value):
            mantissa, _, exponent = candidate.partition("e")
            break
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    return digits, int(exponent)


def go_float(value: float) -> str:
    """`fmt.Sprintf("%v", f)` for a float64: shortest digits, exponent form outside [1e-4, 1e6)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits, exp = _shortest_digits(value)
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + _fixed(digits, exp)


def go_fixed(value: float) -> str:
    """`strconv.FormatFloat(f, 'f', -1, 64)`: shortest digits, never an exponent."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exp = _shortest_digits(value)
    return ("-" if value < 0 else "") + _fixed(digits, exp)


def _fixed(digits: str, exp: int) -> str:
    if exp < 0:
        return "0." + "0" * (-exp - 1) + digits
    whole, frac = digits[: exp + 1], digits[exp + 1 :]
    return whole.ljust(exp + 1, "0") + ("." + frac if frac else "")


def _json_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {go_float(value)}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = go_float(value)
        mantissa, _, exponent = text.partition("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        return f"{mantissa}e{sign if sign == '-' else '+'}{digits}"
    return go_fixed(value)


_JSON_ESCAPE = re.compile(r'[\x00-\x1f"\\<>&\u2028\u2029]')


def _json_string(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        ch = match.group()
        return {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\u{ord(ch):04x}")

    return '"' + _JSON_ESCAPE.sub(escape, text) + '"'


def go_json(value: Any) -> str:
    """`json.Marshal` of a decoded JSON value: sorted keys, no spaces, HTML-safe escapes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(k)}:{go_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return json.dumps(str(value))
