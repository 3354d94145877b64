"""`validate_manifest` refuses what the real API server refuses, with the same field paths and messages.

Every manifest of the corpus (support.manifests) goes to a kube-apiserver built from source with plantfed's
CRDs installed, as `kubectl apply` sends it: kubectl converts the YAML (`kubectl create --dry-run=client -o
json`, one call for the corpus), and the object is created with dryRun=All and fieldValidation=Strict (what
`kubectl apply` uses by default). What kubectl itself refuses is run through `kubectl apply --dry-run=server`.

Normalised, because it is incidental:
* the order of several errors: the API server walks an object's properties in Go's random map order, so the
  order of causes (and of the `[a, b]` items in the message) changes between identical requests; causes are
  compared as multisets and the message is compared after putting our items in the server's cause order;
* the namespace: the examples name `plantfed`, which becomes the test's namespace, and kubectl adds the one
  of `-n` to the manifests that name none;
* kubectl's framing of its own refusals (`error: ... "STDIN": ` before and advice such as
  `ensure CRDs are installed first` after the message), which names the input rather than the problem.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from support.crds import apply_crds
from support.manifests import INVALID, KUBECTL, OPERATOR_ONLY, VALID, Case

from plantfed.contract.api.celrules import CelValidator
from plantfed.contract.api.common import GROUP, VERSION
from plantfed.contract.api.crdgen import RESOURCES
from plantfed.contract.api.kubeyaml import load_documents
from plantfed.contract.api.validation import OPERATOR, ManifestError, schema_of, server_object, validate_manifest

PLURALS = {r.kind_name: r.plural for r in RESOURCES}


def _json_stream(text: str) -> list[dict[str, Any]]:
    decoder, docs, position = json.JSONDecoder(), [], 0
    while text[position:].strip():
        while text[position].isspace():
            position += 1
        doc, position = decoder.raw_decode(text, position)
        docs.append(doc)
    return docs


def _placed(text: str, namespace: str) -> str:
    return re.sub(r"(?m)^(\s+namespace:\s*)plantfed\b", rf"\g<1>{namespace}", text)


def _without_namespace(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "metadata": {k: v for k, v in (doc.get("metadata") or {}).items() if k != "namespace"}}


def _ours(doc: dict[str, Any]) -> ManifestError | None:
    try:
        validate_manifest(doc)
    except ManifestError as exc:
        return exc
    return None


def _compare_refusal(case: Case, status: dict[str, Any], ours: ManifestError | None) -> str | None:
    """None when our error is the server's Status (reason, message, causes); else what differs."""
    if ours is None:
        return f"server refuses ({status['message']}), validate_manifest accepts"
    if ours.reason != status["reason"]:
        return f"reason {ours.reason} != server's {status['reason']}: {ours} | {status['message']}"
    if status["reason"] != "Invalid":
        return None if str(ours) == status["message"] else f"message\n  ours:   {ours}\n  server: {status['message']}"
    causes = _causes(status)
    mine = [(e.field, e.type, e.message) for e in ours.errors]
    if sorted(causes) != sorted(mine):
        only_ours, only_server = sorted(set(mine) - set(causes)), sorted(set(causes) - set(mine))
        return f"causes\n  only ours:   {only_ours}\n  only server: {only_server}"
    order = {f"{field}: {message}": i for i, (field, _, message) in enumerate(causes)}
    items = sorted(dict.fromkeys(str(e) for e in ours.errors), key=order.__getitem__)
    reordered = f'{ours.kind}.{GROUP} "{ours.name}" is invalid: ' + (
        items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"
    )
    if str(ours).partition(" is invalid: ")[0] != reordered.partition(" is invalid: ")[0]:
        return f"object named differently: {ours} | {status['message']}"
    return None if reordered == status["message"] else f"message\n  ours:   {reordered}\n  server: {status['message']}"


def test_validate_manifest_agrees_with_the_api_server(control_plane, namespace):
    apply_crds(control_plane)
    server_cases = [c for c in INVALID + OPERATOR_ONLY + VALID if c.where != KUBECTL]
    converted = control_plane.kubectl(
        "create",
        "--dry-run=client",
        "-o",
        "json",
        "-n",
        namespace,
        "-f",
        "-",
        input="\n---\n".join(_placed(c.text, namespace) for c in server_cases),
    )
    bodies = _json_stream(converted.stdout)
    assert len(bodies) == len(server_cases), converted.stderr

    mismatches: list[str] = []
    rules_broken: set[str] = set()
    with control_plane.api_client() as api:
        objects = client.CustomObjectsApi(api)
        for case, body in zip(server_cases, bodies, strict=True):
            (doc,) = load_documents(_placed(case.text, namespace))
            if _without_namespace(body) != _without_namespace(doc):
                mismatches.append(f"{case.id}: kubectl reads the YAML as {body}, load_documents as {doc}")
            ours = _ours(doc)
            try:
                stored = objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURALS[body["kind"]], body, dry_run="All", field_validation="Strict"
                )
            except ApiException as exc:
                assert exc.status in (400, 422), exc
                status = json.loads(exc.body)
                rules_broken |= {m for _, _, m in _causes(status)}
                if case in INVALID:
                    problem = _compare_refusal(case, status, ours)
                else:
                    problem = f"the corpus says it is valid; the API server refuses it: {status['message']}"
            else:
                if case in INVALID:
                    problem = "the API server accepts it; the corpus says it is invalid"
                elif case in OPERATOR_ONLY:
                    problem = None if ours is not None and ours.reason == OPERATOR else f"expected {OPERATOR}: {ours}"
                elif ours is not None:
                    problem = f"the API server accepts it, validate_manifest refuses it: {ours}"
                elif server_object(doc)["spec"] != stored["spec"]:
                    problem = f"stored spec differs\n  ours:   {server_object(doc)['spec']}\n  server: {stored['spec']}"
                else:
                    problem = None
            if problem:
                mismatches.append(f"{case.id}: {problem}")

    for case in (c for c in INVALID if c.where == KUBECTL):
        out = control_plane.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=case.text, check=False
        )
        ours = _ours(load_documents(case.text)[0])
        core = str(ours).removeprefix("unable to decode: ") if ours else None
        if out.returncode == 0 or core is None or core not in out.stderr:
            mismatches.append(f"{case.id}: kubectl says {out.stderr.strip()!r}, validate_manifest {ours}")

    assert not mismatches, "\n".join(mismatches)
    every_rule = {
        rule.message for kind in PLURALS for rule in CelValidator(schema_of(kind)).rules if not rule.uses_old_self
    }
    assert every_rule <= {m.split(": ", 1)[-1] for m in rules_broken}, "corpus leaves CEL rules unbroken"


def _causes(status: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c.get("field", ""), c["reason"], c["message"]) for c in (status.get("details") or {}).get("causes", [])]
