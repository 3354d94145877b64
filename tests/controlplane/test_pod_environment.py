"""What a pod's process sees: env sources, volumes at their mountPaths, in-cluster API access."""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client
from support.kube import manifests
from support.kube.wait import pod_phase_in, wait_for_pod

REPORT = """
import json, os, pathlib
def read(p):
    return pathlib.Path(p).read_text()
print(json.dumps({
    'env': {
        k: os.environ.get(k)
        for k in ['GREETING', 'PASSWORD', 'POD', 'NS', 'IP', 'FROM_CM_level', 'EXPANDED', 'MEM_MI']
    },
    'config': read('/etc/plant/level'),
    'secret': read('/etc/creds/password'),
    'pvc_seen': read('/data/from-first-pod'),
    'cwd': os.getcwd(),
    'sa_namespace': read('/var/run/secrets/kubernetes.io/serviceaccount/namespace'),
    'has_token': bool(read('/var/run/secrets/kubernetes.io/serviceaccount/token')),
    'has_ca': 'BEGIN CERTIFICATE' in read('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'),
}))
"""


def _run_to_completion(core, namespace, pod):
    core.create_namespaced_pod(namespace, pod)
    name = pod["metadata"]["name"]
    done = wait_for_pod(core, namespace, name, pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish")
    return done


def test_env_sources_volumes_and_service_account_are_visible(control_plane, namespace):
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "plant"}, "data": {"level": "3"}})
        core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "hunter2"}})
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "metadata": {"name": "shared"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        data = {"name": "data", "mountPath": "/data"}
        claim = {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}
        first = manifests.pod(
            "writer",
            [
                manifests.container(
                    "c",
                    manifests.python_command("open('/data/from-first-pod','w').write('kept')"),
                    volume_mounts=[data],
                )
            ],
            volumes=[claim],
        )
        assert _run_to_completion(core, namespace, first).status.phase == "Succeeded"

        reporter = manifests.container(
            "report",
            manifests.python_command(REPORT),
            volume_mounts=[
                data,
                {"name": "plant", "mountPath": "/etc/plant"},
                {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
            ],
            workingDir="/data",
            resources={"limits": {"memory": "256Mi"}},
        )
        reporter["env"] = [
            {"name": "GREETING", "value": "hello"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "EXPANDED", "value": "$(GREETING)-$(POD)"},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ]
        reporter["envFrom"] = [{"configMapRef": {"name": "plant"}, "prefix": "FROM_CM_"}]
        second = manifests.pod(
            "reader",
            [reporter],
            volumes=[
                claim,
                {"name": "plant", "configMap": {"name": "plant"}},
                {"name": "creds", "secret": {"secretName": "creds"}},
            ],
        )
        done = _run_to_completion(core, namespace, second)
    assert done.status.phase == "Succeeded", control_plane.logs(namespace, "reader")
    report = json.loads(control_plane.logs(namespace, "reader"))
    assert report["env"] == {
        "GREETING": "hello",
        "PASSWORD": "hunter2",
        "POD": "reader",
        "NS": namespace,
        "IP": "127.0.0.1",
        "FROM_CM_level": "3",
        "EXPANDED": "hello-reader",
        "MEM_MI": "256",
    }
    assert report["config"] == "3" and report["secret"] == "hunter2"
    assert report["pvc_seen"] == "kept"
    assert report["cwd"] == "/data"
    assert report["sa_namespace"] == namespace and report["has_token"] and report["has_ca"]


def test_missing_config_map_keeps_pod_pending_until_it_exists(control_plane, namespace):
    pod = manifests.pod(
        "waits",
        [
            manifests.container(
                "c",
                manifests.python_command("print(open('/cfg/k').read())"),
                volume_mounts=[{"name": "cfg", "mountPath": "/cfg"}],
            )
        ],
        volumes=[{"name": "cfg", "configMap": {"name": "later"}}],
    )
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        pending = wait_for_pod(
            core,
            namespace,
            "waits",
            lambda p: bool(p.status.message) and "later" in p.status.message,
            timeout=60,
            what="report the missing ConfigMap",
        )
        assert pending.status.phase == "Pending"
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "later"}, "data": {"k": "arrived"}})
        done = wait_for_pod(core, namespace, "waits", pod_phase_in("Succeeded", "Failed"), timeout=60, what="finish")
    assert done.status.phase == "Succeeded"
    assert done.status.message is None
    assert control_plane.logs(namespace, "waits").strip() == "arrived"


def test_volume_over_tmp_hides_host_tmp_but_not_what_the_container_runs(control_plane, namespace, tmp_path):
    # The script lives under pytest's /tmp directory, as do the node's volume directories.
    marker = f"plantfed-shadow-{namespace}"
    script = tmp_path / "job.py"
    script.write_text(
        "import os, pathlib\n"
        f"pathlib.Path('/tmp/{marker}').write_text('in the pod')\n"
        "pathlib.Path('/data/out').write_text('kept')\n"
        "print('ran', os.path.exists('/data/out'))\n"
    )
    pod = manifests.pod(
        "shadowed",
        [
            manifests.container(
                "c",
                ["python", str(script)],
                volume_mounts=[
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "data", "mountPath": "/data"},
                ],
            )
        ],
        volumes=[{"name": "tmp", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
    )
    with control_plane.api_client() as api:
        done = _run_to_completion(client.CoreV1Api(api), namespace, pod)
    assert done.status.phase == "Succeeded", control_plane.logs(namespace, "shadowed")
    assert control_plane.logs(namespace, "shadowed").strip() == "ran True"
    assert not Path("/tmp", marker).exists()  # the pod wrote into its emptyDir, not the host
