"""`metadata` of a custom resource as kubectl decodes it and the API server validates it on create.

Decoding mirrors `metav1.ObjectMeta`'s JSON form (unknown fields are reported for field validation
Strict, wrongly typed ones refused as kubectl refuses them); validation mirrors apimachinery's
`ValidateObjectMetaAccessor` for a namespaced resource whose names are DNS subdomains. Fields the
server sets itself (uid, resourceVersion, generation, timestamps, managedFields) are decoded but not
validated: `kubectl apply` of a new object never has a say in them.
"""

from __future__ import annotations

import re
from typing import Any

from plantfed.contract.api import fielderrors as fe
from plantfed.contract.api.base import DNS_LABEL, DNS_SUBDOMAIN
from plantfed.contract.api.fielderrors import FieldError

_STRING_FIELDS = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion")
_TIME_FIELDS = ("creationTimestamp", "deletionTimestamp")
_INT_FIELDS = ("generation", "deletionGracePeriodSeconds")
_MAP_FIELDS = ("labels", "annotations")
_OWNER_REFERENCE = {
    "apiVersion": "string",
    "kind": "string",
    "name": "string",
    "uid": "string",
    "controller": "bool",
    "blockOwnerDeletion": "bool",
}
_MANAGED_FIELDS_ENTRY = ("manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1", "subresource")
KNOWN_FIELDS = frozenset(
    {*_STRING_FIELDS, *_TIME_FIELDS, *_INT_FIELDS, *_MAP_FIELDS, "ownerReferences", "finalizers", "managedFields"}
)

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


class MetadataDecodeError(ValueError):
    """`metadata` cannot be decoded into an ObjectMeta (kubectl refuses the file before sending it)."""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_error(value: Any, path: str, go_type: str, struct: str = "ObjectMeta") -> MetadataDecodeError:
    """encoding/json's UnmarshalTypeError, as kubectl prints it."""
    return MetadataDecodeError(
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field {struct}.{path} of type {go_type}"
    )


def decode(metadata: Any) -> tuple[dict[str, Any], list[str]]:
    """The ObjectMeta fields of `metadata` and the paths of unknown fields (for field validation Strict)."""
    if metadata is None:
        return {}, []
    if not isinstance(metadata, dict):
        raise MetadataDecodeError(
            f"json: cannot unmarshal {_json_kind(metadata)} into Go struct field .metadata of type v1.ObjectMeta"
        )
    unknown = [f"metadata.{key}" for key in metadata if key not in KNOWN_FIELDS]
    meta = {k: v for k, v in metadata.items() if k in KNOWN_FIELDS and v is not None}
    for key in _STRING_FIELDS + _TIME_FIELDS:
        if key in meta and not isinstance(meta[key], str):
            raise _type_error(meta[key], f"metadata.{key}", "string" if key in _STRING_FIELDS else "v1.Time")
    for key in _INT_FIELDS:
        if key in meta and (isinstance(meta[key], bool) or not isinstance(meta[key], int)):
            raise _type_error(meta[key], f"metadata.{key}", "int64")
    for key in _MAP_FIELDS:
        if key in meta:
            if not isinstance(meta[key], dict):
                raise _type_error(meta[key], f"metadata.{key}", "map[string]string")
            meta[key] = {k: "" if v is None else v for k, v in meta[key].items()}  # null decodes as ""
            for value in meta[key].values():
                if not isinstance(value, str):
                    raise _type_error(value, f"metadata.{key}", "string")
    if "finalizers" in meta:
        if not isinstance(meta["finalizers"], list):
            raise _type_error(meta["finalizers"], "metadata.finalizers", "[]string")
        for value in meta["finalizers"]:
            if not isinstance(value, str):
                raise _type_error(value, "metadata.finalizers", "string")
    unknown += _decode_list(meta, "ownerReferences", "v1.OwnerReference", tuple(_OWNER_REFERENCE))
    unknown += _decode_list(meta, "managedFields", "v1.ManagedFieldsEntry", _MANAGED_FIELDS_ENTRY)
    for ref in meta.get("ownerReferences", ()):
        for key, go_type in _OWNER_REFERENCE.items():
            expected = bool if go_type == "bool" else str
            if key in ref and ref[key] is not None and not isinstance(ref[key], expected):
                raise _type_error(ref[key], f"metadata.ownerReferences.{key}", go_type, "OwnerReference")
    return meta, unknown


