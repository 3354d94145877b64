"""The training Job and its upload-token Secret as manifests (plain dicts, camelCase, what the API takes).

Pure, so what a plant runs is reviewable in tests: the command is explicit (`plantfed train ...`), the pod
has no Kubernetes API token, the data volume is read-only, and the exchange token lives only in a Secret
owned by the Job (garbage-collected with it) - never in a CR status or the pod spec. Under mutual TLS the
plant's client-certificate Secret (`--client-cert-secret`) is mounted by name, its key never copied.
"""

from __future__ import annotations

from typing import Any

from plantfed.contract.naming import MODEL_KEY, ROUND_KEY, ROUND_UID_KEY
from plantfed.plant.agent.config import AgentConfig
from plantfed.plant.agent.decide import TrainingSpec
from plantfed.plant.agent.naming import COMPONENT, EVALUATE_COMPONENT, labels, token_secret_name

GPU_RESOURCE = "nvidia.com/gpu"
DATA_DIR = "/var/lib/plantfed/data"
STATE_DIR = "/var/lib/plantfed/cache"
CREDENTIALS_DIR = "/var/run/plantfed/exchange"
CLIENT_TLS_DIR = "/var/run/plantfed/client-tls"
UID = 10001


def training_args(spec: TrainingSpec) -> list[str]:
    """The round's hyper-parameters as `plantfed train` flags (also what `plantfed simulate` plants run)."""
    return [
        "--epochs",
        str(spec.epochs),
        "--batch-size",
        str(spec.batch_size),
        "--learning-rate",
        repr(spec.learning_rate),
        "--optimizer",
        spec.optimizer,
        "--sgd-momentum",
        repr(spec.momentum),
        "--fedprox-mu",
        repr(spec.fedprox_mu),
        "--codec",
        spec.codec,
        "--clip-norm",
        repr(spec.clip_norm),
        "--noise-multiplier",
        repr(spec.noise_multiplier),
        "--dp-mode",
        spec.dp_mode,
    ]


def train_command(spec: TrainingSpec, cfg: AgentConfig) -> list[str]:
    """`plantfed train ...` for a training Job, `plantfed evaluate --round ...` for an evaluation Job."""
    cmd = [
        "plantfed",
        "evaluate" if spec.purpose == "evaluate" else "train",
        "--exchange",
        cfg.exchange,
        "--plant",
        cfg.plant,
        "--token-file",
        f"{CREDENTIALS_DIR}/token",
        "--round",
        spec.round,
        "--task",
        spec.task,
        "--variant",
        spec.variant,
        "--data",
        DATA_DIR,
        "--state-dir",
        STATE_DIR,
    ]
    if spec.purpose != "evaluate":
        cmd += training_args(spec)
    cmd += ["--device", "auto" if spec.gpus > 0 else "cpu"]
    if cfg.ca_file is not None:
        cmd += ["--ca-file", f"{CREDENTIALS_DIR}/ca.crt"]
    if cfg.client_cert_secret is not None:
        cmd += ["--client-cert", f"{CLIENT_TLS_DIR}/tls.crt", "--client-key", f"{CLIENT_TLS_DIR}/tls.key"]
    if cfg.plant_index is not None:
        cmd += ["--plant-index", str(cfg.plant_index)]
    if cfg.num_plants is not None:
        cmd += ["--num-plants", str(cfg.num_plants)]
    for option in cfg.data_options:
        cmd += ["--data-option", option]
    return cmd


def node_selector(spec: TrainingSpec, cfg: AgentConfig) -> dict[str, str]:
    """The round's selector with the plant's on top: the plant knows its own node pools."""
    return {**spec.node_selector, **cfg.node_selector}


