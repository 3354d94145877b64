"""`plantfed stop-operator`: stop the hub operator cleanly before `helm uninstall` removes its RBAC.

`helm uninstall` deletes the operator's Deployment and its Role in one go and the chart's PlantParticipants
last. The operator takes kopf's finalizers off when it stops (see `finalizer_release`), but by the time its
pod is told to stop its Role is already gone, so the chart's pre-delete hook runs this first: scale the
operator to zero, wait for its pods to exit (each releases the finalizers as it stops, with its RBAC still in
place), then release whatever is still held (an operator that was killed instead of stopped), so that
nothing of the release is left Terminating with no operator to finalize it.
"""

from __future__ import annotations

import argparse
import logging
import time

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", required=True, help="the hub's namespace")
    p.add_argument("--deployment", required=True, help="the operator's Deployment")
    p.add_argument("--selector", required=True, help="label selector of the operator's pods")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the operator's pods to exit")


def run(args: argparse.Namespace) -> int:
    import kopf
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from plantfed.hub.kube import Kube, load_config
    from plantfed.hub.observe import MODELS, PARTICIPANTS, ROUNDS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load_config()
    api = client.ApiClient()
    try:
        client.AppsV1Api(api).patch_namespaced_deployment_scale(
            args.deployment, args.namespace, {"spec": {"replicas": 0}}
        )
    except ApiException as exc:
        if exc.status != 404:
            raise
        log.info("no operator Deployment %s/%s: nothing to stop", args.namespace, args.deployment)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + args.timeout
    while pods := core.list_namespaced_pod(args.namespace, label_selector=args.selector).items:
        if time.monotonic() > deadline:
            log.warning(
                "operator pods still there after %.0f s: %s",
                args.timeout,
                [p.metadata.name for p in pods if p.metadata],
            )
            break
        time.sleep(1.0)
    finalizer = kopf.OperatorSettings().persistence.finalizer
    released = Kube(api).release_finalizers((ROUNDS, MODELS, PARTICIPANTS), args.namespace, finalizer)
    print(f"operator stopped; {released} finalizers were still held and are released")
    return 0
