"""One federation for the e2e tests: `helm install` of the hub chart in a namespace of the hub cluster
(exchange and operator as pods, RBAC and Secrets from the chart), and two plants, each with its own
cluster and `helm install` of the plant chart running the agent.

Plant ids are the examples' (stuttgart-press3 on cluster plant-a, lyon-press1 on plant-b), so
examples/round.yaml applies as written apart from its namespace and base version. What the tests use besides
these fixtures is in support.federation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import pytest
from kubernetes import client
from support.crds import apply_crds
from support.federation import hubdeploy
from support.federation.hubdeploy import RELEASE, Hub, deploy_hub, wait_hub_ready
from support.federation.plantside import DATA_SUB_PATH, ChartPlant
from support.federation.rounds import PLANTS
from support.federation.world import Federation

from plantfed.contract.naming import GROUP, VERSION

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


def plant_values(plants: Iterable[str] = PLANTS) -> list[dict]:
    return hubdeploy.plant_values(plants, DATA_SUB_PATH)


@contextmanager
def federated(
    hub_and_plants, tmp_path_factory, plants: dict[str, str], *, mutual_tls: bool = False
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
            agents[plant] = ChartPlant(
                hub, plant, hub_and_plants.plants[cluster], index, tmp_path_factory.mktemp(plant)
            )
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
        # The stopping operator takes kopf's finalizers off first, so the chart's PlantParticipants go at once
        # (before, `--wait` sat out its 5 minutes on them) and the rounds the tests applied are left deletable.
        uninstalled = hub_cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "90s", check=False)
        left = _finalized_leftovers(hub_cluster, namespace)
        hub_cluster.delete_namespace(namespace)
        assert uninstalled.returncode == 0 and not left, (
            f"helm uninstall of the hub: {uninstalled.stderr.strip()}; still finalized: {left}"
        )


def _finalized_leftovers(cluster, namespace: str) -> list[str]:
    """plantfed objects in `namespace` that still carry a finalizer (no operator is left to remove it)."""
    left = []
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for plural in ("federatedrounds", "federatedmodels", "plantparticipants"):
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
                if item["metadata"].get("finalizers"):
                    left.append(f"{plural}/{item['metadata']['name']}")
    return left


@pytest.fixture(scope="session")
def federation(hub_and_plants, tmp_path_factory) -> Iterator[Federation]:
    with federated(hub_and_plants, tmp_path_factory, PLANTS) as world:
        yield world


MTLS_PLANT = "mtls-press1"


@pytest.fixture(scope="module")
def mtls_federation(hub_and_plants, tmp_path_factory) -> Iterator[Federation]:
    """A second hub release with tls.mutual.enabled and one plant (MTLS_PLANT) using its chart-issued certificate."""
    with federated(hub_and_plants, tmp_path_factory, {MTLS_PLANT: "plant-a"}, mutual_tls=True) as world:
        yield world
