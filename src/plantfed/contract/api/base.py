"""Building blocks shared by the CRD models: the camelCase base model and CEL rule helpers.

The pydantic models are the single source of truth for both the Python side (handlers parse
what the API server sends) and the CRD schemas (generated from the models' JSON schema), so
validation rules that only the API server can enforce (CEL) are declared here next to the
fields they guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema

from plantfed.contract.naming import DNS_LABEL as DNS_LABEL
from plantfed.contract.naming import DNS_SUBDOMAIN as DNS_SUBDOMAIN
from plantfed.contract.naming import MAX_SUBDOMAIN_LENGTH

VALIDATIONS = "x-kubernetes-validations"

QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
"""The resource.Quantity grammar the API server itself uses for requests and limits."""

CAMEL_REASON = r"^[A-Z][A-Za-z0-9]*$"

SHORT_TEXT = MAX_SUBDOMAIN_LENGTH
LONG_TEXT = 32768


@dataclass(frozen=True)
class Rule:
    """One CEL validation rule; `message` is what `kubectl apply` prints when it fails."""

    rule: str
    message: str
    field_path: str | None = None

    def to_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def cel(*rules: Rule) -> dict[str, Any]:
    """`json_schema_extra` for a field guarded by CEL rules."""
    return {VALIDATIONS: [r.to_schema() for r in rules]}


def immutable(what: str) -> dict[str, Any]:
    """Transition rule: only evaluated on update, when the old object had the field too."""
    return cel(Rule("self == oldSelf", f"{what} is immutable"))


class KubeModel(BaseModel):
    """Base of every CRD model: camelCase on the wire, snake_case in Python.

    Unknown fields are rejected so a typo in a Python-built spec fails loudly; objects read back
    from the API server never carry unknown fields because structural schemas prune them.
    Subclasses list object-level CEL rules in `cel_rules`; rules accumulate along the class
    hierarchy so a spec that extends a template keeps the template's rules.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        rules = [rule.to_schema() for klass in reversed(cls.__mro__) for rule in vars(klass).get("cel_rules", ())]
        if rules:
            target[VALIDATIONS] = rules
        return schema

    def to_dict(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        return cls.model_validate(data)
