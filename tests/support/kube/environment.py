"""Clusters with fake GPU nodes as the pytest fixtures hand them out.

``PLANTFED_TEST_KUBECONFIG`` (one kubeconfig path, or several separated by ``:``) points the
suite at existing clusters instead of starting control planes; fake nodes are still added.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .cluster import KubeCluster
from .controlplane import ControlPlane, start_many
from .existing import ExistingCluster
from .noderunner import NodeRunner
from .nodes import NodeSpec
from .testbin import go_available

KUBECONFIG_ENV = "PLANTFED_TEST_KUBECONFIG"


@dataclass
class ClusterWithNodes:
    """A cluster plus the node runner that runs its pods; what the fixtures return."""

    name: str
    cluster: KubeCluster
    nodes: NodeRunner
    _namespaces: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes.nodes]

    def api_client(self) -> client.ApiClient:
        return self.cluster.api_client()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, input=input, check=check)

    def helm(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.helm(*args, input=input, check=check)

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        return self.nodes.logs(namespace, pod, container, previous)

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        return self.cluster.service_account_kubeconfig(namespace, name)

    def create_namespace(self, hint: str = "test") -> str:
        """A fresh namespace named after ``hint``; removed by ``delete_namespaces()``."""
        slug = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40].strip("-") or "test"
        name = f"{slug}-{secrets.token_hex(3)}"
        with self.api_client() as api:
            client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
        self._namespaces.append(name)
        return name

    def delete_namespace(self, name: str) -> None:
        """Start deleting a namespace (does not wait for its finalization)."""
        with self.api_client() as api:
            try:
                client.CoreV1Api(api).delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        if name in self._namespaces:
            self._namespaces.remove(name)

    def stop(self) -> None:
        self.nodes.stop(deregister=not isinstance(self.cluster, ControlPlane))
        self.cluster.stop()


@dataclass
class HubAndPlants:
    """Independent clusters: ``hub`` and one per plant (``plants["plant-a"]``...)."""

    hub: ClusterWithNodes
    plants: dict[str, ClusterWithNodes]

    def __iter__(self) -> Iterator[ClusterWithNodes]:
        yield self.hub
        yield from self.plants.values()

    def stop(self) -> None:
        for member in self:
            member.stop()


def skip_reason() -> str | None:
    """Why control-plane tests cannot run here, or None when they can."""
    if os.environ.get(KUBECONFIG_ENV):
        return None
    if not go_available():
        return f"Go is not installed (needed by `make testbin`) and {KUBECONFIG_ENV} is unset"
    return None


def require_control_planes() -> None:
    """Skip the calling test when control planes cannot run here (fail instead under CI)."""
    reason = skip_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"control-plane tests cannot run in CI: {reason}")
    pytest.skip(reason)


def _existing_kubeconfigs() -> list[Path]:
    return [Path(p) for p in os.environ.get(KUBECONFIG_ENV, "").split(os.pathsep) if p]


def plant_nodes(plant: str, count: int = 1, gpus: int = 1) -> list[NodeSpec]:
    return [NodeSpec.for_plant(plant, index=i, gpus=gpus) for i in range(count)]


def start_clusters(
    workdir: Path, layout: Sequence[tuple[str, Sequence[NodeSpec]]], audit: Collection[str] = ()
) -> list[ClusterWithNodes]:
    """Start (or attach to) one cluster per ``(name, nodes)`` entry, each with a node runner.

    Clusters named in ``audit`` keep an API server audit log (only those started here; an existing
    cluster's ``audit_log`` is None).
    """
    existing = _existing_kubeconfigs()
    names = [name for name, _ in layout]
    if existing:
        if len(existing) < len(layout):
            raise LookupError(
                f"{KUBECONFIG_ENV} names {len(existing)} cluster(s); this needs {len(layout)} "
                f"independent ones ({', '.join(names)})"
            )
        clusters: list[KubeCluster] = [
            ExistingCluster(path, name, workdir / name) for path, name in zip(existing, names, strict=False)
        ]
    else:
        clusters = list(start_many(workdir, names, audit=audit))
    started: list[ClusterWithNodes] = []
    try:
        for (name, specs), cluster in zip(layout, clusters, strict=True):
            runner = NodeRunner(cluster, specs, cluster.directory / "nodes").start()
            started.append(ClusterWithNodes(name, cluster, runner))
    except BaseException:
        for member in started:
            member.stop()
        for cluster in clusters[len(started) :]:
            cluster.stop()
        raise
    return started
