"""Jobs and pods really run on the fake nodes: processes, volumes, env, restarts, deletion."""

from __future__ import annotations

import os

from kubernetes import client
from support.kube import ControlPlane, manifests, wait_for, watch_until
from support.kube.wait import pod_phase_in, wait_for_gone, wait_for_pod

WRITE_AND_CHECK = """
import pathlib
seed = pathlib.Path('/scratch/seed.txt').read_text()
out = pathlib.Path('/scratch/result.txt')
out.write_text(seed + ' -> trained')
print('result:', out.read_text())
"""


def test_job_runs_python_that_writes_into_empty_dir_and_completes(control_plane, namespace):
    scratch = {"name": "scratch", "mountPath": "/scratch"}
    pod_template = manifests.pod(
        "ignored",
        [manifests.container("train", manifests.python_command(WRITE_AND_CHECK), volume_mounts=[scratch])],
        init_containers=[
            manifests.container(
                "seed",
                manifests.python_command("open('/scratch/seed.txt', 'w').write('seed-42')"),
                volume_mounts=[scratch],
            )
        ],
        volumes=[{"name": "scratch", "emptyDir": {}}],
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": {"app": "train"}}, "spec": pod_template["spec"]},
        },
    }
    with control_plane.api_client() as api:
        batch = client.BatchV1Api(api)
        batch.create_namespaced_job(namespace, job)
        done = watch_until(
            batch.list_namespaced_job,
            lambda j: any(c.type in ("Complete", "Failed") and c.status == "True" for c in (j.status.conditions or [])),
            timeout=120,
            what="job train to finish",
            namespace=namespace,
        )
        conditions = {c.type: c.status for c in done.status.conditions}
        assert conditions.get("Complete") == "True", conditions
        (pod,) = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=train").items
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert "result: seed-42 -> trained" in control_plane.logs(namespace, pod.metadata.name, "train")


def test_gpu_pods_schedule_by_capacity_and_plant(control_plane, namespace):
    gpu = lambda n: {"limits": {"nvidia.com/gpu": str(n)}}  # noqa: E731
    print_node = manifests.python_command("import os; print('on', os.environ['NODE'])")
    node_env = {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    too_big = manifests.pod("too-big", [manifests.container("c", print_node, resources=gpu(2))])
    fits = manifests.pod(
        "fits",
        [manifests.container("c", print_node, resources=gpu(1))],
        node_selector={"plantfed.dev/plant": "plant-b"},
    )
    fits["spec"]["containers"][0]["env"] = [node_env]
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, too_big)
        core.create_namespaced_pod(namespace, fits)
        watch_until(
            core.list_namespaced_event,
            lambda e: e.reason == "FailedScheduling" and e.involved_object.name == "too-big",
            timeout=60,
            what="FailedScheduling for too-big",
            namespace=namespace,
        )
        done = wait_for_pod(core, namespace, "fits", pod_phase_in("Succeeded", "Failed"), timeout=60, what="finish")
        assert done.status.phase == "Succeeded"
        assert done.spec.node_name == "plant-b-gpu-0"
        assert control_plane.logs(namespace, "fits").strip() == "on plant-b-gpu-0"
        if isinstance(control_plane.cluster, ControlPlane):  # the API server proxies to our kubelet endpoint
            assert control_plane.kubectl("logs", "-n", namespace, "fits").stdout.strip() == "on plant-b-gpu-0"
        stuck = core.read_namespaced_pod("too-big", namespace)
        assert stuck.status.phase == "Pending" and not stuck.spec.node_name


TERM_AWARE = """
import os, pathlib, signal, sys, time
marks = pathlib.Path('/marks')
(marks / 'pid').write_text(str(os.getpid()))
def on_term(*_):
    (marks / 'terminated').write_text('SIGTERM')
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print('serving', flush=True)
while True:
    time.sleep(3600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_deleting_a_running_pod_stops_its_process(control_plane, namespace, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    pod = manifests.pod(
        "server",
        [
            manifests.container(
                "c", manifests.python_command(TERM_AWARE), volume_mounts=[{"name": "marks", "mountPath": "/marks"}]
            )
        ],
        restart_policy="Always",
        volumes=[{"name": "marks", "hostPath": {"path": str(marks), "type": "Directory"}}],
    )
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        running = wait_for_pod(
            core,
            namespace,
            "server",
            lambda p: bool(p.status.container_statuses) and p.status.container_statuses[0].ready,
            timeout=60,
            what="container ready",
        )
        assert running.status.phase == "Running" and running.status.pod_ip == "127.0.0.1"
        ready = {c.type: c.status for c in running.status.conditions}
        assert ready["Ready"] == "True"
        pid = int(
            wait_for(lambda: (marks / "pid").exists() and (marks / "pid").read_text(), timeout=30, what="pid file")
        )
        assert _alive(pid)
        core.delete_namespaced_pod("server", namespace)
        wait_for_gone(lambda: core.read_namespaced_pod("server", namespace), timeout=60, what="pod removed")
    assert (marks / "terminated").read_text() == "SIGTERM"
    assert not _alive(pid)


def test_process_ignoring_sigterm_is_killed_after_grace_period(control_plane, namespace, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    stubborn = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open('/marks/pid','w').write(str(os.getpid())); time.sleep(3600)"
    )
    pod = manifests.pod(
        "stubborn",
        [
            manifests.container(
                "c", manifests.python_command(stubborn), volume_mounts=[{"name": "marks", "mountPath": "/marks"}]
            )
        ],
        volumes=[{"name": "marks", "hostPath": {"path": str(marks)}}],
        terminationGracePeriodSeconds=1,
    )
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        pid = int(
            wait_for(lambda: (marks / "pid").exists() and (marks / "pid").read_text(), timeout=60, what="pid file")
        )
        core.delete_namespaced_pod("stubborn", namespace)
        wait_for_gone(lambda: core.read_namespaced_pod("stubborn", namespace), timeout=60, what="pod removed")
    assert not _alive(pid)


def test_failing_container_restarts_per_policy_and_keeps_previous_log(control_plane, namespace):
    code = (
        "import os, pathlib; p = pathlib.Path(os.environ['HOME'], 'runs'); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); print('run', n); "
        "raise SystemExit(0 if n >= 2 else 3)"
    )
    pod = manifests.pod("flaky", [manifests.container("c", manifests.python_command(code))], restart_policy="OnFailure")
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        done = wait_for_pod(core, namespace, "flaky", pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish")
    status = done.status.container_statuses[0]
    assert done.status.phase == "Succeeded"
    assert status.restart_count == 2
    assert status.last_state.terminated.exit_code == 3
    assert control_plane.logs(namespace, "flaky", "c").strip() == "run 2"
    assert control_plane.logs(namespace, "flaky", "c", previous=True).strip() == "run 1"
    if isinstance(control_plane.cluster, ControlPlane):  # through the kubelet log endpoint
        assert control_plane.kubectl("logs", "-n", namespace, "flaky", "--previous").stdout.strip() == "run 1"


def test_never_restarted_failure_fails_the_pod(control_plane, namespace):
    pod = manifests.pod("fails", [manifests.container("c", manifests.python_command("raise SystemExit(7)"))])
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        done = wait_for_pod(core, namespace, "fails", pod_phase_in("Succeeded", "Failed"), timeout=60, what="finish")
    assert done.status.phase == "Failed"
    terminated = done.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 7 and terminated.reason == "Error"
