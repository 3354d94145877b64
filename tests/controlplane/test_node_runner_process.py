"""Nodes can be run by a separate process, as the operator e2e tests may need."""

from __future__ import annotations

from kubernetes import client
from support.kube import NodeRunnerProcess, NodeSpec, manifests
from support.kube.wait import pod_phase_in, wait_for_gone, wait_for_pod


def test_separate_process_runner_runs_pods_and_deregisters(control_plane, namespace, tmp_path):
    node = NodeSpec.for_plant("plant-c")
    runner = NodeRunnerProcess.start(control_plane.cluster, [node], tmp_path / "runner")
    try:
        pod = manifests.pod(
            "remote",
            [manifests.container("c", manifests.python_command("print('ran remotely')"))],
            node_selector={"plantfed.dev/plant": "plant-c"},
        )
        with control_plane.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespaced_pod(namespace, pod)
            done = wait_for_pod(
                core, namespace, "remote", pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish"
            )
        assert done.status.phase == "Succeeded" and done.spec.node_name == node.name
        assert runner.logs(namespace, "remote").strip() == "ran remotely"
    finally:
        runner.stop()
    with control_plane.api_client() as api:
        wait_for_gone(lambda: client.CoreV1Api(api).read_node(node.name), timeout=30, what="node deregistered")
