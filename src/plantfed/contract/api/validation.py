"""A manifest refused on this machine exactly as `kubectl apply` and the API server refuse it.

`plantfed simulate -f model.yaml` rehearses the campaign that `kubectl apply -f model.yaml` starts on the
cluster, so a file must mean the same thing in both places and an invalid one must fail in both with the
same words. `validate_manifest` runs the checks in the order the API server runs them on create:

1. kubectl's own checks: apiVersion and kind set and served (`plantfed.io/v1alpha1`, the three kinds),
   `metadata` decodable as an ObjectMeta;
2. unknown fields, refused as `kubectl apply` refuses them by default (`--validate=strict`, i.e. server-side
   field validation Strict: the request fails with a BadRequest naming every unknown field; with `Warn` or
   `Ignore` the server would prune them instead);
3. nulls pruned and defaults filled in from the CRD schema; `status` dropped (create cannot set it);
4. `metadata` (name, namespace, labels, annotations), the CRD's structural schema (types, enums, bounds,
   lengths, patterns, required fields, item and property counts), `x-kubernetes-list-type` uniqueness, and
   then, unless one of those is a blocking error, the CRD's CEL rules (`x-kubernetes-validations`) with their
   messages and fieldPaths;
5. the pydantic model, which fills nothing the server did not (the defaults agree, a test pins it) but is
   what the operator reads; a value it refuses that the API server accepts (an unknown time zone, a cron
   expression with a 61st minute) is reported as such.

Everything is read from the generated CRD (`crdgen.crd`), the same file `kubectl apply` installs. The error
message (`str()`) is the API server's Status message; `errors` are its causes (field, type, message), in the
order of the schema where Go's map iteration makes the server's order vary from one request to the next.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from plantfed.contract.api import fielderrors as fe
from plantfed.contract.api import objectmeta, structural
from plantfed.contract.api.celrules import CelValidator
from plantfed.contract.api.common import API_VERSION, GROUP, VERSION, Resource
from plantfed.contract.api.crdgen import RESOURCES, openapi_schema
from plantfed.contract.api.fielderrors import NIL_PATH, FieldError
from plantfed.contract.api.kubeyaml import ManifestSyntaxError, load_documents, to_json_value
from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.openapi import apply_defaults
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound

__all__ = ["FieldError", "ManifestError", "load_manifests", "server_object", "validate_documents", "validate_manifest"]

INVALID = "Invalid"
"""The API server refused the object (HTTP 422); `errors` are the Status causes."""
BAD_REQUEST = "BadRequest"
"""The API server could not decode the object (HTTP 400): unknown fields under field validation Strict."""
CLIENT = "Client"
"""kubectl refused the file before sending it (not YAML, no apiVersion/kind, a kind the cluster does not serve)."""
OPERATOR = "OperatorRefused"
"""The API server accepts the object but the plantfed operator cannot use it."""

_BLOCKING = {fe.NOT_SUPPORTED, fe.REQUIRED, fe.TOO_LONG, fe.TOO_MANY, fe.TYPE_INVALID}
_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


class ManifestError(ValueError):
    """A manifest the cluster would refuse; `str()` is the API server's (or kubectl's) message.

    `errors` is the structured form, one `FieldError` (field path, type, message) per Status cause;
    `reason` says who refuses it (`Invalid`, `BadRequest`, `Client`, `OperatorRefused`); `kind` and `name`
    identify the object when it got that far; `source` and `document` (the object's position in the file,
    from 1) say where it came from when read from a file.
    """

    def __init__(
        self,
        message: str,
        errors: list[FieldError] | None = None,
        *,
        reason: str = INVALID,
        kind: str = "",
        name: str = "",
        source: str = "",
        document: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors or [])
        self.reason = reason
        self.kind = kind
        self.name = name
        self.source = source
        self.document = document

    def __str__(self) -> str:
        return self.message

    @classmethod
    def invalid(cls, kind: str, name: str, errors: list[FieldError]) -> ManifestError:
        """The API server's `errors.NewInvalid`: `<Kind>.<group> "<name>" is invalid: <aggregate>`."""
        return cls(f'{kind}.{GROUP} "{name}" is invalid: {fe.aggregate(errors)}', errors, kind=kind, name=name)

    def kubectl_message(self) -> str:
        """What `kubectl apply` prints when this object alone is refused as Invalid (one cause inline, several
        as a list); other refusals are their message."""
        if self.reason != INVALID:
            return self.message
        lines = list(dict.fromkeys(f"{e.field}: {e.message}" for e in self.errors))
        head = f'The {self.kind} "{self.name}" is invalid: '
        return head + lines[0] if len(lines) == 1 else head + "".join(f"\n* {line}" for line in lines)

    def located(self, source: str, document: int) -> ManifestError:
        self.source, self.document = source, document
        return self


@dataclass(frozen=True)
class _Kind:
    resource: type[Resource]
    schema: dict[str, Any]
    cel: CelValidator


@functools.cache
def _kinds() -> dict[str, _Kind]:
    out = {}
    for resource in RESOURCES:
        schema = openapi_schema(resource)
        out[resource.kind_name] = _Kind(resource, schema, CelValidator(schema))
    return out


