"""A corpus of plantfed manifests, as users write them, for checking `validate_manifest` against the API server.

`INVALID` breaks every CEL rule of the CRDs that a create can break (transition rules need an update) and
the structural schema in every way it can be broken (each JSON type where another is expected, enums,
bounds, lengths, patterns, item and property counts, required fields, duplicates in a set, unknown fields
anywhere, bad metadata), plus what kubectl itself refuses before sending. `VALID` are the examples and
manifests that only look suspicious (YAML 1.1 numbers and booleans, nulls that defaults replace, a status).
Each case is YAML text, because how the text is read is part of what must agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from support.paths import REPO

API = "apiVersion: plantfed.io/v1alpha1"

SERVER = "server"
"""The API server refuses it (kubectl sends it)."""
KUBECTL = "kubectl"
"""kubectl refuses it before sending anything."""


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    where: str = SERVER


def round_(name: str, spec: str, extra: str = "") -> str:
    """A FederatedRound with `spec` given as flow-style YAML mapping content."""
    return f"{API}\nkind: FederatedRound\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n{extra}"


def listed(name: str, spec: str = "", extra: str = "") -> str:
    """A FederatedRound listing two plants with a quorum of two, plus `spec` fields."""
    base = "modelRef: bearing, plants: [plant-a, plant-b], minParticipants: 2"
    return round_(name, f"{base}, {spec}" if spec else base, extra)


def model(name: str, spec: str, extra: str = "") -> str:
    return f"{API}\nkind: FederatedModel\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n{extra}"


def plant(name: str, spec: str, metadata: str = "") -> str:
    meta = f"name: {name}, {metadata}" if metadata else f"name: {name}"
    return f"{API}\nkind: PlantParticipant\nmetadata: {{{meta}}}\nspec: {{{spec}}}\n"


TEMPLATE = "roundTemplate: {plants: [plant-a, plant-b], minParticipants: 2}"
DATA = "data: {pvc: {claimName: vibration}}"

_MANY_PLANTS = "[" + ", ".join(f"p{i}" for i in range(257)) + "]"
_MANY_SELECTORS = "{" + ", ".join(f"k{i}: v" for i in range(33)) + "}"

INVALID: list[Case] = [
    # --- CEL rules (x-kubernetes-validations) ---
    Case("cel-no-candidates", round_("no-candidates", "modelRef: bearing")),
    Case("cel-quorum-above-plants", listed("quorum", "minParticipants: 3")),
    Case("cel-fedprox-without-mu", listed("fedprox", "strategy: {name: fedprox}")),
    Case("cel-dpsgd-with-fedprox-mu", listed("dpsgd", "privacy: {mode: sample}, training: {fedProxMu: 0.01}")),
    Case(
        "cel-selector-in-without-values",
        round_("sel-in", "modelRef: bearing, plantSelector: {matchExpressions: [{key: line, operator: In}]}"),
    ),
    Case(
        "cel-selector-exists-with-values",
        round_(
            "sel-ex",
            "modelRef: bearing, plantSelector: {matchExpressions: [{key: line, operator: Exists, values: [a]}]}",
        ),
    ),
    Case(
        "cel-toleration-exists-with-value",
        listed("toleration", "pod: {tolerations: [{key: gpu, operator: Exists, value: x}]}"),
    ),
    # The API server also refuses this 0 (and 0.0, which kubectl sends as 0) by its exclusiveMaximum 0.5: it
    # compares an integer with int64(0.5) = 0. validate_manifest says the same.
    Case("cel-trimmed-mean-without-fraction", listed("trim", "strategy: {name: trimmedMean, trimFraction: 0}")),
    Case("cel-privacy-without-noise", listed("noise", "privacy: {mode: local, noiseMultiplier: 0}")),
    Case("cel-if-better-without-metric", listed("ifbetter", "promotion: {policy: IfBetter}")),
    Case(
        "cel-initial-weights-both",
        model("both", f"task: bearing, {TEMPLATE}, initialWeights: {{seed: 1, fromVersion: {{model: m, version: 2}}}}"),
    ),
    Case("cel-initial-weights-neither", model("neither", f"task: bearing, {TEMPLATE}, initialWeights: {{}}")),
    Case("cel-target-without-metric", model("target", f"task: bearing, {TEMPLATE}, stop: {{target: 0.9}}")),
    Case("cel-patience-without-metric", model("patience", f"task: bearing, {TEMPLATE}, stop: {{patience: 2}}")),
    Case("cel-template-without-candidates", model("template", "task: bearing, roundTemplate: {minParticipants: 1}")),
    Case(
        "cel-data-pvc-and-hostpath", plant("both", "plantId: both, data: {pvc: {claimName: d}, hostPath: {path: /d}}")
    ),
    Case("cel-data-neither", plant("neither", "plantId: neither, data: {subPath: x}")),
    Case(
        "cel-subpath-escapes",
        plant("escape", "plantId: escape, data: {hostPath: {path: /d}, subPath: 'a/../../etc'}"),
    ),
    Case("cel-name-differs-from-plant-id", plant("plant-x", f"plantId: plant-y, {DATA}")),
    Case("cel-several-rules", listed("several", "minParticipants: 3, strategy: {name: fedprox}")),
    # --- structural schema ---
    Case("minimum-integer", listed("min-int", "minParticipants: 0")),
    Case("exclusive-minimum-number", listed("exclusive-min", "training: {learningRate: 0}")),
    Case("maximum-integer", listed("max-int", "deadlineSeconds: 700000")),
    Case("exclusive-maximum-number", listed("exclusive-max", "strategy: {trimFraction: 0.7}")),
    Case("maximum-number-non-integral", listed("max-float", "privacy: {clipNorm: 1000000.5}")),
    Case("maximum-number-integral", listed("max-float-int", "privacy: {clipNorm: 2.0e+6}")),
    Case("exclusive-maximum-integer-value", listed("beta", "strategy: {beta1: 1}")),
    Case("enum", listed("enum", "strategy: {name: krum}")),
    Case("pattern", round_("pattern", "modelRef: Bad_Name, plants: [plant-a]")),
    Case("pattern-quantity", listed("quantity", "pod: {memory: lots}")),
    Case(
        "pattern-trailing-newline", round_("newline", 'modelRef: "bearing\\n", plants: [plant-a], minParticipants: 1')
    ),
    Case("pattern-unicode", round_("unicode", 'modelRef: "lager-süd\\t", plants: [plant-a], minParticipants: 1')),
    Case("min-length", listed("min-length", "promotion: {metric: ''}")),
    Case("max-length", round_("max-length", f"modelRef: {'m' * 64}, plants: [plant-a], minParticipants: 1")),
    Case("min-items", round_("min-items", "modelRef: bearing, plants: []")),
    Case("max-items", round_("max-items", f"modelRef: bearing, plants: {_MANY_PLANTS}")),
    Case("max-properties", listed("max-properties", f"pod: {{nodeSelector: {_MANY_SELECTORS}}}")),
    Case("map-value-too-long", listed("map-value", f"pod: {{nodeSelector: {{zone: {'z' * 64}}}}}")),
    Case("required-field", round_("required", "plants: [plant-a], minParticipants: 1")),
    Case("required-spec", f"{API}\nkind: FederatedRound\nmetadata: {{name: no-spec}}\n"),
    Case(
        "required-in-list-item",
        round_("required-item", "modelRef: bearing, plantSelector: {matchExpressions: [{operator: Exists}]}"),
    ),
    Case("type-quoted-number", listed("quoted", "deadlineSeconds: '3600'")),
    Case("type-fraction-for-integer", listed("fraction", "training: {epochs: 2.5}")),
    Case("type-boolean-for-integer", listed("bool-int", "training: {epochs: true}")),
    Case("type-object-for-integer", listed("object-int", "training: {batchSize: {}}")),
    Case("type-integer-for-string", listed("int-string", "pod: {cpu: 2}")),
    Case("type-yaml11-boolean-for-enum", listed("yes-enum", "strategy: {name: yes}")),
    Case("type-object-for-enum", listed("object-enum", "compression: {}")),
    Case("type-list-for-enum", listed("list-enum", "strategy: {name: [fedavg]}")),
    Case("type-string-for-object", listed("string-object", "training: fast")),
    Case("type-string-for-list", round_("string-list", "modelRef: bearing, plants: plant-a, minParticipants: 1")),
    Case("type-string-for-boolean", model("string-bool", f"task: bearing, {TEMPLATE}, suspend: 'no'")),
    Case("type-string-for-number", listed("string-number", "training: {learningRate: fast}")),
    Case("null-in-list", round_("null-item", "modelRef: bearing, plants: [plant-a, null], minParticipants: 1")),
    Case("null-object-in-list", listed("null-object", "pod: {tolerations: [null]}")),
    Case("duplicate-in-set", listed("duplicate", "plants: [plant-a, plant-b, plant-a]")),
    Case("schema-and-cel-together", round_("both-kinds", "modelRef: Bad_Name, plants: [plant-a], minParticipants: 2")),
    Case(
        "many-at-once",
        round_(
            "many",
            "modelRef: Bad_Name, plants: [a, b, a], minParticipants: 0, deadlineSeconds: 5, "
            "strategy: {name: krum, trimFraction: 0.7}, training: {learningRate: 0, epochs: 2.5}, "
            "pod: {memory: lots, cpu: 2}",
        ),
    ),
    # --- unknown fields (kubectl apply: field validation Strict) ---
    Case("unknown-field", listed("unknown", "trainig: {epochs: 2}")),
    Case("unknown-fields-sorted", listed("unknowns", "zeta: 1, alpha: 2, training: {lr: 0.1}")),
    Case("unknown-field-in-list-item", listed("unknown-item", "pod: {tolerations: [{key: gpu, foo: 1}]}")),
    Case("unknown-field-under-scalar", round_("under-scalar", "modelRef: {name: bearing}, plants: [plant-a]")),
    Case("unknown-metadata-field", listed("unknown-meta").replace("metadata: {", "metadata: {labelz: {a: b}, ")),
    Case("unknown-status-field", listed("unknown-status", extra="status: {phase: Training, foo: 1}\n")),
    Case("unknown-root-field", listed("unknown-root", extra="specs: {}\n")),
    # --- metadata ---
    Case("name-not-a-subdomain", listed("Bearing_R1")),
    Case("name-too-long", listed("r" * 254)),
    Case("name-missing", listed("x").replace("metadata: {name: x}", "metadata: {labels: {a: b}}")),
    Case(
        "labels-invalid",
        listed("labels").replace(
            "metadata: {name: labels}",
            "metadata: {name: labels, labels: {'bad key!': v, ok: 'bad value!', '/y': a, 'Ab.com/y': a, "
            f"{'k' * 64}: {'v' * 64}}}}}",
        ),
    ),
    Case(
        "annotations-invalid",
        listed("annotations").replace(
            "metadata: {name: annotations}",
            "metadata: {name: annotations, annotations: {'a/b/c': x, 'Example.com/Key': z}}",
        ),
    ),
    Case(
        "annotations-too-large",
        listed("big").replace("metadata: {name: big}", f"metadata: {{name: big, annotations: {{a: {'x' * 262144}}}}}"),
    ),
    Case(
        "owner-references-and-finalizers",
        listed("owned").replace(
            "metadata: {name: owned}",
            "metadata: {name: owned, finalizers: [bad finalizer, example.com/ok], ownerReferences: ["
            "{apiVersion: plantfed.io/v1alpha1, kind: FederatedModel, name: bearing}, "
            "{apiVersion: a/b/c, kind: X, name: x, uid: '1'}]}",
        ),
    ),
    # --- refused by kubectl before sending ---
    Case("unknown-kind", listed("kind").replace("kind: FederatedRound", "kind: FederatedRun"), KUBECTL),
    Case("unknown-version", listed("version").replace("plantfed.io/v1alpha1", "plantfed.io/v1"), KUBECTL),
    Case("no-api-version", listed("no-api").replace(API + "\n", ""), KUBECTL),
    Case("no-kind", listed("no-kind").replace("kind: FederatedRound\n", ""), KUBECTL),
    Case(
        "generate-name-with-apply",
        listed("x").replace("metadata: {name: x}", "metadata: {generateName: bearing-}"),
        KUBECTL,
    ),
    Case(
        "metadata-labels-not-a-map",
        listed("labels-list").replace("metadata: {name: labels-list}", "metadata: {name: labels-list, labels: [a]}"),
        KUBECTL,
    ),
    Case(
        "metadata-annotation-yaml-boolean",
        listed("yes").replace("metadata: {name: yes}", "metadata: {name: 'yes', annotations: {reviewed: y}}"),
        KUBECTL,
    ),
    Case(
        "owner-reference-yaml-boolean",
        listed("owner").replace(
            "metadata: {name: owner}", "metadata: {name: owner, ownerReferences: [{apiVersion: v1, kind: X, name: y}]}"
        ),
        KUBECTL,
    ),
    Case(
        "metadata-label-not-a-string",
        listed("label-int").replace("metadata: {name: label-int}", "metadata: {name: label-int, labels: {a: 5}}"),
        KUBECTL,
    ),
]

OPERATOR_ONLY: list[Case] = [
    Case("unknown-time-zone", model("mars", f"task: bearing, {TEMPLATE}, timeZone: Mars/Olympus")),
    Case("cron-minute-61", model("minute", f"task: bearing, {TEMPLATE}, cadence: '61 * * * *'")),
    Case(
        "maintenance-window-bad-cron",
        plant(
            "window", f"plantId: window, {DATA}, maintenanceWindows: [{{schedule: '0 25 * * *', durationMinutes: 5}}]"
        ),
    ),
]
"""Accepted by the API server, refused by the operator's models (checks no CRD schema can express)."""

