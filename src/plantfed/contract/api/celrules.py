"""The CRD's own `x-kubernetes-validations` CEL rules, evaluated with cel-python as the API server evaluates them.

There are no hand-written twins to drift from the rules: the expressions, messages and fieldPaths are read
from the generated CRD schema. Values are typed by the schema before evaluation, as apiextensions'
`UnstructuredToVal` types them (a `number` field is a double even when the JSON says `0`), the traversal
and the error paths follow apiextensions' CEL validator, and transition rules (`oldSelf`) are skipped
because a manifest is always a create. The rules use only CEL's standard library; a rule that needs one of
Kubernetes' CEL libraries fails to evaluate here, and the tests that evaluate every rule say so.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes

from plantfed.contract.api import fielderrors as fe
from plantfed.contract.api.base import VALIDATIONS
from plantfed.contract.api.fielderrors import NIL_PATH, OMIT, FieldError

Schema = dict[str, Any]

_OLD_SELF = re.compile(r"\boldSelf\b")
_FIELD_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]")


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()


@functools.cache
def _program(expression: str) -> Any:
    env = _environment()
    return env.program(env.compile(expression))


def normalized_field_path(field_path: str) -> str:
    """A rule's `fieldPath` (`.a.b`, `.a['b.c']`) as a `field.Path` prints it relative to the rule's node."""
    out, position = "", 0
    while position < len(field_path):
        match = _FIELD_PATH_PART.match(field_path, position)
        if match is None:
            raise ValueError(f"unsupported fieldPath {field_path!r}")
        name, key = match.groups()
        out = fe.child(out, name) if name is not None else fe.index(out, key)
        position = match.end()
    return out


@dataclass(frozen=True)
class CompiledRule:
    rule: str
    message: str
    field_path: str
    reason: str | None
    message_expression: str | None
    uses_old_self: bool

    @classmethod
    def from_schema(cls, raw: dict[str, Any]) -> CompiledRule:
        if raw.get("optionalOldSelf"):
            raise NotImplementedError("rules with optionalOldSelf are not evaluated here")
        compiled = cls(
            rule=raw["rule"],
            message=raw.get("message", "").strip(),
            field_path=normalized_field_path(raw["fieldPath"]) if raw.get("fieldPath") else "",
            reason=raw.get("reason"),
            message_expression=raw.get("messageExpression"),
            uses_old_self=_OLD_SELF.search(raw["rule"]) is not None,
        )
        _program(compiled.rule)  # compile now: a rule cel-python cannot parse must not pass unnoticed
        return compiled

    @property
    def error_string(self) -> str:
        """apiextensions' ruleErrorString: the message, or the rule when there is none."""
        return self.message or self.rule.strip()


def _to_cel(value: Any, schema: Schema | None) -> Any:
    """The value typed by its schema (apiextensions' UnstructuredToVal)."""
    if value is None:
        return None
    kind = (schema or {}).get("type")
    if kind == "object" or (kind is None and isinstance(value, dict)):
        properties = (schema or {}).get("properties", {})
        extra = (schema or {}).get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): _to_cel(v, properties.get(k, extra if isinstance(extra, dict) else None))
                for k, v in value.items()
            }
        )
    if kind == "array" or (kind is None and isinstance(value, list)):
        return celtypes.ListType([_to_cel(v, (schema or {}).get("items")) for v in value])
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "integer":
        return celtypes.IntType(int(value))
    if kind == "boolean" or isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "string" or isinstance(value, str):
        return celtypes.StringType(value)
    return celpy.json_to_cel(value)


def _root_to_cel(obj: dict[str, Any], schema: Schema) -> Any:
    """At the root, CEL sees apiVersion, kind and only metadata.name and metadata.generateName."""
    visible = dict(obj)
    metadata = obj.get("metadata") or {}
    visible["metadata"] = {k: metadata[k] for k in ("name", "generateName") if k in metadata}
    root_schema = {**schema, "properties": {**schema.get("properties", {}), "metadata": {"type": "object"}}}
    return _to_cel(visible, root_schema)


