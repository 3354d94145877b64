"""Manifest validation without a cluster: each kind of refusal, in the API server's words, and what passes.

The expected messages are what kube-apiserver 1.37 (and kubectl 1.37) print for the same manifests;
tests/controlplane/test_manifests_against_apiserver.py checks the whole corpus against a real API server.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml
from support.manifests import INVALID, KUBECTL, OPERATOR_ONLY, VALID, listed, round_
from support.paths import REPO

from plantfed.cli import main
from plantfed.contract.api import FederatedModel, FederatedRound, PlantParticipant
from plantfed.contract.api.celrules import CelValidator, normalized_field_path
from plantfed.contract.api.crdgen import RESOURCES
from plantfed.contract.api.fielderrors import go_float, go_json, go_quote
from plantfed.contract.api.kubeyaml import load_documents, resolve_plain
from plantfed.contract.api.openapi import walk
from plantfed.contract.api.structural import SUPPORTED_KEYWORDS
from plantfed.contract.api.validation import (
    BAD_REQUEST,
    CLIENT,
    OPERATOR,
    ManifestError,
    load_manifests,
    schema_of,
    server_object,
    validate_documents,
    validate_manifest,
)
from plantfed.contract.api.validation import (
    INVALID as REFUSED,
)

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
NOT_CHECKED = (
    "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
BY_ID = {c.id: c for c in INVALID + OPERATOR_ONLY + VALID}


def refusal(case_id: str) -> ManifestError:
    (doc,) = load_documents(BY_ID[case_id].text)
    with pytest.raises(ManifestError) as caught:
        validate_manifest(doc)
    return caught.value


def invalid(kind: str, name: str, *errors: str) -> str:
    joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return f'{kind}.plantfed.io "{name}" is invalid: {joined}'


# --- what passes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_loads_as_the_model_the_operator_reads(path):
    (obj,) = load_manifests(path)
    (doc,) = yaml.safe_load_all(path.read_text())  # the examples use no YAML the two readers differ on
    assert obj == type(obj).from_object(doc)
    assert obj.metadata.name == doc["metadata"]["name"]


def test_examples_cover_the_three_kinds():
    kinds = {type(o) for p in EXAMPLES for o in load_manifests(p)}
    assert kinds == {FederatedModel, FederatedRound, PlantParticipant}


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_valid_manifests_are_accepted(case):
    (obj,) = load_manifests(case.text)
    assert obj.kind == yaml.safe_load(case.text)["kind"]


def test_values_are_read_as_kubectl_reads_them():
    (obj,) = load_manifests(BY_ID["go-yaml-numbers-and-booleans"].text)
    assert isinstance(obj, FederatedModel)
    template = obj.spec.round_template
    assert obj.spec.suspend is True and obj.spec.initial_weights.seed == 0o17
    assert (template.min_participants, template.deadline_seconds, template.training.epochs) == (2, 100000, 2)
    assert (template.training.learning_rate, template.strategy.tau, obj.spec.stop.max_rounds) == (1e-3, 1e-3, 1000)
    (labelled,) = load_manifests(BY_ID["label-keys-from-yaml"].text)
    assert labelled.metadata.labels == {"true": "a", "1": "c", "example.com/line": "press"}


def test_nulls_become_defaults_and_status_is_dropped():
    stored = server_object(load_documents(BY_ID["nulls-replaced-by-defaults"].text)[0])
    assert stored["spec"]["training"]["epochs"] == 1 and stored["spec"]["strategy"]["name"] == "fedavg"
    assert stored["spec"]["promotion"]["policy"] == "Always" and stored["spec"]["compression"] == "none"
    (obj,) = load_manifests(BY_ID["status-is-dropped"].text)
    assert isinstance(obj, FederatedRound)
    assert obj.status.phase is None and obj.status.plants == []


# --- CEL rules ----------------------------------------------------------------------------------


def cel_rules():
    return [rule for r in RESOURCES for rule in CelValidator(schema_of(r.kind_name)).rules]


def test_every_cel_rule_of_the_crds_compiles_and_the_examples_satisfy_it():
    assert {rule.rule for rule in cel_rules()} >= {"self == oldSelf", "self.metadata.name == self.spec.plantId"}
    for path in EXAMPLES:
        for doc in load_documents(path.read_text()):
            stored = server_object(doc)
            assert CelValidator(schema_of(doc["kind"])).validate(stored) == []


def test_the_corpus_breaks_every_rule_a_create_can_break():
    broken = set()
    for case in INVALID:
        try:
            validate_manifest(load_documents(case.text)[0])
        except ManifestError as exc:
            broken |= {e.detail for e in exc.errors}
    assert {r.message for r in cel_rules() if not r.uses_old_self} <= broken


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("cel-no-candidates", ("spec: Invalid value: set plantSelector, plants, or both",)),
        (
            "cel-quorum-above-plants",
            ("spec.minParticipants: Invalid value: minParticipants cannot exceed the number of plants listed",),
        ),
        (
            "cel-selector-in-without-values",
            (
                "spec.plantSelector.matchExpressions[0]: Invalid value: "
                "values must be non-empty for In/NotIn and empty for Exists/DoesNotExist",
            ),
        ),
        (
            "cel-several-rules",
            (
                "spec.minParticipants: Invalid value: minParticipants cannot exceed the number of plants listed",
                "spec.training.fedProxMu: Invalid value: strategy fedprox needs training.fedProxMu > 0",
            ),
        ),
        (
            "cel-name-differs-from-plant-id",
            (
                "<nil>: Invalid value: metadata.name must equal spec.plantId, "
                "so agent RBAC by resource name covers exactly one plant",
            ),
        ),
        (
            "schema-and-cel-together",
            (
                'spec.modelRef: Invalid value: "Bad_Name": '
                "spec.modelRef in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
                "spec.minParticipants: Invalid value: minParticipants cannot exceed the number of plants listed",
            ),
        ),
    ],
)
def test_cel_refusals_carry_the_rule_message_and_field_path(case_id, expected):
    error = refusal(case_id)
    assert error.reason == REFUSED
    assert str(error) == invalid(error.kind, error.name, *expected)


def test_field_paths_are_relative_to_the_rule():
    assert normalized_field_path(".training.fedProxMu") == "training.fedProxMu"
    assert normalized_field_path(".nodeSelector['nvidia.com/gpu']") == "nodeSelector[nvidia.com/gpu]"
    with pytest.raises(ValueError, match="unsupported fieldPath"):
        normalized_field_path("training")


# --- structural schema --------------------------------------------------------------------------


def test_the_validator_knows_every_keyword_the_crds_use():
    for resource in RESOURCES:
        for path, node in walk(schema_of(resource.kind_name)):
            assert set(node) <= SUPPORTED_KEYWORDS, f"{resource.kind_name}{path}: {set(node) - SUPPORTED_KEYWORDS}"


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        (
            "minimum-integer",
            "spec.minParticipants: Invalid value: 0: spec.minParticipants in body should be greater than or equal to 1",
        ),
        (
            "exclusive-minimum-number",
            "spec.training.learningRate: Invalid value: 0: spec.training.learningRate in body should be greater than 0",
        ),
        (
            "exclusive-maximum-number",
            "spec.strategy.trimFraction: Invalid value: 0.7: "
            "spec.strategy.trimFraction in body should be less than 0.5",
        ),
        (
            "maximum-number-non-integral",
            "spec.privacy.clipNorm: Invalid value: 1.0000005e+06: "
            "spec.privacy.clipNorm in body should be less than or equal to 1e+06",
        ),
        (
            "maximum-number-integral",
            "spec.privacy.clipNorm: Invalid value: 2000000: "
            "spec.privacy.clipNorm in body should be less than or equal to 1000000",
        ),
        (
            "pattern-quantity",
            'spec.pod.memory: Invalid value: "lots": '
            "spec.pod.memory in body should match '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "min-length",
            'spec.promotion.metric: Invalid value: "": spec.promotion.metric in body should be at least 1 chars long',
        ),
        ("duplicate-in-set", 'spec.plants[2]: Duplicate value: "plant-a"'),
    ],
)
def test_non_blocking_schema_errors_in_the_api_servers_words(case_id, expected):
    error = refusal(case_id)
    assert str(error) == invalid(error.kind, error.name, expected)
    assert [(e.field, e.type) for e in error.errors] == [(expected.split(": ")[0], error.errors[0].type)]


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("max-length", ("spec.modelRef: Too long: may not be more than 63 bytes",)),
        ("max-items", ("spec.plants: Too many: 257: must have at most 256 items",)),
        ("max-properties", ("spec.pod.nodeSelector: Too many: 33: must have at most 32 items",)),
        ("map-value-too-long", ("spec.pod.nodeSelector.zone: Too long: may not be more than 63 bytes",)),
        ("required-field", ("spec.modelRef: Required value",)),
        ("required-spec", ("spec: Required value",)),
        ("required-in-list-item", ("spec.plantSelector.matchExpressions[0].key: Required value",)),
        (
            "type-quoted-number",
            (
                'spec.deadlineSeconds: Invalid value: "string": '
                'spec.deadlineSeconds in body must be of type integer: "string"',
            ),
        ),
        (
            "type-fraction-for-integer",
            (
                'spec.training.epochs: Invalid value: "float64": '
                'spec.training.epochs in body must be of type int64: "float64"',
                '<nil>: Invalid value: "": '
                "Checked value must be of type integer with format int64 in spec.training.epochs",
            ),
        ),
        (
            "type-boolean-for-integer",
            ('spec.training.epochs: Invalid value: "": spec.training.epochs in body must be of type int64: ""',),
        ),
        (
            "type-yaml11-boolean-for-enum",
            (
                'spec.strategy.name: Invalid value: "boolean": '
                'spec.strategy.name in body must be of type string: "boolean"',
                'spec.strategy.name: Unsupported value: true: supported values: "fedavg", "fedprox", "fedadam", '
                '"fedyogi", "fedavgm", "trimmedMean", "median"',
            ),
        ),
        (
            "type-object-for-enum",
            (
                'spec.compression: Invalid value: "object": spec.compression in body must be of type string: "object"',
                'spec.compression: Unsupported value: {}: supported values: "none", "fp16", "int8"',
            ),
        ),
        (
            "null-in-list",
            ('spec.plants[1]: Invalid value: "null": spec.plants[1] in body must be of type string: "null"',),
        ),
        ("name-missing", ("metadata.name: Required value: name or generateName is required",)),
        ("annotations-too-large", ("metadata.annotations: Too long: may not be more than 262144 bytes",)),
    ],
)
def test_blocking_errors_leave_the_cel_rules_unchecked(case_id, expected):
    error = refusal(case_id)
    assert str(error) == invalid(error.kind, error.name, *expected, NOT_CHECKED)


def test_metadata_is_validated_as_object_meta():
    error = refusal("labels-invalid")
    assert {e.field for e in error.errors} == {"metadata.labels"}
    details = [e.message for e in error.errors]
    assert 'Invalid value: "/y": prefix part must be non-empty' in details
    assert f'Invalid value: "{"v" * 64}": must be no more than 63 bytes' in details
    assert f'Invalid value: "{"k" * 64}": name part must be no more than 63 bytes' in details
    assert str(refusal("name-too-long")).endswith(": must be no more than 253 characters")


# --- unknown fields and what kubectl refuses ----------------------------------------------------


@pytest.mark.parametrize(
    ("case_id", "fields"),
    [
        ("unknown-field", ["spec.trainig"]),
        ("unknown-fields-sorted", ["spec.alpha", "spec.training.lr", "spec.zeta"]),
        ("unknown-field-in-list-item", ["spec.pod.tolerations[0].foo"]),
        ("unknown-field-under-scalar", ["spec.modelRef.name"]),
        ("unknown-metadata-field", ["metadata.labelz"]),
        ("unknown-status-field", ["status.foo"]),
        ("unknown-root-field", ["specs"]),
    ],
)
def test_unknown_fields_are_refused_as_under_strict_field_validation(case_id, fields):
    error = refusal(case_id)
    assert error.reason == BAD_REQUEST
    assert str(error) == (
        f'{error.kind} in version "v1alpha1" cannot be handled as a {error.kind}: strict decoding error: '
        + ", ".join(f'unknown field "{f}"' for f in fields)
    )
    assert [e.field for e in error.errors] == fields


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("unknown-kind", 'no matches for kind "FederatedRun" in version "plantfed.io/v1alpha1"'),
        ("unknown-version", 'no matches for kind "FederatedRound" in version "plantfed.io/v1"'),
        ("no-api-version", "error validating data: apiVersion not set"),
        ("no-kind", "error validating data: kind not set"),
        ("generate-name-with-apply", "from bearing-: cannot use generate name with apply"),
        (
            "metadata-annotation-yaml-boolean",
            "unable to decode: json: cannot unmarshal bool into Go struct field ObjectMeta.metadata.annotations "
            "of type string",
        ),
    ],
)
def test_what_kubectl_refuses_before_sending(case_id, expected):
    error = refusal(case_id)
    assert error.reason == CLIENT and str(error) == expected


def test_every_corpus_refusal_comes_from_the_expected_side():
    for case in INVALID:
        reason = refusal(case.id).reason
        assert (reason == CLIENT) == (case.where == KUBECTL), case.id
    for case in OPERATOR_ONLY:
        error = refusal(case.id)
        assert error.reason == OPERATOR and "is accepted by the API server but the plantfed operator refuses it" in str(
            error
        )


def test_not_yaml_and_not_objects_are_refused_by_the_reader():
    with pytest.raises(ManifestError, match="error converting YAML to JSON") as caught:
        load_manifests("spec: {a: [1, 2}\nkind: x\n")
    assert caught.value.reason == CLIENT and caught.value.document == 1
    with pytest.raises(ManifestError, match="must be an object"):
        load_manifests("- a\n- b\n")
    with pytest.raises(ManifestError, match="json: unsupported value: \\+Inf"):
        load_manifests(listed("inf", "training: {learningRate: .inf}"))


# --- reading files ------------------------------------------------------------------------------


def test_a_stream_is_validated_document_by_document():
    text = "\n---\n".join(
        [round_("ok", "modelRef: bearing, plants: [a], minParticipants: 1"), listed("bad", "minParticipants: 0"), ""]
    )
    results = list(validate_documents(text))
    assert [n for n, _ in results] == [1, 2]
    assert isinstance(results[0][1], FederatedRound)
    assert isinstance(results[1][1], ManifestError) and results[1][1].document == 2
    with pytest.raises(ManifestError) as caught:
        load_manifests(text)
    assert caught.value.name == "bad" and caught.value.source == "<text>"


def test_lists_json_and_paths_are_read_as_kubectl_reads_them(tmp_path, monkeypatch):
    items = [yaml.safe_load(round_(f"r{i}", "modelRef: bearing, plants: [a], minParticipants: 1")) for i in range(2)]
    as_list = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    assert [o.name for o in load_manifests(as_list)] == ["r0", "r1"]
    typed = yaml.safe_dump({"apiVersion": "plantfed.io/v1alpha1", "kind": "FederatedRoundList", "items": items[:1]})
    assert [o.name for o in load_manifests(typed)] == ["r0"]
    path = tmp_path / "rounds.json"
    path.write_text(json.dumps(items[0]) + "\n" + json.dumps(items[1]))
    assert [o.name for o in load_manifests(path)] == ["r0", "r1"]
    assert [o.name for o in load_manifests(str(path))] == ["r0", "r1"]
    monkeypatch.setattr("sys.stdin", io.StringIO(as_list))
    assert [o.name for o in load_manifests("-")] == ["r0", "r1"]


def test_dates_from_other_yaml_readers_become_their_text():
    doc = yaml.safe_load(listed("dated"))
    doc["metadata"]["annotations"] = {"since": yaml.safe_load("2026-01-01")}
    assert server_object(doc)["metadata"]["annotations"] == {"since": "2026-01-01"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("y", True),
        ("No", False),
        ("off", False),
        ("tRUE", "tRUE"),
        ("~", None),
        ("", None),
        (".5", 0.5),
        (".1_0", 0.1),
        ("+.5", 0.5),
        ("1e5", 100000.0),
        ("1_000", 1000),
        ("0x1F", 31),
        ("-0x1F", -31),
        ("0o17", 15),
        ("017", 15),
        ("08", 8.0),
        ("0b101", 5),
        ("1:30", "1:30"),
        ("2026-01-01", "2026-01-01"),
        ("9223372036854775807", 9223372036854775807),
        ("1e", "1e"),
        ("1.2.3", "1.2.3"),
        ("-", "-"),
    ],
)
def test_plain_scalars_resolve_as_go_yaml_resolves_them(text, value):
    """Each value is what `kubectl create --dry-run=client -o json` made of the scalar."""
    resolved = resolve_plain(text)
    assert resolved == value and type(resolved) is type(value)


def test_integral_floats_reach_the_server_as_integers():
    (doc,) = load_documents("a: 3.0\nb: 1.0e+20\nc: 2.5\nd: 18446744073709551615\ne: -0.0\n")
    assert doc == {"a": 3, "b": 1e20, "c": 2.5, "d": 1.8446744073709552e19, "e": 0}
    assert [type(doc[k]) for k in "abcde"] == [int, float, float, float, int]


# --- Go's formatting ----------------------------------------------------------------------------


def test_values_are_printed_as_go_prints_them():
    # fmt.Sprintf("%v") of float64s, strconv.Quote and json.Marshal, as Go 1.26 prints them
    floats = [0.0, 1.0, 1e6, 1e5, 123456.0, 1234567.0, 1e-5, 0.0001, 1e21, 0.5, 1000000.5, 2.5e-7]
    assert [go_float(f) for f in floats] == [
        "0",
        "1",
        "1e+06",
        "100000",
        "123456",
        "1.234567e+06",
        "1e-05",
        "0.0001",
        "1e+21",
        "0.5",
        "1.0000005e+06",
        "2.5e-07",
    ]
    assert go_quote('a"b\\c\n\t\x01é\u2028\U0001f600\x7f') == '"a\\"b\\\\c\\n\\t\\x01é\\u2028\U0001f600\\x7f"'
    assert go_json({"b": [1, 2.5, 1e-7, 1e22, None, True, "<a>"], "a": {}}) == (
        '{"a":{},"b":[1,2.5,1e-7,1e+22,null,true,"\\u003ca\\u003e"]}'
    )


def test_kubectl_prints_one_cause_inline_and_several_as_a_list():
    assert refusal("duplicate-in-set").kubectl_message() == (
        'The FederatedRound "duplicate" is invalid: spec.plants[2]: Duplicate value: "plant-a"'
    )
    several = refusal("cel-several-rules").kubectl_message()
    assert several.splitlines() == [
        'The FederatedRound "several" is invalid: ',
        "* spec.minParticipants: Invalid value: minParticipants cannot exceed the number of plants listed",
        "* spec.training.fedProxMu: Invalid value: strategy fedprox needs training.fedProxMu > 0",
    ]


# --- plantfed validate --------------------------------------------------------------------------


def test_validate_command_reports_each_object_and_fails_on_any_error(tmp_path, capsys):
    assert main(["validate", "-f", str(REPO / "examples")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == sorted(
        [
            f"{REPO / 'examples' / 'model.yaml'}: federatedmodel.plantfed.io/bearing valid",
            f"{REPO / 'examples' / 'plant.yaml'}: plantparticipant.plantfed.io/stuttgart-press3 valid",
            f"{REPO / 'examples' / 'round.yaml'}: federatedround.plantfed.io/bearing-hotfix-1 valid",
        ]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        round_("ok", "modelRef: bearing, plants: [a], minParticipants: 1")
        + "---\n"
        + listed("zero", "minParticipants: 0")
    )
    assert main(["validate", "-f", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{bad}: federatedround.plantfed.io/ok valid\n"
    assert captured.err == (
        f"{bad} (object 2): "
        + invalid(
            "FederatedRound",
            "zero",
            "spec.minParticipants: Invalid value: 0: spec.minParticipants in body should be greater than or equal to 1",
        )
        + "\n"
    )


def test_validate_command_refuses_a_missing_file(tmp_path, capsys):
    assert main(["validate", "-f", str(tmp_path / "absent.yaml")]) == 1
    assert "absent.yaml" in capsys.readouterr().err