def _decode_list(meta: dict[str, Any], key: str, go_type: str, fields: tuple[str, ...]) -> list[str]:
    if key not in meta:
        return []
    if not isinstance(meta[key], list):
        raise _type_error(meta[key], f"metadata.{key}", f"[]{go_type}")
    unknown = []
    for i, item in enumerate(meta[key]):
        if not isinstance(item, dict):
            raise _type_error(item, f"metadata.{key}", go_type)
        unknown += [f"metadata.{key}[{i}].{field}" for field in item if field not in fields]
    return unknown


# --- apimachinery's name and label rules ----------------------------------------------------------

_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = DNS_LABEL.removeprefix("^").removesuffix("$")
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = DNS_SUBDOMAIN.removeprefix("^").removesuffix("$")
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def _matches(fmt: str, value: str) -> bool:
    return re.fullmatch(fmt, value) is not None


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _bytes(value: str) -> int:
    return len(value.encode())


def dns1123_subdomain(value: str, unit: str = "characters") -> list[str]:
    """`IsDNS1123Subdomain`; util/validation says characters, validate/content says bytes."""
    errors = []
    if _bytes(value) > 253:
        errors.append(f"must be no more than 253 {unit}")
    if not _matches(_DNS1123_SUBDOMAIN_FMT, value):
        errors.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def dns1123_label(value: str) -> list[str]:
    errors = []
    if _bytes(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _matches(_DNS1123_LABEL_FMT, value):
        if _matches(_DNS1123_SUBDOMAIN_FMT, value):
            errors.append("must not contain dots")
        else:
            errors.append(_regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errors


def qualified_name(value: str) -> list[str]:
    """`IsQualifiedName` (a label key): an optional DNS-subdomain prefix and '/', then a name part."""
    parts = value.split("/")
    errors: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors += ["prefix part " + m for m in dns1123_subdomain(prefix, unit="bytes")]
    else:
        return [
            "a valid label key "
            + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif _bytes(name) > 63:
        errors.append("name part must be no more than 63 bytes")
    if not _matches(_LABEL_KEY_FMT, name):
        errors.append("name part " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return errors


def label_value(value: str) -> list[str]:
    errors = []
    if _bytes(value) > 63:
        errors.append("must be no more than 63 bytes")
    if not _matches(_LABEL_VALUE_FMT, value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate(meta: dict[str, Any]) -> list[FieldError]:
    """`ValidateObjectMetaAccessor` for a namespaced custom resource on create.

    Owner references are checked for their required parts only.

    A missing namespace is not an error: kubectl fills in the one of the current context (or `-n`).
    """
    errors: list[FieldError] = []
    generate_name = meta.get("generateName", "")
    if generate_name:
        errors += [
            fe.invalid("metadata.generateName", generate_name, m)
            for m in dns1123_subdomain(_mask_trailing_dash(generate_name))
        ]
    name = meta.get("name", "")
    if not name:
        errors.append(fe.required("metadata.name", "name or generateName is required"))
    else:
        errors += [fe.invalid("metadata.name", name, m) for m in dns1123_subdomain(name)]
    if namespace := meta.get("namespace", ""):
        errors += [fe.invalid("metadata.namespace", namespace, m) for m in dns1123_label(namespace)]
    for key, value in meta.get("labels", {}).items():
        errors += [fe.invalid("metadata.labels", key, m) for m in qualified_name(key)]
        errors += [fe.invalid("metadata.labels", value, m) for m in label_value(value)]
    annotations = meta.get("annotations", {})
    for key in annotations:
        errors += [fe.invalid("metadata.annotations", key, m) for m in qualified_name(key.lower())]
    if sum(_bytes(k) + _bytes(v) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE_LIMIT:
        errors.append(fe.too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT))
    errors += _owner_references(meta.get("ownerReferences", []))
    errors += _finalizers(meta.get("finalizers", []))
    return errors


def _owner_references(refs: list[dict[str, Any]]) -> list[FieldError]:
    """The required parts of each owner reference (who would write one by hand is told what is missing)."""
    errors: list[FieldError] = []
    for i, ref in enumerate(refs):
        path = f"metadata.ownerReferences[{i}]"
        api_version = ref.get("apiVersion") or ""
        if not api_version:
            errors.append(fe.required(f"{path}.apiVersion", "must not be empty"))
        elif api_version.count("/") > 1 or api_version.endswith("/"):
            errors.append(fe.invalid(f"{path}.apiVersion", api_version, "must be <group>/<version> or <version>"))
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                errors.append(fe.required(f"{path}.{key}", "must not be empty"))
    return errors


def _finalizers(finalizers: list[str]) -> list[FieldError]:
    errors = [fe.invalid("metadata.finalizers", f, m) for f in finalizers for m in qualified_name(f)]
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errors.append(
            fe.invalid("metadata.finalizers", finalizers, "finalizer orphan and foregroundDeletion cannot be both set")
        )
    return errors
