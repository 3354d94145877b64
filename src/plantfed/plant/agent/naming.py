"""Names and labels of what the agent creates, derived from the round so every retry finds the same object."""

from __future__ import annotations

import hashlib

ROUND_ANNOTATION = "plantfed.io/round"
ROUND_UID_ANNOTATION = "plantfed.io/round-uid"
PLANT_LABEL = "plantfed.io/plant"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "plantfed-agent"
COMPONENT = "train"
EVALUATE_COMPONENT = "evaluate"


def training_job_name(round_name: str, prefix: str = "train") -> str:
    """`train-<round>` (or `<prefix>-<round>`), kept within the 63 characters the Job's `job-name` pod label allows.

    Round names may be DNS subdomains up to 253 characters; long ones are cut and suffixed with a hash
    of the full name so two long rounds never share a Job.
    """
    name = f"{prefix}-{round_name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(round_name.encode()).hexdigest()[:8]
    return f"{prefix}-{round_name[: 52 - len(prefix)].rstrip('-.')}-{digest}"


def evaluation_job_name(round_name: str) -> str:
    """`eval-<round>`: the Job that scores the round's candidate on the plant's validation split."""
    return training_job_name(round_name, prefix="eval")


def token_secret_name(job_name: str) -> str:
    return f"{job_name}-token"


def selector(plant: str) -> str:
    """Label selector of this plant's training Jobs and their pods."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{PLANT_LABEL}={plant}"


def labels(plant: str, component: str = COMPONENT) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        COMPONENT_LABEL: component,
        PLANT_LABEL: plant,
        "app.kubernetes.io/part-of": "plantfed",
    }
