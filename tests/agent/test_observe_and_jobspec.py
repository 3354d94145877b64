"""Reading Jobs/pods into actionable messages, and the training Job/Secret manifests, without a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_objects import NOW, fm, fr, pp

from plantfed.contract.api.round import RoundEvaluation
from plantfed.contract.naming import ROUND_KEY, ROUND_UID_KEY
from plantfed.plant.agent.config import AgentConfig, ConfigError, parse_node_selector, parse_tolerations
from plantfed.plant.agent.decide import evaluation_spec, training_spec
from plantfed.plant.agent.jobspec import token_secret, training_job
from plantfed.plant.agent.naming import training_job_name
from plantfed.plant.agent.observe import TrainingPhase, observe_training


def job(*conditions: tuple[str, str, str]) -> dict:
    return {
        "metadata": {"name": "train-r1", "uid": "u1", "annotations": {ROUND_KEY: "r1"}},
        "status": {"conditions": [{"type": t, "status": "True", "reason": r, "message": m} for t, r, m in conditions]},
    }


def pod(name: str, phase: str, *, created: str = "2026-11-28T12:00:00Z", **status) -> dict:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": "plant-a-gpu-0"},
        "status": {"phase": phase, **status},
    }


UNSCHEDULABLE: dict[str, Any] = {
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        }
    ]
}


def terminated(code: int, reason: str = "Error") -> dict:
    return {"containerStatuses": [{"name": "train", "state": {"terminated": {"exitCode": code, "reason": reason}}}]}


@pytest.mark.parametrize(
    ("the_job", "pods", "logs", "phase", "summary"),
    [
        (job(), [], {}, TrainingPhase.WAITING, "PodPending: waiting for the Job controller to create the training pod"),
        (
            job(),
            [pod("p1", "Pending", **UNSCHEDULABLE)],
            {},
            TrainingPhase.WAITING,
            "Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        ),
        (
            job(),
            [
                pod(
                    "p1",
                    "Pending",
                    containerStatuses=[
                        {
                            "name": "train",
                            "state": {
                                "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}
                            },
                        }
                    ],
                )
            ],
            {},
            TrainingPhase.WAITING,
            'ImagePullBackOff: Back-off pulling image "x"',
        ),
        (
            job(),
            [pod("p1", "Pending", reason="FailedMount", message='secret "train-r1-token" not found')],
            {},
            TrainingPhase.WAITING,
            'FailedMount: secret "train-r1-token" not found',
        ),
        (job(), [pod("p1", "Running")], {}, TrainingPhase.RUNNING, "Running: training on node plant-a-gpu-0"),
        (
            job(),
            [pod("p1", "Failed", **terminated(1)), pod("p2", "Running", created="2026-11-28T12:01:00Z")],
            {"p1": "RuntimeError: CUDA error"},
            TrainingPhase.RUNNING,
            "Running: training on node plant-a-gpu-0; "
            "attempt 1 failed (exit code 1 (Error): RuntimeError: CUDA error), retrying",
        ),
        (
            job(("Complete", "", "")),
            [pod("p1", "Succeeded")],
            {},
            TrainingPhase.SUCCEEDED,
            "Uploaded: training Job succeeded; update uploaded",
        ),
        (
            job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
            [pod("p1", "Failed", **terminated(137, "OOMKilled"))],
            {},
            TrainingPhase.FAILED,
            "BackoffLimitExceeded: Job has reached the specified backoff limit; exit code 137 (OOMKilled)",
        ),
        (
            job(("Failed", "BackoffLimitExceeded", "")),
            [pod("p1", "Failed", **terminated(1))],
            {"p1": "plantfed.plant.runtime.RoundNotForThisPlant: round r1 is closed; nothing to train"},
            TrainingPhase.FAILED,
            "BackoffLimitExceeded: exit code 1 (Error): plantfed.plant.runtime.RoundNotForThisPlant: round r1 is "
            "closed; nothing to train",
        ),
    ],
)
def test_observation_says_why_in_words_a_plant_engineer_can_act_on(the_job, pods, logs, phase, summary):
    seen = observe_training(the_job, pods, logs)
    assert (seen.round, seen.phase, seen.summary()) == ("r1", phase, summary)


def test_long_failure_output_is_capped_to_what_the_crd_accepts():
    seen = observe_training(
        job(("Failed", "BackoffLimitExceeded", "")), [pod("p1", "Failed", **terminated(1))], {"p1": "x" * 5000}
    )
    assert len(seen.summary()) <= 1012


def config(tmp_path: Path, **kw) -> AgentConfig:
    base: dict[str, Any] = {
        "plant": "plant-a",
        "hub_kubeconfig": tmp_path / "hub",
        "hub_namespace": "plantfed-system",
        "exchange": "fl-hub:8443",
        "token_file": tmp_path / "token",
        "namespace": "plantfed",
        "cache_dir": Path("/var/lib/plantfed/cache"),
        "cache_claim": "plantfed-cache",
        "data_claim": "vibration",
        "ca_file": tmp_path / "ca.crt",
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        "image": "ghcr.io/plantfed/plantfed:0.1.0",
        "training_service_account": "plantfed-train",
    }
    base.update(kw)
    return AgentConfig(**base)


def test_training_job_manifest(tmp_path):
    r = fr(
        "r1",
        {"plant-a": "Assigned"},
        uid="u-r1",
        pod={
            "gpus": 1,
            "nodeSelector": {"zone": "hall-2"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        },
    )
    spec = training_spec(r, fm(), pp(sub_path="line-3"), 1, NOW)
    manifest = training_job(spec, config(tmp_path))
    assert manifest["metadata"]["name"] == "train-r1"
    assert manifest["metadata"]["annotations"][ROUND_UID_KEY] == "u-r1"
    job_spec = manifest["spec"]
    assert job_spec["backoffLimit"] == 1 and job_spec["ttlSecondsAfterFinished"] == 3600
    assert job_spec["activeDeadlineSeconds"] == 3600
    pod_spec = job_spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["automountServiceAccountToken"] is False and pod_spec["serviceAccountName"] == "plantfed-train"
    assert pod_spec["nodeSelector"] == {"zone": "hall-2", "nvidia.com/gpu.present": "true"}
    assert pod_spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Exists"},
    ]
    (container,) = pod_spec["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cmd = container["command"]
    assert cmd[:2] == ["plantfed", "train"]
    flags = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert flags["--round"] == "r1" and flags["--plant"] == "plant-a" and flags["--exchange"] == "fl-hub:8443"
    assert flags["--token-file"] == "/var/run/plantfed/exchange/token"
    assert flags["--ca-file"] == "/var/run/plantfed/exchange/ca.crt"
    assert flags["--state-dir"] == "/var/lib/plantfed/cache"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"] == {
        "name": "data",
        "mountPath": "/var/lib/plantfed/data",
        "readOnly": True,
        "subPath": "line-3",
    }
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "vibration", "readOnly": True}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "plantfed-cache"}
    assert volumes["exchange"]["secret"]["secretName"] == "train-r1-token"
    assert "token" not in str(manifest["spec"]["template"]["metadata"])


def test_evaluation_job_manifest_scores_the_candidate_on_the_same_data_without_a_gpu(tmp_path):
    r = fr(
        "r1",
        {"plant-a": "Uploaded"},
        uid="u-r1",
        phase="Evaluating",
        pod={"gpus": 1, "nodeSelector": {"zone": "hall-2"}},
    )
    r.status.evaluation = RoundEvaluation(version=2, start_time=NOW, expected=1)
    manifest = training_job(evaluation_spec(r, fm(), pp(sub_path="line-3"), NOW), config(tmp_path))
    assert manifest["metadata"]["name"] == "eval-r1"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/component"] == "evaluate"
    pod_spec = manifest["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"zone": "hall-2", "nvidia.com/gpu.present": "true"}, "next to the data"
    (container,) = pod_spec["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    cmd = container["command"]
    assert cmd[:2] == ["plantfed", "evaluate"]
    flags = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert flags["--round"] == "r1" and flags["--device"] == "cpu" and "--epochs" not in flags
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"]["readOnly"] is True and mounts["data"]["subPath"] == "line-3"
    assert pod_spec["volumes"][2]["secret"]["secretName"] == "eval-r1-token"


@pytest.mark.parametrize("purpose", ["train", "evaluate"])
def test_under_mutual_tls_the_plants_certificate_secret_is_mounted_into_training_and_evaluation_pods(tmp_path, purpose):
    r = fr("r1", {"plant-a": "Uploaded" if purpose == "evaluate" else "Assigned"}, uid="u-r1")
    r.status.evaluation = RoundEvaluation(version=2, start_time=NOW, expected=1)
    spec = evaluation_spec(r, fm(), pp(), NOW) if purpose == "evaluate" else training_spec(r, fm(), pp(), 1, NOW)
    cfg = config(
        tmp_path,
        client_cert=tmp_path / "tls.crt",
        client_key=tmp_path / "tls.key",
        client_cert_secret="plantfed-plant-a-tls",
    )
    pod_spec = training_job(spec, cfg)["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    cmd = container["command"]
    assert cmd[1] == purpose
    flags = dict(zip(cmd[2::2], cmd[3::2], strict=True))
    assert flags["--client-cert"] == "/var/run/plantfed/client-tls/tls.crt"
    assert flags["--client-key"] == "/var/run/plantfed/client-tls/tls.key"
    assert flags["--ca-file"] == "/var/run/plantfed/exchange/ca.crt"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/plantfed/client-tls")
    volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
    assert mount["readOnly"] is True
    assert volume["secret"] == {
        "secretName": "plantfed-plant-a-tls",
        "defaultMode": 0o440,
        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
    }

    plain = training_job(spec, config(tmp_path))["spec"]["template"]["spec"]
    assert "--client-cert" not in plain["containers"][0]["command"]
    assert [v["name"] for v in plain["volumes"]] == ["data", "cache", "exchange", "tmp"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"client_cert_secret": "s"}, "--client-cert, --client-key and --client-cert-secret go together"),
        ({"client_cert": Path("c"), "client_key": Path("k")}, "go together"),
        (
            {"client_cert": Path("c"), "client_key": Path("k"), "client_cert_secret": "s", "ca_file": None},
            "--client-cert needs TLS",
        ),
    ],
    ids=["secret-alone", "no-secret-for-the-jobs", "without-tls"],
)
def test_an_incomplete_client_certificate_setting_is_refused(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, **kw)


def test_token_secret_is_owned_by_its_job():
    secret = token_secret("plant-a", "plantfed", "train-r1", "job-uid", "r1", "s3cret", "CA")
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "train-r1", "job-uid")
    assert secret["stringData"] == {"token": "s3cret", "ca.crt": "CA"}


def test_job_names_fit_the_pod_label_limit_and_stay_distinct():
    a, b = training_job_name("m" * 200 + "-r1"), training_job_name("m" * 200 + "-r2")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert training_job_name("bearing-r7") == "train-bearing-r7"


def test_flags_in_the_charts_formats_are_parsed_and_bad_ones_named():
    assert parse_node_selector("a=1,nvidia.com/gpu.present=true") == {"a": "1", "nvidia.com/gpu.present": "true"}
    assert parse_tolerations('[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]') == (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )
    with pytest.raises(ConfigError, match="--node-selector"):
        parse_node_selector("novalue")
    with pytest.raises(ConfigError, match="--tolerations-json"):
        parse_tolerations('[{"operator": "Sometimes"}]')
    with pytest.raises(ConfigError, match="exactly one of --data-claim and --data-host-path"):
        AgentConfig(
            plant="p",
            hub_kubeconfig=Path("k"),
            hub_namespace="n",
            exchange="e",
            token_file=Path("t"),
            namespace="n",
            cache_dir=Path("c"),
        )
