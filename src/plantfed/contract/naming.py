"""Naming rules every layer shares, each defined once: the API group and version, the label and annotation keys
plantfed puts on Kubernetes objects, what may name a model, round, plant or blob in the store, and how a name
derived from a longer one is kept within Kubernetes' 63 characters.

This module is deliberately free of the CRD models (`plantfed.contract.api` re-exports the group and version
from here), so the store, the exchange and the plant runtime can use it without importing pydantic schemas.
"""

from __future__ import annotations

import hashlib
import re

GROUP = "plantfed.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# --- label and annotation keys ----------------------------------------------------------------------------
# Each key means one thing wherever it is used, as a label (selectable) or as an annotation.

MODEL_KEY = f"{GROUP}/model"
"""The FederatedModel (lineage) an object works for: label on rounds and hub Jobs, annotation on plant Jobs."""
ROUND_KEY = f"{GROUP}/round"
"""The FederatedRound an object works for: label on aggregation Jobs, annotation on plant Jobs and pods."""
ROUND_NUMBER_KEY = f"{GROUP}/round-number"
"""N of a campaign's round `<model>-r<N>`: label on the rounds a FederatedModel creates."""
ROUND_UID_KEY = f"{GROUP}/round-uid"
"""The uid of the round a plant Job was made for (a round re-created under the same name is another round)."""
PLANT_KEY = f"{GROUP}/plant"
"""The plant an object belongs to: label on plant Jobs and pods, and on the hub's per-plant RBAC and Secrets."""

ASSIGNED_PREFIX = f"assigned.{GROUP}"
"""Prefix of the label `assigned.plantfed.io/<plant>: "true"` the operator puts on a FederatedRound for each plant
it assigned, so a plant's agent lists and watches only its own rounds (label selector `assigned_label(plant)`)."""


def assigned_label(plant: str) -> str:
    """The label key marking a round as assigned to `plant` (a DNS label, so a valid key name within 63 characters)."""
    return f"{ASSIGNED_PREFIX}/{bounded_name(plant)}"


# Kubernetes' recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
PART_OF = "plantfed"

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
"""Labels the Job controller puts on a Job's pods, newest first (the short one is deprecated)."""

# --- Kubernetes names ----------------------------------------------------------------------------------

MAX_LABEL_LENGTH = 63
"""An RFC 1123 label, a label value, and so any name that ends up in one (a Job's `job-name` pod label)."""
MAX_SUBDOMAIN_LENGTH = 253
"""An RFC 1123 subdomain: most Kubernetes object names."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""RFC 1123 label: what Kubernetes accepts as an object name segment (at most MAX_LABEL_LENGTH characters)."""
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""RFC 1123 subdomain: dot-separated labels (at most MAX_SUBDOMAIN_LENGTH characters)."""

METRIC_NAME = r"^[A-Za-z_][A-Za-z0-9_./-]*$"
"""A metric's name (at most MAX_LABEL_LENGTH characters): what a FederatedModel's promotion metric and the keys of a
plant's reported metrics may be."""

NAME_DIGEST_LENGTH = 8
"""Hex characters of sha256 that stand in for the cut-off part of a long name (32 bits: collisions among one
namespace's rounds are negligible, and a collision is refused by the API server as 409, never merged)."""


def bounded_name(core: str, *, prefix: str = "", suffix: str = "", limit: int = MAX_LABEL_LENGTH) -> str:
    """`<prefix><core><suffix>`, or, when that exceeds `limit`, `<prefix><cut core>-<digest><suffix>`.

    Deterministic (a retry derives the same name and finds the object it created), within `limit`, and
    distinct for distinct long cores: the digest is of the whole `core`. The cut drops trailing '-' and '.'
    so a valid DNS-1123 `core` gives a valid DNS-1123 name.
    """
    name = f"{prefix}{core}{suffix}"
    if len(name) <= limit:
        return name
    room = limit - len(prefix) - len(suffix) - NAME_DIGEST_LENGTH - 1
    if room < 1:
        raise ValueError(f"prefix {prefix!r} and suffix {suffix!r} leave no room for a name within {limit}")
    digest = hashlib.sha256(core.encode()).hexdigest()[:NAME_DIGEST_LENGTH]
    return f"{prefix}{core[:room].rstrip('-.')}-{digest}{suffix}"


# --- store names ---------------------------------------------------------------------------------------

_NAME = re.compile(DNS_SUBDOMAIN)
_SHA256 = re.compile(r"[0-9a-f]{64}")


class InvalidNameError(ValueError):
    """A model, round or plant name that is unsafe as a path component, or a malformed digest."""


def check_name(kind: str, name: str) -> str:
    """The one rule for a model, round or plant name anywhere (store paths, exchange RPCs): a Kubernetes object
    name (RFC 1123 subdomain), as the CRDs these names come from require, so it is also a safe path component.

    `fullmatch`, not `match`: a pattern's `$` also matches before a trailing newline (`'r1\n'`).
    """
    if not is_name(name):
        raise InvalidNameError(
            f"invalid {kind} name {name!r}: use 1-{MAX_SUBDOMAIN_LENGTH} characters from [a-z0-9.-], starting and "
            "ending alphanumeric (a Kubernetes object name)"
        )
    return name


def is_name(name: str) -> bool:
    """`check_name`'s rule as a predicate, for listings that skip (and fsck reports) what no object can be named."""
    return isinstance(name, str) and len(name) <= MAX_SUBDOMAIN_LENGTH and _NAME.fullmatch(name) is not None


def is_sha256(digest: str) -> bool:
    return isinstance(digest, str) and _SHA256.fullmatch(digest) is not None


def check_sha256(digest: str) -> str:
    if not is_sha256(digest):
        raise InvalidNameError(f"invalid sha256 {digest!r}: expected 64 lowercase hex characters")
    return digest