def schema_of(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema the CRD of `kind` installs (what validation checks against)."""
    return _kinds()[kind].schema


def _client_error(message: str) -> ManifestError:
    return ManifestError(message, reason=CLIENT)


def _type_meta(doc: Mapping[str, Any]) -> _Kind:
    """kubectl's checks before it sends anything: apiVersion and kind set, and served by the cluster."""
    missing = [f"{key} not set" for key in ("apiVersion", "kind") if not doc.get(key)]
    if missing:
        detail = missing[0] if len(missing) == 1 else "[" + ", ".join(missing) + "]"
        raise _client_error(f"error validating data: {detail}")
    api_version, kind = doc["apiVersion"], doc["kind"]
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise _client_error("error validating data: apiVersion and kind must be strings")
    known = _kinds().get(kind)
    if known is None or api_version != API_VERSION:
        causes = []  # what plantfed serves, for a reader who wants more than kubectl says
        if api_version != API_VERSION:
            causes.append(fe.not_supported("apiVersion", api_version, [API_VERSION]))
        if known is None:
            causes.append(fe.not_supported("kind", kind, sorted(_kinds())))
        raise ManifestError(
            f'no matches for kind "{kind}" in version "{api_version}"', causes, reason=CLIENT, kind=kind
        )
    return known


def validate_manifest(doc: Mapping[str, Any]) -> FederatedModel | FederatedRound | PlantParticipant:
    """Validate one manifest as `kubectl apply` of a new object does; the object as the operator reads it.

    `doc` is a decoded JSON/YAML object; read files with `load_manifests`, which decodes YAML as kubectl
    does (PyYAML's own rules read `y`, `1e5` or `12:30` differently). Raises `ManifestError`.
    """
    stored = server_object(doc)
    return _operator_view(_kinds()[stored["kind"]].resource, stored)  # type: ignore[return-value]


def server_object(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it after `kubectl apply` (defaults in, status dropped).

    Raises `ManifestError` for whatever kubectl or the API server refuses; the pydantic model is not consulted.
    """
    if not isinstance(doc, Mapping):
        raise _client_error(f"a manifest must be an object (a mapping with apiVersion and kind), got {doc!r:.60}")
    try:
        body = to_json_value(doc)
    except ManifestSyntaxError as exc:
        raise _client_error(f"error converting YAML to JSON: {exc}") from None
    kind = _type_meta(body)
    try:
        meta, unknown = objectmeta.decode(body.get("metadata"))
    except objectmeta.MetadataDecodeError as exc:
        raise ManifestError(f"unable to decode: {exc}", reason=CLIENT, kind=body["kind"]) from None
    name = meta.get("name", "")
    if not name and meta.get("generateName"):
        raise _client_error(f"from {meta['generateName']}: cannot use generate name with apply")
    unknown += structural.prune(body, kind.schema)
    if unknown:
        raise ManifestError(
            f'{body["kind"]} in version "{VERSION}" cannot be handled as a {body["kind"]}: strict decoding error: '
            + ", ".join(f'unknown field "{path}"' for path in unknown),
            [fe.unknown_field(path) for path in unknown],
            reason=BAD_REQUEST,
            kind=body["kind"],
            name=name,
        )
    body["metadata"] = meta
    structural.prune_nulls(body, kind.schema)
    stored = apply_defaults(body, kind.schema)
    stored.pop("status", None)

    errors = objectmeta.validate(meta)
    errors += structural.validate(stored, kind.schema)
    errors += structural.validate_list_sets(stored, kind.schema)
    if any(e.type in _BLOCKING for e in errors):
        errors.append(fe.invalid(NIL_PATH, None, _NOT_CHECKED))
    else:
        errors += kind.cel.validate(stored)
    if errors:
        raise ManifestError.invalid(body["kind"], name, errors)
    return stored


def _operator_view(resource: type[Resource], stored: dict[str, Any]) -> Resource:
    name = stored["metadata"].get("name", "")
    try:
        return resource.from_object(copy.deepcopy(stored))
    except ValidationError as exc:
        errors = [_pydantic_error(e) for e in exc.errors()]
        raise ManifestError(
            f'{resource.kind_name}.{GROUP} "{name}" is accepted by the API server but the plantfed operator '
            f"refuses it: {fe.aggregate(errors)}",
            errors,
            reason=OPERATOR,
            kind=resource.kind_name,
            name=name,
        ) from None


def _pydantic_error(error: Any) -> FieldError:
    path: str | None = None
    for part in error["loc"]:
        path = fe.index(path, part) if isinstance(part, int) else fe.child(path, str(part))
    path = path or NIL_PATH
    detail = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    return fe.invalid(path, value if isinstance(value, (str, int, float, bool)) else fe.OMIT, detail)


def _read(source: str | Path) -> tuple[str, str]:
    """(text, name) of a source: a Path or a path string (`-` is stdin), or YAML text (any str with a newline)."""
    if isinstance(source, Path):
        return source.read_text(), str(source)
    if source == "-":
        return sys.stdin.read(), "STDIN"
    if "\n" in source:
        return source, "<text>"
    return Path(source).read_text(), source


def validate_documents(source: str | Path) -> Iterator[tuple[int, Resource | ManifestError]]:
    """(position, object or error) for every object of a source, so a caller can report them all.

    Positions count objects from 1, after empty documents are skipped and lists expanded.
    """
    text, name = _read(source)
    try:
        docs = load_documents(text)
    except ManifestSyntaxError as exc:
        yield 1, ManifestError(f'error parsing "{name}": {exc}', reason=CLIENT).located(name, 1)
        return
    for number, doc in enumerate(docs, start=1):
        try:
            yield number, validate_manifest(doc)
        except ManifestError as exc:
            yield number, exc.located(name, number)


def load_manifests(source: str | Path) -> list[Resource]:
    """Every object of a multi-document YAML (or JSON) manifest, validated; raises the first `ManifestError`.

    `source` is a Path, a path string (`-` reads stdin, as `kubectl apply -f -`), or YAML text (a str
    with a newline in it). Lists (`kind: List`) are expanded into their items, as kubectl does.
    """
    objects: list[Resource] = []
    for _, result in validate_documents(source):
        if isinstance(result, ManifestError):
            raise result
        objects.append(result)
    return objects