VALID: list[Case] = [
    *(Case(f"example-{p.stem}", p.read_text()) for p in sorted((REPO / "examples").glob("*.yaml"))),
    Case("minimal-round", round_("minimal", "modelRef: bearing, plants: [plant-a, plant-b]")),
    Case("minimal-model", model("minimal", "task: bearing, roundTemplate: {plantSelector: {}}")),
    Case("minimal-plant", plant("minimal", f"plantId: minimal, {DATA}")),
    Case(
        "go-yaml-numbers-and-booleans",
        model(
            "numbers",
            "task: bearing, suspend: yes, initialWeights: {seed: 0o17}, "
            "roundTemplate: {plants: [plant-a, plant-b], minParticipants: 0x2, deadlineSeconds: 1e5, "
            "training: {epochs: 2.0, learningRate: 1e-3}, strategy: {name: fedadam, tau: .001}}, "
            "stop: {maxRounds: 1_000, metric: val_accuracy, target: 9.5e-1}",
        ),
    ),
    Case(
        "nulls-replaced-by-defaults",
        listed("nulls", "training: ~, strategy: {name: null, momentum: null}, promotion: null, compression: null"),
    ),
    Case("status-is-dropped", listed("status", extra="status: {phase: Bogus, plants: [{plant: x}]}\n")),
    Case("dotted-name", listed("bearing.r1")),
    Case(
        "label-keys-from-yaml",
        plant("yaml-keys", f"plantId: yaml-keys, {DATA}", metadata="labels: {y: a, 1: c, example.com/line: press}"),
    ),
    Case(
        "selector-and-tolerations",
        round_(
            "selector",
            "modelRef: bearing, minParticipants: 1, plantSelector: {matchLabels: {region: eu}, "
            "matchExpressions: [{key: line, operator: In, values: [press]}, {key: legacy, operator: DoesNotExist}]}, "
            "pod: {nodeSelector: {nvidia.com/gpu.present: 'true'}, tolerations: [{key: gpu, operator: Exists}]}",
        ),
    ),
]
