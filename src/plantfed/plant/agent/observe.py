"""Read a training Job and its pods (as the API server returns them, camelCase JSON) into one observation.

The point is the message: a plant engineer reading `kubectl get pp` on the hub should learn *why* the
plant is not training ("Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", "exit
code 137 (OOMKilled)") without access to the plant's cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from plantfed.contract.naming import ROUND_KEY, ROUND_UID_KEY

MESSAGE_LIMIT = 1000
"""Assignment messages are capped at 1012 characters by the CRD; keep the tail of long ones out."""

_WAITING_REASONS_THAT_STICK = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)


class TrainingPhase(str, Enum):
    WAITING = "Waiting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (TrainingPhase.SUCCEEDED, TrainingPhase.FAILED)


@dataclass(frozen=True)
class TrainingObservation:
    """Where one round's training Job is, in the plant's cluster."""

    job_name: str
    round: str
    phase: TrainingPhase
    reason: str = ""
    message: str = ""
    job_uid: str = ""
    round_uid: str = ""

    @property
    def active(self) -> bool:
        return not self.phase.finished

    def summary(self) -> str:
        text = f"{self.reason}: {self.message}" if self.reason and self.message else self.reason or self.message
        return clip(text)


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _true(obj: Mapping[str, Any], *types: str) -> Mapping[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") in types and c.get("status") == "True"), None)


def _newest(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]), default=None)


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
            return state["terminated"]
    return None


def pod_failure(pod: Mapping[str, Any], last_log_line: str = "") -> str:
    """ "exit code 1 (Error): <last log line>" for a failed training pod."""
    term = _terminated(pod)
    status = pod.get("status") or {}
    if term is None:
        detail = ": ".join(x for x in (status.get("reason"), status.get("message")) if x)
        return detail or "pod failed"
    text = f"exit code {term.get('exitCode')}"
    if term.get("reason"):
        text += f" ({term['reason']})"
    tail = (term.get("message") or last_log_line).strip()
    return f"{text}: {tail}" if tail else text


def _pending(pod: Mapping[str, Any]) -> tuple[str, str]:
    """Why a pod has not started: scheduling first, then the container's waiting reason."""
    for cond in _conditions(pod):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message") or "pod cannot be scheduled"
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _WAITING_REASONS_THAT_STICK:
            return waiting["reason"], waiting.get("message") or ""
    if status.get("message"):
        return status.get("reason") or "PodPending", status["message"]
    node = (pod.get("spec") or {}).get("nodeName")
    return "ContainerCreating", f"starting on node {node}" if node else "waiting to be scheduled"


def observe_training(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    last_log_lines: Mapping[str, str] | None = None,
) -> TrainingObservation:
    """The Job's phase and the reason a user can act on; `last_log_lines` maps pod name → its last log line."""
    logs = last_log_lines or {}
    meta = job["metadata"]
    name, uid = meta["name"], meta.get("uid", "")
    annotations = meta.get("annotations") or {}
    round_name, round_uid = annotations.get(ROUND_KEY, ""), annotations.get(ROUND_UID_KEY, "")

    def seen(phase: TrainingPhase, reason: str, message: str) -> TrainingObservation:
        return TrainingObservation(name, round_name, phase, reason, message, uid, round_uid)

    if _true(job, "Complete", "SuccessCriteriaMet"):
        return seen(TrainingPhase.SUCCEEDED, "Uploaded", "training Job succeeded; update uploaded")
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    cond = _true(job, "Failed", "FailureTarget")
    if cond is not None:
        last = _newest(failed)
        detail = pod_failure(last, logs.get(last["metadata"]["name"], "")) if last is not None else ""
        message = "; ".join(x for x in (cond.get("message"), detail) if x)
        return seen(TrainingPhase.FAILED, cond.get("reason") or "JobFailed", clip(message))
    live = [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") in ("Pending", "Running", None)
        and not p["metadata"].get("deletionTimestamp")
    ]
    pod = _newest(live)
    retry = ""
    if failed:
        last = _newest(failed)
        assert last is not None
        retry = (
            f"; attempt {len(failed)} failed ({pod_failure(last, logs.get(last['metadata']['name'], ''))}), retrying"
        )
    if pod is None:
        return seen(
            TrainingPhase.WAITING,
            "PodPending",
            clip("waiting for the Job controller to create the training pod" + retry),
        )
    if (pod.get("status") or {}).get("phase") == "Running":
        node = (pod.get("spec") or {}).get("nodeName") or "?"
        return seen(TrainingPhase.RUNNING, "Running", clip(f"training on node {node}{retry}"))
    reason, message = _pending(pod)
    return seen(TrainingPhase.WAITING, reason, clip(message + retry))
