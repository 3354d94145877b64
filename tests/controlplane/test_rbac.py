"""RBAC is enforced, also for a pod using in-cluster config with its ServiceAccount token."""

from __future__ import annotations

import json

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from support.kube import manifests
from support.kube.wait import pod_phase_in, wait_for_pod

IN_CLUSTER = """
import json
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
config.load_incluster_config()
core = client.CoreV1Api()
result = {}
for name in ('allowed', 'forbidden'):
    try:
        result[name] = core.read_namespaced_config_map(name, '%s').data
    except ApiException as exc:
        result[name] = exc.status
print(json.dumps(result))
"""


@pytest.fixture
def restricted_account(control_plane, namespace):
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        for name in ("allowed", "forbidden"):
            core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"who": name}})
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "agent"}})
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "read-one"},
                "rules": [
                    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"], "verbs": ["get"]}
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "agent-read-one"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-one"},
                "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": namespace}],
            },
        )
    return "agent"


def test_service_account_gets_403_on_objects_it_was_not_granted(control_plane, namespace, restricted_account):
    kubeconfig = control_plane.service_account_kubeconfig(namespace, restricted_account)
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_config_map("allowed", namespace).data == {"who": "allowed"}
        with pytest.raises(ApiException) as denied:
            core.read_namespaced_config_map("forbidden", namespace)
    assert denied.value.status == 403


def test_pod_reaches_api_with_in_cluster_config_and_its_own_rights(control_plane, namespace, restricted_account):
    pod = manifests.pod(
        "agent",
        [manifests.container("agent", manifests.python_command(IN_CLUSTER % namespace))],
        serviceAccountName=restricted_account,
    )
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        done = wait_for_pod(core, namespace, "agent", pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish")
    output = control_plane.logs(namespace, "agent")
    assert done.status.phase == "Succeeded", output
    assert json.loads(output) == {"allowed": {"who": "allowed"}, "forbidden": 403}


def test_client_certificate_groups_are_what_rbac_binds(control_plane, namespace):
    with control_plane.api_client() as api:
        client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "plant-admins-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "plant-a-admins"}],
            },
        )
    member = control_plane.cluster.user_kubeconfig("alice", groups=("plant-a-admins",))
    outsider = control_plane.cluster.user_kubeconfig("bob")
    with config.new_client_from_config(config_file=str(member)) as api:
        assert client.CoreV1Api(api).list_namespaced_config_map(namespace).items is not None
    with config.new_client_from_config(config_file=str(outsider)) as api:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).list_namespaced_config_map(namespace)
    assert denied.value.status == 403
    assert 'User "bob"' in json.loads(denied.value.body)["message"]
