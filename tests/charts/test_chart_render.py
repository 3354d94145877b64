"""What the two charts render: the processes they start, the rights they grant, TLS by default.

All offline (`helm template` / `helm lint`); installing into a control plane comes with the operator.
"""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from helmchart import (
    HUB,
    HUB_TOGGLES,
    NAMESPACE,
    PLANT,
    PLANT_CI_VALUES,
    PLANT_NAMESPACE,
    PLANT_TOGGLES,
    PLANTS_VALUES,
    WITH_CRDS,
    Manifests,
    flags,
)

from plantfed.contract.naming import GROUP
from plantfed.exchange.limits import ServerLimits


def mentions(output: str, what: str) -> bool:
    """Whether helm's error names `what`; a/b paths may be printed as a.b or /a/b by the schema validator."""
    if "/" not in what:
        return what in output
    return what.replace("/", ".") in output or "/" + what in output


def values_file(tmp_path, values: dict) -> list[str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return ["-f", str(path)]


def rules(role: dict) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """(apiGroup, resource, verb, resourceNames) for every grant of a Role/ClusterRole."""
    out = set()
    for rule in role["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb, tuple(rule.get("resourceNames", ()))))
    return out


def grants(*spec: tuple[str, str, str]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    out: set[tuple[str, str, str, tuple[str, ...]]] = set()
    for group, resources, verbs in spec:
        for resource in resources.split():
            for verb in verbs.split():
                out.add((group, resource, verb, ()))
    return out


# --- lint ------------------------------------------------------------------------------------


def test_hub_lints_strict_with_chart_defaults(helm):
    result = helm.lint(HUB)
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("toggle", sorted(HUB_TOGGLES))
def test_hub_lints_strict(helm, toggle):
    args = [*HUB_TOGGLES[toggle], *["-f", str(helm.plants_file)]]
    result = helm.lint(HUB, *args)
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("toggle", sorted(PLANT_TOGGLES))
def test_plant_lints_strict(helm, toggle):
    result = helm.lint(PLANT, "-f", str(PLANT_CI_VALUES), *PLANT_TOGGLES[toggle], namespace=PLANT_NAMESPACE)
    assert result.returncode == 0, result.output


# --- every container runs the plantfed CLI ------------------------------------------------------


def all_renders(helm) -> list[tuple[str, Manifests]]:
    plants = ["-f", str(helm.plants_file)]
    out = [(f"hub/{t}", helm.render_hub(*a, *plants, *WITH_CRDS)) for t, a in HUB_TOGGLES.items()]
    out += [(f"plant/{t}", helm.render_plant(*a)) for t, a in PLANT_TOGGLES.items()]
    return out


def test_every_container_sets_an_explicit_plantfed_command(helm):
    seen = 0
    for render, manifests in all_renders(helm):
        for where, container in manifests.containers():
            command = container.get("command")
            assert command, f"{render} {where} relies on the image's entrypoint"
            assert command[0] == "plantfed" and len(command) >= 2, f"{render} {where}: {command}"
            assert "args" not in container, f"{render} {where}: everything belongs in command"
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                exec_ = container.get(probe, {}).get("exec")
                if exec_:
                    assert exec_["command"][0] == "plantfed", f"{render} {where} {probe}"
            seen += 1
    # exchange, operator, the helm test pod and the uninstall hook per hub render; the agent and its helm test
    # pod per plant render
    assert seen == 4 * len(HUB_TOGGLES) + 2 * len(PLANT_TOGGLES)


def test_pods_run_as_non_root_with_read_only_root(helm):
    for render, manifests in all_renders(helm):
        for where, spec in manifests.pod_specs():
            assert spec["securityContext"]["runAsNonRoot"] is True, f"{render} {where}"
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, (
                    f"{render} {where}"
                )
                assert sc["capabilities"]["drop"] == ["ALL"], f"{render} {where}"


# --- hub: the processes and their flags -----------------------------------------------------------


def test_exchange_command_and_mounts(helm):
    m = helm.render_hub()
    dep = m.get("Deployment", "plantfed-exchange")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    f = flags(c["command"])
    assert c["command"][:2] == ["plantfed", "exchange"]
    assert f == {
        "--store": "/var/lib/plantfed/store",
        "--tokens": "/etc/plantfed/plant-tokens",
        "--admin-token-file": "/etc/plantfed/admin/token",
        "--listen": "0.0.0.0:8443",
        "--tls-cert": "/etc/plantfed/tls/tls.crt",
        "--tls-key": "/etc/plantfed/tls/tls.key",
        "--metrics-port": "9090",
        "--health-listen": "127.0.0.1:8444",
        # exchange.limits, sized for a fleet (values.yaml)
        "--io-threads": "8",
        "--max-calls": "1024",
        "--max-transfers": "256",
        "--max-calls-per-plant": "16",
        "--first-message-seconds": "20",
        "--min-transfer-rate": "16384",
        "--transfer-grace-seconds": "60",
        "--max-connections": "2048",
        "--max-streams-per-connection": "64",
        "--handshake-timeout-seconds": "20",
        "--connection-idle-seconds": "300",
        "--keepalive-seconds": "30",
        "--keepalive-timeout-seconds": "10",
        "--store-reserve-bytes": "268435456",
        "--plant-partial-bytes": "17179869184",
        # exchange.retention: the store keeps the promoted, in-use and 10 newest versions' blobs
        "--keep-versions": "10",
    }
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/lib/plantfed/store"]]["persistentVolumeClaim"]["claimName"] == "plantfed-store"
    assert volumes[mounts["/etc/plantfed/plant-tokens"]]["secret"]["secretName"] == "plantfed-plant-tokens"
    assert volumes[mounts["/etc/plantfed/tls"]]["secret"]["secretName"] == "plantfed-exchange-tls"
    assert volumes[mounts["/etc/plantfed/admin"]]["secret"]["secretName"] == "plantfed-admin-token"
    assert pod["automountServiceAccountToken"] is False
    # The store outlives the release: it holds every promoted model version.
    assert (
        m.get("PersistentVolumeClaim", "plantfed-store")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    )
    svc = m.get("Service", "plantfed-exchange")
    assert [p["port"] for p in svc["spec"]["ports"]] == [8443], "metrics must not ride on the exchange Service"


def test_every_exchange_limit_is_a_chart_value_and_big_counts_render_as_integers(helm):
    m = helm.render_hub("--set", "exchange.limits.minTransferRate=1048576")
    (c,) = m.get("Deployment", "plantfed-exchange")["spec"]["template"]["spec"]["containers"]
    f = flags(c["command"])
    assert f["--min-transfer-rate"] == "1048576"
    assert {ServerLimits.flag(name) for name in ServerLimits.defaults()} <= set(f)


def test_exchange_readiness_probe_needs_no_client_credential(helm):
    """The probe dials the loopback health port (never asks for a client certificate, so mTLS cannot fail
    it), verifies the exchange's certificate against the CA, and holds neither token nor client key."""
    for values in ((), ("--set", "tls.certManager.enabled=true")):
        (c,) = helm.render_hub(*values).get("Deployment", "plantfed-exchange")["spec"]["template"]["spec"]["containers"]
        probe = c["readinessProbe"]["exec"]["command"]
        assert probe[:2] == ["plantfed", "healthcheck"]
        assert flags(probe) == {
            "--exchange": "localhost:8444",
            "--ca-file": "/etc/plantfed/tls/ca.crt",
            "--timeout": "5",
        }
        assert flags(c["command"])["--health-listen"] == "127.0.0.1:8444"
        assert not any(p["containerPort"] == 8444 for p in c["ports"]), "the health port is loopback only"
    (c,) = helm.render_hub("--set", "tls.enabled=false").get("Deployment", "plantfed-exchange")["spec"]["template"][
        "spec"
    ]["containers"]
    assert flags(c["readinessProbe"]["exec"]["command"]) == {"--exchange": "localhost:8444", "--timeout": "5"}


def test_operator_command(helm):
    m = helm.render_hub("--set", "image.tag=1.2.3")
    dep = m.get("Deployment", "plantfed-operator")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"][:2] == ["plantfed", "operator"]
    assert flags(c["command"]) == {
        "--namespace": NAMESPACE,
        "--exchange": f"plantfed-exchange.{NAMESPACE}.svc:8443",
        "--admin-token-file": "/etc/plantfed/admin/token",
        "--ca-file": "/etc/plantfed/tls/ca.crt",
        "--store-claim": "plantfed-store",
        "--image": "ghcr.io/plantfed/plantfed:1.2.3",
        "--aggregation-service-account": "plantfed-aggregate",
        "--metrics-port": "9090",
        "--liveness-port": "8080",
        "--heartbeat-timeout": "90",
        "--poll-seconds": "5",
        "--job-backoff-limit": "2",
        "--log-level": "INFO",
    }
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert {"name": "liveness", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    # Off: no flag, no probe (e.g. where pods share one network namespace and 8080 is taken).
    (c,) = helm.render_hub("--set", "operator.livenessPort=null").get("Deployment", "plantfed-operator")["spec"][
        "template"
    ]["spec"]["containers"]
    assert "livenessProbe" not in c and not any(a.startswith("--liveness-port") for a in c["command"])
    # A client: it gets the CA certificate, never the exchange's private key.
    ca = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "ca")
    assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_existing_claim_and_digest_flow_into_the_operator(helm):
    digest = "sha256:" + "a" * 64
    m = helm.render_hub("--set", "exchange.store.existingClaim=shared-store", "--set", f"image.digest={digest}")
    f = flags(m.get("Deployment", "plantfed-operator")["spec"]["template"]["spec"]["containers"][0]["command"])
    assert f["--store-claim"] == "shared-store"
    assert f["--image"] == f"ghcr.io/plantfed/plantfed@{digest}"
    assert not m.of("PersistentVolumeClaim")


def test_without_tls_no_tls_flags_anywhere(helm):
    m = helm.render_hub("--set", "tls.enabled=false")
    for where, c in m.containers():
        assert not any(a.startswith(("--tls-", "--ca-file", "--client-ca")) for a in c["command"]), where
    assert not [s for s in m.of("Secret") if s["type"] == "kubernetes.io/tls"]


def test_helm_test_pod_runs_healthcheck_against_the_service(helm):
    pod = helm.render_hub().get("Pod", "plantfed-healthcheck")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["command"][:2] == ["plantfed", "healthcheck"]
    assert flags(c["command"])["--exchange"] == f"plantfed-exchange.{NAMESPACE}.svc:8443"
    assert flags(c["command"])["--ca-file"] == "/etc/plantfed/tls/ca.crt"


# --- hub: TLS --------------------------------------------------------------------------------------


def test_helm_generated_certificate_chains_to_the_ca_and_names_the_service(helm):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    m = helm.render_hub("--set", "tls.extraDnsNames={hub.example.com}", "--set", "tls.extraIPs={203.0.113.7}")
    secret = m.get("Secret", "plantfed-exchange-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    assert cert.issuer == ca.subject
    key = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(san.get_values_for_type(x509.DNSName))
    assert {
        f"plantfed-exchange.{NAMESPACE}.svc",
        f"plantfed-exchange.{NAMESPACE}.svc.cluster.local",
        "localhost",
        "hub.example.com",
    } <= dns
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "203.0.113.7"}
    # The CA Secret persists the CA key so later upgrades can re-sign without changing ca.crt.
    ca_secret = m.get("Secret", "plantfed-ca")
    assert base64.b64decode(ca_secret["data"]["tls.crt"]) == data["ca.crt"]


def test_cert_manager_mode(helm):
    m = helm.render_hub("--set", "tls.certManager.enabled=true")
    assert not [s for s in m.of("Secret") if s["type"] == "kubernetes.io/tls"], "cert-manager owns the Secret"
    certs = {c["metadata"]["name"]: c for c in m.of("Certificate")}
    server = certs["plantfed-exchange"]
    assert server["spec"]["secretName"] == "plantfed-exchange-tls"
    assert f"plantfed-exchange.{NAMESPACE}.svc" in server["spec"]["dnsNames"]
    # Without an issuer the chart bootstraps a CA, so the Secret carries ca.crt for plants.
    assert certs["plantfed-ca"]["spec"]["isCA"] is True
    assert server["spec"]["issuerRef"] == {"name": "plantfed-ca", "kind": "Issuer", "group": "cert-manager.io"}

    m = helm.render_hub(
        "--set",
        "tls.certManager.enabled=true",
        "--set",
        "tls.certManager.issuerRef.name=corp",
        "--set",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert [c["metadata"]["name"] for c in m.of("Certificate")] == ["plantfed-exchange"]
    assert not m.of("Issuer")
    assert m.get("Certificate", "plantfed-exchange")["spec"]["issuerRef"]["kind"] == "ClusterIssuer"


# --- hub: RBAC --------------------------------------------------------------------------------------


def test_operator_rbac_is_exactly_what_it_uses(helm):
    m = helm.render_hub()
    role = m.get("Role", "plantfed-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    # Each of these is seen used by the live operator in tests/e2e/test_campaigns.py (the RBAC audit).
    assert rules(role) == grants(
        (GROUP, "federatedrounds", "get list watch create patch delete"),
        (GROUP, "plantparticipants federatedmodels", "get list watch patch"),
        (GROUP, "federatedrounds/status plantparticipants/status federatedmodels/status", "patch"),
        ("batch", "jobs", "create get"),
        ("", "events", "create"),
    )
    (cluster_role,) = m.of("ClusterRole")
    assert rules(cluster_role) == grants(
        ("apiextensions.k8s.io", "customresourcedefinitions", "list watch"),
        ("", "namespaces", "list watch"),
    )
    binding = m.get("RoleBinding", "plantfed-operator")
    assert binding["roleRef"]["name"] == "plantfed-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "plantfed-operator", "namespace": NAMESPACE}]
    (crb,) = m.of("ClusterRoleBinding")
    assert crb["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert crb["subjects"] == binding["subjects"]
    assert (
        m.get("Deployment", "plantfed-operator")["spec"]["template"]["spec"]["serviceAccountName"]
        == "plantfed-operator"
    )


def test_uninstall_stops_the_operator_first_with_rights_for_that_alone(helm):
    m = helm.render_hub()
    hook = m.get("Job", "plantfed-operator-stop")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    spec = hook["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    operator = m.get("Deployment", "plantfed-operator")
    selector = ",".join(f"{k}={v}" for k, v in operator["spec"]["selector"]["matchLabels"].items())
    assert container["command"] == [
        "plantfed",
        "stop-operator",
        f"--namespace={NAMESPACE}",
        "--deployment=plantfed-operator",
        f"--selector={selector}",
        "--timeout=120",
    ]
    assert spec["serviceAccountName"] == "plantfed-operator-stop"
    # Its RBAC lives only as long as the hook, and the hook's RBAC exists before its Job starts.
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        annotations = m.get(kind, "plantfed-operator-stop")["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert int(annotations["helm.sh/hook-weight"]) < int(hook["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert rules(m.get("Role", "plantfed-operator-stop")) == {
        ("apps", "deployments/scale", "patch", ("plantfed-operator",))
    } | grants(("", "pods", "list"), (GROUP, "federatedrounds federatedmodels plantparticipants", "get list patch"))
    assert not helm.render_hub("--set", "operator.stopOnUninstall=false").of("Job")


def test_aggregation_service_account_has_no_api_access(helm):
    m = helm.render_hub()
    sa = m.get("ServiceAccount", "plantfed-aggregate")
    assert sa["automountServiceAccountToken"] is False
    for binding in m.of("RoleBinding") + m.of("ClusterRoleBinding"):
        assert all(s["name"] != "plantfed-aggregate" for s in binding["subjects"]), binding["metadata"]["name"]


def test_registered_plants_get_a_role_scoped_to_their_own_participant(helm):
    m = helm.render_hub(*["-f", str(helm.plants_file)], *WITH_CRDS)
    for plant in ("plant-a", "plant-b"):
        name = f"plantfed-plant-{plant}"
        assert m.get("ServiceAccount", name)["automountServiceAccountToken"] is False
        assert rules(m.get("Role", name)) == {
            (GROUP, "plantparticipants", "get", (plant,)),
            (GROUP, "plantparticipants/status", "patch", (plant,)),
        } | grants((GROUP, "federatedrounds federatedmodels", "list watch"))
        binding = m.get("RoleBinding", name)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
        token = m.get("Secret", f"{name}-token")
        assert token["type"] == "kubernetes.io/service-account-token"
        assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == name
    a = m.get("PlantParticipant", "plant-a")
    assert a["spec"]["plantId"] == "plant-a" and a["metadata"]["labels"]["region"] == "eu"
    assert a["spec"]["capacity"] == {"gpus": 2, "modelVariant": "full"}
    assert a["spec"]["data"] == {"pvc": {"claimName": "vibration"}}
    assert m.get("PlantParticipant", "plant-b")["spec"]["paused"] is True
    # What the chart renders is what the operator's own API models accept.
    from plantfed.contract.api import PlantParticipant

    for obj in m.of("PlantParticipant"):
        PlantParticipant.model_validate(obj)
    tokens = m.get("Secret", "plantfed-plant-tokens")
    assert sorted(tokens["data"]) == ["plant-a", "plant-b"]
    decoded = {k: base64.b64decode(v).decode() for k, v in tokens["data"].items()}
    assert len(set(decoded.values())) == 2 and all(len(t) >= 32 for t in decoded.values())
    admin = base64.b64decode(m.get("Secret", "plantfed-admin-token")["data"]["token"]).decode()
    assert len(admin) >= 32 and admin not in decoded.values()


def test_plant_participants_wait_for_their_crd(helm):
    # First install: Helm cannot map a kind whose CRD it is installing in the same release.
    first = helm.template(HUB, *["-f", str(helm.plants_file)])
    m = Manifests.parse(first.stdout)
    assert not m.of("PlantParticipant")
    assert m.get("Role", "plantfed-plant-plant-a")  # RBAC and tokens do not wait


def test_duplicate_plant_is_rejected(helm, tmp_path):
    values = {"plants": [PLANTS_VALUES["plants"][0], PLANTS_VALUES["plants"][0]]}
    result = helm.template(HUB, *values_file(tmp_path, values), check=False)
    assert result.returncode != 0 and '"plant-a" is listed twice' in result.output


# --- hub: monitoring, network policy, dashboard --------------------------------------------------------


def test_monitors_and_network_policies(helm):
    m = helm.render_hub(*HUB_TOGGLES["monitoring"])
    sm = m.get("ServiceMonitor", "plantfed-hub")
    assert sm["metadata"]["labels"]["release"] == "prom"
    svc = m.get("Service", "plantfed-metrics")
    assert svc["spec"]["clusterIP"] == "None"
    assert all(svc["metadata"]["labels"][k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    pm = m.get("PodMonitor", "plantfed-hub")
    scraped = [
        o
        for o in m.of("Deployment")
        if all(
            o["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in pm["spec"]["selector"]["matchLabels"].items()
        )
    ]
    assert sorted(o["metadata"]["name"] for o in scraped) == ["plantfed-exchange", "plantfed-operator"]
    for dep in scraped:
        ports = dep["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in ports
    np = m.get("NetworkPolicy", "plantfed-exchange")
    grpc, metrics = np["spec"]["ingress"]
    assert grpc["ports"] == [{"port": "grpc", "protocol": "TCP"}] and "from" not in grpc
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_dashboard_configmap(helm):
    m = helm.render_hub(
        "--set",
        "dashboards.label.key=grafana_dash",
        "--set",
        "dashboards.label.value=yes",
        "--set",
        "dashboards.namespace=grafana",
    )
    (cm,) = [c for c in m.of("ConfigMap") if "dashboard" in c["metadata"]["name"]]
    assert cm["metadata"]["labels"]["grafana_dash"] == "yes"
    assert cm["metadata"]["namespace"] == "grafana"
    shipped = json.loads(cm["data"]["plantfed-convergence.json"])
    assert shipped == json.loads((HUB / "dashboards" / "plantfed-convergence.json").read_text())
    default = [c for c in helm.render_hub().of("ConfigMap") if "dashboard" in c["metadata"]["name"]][0]
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"


# --- plant chart ----------------------------------------------------------------------------------------


def test_agent_command(helm):
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    m = helm.render_plant(
        "--set",
        "training.gpus=2",
        "--set",
        "training.nodeSelector.gpu=a100",
        "--set",
        "training.nodeSelector.zone=line-3",
        "--set-json",
        f"training.tolerations={json.dumps(tolerations)}",
        "--set",
        "data.options.format=npz",
        "--set",
        "agent.cacheModels={bearing,pump}",
    )
    dep = m.get("Deployment", "plantfed-agent")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"][:2] == ["plantfed", "agent"]
    f = flags(c["command"])
    assert json.loads(f.pop("--tolerations-json")) == tolerations
    assert f == {
        "--plant": "plant-a",
        "--hub-kubeconfig": "/etc/plantfed/hub/kubeconfig",
        "--hub-namespace": "plantfed-system",
        "--exchange": "plantfed.hub.example.com:8443",
        "--token-file": "/etc/plantfed/exchange/token",
        "--ca-file": "/etc/plantfed/exchange/ca.crt",
        "--namespace": PLANT_NAMESPACE,
        "--cache-dir": "/var/lib/plantfed/cache",
        "--cache-claim": "plantfed-cache",
        "--data-claim": "vibration-data",
        "--gpus": "2",
        "--node-selector": "gpu=a100,zone=line-3",
        "--image": "ghcr.io/plantfed/plantfed:0.1.0",
        "--training-service-account": "plantfed-train",
        "--metrics-port": "9090",
        "--data-option": "format=npz",
        "--model": ["bearing", "pump"],
        "--heartbeat-seconds": "30",
        "--sync-seconds": "10",
        "--backoff-limit": "1",
        "--job-ttl-seconds": "3600",
    }
    # The hub Secret is split so each directory holds only what its flag names.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
    hub = volumes[mounts["/etc/plantfed/hub"]]["secret"]
    exchange = volumes[mounts["/etc/plantfed/exchange"]]["secret"]
    assert hub["secretName"] == exchange["secretName"] == "plantfed-hub-credentials"
    assert hub["items"] == [{"key": "kubeconfig", "path": "kubeconfig"}]
    assert exchange["items"] == [{"key": "token", "path": "token"}, {"key": "ca.crt", "path": "ca.crt"}]
    assert volumes[mounts["/var/lib/plantfed/cache"]]["persistentVolumeClaim"]["claimName"] == "plantfed-cache"


def test_agent_host_path_data_and_cpu_training(helm):
    m = helm.render_plant(*PLANT_TOGGLES["host-path-cpu"])
    f = flags(m.get("Deployment", "plantfed-agent")["spec"]["template"]["spec"]["containers"][0]["command"])
    assert f["--data-host-path"] == "/srv/data" and "--data-claim" not in f
    assert f["--gpus"] == "0"
    assert "--node-selector" not in f and "--tolerations-json" not in f


@pytest.mark.parametrize("client_cert", ["", "plantfed-client-tls"])
def test_plant_helm_test_checks_exactly_the_agents_hub_credentials(helm, client_cert):
    m = helm.render_plant("--set", f"hub.clientCertSecret={client_cert}")
    agent = m.get("Deployment", "plantfed-agent")["spec"]["template"]["spec"]
    test = m.get("Pod", "plantfed-reach-hub")
    assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = test["spec"]
    assert spec["automountServiceAccountToken"] is False
    hub_flags = tuple(
        f"--{flag}="
        for flag in "plant hub-kubeconfig hub-namespace exchange token-file ca-file client-cert client-key".split()
    )
    expected = [f for f in agent["containers"][0]["command"] if f.startswith(hub_flags)]
    assert any(f.startswith("--client-cert=") for f in expected) == bool(client_cert)
    assert spec["containers"][0]["command"] == ["plantfed", "reach-hub", *expected, "--timeout=30"]
    hub_volumes = [v for v in agent["volumes"] if v["name"] in ("hub-kubeconfig", "exchange", "client-tls")]
    assert spec["volumes"] == hub_volumes
    assert spec["containers"][0]["volumeMounts"] == [
        mount for mount in agent["containers"][0]["volumeMounts"] if mount["name"] in {v["name"] for v in hub_volumes}
    ]
    assert not helm.render_plant("--set", "tests.enabled=false").of("Pod")


def test_plant_rbac_is_namespaced_and_minimal(helm):
    m = helm.render_plant(*PLANT_TOGGLES["monitoring"])
    assert not m.of("ClusterRole") and not m.of("ClusterRoleBinding")
    (role,) = m.of("Role")
    assert role["metadata"]["namespace"] == PLANT_NAMESPACE
    minimal = grants(
        ("batch", "jobs", "create get list watch delete"),
        ("", "pods", "get list watch"),
        ("", "secrets", "create get delete"),
        ("", "events", "create"),
    )
    assert rules(role) == minimal | grants(("", "pods/log", "get"))
    (role,) = helm.render_plant("--set", "agent.reportTrainingLogs=false").of("Role")
    assert rules(role) == minimal
    (binding,) = m.of("RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "plantfed-agent", "namespace": PLANT_NAMESPACE}]
    assert m.get("ServiceAccount", "plantfed-train")["automountServiceAccountToken"] is False
    for o in m:
        if o["kind"] not in ("CustomResourceDefinition",):
            assert o["metadata"].get("namespace") == PLANT_NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "plant.id="], "plant/id"),
        (["--set", "hub.exchange="], "hub/exchange"),
        (["--set", "hub.existingSecret="], "hub/existingSecret"),
        (["--set", "data.hostPath=/srv/data"], "exactly one of data.existingClaim and data.hostPath"),
        (["--set", "data.existingClaim="], "exactly one of data.existingClaim and data.hostPath"),
    ],
)
def test_plant_chart_refuses_incomplete_values(helm, args, message):
    result = helm.template(PLANT, "-f", str(PLANT_CI_VALUES), *args, namespace=PLANT_NAMESPACE, check=False)
    assert result.returncode != 0
    assert mentions(result.output, message), result.output


def test_plant_without_tls_needs_no_ca(helm):
    m = helm.render_plant(*PLANT_TOGGLES["no-tls"])
    c = m.get("Deployment", "plantfed-agent")["spec"]["template"]["spec"]["containers"][0]
    assert "--ca-file" not in flags(c["command"])
    exchange = next(
        v
        for v in m.get("Deployment", "plantfed-agent")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "exchange"
    )
    assert exchange["secret"]["items"] == [{"key": "token", "path": "token"}]
