"""Several control planes at once stay independent: state, nodes, and trust."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from support.kube import manifests
from support.kube.kubeconfig import write_kubeconfig
from support.kube.wait import pod_phase_in, wait_for_pod


def test_hub_and_plants_are_independent_clusters(hub_and_plants, tmp_path):
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
        at_hub = hub.service_account_kubeconfig(namespace, "agent")
        token = yaml.safe_load(at_hub.read_text())["users"][0]["user"]["token"]
        hub_token_at_plant = write_kubeconfig(
            tmp_path / "hub-token-at-plant-a",
            server=plant_a.cluster.server,
            ca_file=plant_a.cluster.ca_file,
            user="hub-agent",
            token=token,
        )
        outcomes = {}
        for where, kubeconfig in (("hub", at_hub), ("plant-a", hub_token_at_plant)):
            with config.new_client_from_config(config_file=str(kubeconfig)) as api:
                with pytest.raises(ApiException) as refused:
                    client.CoreV1Api(api).list_namespaced_config_map("default")
            outcomes[where] = refused.value.status
        # Authenticated (but not authorized) where it was issued; unknown to the other cluster.
        assert outcomes == {"hub": 403, "plant-a": 401}
    finally:
        hub.delete_namespace(namespace)


def test_each_plant_runs_its_own_pods(hub_and_plants):
    for name, plant in hub_and_plants.plants.items():
        namespace = plant.create_namespace("plant-pods")
        try:
            pod = manifests.pod(
                "where",
                [
                    manifests.container(
                        "c",
                        manifests.python_command("import os; print(os.environ['NODE'])"),
                        resources={"limits": {"nvidia.com/gpu": "1"}},
                    )
                ],
            )
            pod["spec"]["containers"][0]["env"] = [
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
            ]
            with plant.api_client() as api:
                core = client.CoreV1Api(api)
                core.create_namespaced_pod(namespace, pod)
                done = wait_for_pod(
                    core, namespace, "where", pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish"
                )
            assert done.status.phase == "Succeeded"
            assert plant.logs(namespace, "where").strip() == f"{name}-gpu-0"
        finally:
            plant.delete_namespace(namespace)
