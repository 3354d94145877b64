"""Several control planes at once stay independent: state, nodes, and trust."""

from __future__ import annotations

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from support.kube import manifests
from support.kube.wait import pod_phase_in, wait_for_pod


def test_hub_and_plants_are_independent_clusters(hub_and_plants):
    hub, plant_a = hub_and_plants.hub, hub_and_plants.plants["plant-a"]
    servers = {member.cluster.server for member in hub_and_plants}
    assert len(servers) == 3

    namespace = hub.create_namespace("isolation")
    try:
        with hub.api_client() as api:
            client.CoreV1Api(api).create_namespaced_config_map(namespace, {"metadata": {"name": "only-in-hub"}})
        for plant in hub_and_plants.plants.values():
            with plant.api_client() as api:
                with pytest.raises(ApiException) as missing:
                    client.CoreV1Api(api).read_namespace(namespace)
            assert missing.value.status == 404

        for member in hub_and_plants:
            with member.api_client() as api:
                nodes = {n.metadata.name for n in client.CoreV1Api(api).list_node().items}
            assert nodes == set(member.node_names)

        with hub.api_client() as api:
            client.CoreV1Api(api).create_namespaced_service_account(namespace, {"metadata": {"name": "agent"}})
        hub_token = hub.service_account_kubeconfig(namespace, "agent")
        foreign = config.new_client_from_config(config_file=str(hub_token))
        foreign.configuration.host = plant_a.cluster.server
        foreign.configuration.ssl_ca_cert = str(plant_a.cluster.ca_file)
        with foreign:
            with pytest.raises(ApiException) as rejected:
                client.CoreV1Api(foreign).list_namespaced_config_map("default")
        assert rejected.value.status == 401
    finally:
        hub.delete_namespace(namespace)


def test_each_plant_runs_its_own_pods(hub_and_plants):
    for name, plant in hub_and_plants.plants.items():
        namespace = plant.create_namespace("plant-pods")
        try:
            pod = manifests.pod(
                "where",
                [manifests.container("c", manifests.python_command("import os; print(os.environ['NODE'])"),
                                     resources={"limits": {"nvidia.com/gpu": "1"}})],
            )
            pod["spec"]["containers"][0]["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
            with plant.api_client() as api:
                core = client.CoreV1Api(api)
                core.create_namespaced_pod(namespace, pod)
                done = wait_for_pod(core, namespace, "where", pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish")
            assert done.status.phase == "Succeeded"
            assert plant.logs(namespace, "where").strip() == f"{name}-gpu-0"
        finally:
            plant.delete_namespace(namespace)
