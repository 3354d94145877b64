"""Suite-wide fixtures: real Kubernetes control planes with fake GPU nodes.

``control_plane``  one cluster; nodes plant-a-gpu-0 and plant-b-gpu-0 (1 GPU each).
``hub_and_plants`` three independent clusters: hub (hub-gpu-0, with an API server audit log),
                   plant-a, plant-b.
``namespace``      a fresh namespace in ``control_plane`` for one test.

Clusters are session-scoped (start-up costs tens of seconds on a small box); tests isolate
themselves with their own namespaces. Tests using these fixtures are marked
``controlplane`` automatically. They skip only when Go is absent and
PLANTFED_TEST_KUBECONFIG is unset; under CI (CI=true) that is an error instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.kube.environment import (
    ClusterWithNodes,
    HubAndPlants,
    plant_nodes,
    require_control_planes,
    start_clusters,
)
from support.kube.nodes import NodeSpec

CONTROLPLANE_FIXTURES = {"control_plane", "hub_and_plants", "namespace"}


def _stage(item: pytest.Item) -> int:
    """0: no cluster; 1: the shared cluster; 2: the three clusters of `hub_and_plants` (and the e2e federation)."""
    used = set(getattr(item, "fixturenames", ()))
    return 2 if "hub_and_plants" in used else 1 if CONTROLPLANE_FIXTURES & used else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark control-plane tests, and run the tests that need no cluster first and the federation's last.

    Session clusters and the e2e federation (an operator polling every second, agents, exchange) stay up until
    the session ends once started, and on two cores their idle work slowed every test collected after them.
    The sort is stable, so tests keep their order within each stage.
    """
    for item in items:
        if _stage(item):
            item.add_marker(pytest.mark.controlplane)
    items.sort(key=_stage)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Tag skips of control-plane tests so `.ci/run` can refuse them, whoever skipped."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("controlplane") and isinstance(report.longrepr, tuple):
        path, line, reason = report.longrepr
        report.longrepr = (path, line, f"controlplane test skipped: {reason}")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterWithNodes]:
    require_control_planes()
    workdir = tmp_path_factory.mktemp("control-plane")
    nodes = [*plant_nodes("plant-a"), *plant_nodes("plant-b")]
    (cluster,) = start_clusters(workdir, [("cluster", nodes)])
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def hub_and_plants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubAndPlants]:
    require_control_planes()
    workdir = tmp_path_factory.mktemp("hub-and-plants")
    layout: list[tuple[str, list[NodeSpec]]] = [
        ("hub", plant_nodes("hub")),
        ("plant-a", plant_nodes("plant-a")),
        ("plant-b", plant_nodes("plant-b")),
    ]
    try:
        # The hub's audit log lets a test check the operator's RBAC against what it really does.
        hub, *plants = start_clusters(workdir, layout, audit=("hub",))
    except LookupError as exc:  # PLANTFED_TEST_KUBECONFIG names too few clusters
        pytest.skip(str(exc))
    world = HubAndPlants(hub=hub, plants={p.name: p for p in plants})
    try:
        yield world
    finally:
        world.stop()


@pytest.fixture
def namespace(control_plane: ClusterWithNodes, request: pytest.FixtureRequest) -> Iterator[str]:
    name = control_plane.create_namespace(request.node.name)
    try:
        yield name
    finally:
        control_plane.delete_namespace(name)
