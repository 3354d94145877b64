"""Names and labels of what the agent creates, derived from the round so every retry finds the same object.

The keys and the length rule are the contract's (`plantfed.contract.naming`); this module only says which
of them the agent's Jobs carry.
"""

from __future__ import annotations

from plantfed.contract.naming import (
    COMPONENT_LABEL,
    MANAGED_BY_LABEL,
    PART_OF,
    PART_OF_LABEL,
    PLANT_KEY,
    bounded_name,
)

MANAGED_BY = "plantfed-agent"
COMPONENT = "train"
EVALUATE_COMPONENT = "evaluate"


def training_job_name(round_name: str, prefix: str = "train") -> str:
    """`train-<round>` (or `<prefix>-<round>`), kept within the 63 characters the Job's `job-name` pod label allows.

    Round names may be DNS subdomains up to 253 characters; long ones are cut and suffixed with a hash
    of the full name so two long rounds never share a Job.
    """
    return bounded_name(round_name, prefix=f"{prefix}-")


def evaluation_job_name(round_name: str) -> str:
    """`eval-<round>`: the Job that scores the round's candidate on the plant's validation split."""
    return training_job_name(round_name, prefix="eval")


def token_secret_name(job_name: str) -> str:
    return f"{job_name}-token"


def selector(plant: str) -> str:
    """Label selector of this plant's training Jobs and their pods."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{PLANT_KEY}={plant}"


def labels(plant: str, component: str = COMPONENT) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        COMPONENT_LABEL: component,
        PLANT_KEY: plant,
        PART_OF_LABEL: PART_OF,
    }
