"""One federation for the e2e tests: `helm install` of the hub chart in a namespace of the hub cluster
(exchange and operator as pods, RBAC and Secrets from the chart), and two plants, each with its own
cluster and `helm install` of the plant chart running the agent.

Plant ids are the examples' (stuttgart-press3 on cluster plant-a, lyon-press1 on plant-b), so
examples/round.yaml applies as written apart from its namespace and base version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from hubdeploy import RELEASE, Hub, apply_crds, deploy_hub, wait_hub_ready
from kubernetes import client
from plantside import DATA_SUB_PATH, ChartPlant

from support.kube import wait_for

PLANTS = {"stuttgart-press3": "plant-a", "lyon-press1": "plant-b"}
"""Plant id -> the cluster it runs in."""

_deployed: list[Hub] = []
_plants: list[ChartPlant] = []


def _log_tails(hub: Hub, lines: int = 150, cluster=None, namespace: str | None = None) -> list[tuple[str, str]]:
    """The last lines of every pod's containers in the hub namespace (or a plant's)."""
    cluster, namespace = cluster or hub.cluster, namespace or hub.namespace
    sections = []
    with cluster.api_client() as api:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    for pod in pods:
        for container in pod.spec.containers:
            try:
                text = cluster.logs(namespace, pod.metadata.name, container.name)
            except Exception as exc:  # a pod that never started has no log
                text = f"<no log: {exc}>"
            sections.append((f"{pod.metadata.name}/{container.name}", "\n".join(text.splitlines()[-lines:])))
    return sections


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the hub pods' logs to a failed e2e test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _deployed:
        for title, text in _log_tails(_deployed[-1]):
            report.sections.append((f"log {title}", text))
        for plant in _plants:
            report.sections.append((f"{plant.plant} status", json.dumps(plant.status(), indent=1)))
            for title, text in _log_tails(plant.hub, cluster=plant.cluster, namespace=plant.namespace):
                report.sections.append((f"{plant.plant} log {title}", text))


@dataclass
class Federation:
    hub: Hub
    agents: dict[str, ChartPlant]

    def ready(self, plant: str) -> str | None:
        pp = self.hub.get("plantparticipants", plant)
        return next((c["status"] for c in pp.get("status", {}).get("conditions", []) if c["type"] == "Ready"), None)

    def wait_ready(self, plant: str, status: str = "True", timeout: float = 120) -> None:
        wait_for(lambda: self.ready(plant) == status, timeout=timeout, what=f"{plant} Ready={status}")


def plant_values(plants: Iterable[str] = PLANTS) -> list[dict]:
    return [
        {"name": plant, "labels": {"region": "eu", "line": "press"}, "site": plant.split("-")[0].title(),
         "capacity": {"gpus": 1, "modelVariant": "full"},
         "data": {"hostPath": {"path": "/srv/plantfed/data"}, "subPath": DATA_SUB_PATH, "format": "npz"}}
        for plant in plants
    ]


@contextmanager
def federated(hub_and_plants, tmp_path_factory, plants: dict[str, str], *, mutual_tls: bool = False
              ) -> Iterator[Federation]:
    """A hub released into a fresh namespace of the hub cluster and `plants` (id -> cluster) joined to it, all
    Ready; uninstalled afterwards. `mutual_tls` installs the hub with tls.mutual.enabled and each plant with
    the client certificate the hub chart issued it."""
    hub_cluster = hub_and_plants.hub
    apply_crds(hub_cluster)
    namespace = hub_cluster.create_namespace("plantfed")
    agents: dict[str, ChartPlant] = {}
    hub = None
    try:
        hub = deploy_hub(hub_cluster, namespace, plant_values(plants), mutual_tls=mutual_tls)
        _deployed.append(hub)
        wait_hub_ready(hub)
        for index, (plant, cluster) in enumerate(plants.items()):
            agents[plant] = ChartPlant(hub, plant, hub_and_plants.plants[cluster], index, tmp_path_factory.mktemp(plant))
            _plants.append(agents[plant])
        world = Federation(hub, agents)
        for plant in plants:
            world.wait_ready(plant)
        yield world
    finally:
        for agent in agents.values():
            _plants.remove(agent)
            agent.close()
        if hub is not None:
            _deployed.remove(hub)
        # Also removes the release's ClusterRole and binding; the kept store PVC goes with the namespace.
        hub_cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
        hub_cluster.delete_namespace(namespace)


@pytest.fixture(scope="session")
def federation(hub_and_plants, tmp_path_factory) -> Iterator[Federation]:
    with federated(hub_and_plants, tmp_path_factory, PLANTS) as world:
        yield world


def phase(obj: dict) -> str | None:
    return (obj.get("status") or {}).get("phase")


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_phase(hub: Hub, plural: str, name: str, phases: tuple[str, ...], timeout: float = 420) -> dict:
    """Wait until the object's phase is one of `phases`; fail at once on a round that failed unexpectedly."""

    seen: list[dict] = []

    def probe():
        obj = hub.get(plural, name)
        seen[:] = [obj.get("status") or {}]
        if phase(obj) == "Failed" and "Failed" not in phases:
            pytest.fail(f"{plural}/{name} failed: {condition(obj, 'Succeeded')}")
        return obj if phase(obj) in phases else None

    try:
        return wait_for(probe, timeout=timeout, what=f"{plural}/{name} phase in {phases}",
                        interval=0.5, ignore=(client.exceptions.ApiException,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast status: {json.dumps(seen[-1] if seen else None, indent=1)}") from None


def model_manifest(hub: Hub, name: str, *, suspend: bool, template: dict | None = None, stop: dict | None = None,
                   seed: int = 7) -> dict:
    """A FederatedModel for one test's lineage; `suspend` keeps the campaign from creating rounds."""
    return {
        "apiVersion": "plantfed.io/v1alpha1", "kind": "FederatedModel",
        "metadata": {"name": name, "namespace": hub.namespace},
        "spec": {
            "task": "bearing", "variant": "full", "initialWeights": {"seed": seed}, "cadence": "",
            "suspend": suspend, "stop": stop or {"maxRounds": 1},
            "roundTemplate": template or {"plants": list(PLANTS), "minParticipants": 1, "pod": {"gpus": 1}},
        },
    }


def round_manifest(hub: Hub, name: str, model: str, **spec) -> dict:
    return {
        "apiVersion": "plantfed.io/v1alpha1", "kind": "FederatedRound",
        "metadata": {"name": name, "namespace": hub.namespace},
        "spec": {"modelRef": model, "plants": list(PLANTS), "minParticipants": 2, "deadlineSeconds": 600,
                 "training": {"epochs": 1, "batchSize": 32, "learningRate": 0.05}, **spec},
    }


def create_lineage(hub: Hub, name: str, **kwargs) -> dict:
    """Apply a suspended FederatedModel and wait for its init Job to promote version 1."""
    hub.apply(model_manifest(hub, name, suspend=True, **kwargs))
    return wait_for(lambda: (fm := hub.get("federatedmodels", name)).get("status", {}).get("promotedVersion") and fm,
                    timeout=240, what=f"model {name} initialised", interval=0.5)
