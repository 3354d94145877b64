"""The agent's side of the plant's own cluster: training Jobs, their pods and upload-token Secrets.

Needs, in its namespace only: jobs create/get/list/watch/delete, pods get/list/watch (pods/log get for
the last log line of a failed pod, best effort), secrets create/get/delete.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from plantfed.contract.naming import COMPONENT_LABEL, JOB_NAME_LABELS, ROUND_KEY
from plantfed.plant.agent.naming import COMPONENT, EVALUATE_COMPONENT, selector
from plantfed.plant.agent.observe import TrainingObservation, observe_training

log = logging.getLogger(__name__)


def _raw(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


class LocalCluster:
    def __init__(self, api: client.ApiClient, namespace: str, plant: str) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.plant = plant
        self._last_lines: dict[str, str] = {}
        self._logs_forbidden = False

    def _jobs(self) -> list[dict[str, Any]]:
        return _raw(
            self.batch.list_namespaced_job(self.namespace, label_selector=selector(self.plant), _preload_content=False)
        )["items"]

    def _pods(self) -> list[dict[str, Any]]:
        return _raw(
            self.core.list_namespaced_pod(self.namespace, label_selector=selector(self.plant), _preload_content=False)
        )["items"]

    def _last_line(self, pod: dict[str, Any]) -> str:
        """Last log line of a failed pod, read once per pod; empty when pods/log is not granted."""
        uid = pod["metadata"]["uid"]
        if uid in self._last_lines or self._logs_forbidden:
            return self._last_lines.get(uid, "")
        try:
            text = self.core.read_namespaced_pod_log(
                pod["metadata"]["name"], self.namespace, container="train", tail_lines=20
            )
        except ApiException as exc:
            if exc.status == 403:
                log.warning(
                    "no pods/log permission in %s: failure messages will lack the last log line", self.namespace
                )
                self._logs_forbidden = True
            return ""
        lines = [line for line in (text or "").splitlines() if line.strip()]
        self._last_lines[uid] = lines[-1] if lines else ""
        return self._last_lines[uid]

    def trainings(self) -> dict[str, TrainingObservation]:
        """Round name → observation of its training Job, for every training Job of this plant in the namespace."""
        return self.jobs()[COMPONENT]

    def jobs(self) -> dict[str, dict[str, TrainingObservation]]:
        """Component ("train", "evaluate") → round name → observation of that Job, from one list of each kind."""
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in self._pods():
            pod_labels = pod["metadata"].get("labels") or {}
            job = next((pod_labels[key] for key in JOB_NAME_LABELS if pod_labels.get(key)), None)
            if job:
                pods_by_job.setdefault(job, []).append(pod)
        out: dict[str, dict[str, TrainingObservation]] = {COMPONENT: {}, EVALUATE_COMPONENT: {}}
        for job in self._jobs():
            name = job["metadata"]["name"]
            round_name = (job["metadata"].get("annotations") or {}).get(ROUND_KEY)
            kind = (job["metadata"].get("labels") or {}).get(COMPONENT_LABEL, COMPONENT)
            if not round_name or job["metadata"].get("deletionTimestamp") or kind not in out:
                continue
            pods = pods_by_job.get(name, [])
            lines = {
                p["metadata"]["name"]: self._last_line(p)
                for p in pods
                if (p.get("status") or {}).get("phase") == "Failed"
            }
            out[kind][round_name] = observe_training(job, pods, lines)
        return out

    def create_job(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job, or return the existing one of that name (409: created by an earlier pass)."""
        try:
            # The client serialises a plain dict as well; its annotation names only the V1Job model.
            created = self.batch.create_namespaced_job(self.namespace, job, _preload_content=False)  # type: ignore[arg-type]
            return _raw(created), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return _raw(
            self.batch.read_namespaced_job(job["metadata"]["name"], self.namespace, _preload_content=False)
        ), False

    def ensure_secret(self, secret: dict[str, Any]) -> None:
        """Create the Job's token Secret; replace a leftover owned by an earlier Job of the same name."""
        name = secret["metadata"]["name"]
        owner = secret["metadata"]["ownerReferences"][0]["uid"]
        try:
            self.core.create_namespaced_secret(self.namespace, secret)  # type: ignore[arg-type]  # a dict body, as above
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = self.core.read_namespaced_secret(name, self.namespace)
        refs = (existing.metadata.owner_references if existing.metadata else None) or ()
        if any(ref.uid == owner for ref in refs):
            return
        self.core.delete_namespaced_secret(name, self.namespace)
        self.core.create_namespaced_secret(self.namespace, secret)  # type: ignore[arg-type]  # a dict body, as above

    def delete_job(self, name: str) -> None:
        """Delete a Job and its pods (and, through the owner reference, its token Secret)."""
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
