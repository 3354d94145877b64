"""Pods reach each other through Service names (resolved to 127.0.0.1) and readiness gates."""

from __future__ import annotations

from kubernetes import client
from support.kube import manifests
from support.kube.ports import free_ports
from support.kube.wait import pod_phase_in, wait_for_pod

SERVER = """
import http.server, os
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('hello from ' + os.environ['HOSTNAME']).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Hello).serve_forever()
"""

CLIENT = """
import os, time, urllib.request
port = os.environ['ECHO_SERVICE_PORT']
for host in ('echo', 'echo.{ns}', 'echo.{ns}.svc.cluster.local'):
    deadline = time.monotonic() + 30
    while True:
        try:
            print(host, urllib.request.urlopen(f'http://{{host}}:{{port}}/', timeout=2).read().decode())
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
"""


def test_service_names_resolve_for_pods(control_plane, namespace):
    (port,) = free_ports(1)
    server = manifests.container(
        "http",
        manifests.python_command(SERVER),
        env={"PORT": str(port)},
        ports=[{"name": "http", "containerPort": port}],
        readinessProbe={"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1},
    )
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": "echo"},
                "spec": {"selector": {"app": "echo"}, "ports": [{"port": port, "targetPort": port}]},
            },
        )
        core.create_namespaced_pod(
            namespace, manifests.pod("echo-0", [server], restart_policy="Always", labels={"app": "echo"})
        )
        wait_for_pod(
            core,
            namespace,
            "echo-0",
            lambda p: any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []),
            timeout=60,
            what="Ready",
        )
        core.create_namespaced_pod(
            namespace,
            manifests.pod("caller", [manifests.container("c", manifests.python_command(CLIENT.format(ns=namespace)))]),
        )
        done = wait_for_pod(core, namespace, "caller", pod_phase_in("Succeeded", "Failed"), timeout=90, what="finish")
    output = control_plane.logs(namespace, "caller")
    assert done.status.phase == "Succeeded", output
    assert output.splitlines() == [
        "echo hello from echo-0",
        f"echo.{namespace} hello from echo-0",
        f"echo.{namespace}.svc.cluster.local hello from echo-0",
    ]
