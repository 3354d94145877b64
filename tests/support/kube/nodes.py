"""Fake nodes: Node objects with GPU capacity, kept Ready by Lease and status heartbeats."""

from __future__ import annotations

import datetime
import platform
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

GPU_RESOURCE = "nvidia.com/gpu"
PLANT_LABEL = "plantfed.dev/plant"
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.37.2"
_SMP = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class NodeSpec:
    """A node to register. ``gpus`` becomes ``nvidia.com/gpu`` capacity."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    gpus: int = 0
    cpu: str = "8"
    memory: str = "32Gi"
    pods: int = 110
    taints: tuple[Mapping[str, str], ...] = ()

    @classmethod
    def for_plant(cls, plant: str, index: int = 0, gpus: int = 1, **extra: Any) -> NodeSpec:
        """A GPU node of ``plant``, labelled ``plantfed.dev/plant=<plant>``."""
        labels = {PLANT_LABEL: plant, "nvidia.com/gpu.present": "true"}
        return cls(name=f"{plant}-gpu-{index}", labels=labels, gpus=gpus, **extra)

    def capacity(self) -> dict[str, str]:
        capacity = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": "100Gi",
        }
        if self.gpus:
            capacity[GPU_RESOURCE] = str(self.gpus)
        return capacity


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(heartbeat: str, since: str) -> list[dict[str, str]]:
    healthy = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return [
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": reason,
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": since,
        }
        for kind, status, reason in healthy
    ]


class NodeHeart:
    """Registers one node and renews its Lease and Ready condition."""

    def __init__(
        self, core: client.CoreV1Api, leases: client.CoordinationV1Api, spec: NodeSpec, kubelet_port: int
    ) -> None:
        self.core = core
        self.leases = leases
        self.spec = spec
        self.kubelet_port = kubelet_port
        self._since = _stamp(_now())

    def register(self) -> None:
        spec = self.spec
        labels = {
            "kubernetes.io/hostname": spec.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "plantfed.dev/fake-node": "true",
            **spec.labels,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": spec.name, "labels": labels},
            "spec": {"taints": [dict(t) for t in spec.taints]} if spec.taints else {},
        }
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.patch_node(spec.name, body, _content_type=_SMP)
        self.heartbeat(full=True)

    def heartbeat(self, full: bool = False) -> None:
        """Renew the Lease (every beat) and the node status (``full``, less often)."""
        if full:
            self.core.patch_node_status(self.spec.name, {"status": self._status()}, _content_type=_SMP)
        self._renew_lease()

    def _status(self) -> dict[str, Any]:
        capacity = self.spec.capacity()
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": _conditions(_stamp(_now()), self._since),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, self.spec.name).hex,
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, self.spec.name)),
                "bootID": str(uuid.uuid4()),
                "kernelVersion": platform.release(),
                "osImage": "plantfed fake node",
                "containerRuntimeVersion": "fakenode://1",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _renew_lease(self) -> None:
        name = self.spec.name
        now = _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
        }
        try:
            self.leases.patch_namespaced_lease(name, "kube-node-lease", body, _content_type=_SMP)
        except ApiException as exc:
            if exc.status != 404:
                raise
            node = self.core.read_node(name)
            body["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid}
            ]
            self.leases.create_namespaced_lease("kube-node-lease", body)

    def deregister(self) -> None:
        try:
            self.core.delete_node(self.spec.name)
        except ApiException as exc:
            if exc.status != 404:
                raise
