"""A kopf operator runs as a pod on a fake node, with in-cluster credentials and RBAC."""

from __future__ import annotations

from kubernetes import client
from support.kube import manifests, watch_until
from support.kube.wait import wait_for_gone, wait_for_pod

OPERATOR = """
import kopf

@kopf.on.create("", "v1", "configmaps", labels={"watched": "yes"})
def mark(patch, **_):
    patch.metadata.annotations["seen-by"] = "kopf-in-pod"
"""


def test_kopf_operator_pod_reconciles_and_stops_on_delete(control_plane, namespace):
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "operator"}})
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "operator"},
                "rules": [
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch"]},
                    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "operator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
                "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
            },
        )
        # kopf discovers namespaces and CRDs cluster-wide at start-up.
        rbac.create_cluster_role(
            {
                "metadata": {"name": f"{namespace}-operator"},
                "rules": [
                    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
                    {
                        "apiGroups": ["apiextensions.k8s.io"],
                        "resources": ["customresourcedefinitions"],
                        "verbs": ["list", "watch"],
                    },
                ],
            }
        )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": f"{namespace}-operator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"{namespace}-operator",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
            }
        )
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "operator-code"}, "data": {"operator.py": OPERATOR}}
        )
        operator = manifests.container(
            "kopf",
            ["kopf", "run", "--standalone", f"--namespace={namespace}", "/code/operator.py"],
            volume_mounts=[{"name": "code", "mountPath": "/code", "readOnly": True}],
        )
        core.create_namespaced_pod(
            namespace,
            manifests.pod(
                "operator",
                [operator],
                restart_policy="Always",
                serviceAccountName="operator",
                volumes=[{"name": "code", "configMap": {"name": "operator-code"}}],
            ),
        )
        wait_for_pod(core, namespace, "operator", lambda p: p.status.phase == "Running", timeout=60, what="Running")
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "subject", "labels": {"watched": "yes"}}})
        marked = watch_until(
            core.list_namespaced_config_map,
            lambda cm: (cm.metadata.annotations or {}).get("seen-by") == "kopf-in-pod",
            timeout=90,
            what="the operator to annotate the ConfigMap",
            namespace=namespace,
            field_selector="metadata.name=subject",
        )
        assert marked.metadata.name == "subject"
        core.delete_namespaced_pod("operator", namespace)
        wait_for_gone(lambda: core.read_namespaced_pod("operator", namespace), timeout=60, what="operator pod removed")
        for kind in ("cluster_role_binding", "cluster_role"):
            getattr(rbac, f"delete_{kind}")(f"{namespace}-operator")
    # kopf logs its graceful stop on SIGTERM; a SIGKILL would leave no such line.
    assert "Signal SIGTERM is received. Operator is stopping." in control_plane.logs(namespace, "operator")
