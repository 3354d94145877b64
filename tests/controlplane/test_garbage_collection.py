"""The garbage collector deletes dependents once their owner is gone."""

from __future__ import annotations

from kubernetes import client
from support.kube.wait import wait_for_gone


def test_deleting_owner_garbage_collects_dependents(control_plane, namespace):
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
        reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
        )
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})
        core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
        wait_for_gone(
            lambda: core.read_namespaced_config_map("dependent", namespace), timeout=90, what="dependent collected"
        )
        assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"