def tolerations(spec: TrainingSpec, cfg: AgentConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for toleration in (*cfg.tolerations, *spec.tolerations):
        if dict(toleration) not in out:
            out.append(dict(toleration))
    return out


def _volumes(spec: TrainingSpec, cfg: AgentConfig) -> list[dict[str, Any]]:
    if cfg.data_claim is not None:
        data: dict[str, Any] = {"persistentVolumeClaim": {"claimName": cfg.data_claim, "readOnly": True}}
    else:
        data = {"hostPath": {"path": cfg.data_host_path, "type": "Directory"}}
    if cfg.cache_claim is not None:
        cache: dict[str, Any] = {"persistentVolumeClaim": {"claimName": cfg.cache_claim}}
    else:
        cache = {"hostPath": {"path": str(cfg.cache_dir), "type": "DirectoryOrCreate"}}
    items = [{"key": "token", "path": "token"}] + ([{"key": "ca.crt", "path": "ca.crt"}] if cfg.ca_file else [])
    volumes = [
        {"name": "data", **data},
        {"name": "cache", **cache},
        {
            "name": "exchange",
            "secret": {"secretName": token_secret_name(spec.job_name), "defaultMode": 0o440, "items": items},
        },
        {"name": "tmp", "emptyDir": {}},
    ]
    if cfg.client_cert_secret is not None:
        # The plant's own Secret, mounted rather than copied: its key never lands in another object.
        volumes.append(
            {
                "name": "client-tls",
                "secret": {
                    "secretName": cfg.client_cert_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
                },
            }
        )
    return volumes


def training_job(spec: TrainingSpec, cfg: AgentConfig) -> dict[str, Any]:
    meta_labels = labels(cfg.plant, EVALUATE_COMPONENT if spec.purpose == "evaluate" else COMPONENT)
    resources: dict[str, Any] = {
        "requests": {"cpu": spec.cpu, "memory": spec.memory},
        "limits": {"memory": spec.memory},
    }
    if spec.gpus > 0:
        resources["requests"][GPU_RESOURCE] = str(spec.gpus)
        resources["limits"][GPU_RESOURCE] = str(spec.gpus)
    data_mount: dict[str, Any] = {"name": "data", "mountPath": DATA_DIR, "readOnly": True}
    if spec.data_sub_path:
        data_mount["subPath"] = spec.data_sub_path
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "train",
                "image": cfg.image,
                "command": train_command(spec, cfg),
                "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "HOME", "value": "/tmp"}],
                "resources": resources,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    data_mount,
                    {"name": "cache", "mountPath": STATE_DIR},
                    {"name": "exchange", "mountPath": CREDENTIALS_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    *(
                        [{"name": "client-tls", "mountPath": CLIENT_TLS_DIR, "readOnly": True}]
                        if cfg.client_cert_secret is not None
                        else []
                    ),
                ],
            }
        ],
        "volumes": _volumes(spec, cfg),
    }
    if cfg.training_service_account:
        pod_spec["serviceAccountName"] = cfg.training_service_account
    if selector := node_selector(spec, cfg):
        pod_spec["nodeSelector"] = selector
    if tols := tolerations(spec, cfg):
        pod_spec["tolerations"] = tols
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": spec.job_name,
            "namespace": cfg.namespace,
            "labels": meta_labels,
            "annotations": {
                ROUND_KEY: spec.round,
                ROUND_UID_KEY: spec.round_uid,
                MODEL_KEY: spec.model,
            },
        },
        "spec": {
            "backoffLimit": cfg.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            "ttlSecondsAfterFinished": cfg.job_ttl_seconds,
            "template": {
                "metadata": {"labels": meta_labels, "annotations": {ROUND_KEY: spec.round}},
                "spec": pod_spec,
            },
        },
    }


def token_secret(
    plant: str,
    namespace: str,
    job_name: str,
    job_uid: str,
    round_name: str,
    token: str,
    ca_cert: str | None,
) -> dict[str, Any]:
    """The Job's upload credential, owned by the Job so Kubernetes deletes it with the Job."""
    data = {"token": token}
    if ca_cert is not None:
        data["ca.crt"] = ca_cert
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": token_secret_name(job_name),
            "namespace": namespace,
            "labels": labels(plant),
            "annotations": {ROUND_KEY: round_name},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job_name,
                    "uid": job_uid,
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "stringData": data,
    }
