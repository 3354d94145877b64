"""One federation for the e2e tests: `helm install` of the hub chart in a namespace of the hub cluster
(exchange and operator as pods, RBAC and Secrets from the chart), and two plants, each with its own
cluster and `helm install` of the plant chart running the agent.

Plant ids are the examples' (stuttgart-press3 on cluster plant-a, lyon-press1 on plant-b), so
examples/round.yaml applies as written apart from its namespace and base version. What the tests use besides
these fixtures is in support.federation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client

from support.crds import apply_crds
from support.federation.hubdeploy import RELEASE, Hub, deploy_hub, wait_hub_ready
from support.federation.plantside import DATA_SUB_PATH, ChartPlant
from support.federation.rounds import PLANTS
from support.kube import wait_for

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


def plant_values() -> list[dict]:
    return [
        {"name": plant, "labels": {"region": "eu", "line": "press"}, "site": plant.split("-")[0].title(),
         "capacity": {"gpus": 1, "modelVariant": "full"},
         "data": {"hostPath": {"path": "/srv/plantfed/data"}, "subPath": DATA_SUB_PATH, "format": "npz"}}
        for plant in PLANTS
    ]


@pytest.fixture(scope="session")
def federation(hub_and_plants, tmp_path_factory) -> Iterator[Federation]:
    hub_cluster = hub_and_plants.hub
    apply_crds(hub_cluster)
    namespace = hub_cluster.create_namespace("plantfed")
    agents: dict[str, ChartPlant] = {}
    try:
        hub = deploy_hub(hub_cluster, namespace, plant_values())
        _deployed.append(hub)
        wait_hub_ready(hub)
        for index, (plant, cluster) in enumerate(PLANTS.items()):
            agents[plant] = ChartPlant(hub, plant, hub_and_plants.plants[cluster], index, tmp_path_factory.mktemp(plant))
            _plants.append(agents[plant])
        world = Federation(hub, agents)
        for plant in PLANTS:
            world.wait_ready(plant)
        yield world
    finally:
        for agent in agents.values():
            agent.close()
        # Also removes the release's ClusterRole and binding; the kept store PVC goes with the namespace.
        hub_cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
        hub_cluster.delete_namespace(namespace)
