"""batch/v1 Job manifests the operator creates in the hub namespace.

Both Jobs only touch the model store volume: no ServiceAccount token is mounted, the pod runs as
a non-root user with a read-only root filesystem, and the command is explicit so the manifest
says exactly what runs. Names are deterministic, so creating a Job again answers 409 instead of
running the work twice, and the work itself is idempotent should a Job be retried.

Results are not passed through `/dev/termination-log` (4 KiB, gone with the pod): the store is the
record (the aggregation Job charges the lineage's privacy ledger and publishes a version carrying the
round id and its statistics, the init Job a promoted version; the operator reads both through the
exchange), and
`FallbackToLogsOnError` puts the end of the log into the pod status when a run fails.
"""

from __future__ import annotations

from typing import Any

from plantfed.contract import strategies
from plantfed.contract.api.model import InitialWeights
from plantfed.contract.api.round import Privacy, PrivacyMode, Strategy
from plantfed.contract.naming import (
    COMPONENT_LABEL,
    MODEL_KEY,
    NAME_LABEL,
    PART_OF,
    PART_OF_LABEL,
    ROUND_KEY,
    bounded_name,
)
from plantfed.hub.config import STORE_MOUNT, OperatorConfig
from plantfed.hub.reconcile.actions import CreateAggregationJob


def strategy_args(strategy: Strategy, privacy: Privacy | None = None) -> list[str]:
    """`plantfed aggregate` flags for a CRD strategy, every parameter it uses spelled out (defaults included).

    Derived from the one vocabulary (`plantfed.contract.strategies`), so the Job runs exactly the strategy
    `plantfed simulate` runs for the same spec. Central differential privacy happens here, at the hub: each
    update is clipped to the strategy's `normBound` (or, when unset, the privacy `clipNorm`) and the
    aggregate gets Gaussian noise.
    """
    given: dict[str, strategies.Value | None] = dict(strategy.parameters())
    if privacy is not None and privacy.mode is PrivacyMode.CENTRAL:
        given["norm_bound"] = strategy.norm_bound or privacy.clip_norm
        given["central_noise_multiplier"] = privacy.noise_multiplier
    return strategies.command_args(strategy.name, given)


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """Controller reference so deleting the owner garbage-collects the Job.

    `blockOwnerDeletion` is left unset: setting it needs `update` on the owner's finalizers
    subresource where OwnerReferencesPermissionEnforcement is on, a grant the operator does not need.
    """
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def init_job_name(model: str) -> str:
    """`<model>-init`, within the 63 characters of the Job's `job-name` pod label."""
    return bounded_name(model, suffix="-init")


def _pod_spec(cfg: OperatorConfig, container: str, command: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": container,
                "image": cfg.image,
                "command": command,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                "resources": {
                    "requests": {"cpu": cfg.job_cpu, "memory": cfg.job_memory},
                    "limits": {"memory": cfg.job_memory_limit},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "store", "mountPath": STORE_MOUNT},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "store", "persistentVolumeClaim": {"claimName": cfg.store_claim}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if cfg.aggregation_service_account:
        spec["serviceAccountName"] = cfg.aggregation_service_account
    return spec


def _job(
    cfg: OperatorConfig,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    labels: dict[str, str],
    container: str,
    command: list[str],
) -> dict[str, Any]:
    labels = {
        PART_OF_LABEL: PART_OF,
        NAME_LABEL: f"plantfed-{container}",
        COMPONENT_LABEL: container,
        **cfg.job_labels,
        **labels,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": cfg.job_backoff_limit,
            "template": {"metadata": {"labels": labels}, "spec": _pod_spec(cfg, container, command)},
        },
    }


def aggregation_job(
    cfg: OperatorConfig, action: CreateAggregationJob, round_body: dict[str, Any], task: str | None = None
) -> dict[str, Any]:
    """The Job that aggregates exactly the frozen plant set of one round into a new version.

    `task` (the FederatedModel's) lets the Job leave the task's plant-local parameters out of the aggregate.
    """
    if not action.plants:
        raise ValueError(f"round {action.round_id}: no plants to aggregate")
    command = [
        "plantfed",
        "aggregate",
        f"--store={STORE_MOUNT}",
        f"--round={action.round_id}",
        f"--plants={','.join(action.plants)}",
        *strategy_args(action.strategy, action.privacy),
    ]
    if task:
        command.append(f"--task={task}")
    if action.privacy.mode is not PrivacyMode.OFF:
        command.append(f"--dp-delta={action.privacy.delta!r}")
    labels = {ROUND_KEY: action.round_id, MODEL_KEY: action.model}
    return _job(cfg, action.name, round_body["metadata"]["namespace"], round_body, labels, "aggregate", command)


def init_model_job(
    cfg: OperatorConfig, model: str, task: str, variant: str, weights: InitialWeights, model_body: dict[str, Any]
) -> dict[str, Any]:
    """The Job that writes the lineage's first version (seeded init or a copy of a published version)."""
    command = [
        "plantfed",
        "init-model",
        f"--store={STORE_MOUNT}",
        f"--model={model}",
        f"--task={task}",
        f"--variant={variant}",
    ]
    if weights.from_version is not None:
        command += [f"--from-model={weights.from_version.model}", f"--from-version={weights.from_version.version}"]
    else:
        command.append(f"--seed={weights.seed or 0}")
    return _job(
        cfg,
        init_job_name(model),
        model_body["metadata"]["namespace"],
        model_body,
        {MODEL_KEY: model},
        "init-model",
        command,
    )
