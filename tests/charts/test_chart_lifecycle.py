"""The hub chart's life cycle on its own real API server: dry run, CRD upgrade, uninstall.

Its own control plane, because the chart installs the cluster-scoped CRDs and ClusterRoles that the
session cluster shares with other tests. The pods are pinned to a node that does not exist: what is
checked here is what the API server accepts and what Helm leaves behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helmchart import HUB, KUBE_VERSION, PLANT, PLANT_CI_VALUES
from kubernetes import client
from support.kube.controlplane import ControlPlane
from support.kube.environment import skip_reason

from plantfed.contract.naming import GROUP

PIN = [
    "--set",
    "exchange.nodeSelector.plantfed\\.io/test=none",
    "--set",
    "operator.nodeSelector.plantfed\\.io/test=none",
    # Nothing runs here, so neither would the uninstall hook's Job (helm would wait out its timeout on it).
    "--set",
    "operator.stopOnUninstall=false",
]
CRD = f"plantparticipants.{GROUP}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = skip_reason()
    if reason:
        pytest.skip(f"controlplane test skipped: {reason}")
    cp = ControlPlane.start(tmp_path_factory.mktemp("chart-lifecycle"), name="chart-lifecycle")
    try:
        yield cp
    finally:
        cp.stop()


def participant_spec_fields(cp: ControlPlane) -> set[str]:
    with cp.api_client() as api:
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD)
    schema = crd.spec.versions[0].schema.open_apiv3_schema
    return set(schema.properties["spec"].properties or ())


def older_chart(tmp_path: Path, dropped: str) -> Path:
    """This chart as a previous release would ship it: its PlantParticipant CRD lacks `dropped`."""
    chart = tmp_path / "plantfed-hub-old"
    shutil.copytree(HUB, chart)
    path = chart / "files" / "crds" / f"{CRD}.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"][dropped]
    assert dropped not in spec.get("required", []), f"{dropped} is required; drop an optional field instead"
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


@pytest.mark.controlplane
def test_rendered_charts_pass_a_server_side_dry_run(cluster: ControlPlane) -> None:
    cluster.kubectl("create", "namespace", "dry-hub")
    cluster.kubectl("create", "namespace", "dry-plant")
    hub = cluster.helm("template", "plantfed", str(HUB), "-n", "dry-hub", *KUBE_VERSION, *PIN).stdout
    out = cluster.kubectl("apply", "--dry-run=server", "-n", "dry-hub", "-f", "-", input=hub)
    assert "deployment.apps/plantfed-operator created (server dry run)" in out.stdout
    assert (
        f"customresourcedefinition.apiextensions.k8s.io/federatedrounds.{GROUP} created (server dry run)" in out.stdout
    )
    plant = cluster.helm(
        "template", "plantfed-plant", str(PLANT), "-n", "dry-plant", *KUBE_VERSION, "-f", str(PLANT_CI_VALUES)
    ).stdout
    out = cluster.kubectl("apply", "--dry-run=server", "-n", "dry-plant", "-f", "-", input=plant)
    assert "deployment.apps/" in out.stdout and "(server dry run)" in out.stdout


@pytest.mark.controlplane
def test_upgrade_brings_a_changed_crd_and_uninstall_leaves_only_what_is_kept(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    cluster.kubectl("create", "namespace", "hub")
    cluster.helm(
        "install", "plantfed", str(older_chart(tmp_path, "paused")), "-n", "hub", "--set", "tests.enabled=false", *PIN
    )
    assert "paused" not in participant_spec_fields(cluster)

    cluster.helm("upgrade", "plantfed", str(HUB), "-n", "hub", "--set", "tests.enabled=false", *PIN)
    assert "paused" in participant_spec_fields(cluster), "helm upgrade did not update the CRD"

    cluster.helm("uninstall", "plantfed", "-n", "hub", "--wait")
    selector = "app.kubernetes.io/instance=plantfed"
    with cluster.api_client() as api:
        core, apps, rbac = client.CoreV1Api(api), client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
        left = {
            "deployments": [
                d.metadata.name for d in apps.list_namespaced_deployment("hub", label_selector=selector).items
            ],
            "services": [s.metadata.name for s in core.list_namespaced_service("hub", label_selector=selector).items],
            "configmaps": [
                c.metadata.name for c in core.list_namespaced_config_map("hub", label_selector=selector).items
            ],
            "serviceaccounts": [
                s.metadata.name for s in core.list_namespaced_service_account("hub", label_selector=selector).items
            ],
            "roles": [r.metadata.name for r in rbac.list_namespaced_role("hub", label_selector=selector).items],
            "clusterroles": [r.metadata.name for r in rbac.list_cluster_role(label_selector=selector).items],
            "clusterrolebindings": [
                r.metadata.name for r in rbac.list_cluster_role_binding(label_selector=selector).items
            ],
        }
        kept_pvcs = [p.metadata.name for p in core.list_namespaced_persistent_volume_claim("hub").items]
        crds = [c.metadata.name for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items]
    assert not any(left.values()), f"helm uninstall left {left}"
    # Kept on purpose (helm.sh/resource-policy: keep): the model store and the CRDs, so uninstalling the
    # chart never deletes trained models or every FederatedRound in the cluster.
    assert kept_pvcs == ["plantfed-store"]
    assert CRD in crds