def _eval_error_text(error: Exception, rule: CompiledRule) -> str:
    """cel-python's evaluation errors in cel-go's words, as the API server reports them."""
    text = str(error.args[0]) if error.args else str(error)
    if (missing := re.match(r"no such member in mapping: '(.*)'", text)) is not None:
        text = f"no such key: {missing.group(1)}"
    if "no matching overload" in text or text.startswith("no such overload"):
        return (
            f"'no such overload': call arguments did not match a supported operator, function or macro signature "
            f"for rule: {rule.error_string}"
        )
    return f"{text} evaluating rule: {rule.error_string}"


class CelValidator:
    """Every CEL rule of one CRD's schema, compiled once."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._rules: dict[int, list[CompiledRule]] = {}
        self._compile(schema)

    def _compile(self, schema: Schema) -> None:
        rules = [CompiledRule.from_schema(raw) for raw in schema.get(VALIDATIONS, [])]
        if rules:
            self._rules[id(schema)] = rules
        for sub in schema.get("properties", {}).values():
            self._compile(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                self._compile(schema[key])

    @property
    def rules(self) -> list[CompiledRule]:
        return [rule for rules in self._rules.values() for rule in rules]

    def validate(self, obj: dict[str, Any]) -> list[FieldError]:
        """The rules `obj` (a defaulted resource body, as the API server stores it) breaks, in traversal order."""
        return self._validate(obj, self.schema, None, root=True)

    def _validate(self, value: Any, schema: Schema, path: str | None, root: bool = False) -> list[FieldError]:
        if value is None:
            return []
        errors = self._expressions(value, schema, path, root)
        if isinstance(value, dict):
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for key, item in value.items():
                    errors += self._validate(item, extra, fe.index(path, key))
            properties = schema.get("properties", {})
            for key, item in value.items():
                if key in properties:
                    errors += self._validate(item, properties[key], fe.child(path, key))
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += self._validate(item, schema["items"], fe.index(path, i))
        return errors

    def _expressions(self, value: Any, schema: Schema, path: str | None, root: bool) -> list[FieldError]:
        rules = self._rules.get(id(schema))
        if not rules:
            return []
        node_type = schema.get("type", "")
        activation = {"self": _root_to_cel(value, schema) if root else _to_cel(value, schema)}
        errors: list[FieldError] = []
        for rule in rules:
            if rule.uses_old_self:
                continue  # transition rules need the stored object; a create has none
            try:
                result = _program(rule.rule).evaluate(activation)
            except celpy.CELEvalError as error:
                errors.append(fe.invalid(path or NIL_PATH, node_type, _eval_error_text(error, rule)))
                continue
            if isinstance(result, celpy.CELEvalError):
                errors.append(fe.invalid(path or NIL_PATH, node_type, _eval_error_text(result, rule)))
                continue
            if result == celtypes.BoolType(True):
                continue
            where = fe.child(path, rule.field_path) if rule.field_path else path
            shown = OMIT if node_type in ("object", "array") else value
            errors.append(_rule_error(where or NIL_PATH, shown, self._detail(rule, activation), rule.reason))
        return errors

    @staticmethod
    def _detail(rule: CompiledRule, activation: dict[str, Any]) -> str:
        if rule.message_expression:
            try:
                text = _program(rule.message_expression).evaluate(activation)
            except celpy.CELEvalError:
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text.strip():
                return text.strip()
        return rule.message or f"failed rule: {rule.rule.strip()}"


def _rule_error(path: str, value: Any, detail: str, reason: str | None) -> FieldError:
    """apiextensions' fieldErrorForReason."""
    if reason == "FieldValueForbidden":
        return fe.forbidden(path, detail)
    if reason == "FieldValueRequired":
        return fe.required(path, detail)
    if reason == "FieldValueDuplicate":
        return fe.duplicate(path, value)
    return fe.invalid(path, value, detail)
