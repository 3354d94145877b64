"""Helpers for the chart tests: find helm, render a chart, pick objects out of the output.

The tests need no cluster: `helm template` and `helm lint` run offline. They look for helm in
PLANTFED_HELM, the `make testbin` cache, then PATH, and skip (saying how to get it) when absent.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from plantfed.contract.naming import API_VERSION

REPO = Path(__file__).resolve().parents[2]
HUB = REPO / "charts" / "plantfed-hub"
PLANT = REPO / "charts" / "plantfed-plant"
PLANT_CI_VALUES = PLANT / "ci" / "default-values.yaml"
NAMESPACE = "plantfed-system"
PLANT_NAMESPACE = "plantfed"
# Helm built from the Go module proxy (make testbin) lacks the version ldflags and assumes
# Kubernetes v1.20 offline, below the charts' kubeVersion; real clusters report their own.
KUBE_VERSION = ("--kube-version", "v1.33.0")
# Lets `helm template` render PlantParticipants as on an upgrade, when the CRD already exists.
WITH_CRDS = ("--api-versions", f"{API_VERSION}/PlantParticipant")


# Two registered plants, one per data-source kind.
PLANTS_VALUES = {
    "plants": [
        {
            "name": "plant-a",
            "labels": {"region": "eu", "line": "press"},
            "site": "Stuttgart",
            "capacity": {"gpus": 2, "modelVariant": "full"},
            "data": {"pvc": {"claimName": "vibration"}},
        },
        {"name": "plant-b", "data": {"hostPath": {"path": "/data/vibration"}}, "paused": True},
    ]
}

HUB_TOGGLES = {
    "defaults": [],
    "tls-off": ["--set", "tls.enabled=false"],
    "cert-manager": ["--set", "tls.certManager.enabled=true"],
    "cert-manager-issuer": [
        "--set",
        "tls.certManager.enabled=true",
        "--set",
        "tls.certManager.issuerRef.name=corp-ca",
        "--set",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    ],
    "monitoring": [
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.podMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.additionalLabels.release=prom",
        "--set",
        "networkPolicy.enabled=true",
    ],
    "existing-secrets": [
        "--set",
        "adminToken.existingSecret=admin",
        "--set",
        "plantTokens.existingSecret=tokens",
        "--set",
        "exchange.store.existingClaim=store",
    ],
    "loadbalancer": [
        "--set",
        "exchange.service.type=LoadBalancer",
        "--set",
        "tls.extraDnsNames={hub.example.com}",
        "--set",
        "tls.extraIPs={203.0.113.7}",
    ],
    "mutual-tls": ["--set", "tls.mutual.enabled=true"],
    "mutual-tls-cert-manager": ["--set", "tls.mutual.enabled=true", "--set", "tls.certManager.enabled=true"],
}
PLANT_TOGGLES = {
    "defaults": [],
    "host-path-cpu": ["--set", "data.existingClaim=", "--set", "data.hostPath=/srv/data", "--set", "training.gpus=0"],
    "monitoring": [
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.podMonitor.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
    ],
    "no-tls": ["--set", "hub.tls=false"],
    "mutual-tls": ["--set", "hub.clientCertSecret=plantfed-client-tls"],
    "tuned": [
        "--set",
        "training.nodeSelector.gpu=a100",
        "--set",
        "training.nodeSelector.zone=line-3",
        "--set-json",
        'training.tolerations=[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]',
        "--set",
        "data.options.format=npz",
        "--set",
        "data.options.window=2048",
        "--set",
        "agent.cacheModels={bearing}",
    ],
}


def find_helm() -> str | None:
    explicit = os.environ.get("PLANTFED_HELM")
    if explicit:
        return explicit
    try:
        from support.kube.testbin import TestbinMissing, testbin_dir

        try:
            return str(testbin_dir() / "helm")
        except TestbinMissing:
            pass
    except ImportError:
        pass
    cache = Path(os.environ.get("PLANTFED_TESTBIN_CACHE", Path.home() / ".cache" / "plantfed" / "testbin"))
    for pattern in ("*/helm", "*/bin/helm"):
        for candidate in sorted(glob.glob(str(cache / pattern)), reverse=True):
            if os.access(candidate, os.X_OK) and "/.building-" not in candidate:
                return candidate
    return shutil.which("helm")


@dataclass
class HelmResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Helm:
    def __init__(self, binary: str, home: Path):
        self.binary = binary
        self._rendered: dict[tuple, HelmResult] = {}
        # PLANTS_VALUES as a file at a fixed path, so renders using it can be cached per session.
        self.plants_file = home / "plants-values.yaml"
        self.plants_file.write_text(yaml.safe_dump(PLANTS_VALUES))
        # Private config/cache dirs: no repositories or plugins from the developer's machine.
        self.env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> HelmResult:
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=120)
        return HelmResult(proc.returncode, proc.stdout, proc.stderr)

    def lint(self, chart: Path, *args: str, namespace: str = NAMESPACE) -> HelmResult:
        return self.run("lint", "--strict", str(chart), "--namespace", namespace, *KUBE_VERSION, *args)

    def template(self, chart: Path, *args: str, namespace: str = NAMESPACE, check: bool = True) -> HelmResult:
        """`helm template`, memoised: the charts do not change during a test session."""
        key = (str(chart), namespace, *args)
        if key not in self._rendered:
            self._rendered[key] = self.run(
                "template", "plantfed", str(chart), "--namespace", namespace, *KUBE_VERSION, *args
            )
        result = self._rendered[key]
        if check and result.returncode != 0:
            raise AssertionError(f"helm template {chart.name} {' '.join(args)} failed:\n{result.output}")
        return result

    def render(self, chart: Path, *args: str, namespace: str = NAMESPACE) -> Manifests:
        return Manifests.parse(self.template(chart, *args, namespace=namespace).stdout)

    def render_hub(self, *args: str) -> Manifests:
        return self.render(HUB, *args)

    def render_plant(self, *args: str) -> Manifests:
        return self.render(PLANT, "-f", str(PLANT_CI_VALUES), *args, namespace=PLANT_NAMESPACE)


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that also reads floats without a dot (1e-05), as Go's YAML and Kubernetes do."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."),
)


class Manifests(list):
    """The objects of a rendered chart, in order."""

    @classmethod
    def parse(cls, text: str) -> Manifests:
        return cls(doc for doc in yaml.load_all(text, Loader=Yaml12Loader) if doc)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind}/{name}, found {len(found)}: {[o['metadata']['name'] for o in self.of(kind)]}"
        )
        return found[0]

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(object description, pod spec) for every workload and bare Pod."""
        for o in self:
            spec = None
            if o["kind"] == "Pod":
                spec = o["spec"]
            elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
                spec = o["spec"]["template"]["spec"]
            elif o["kind"] == "CronJob":
                spec = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            if spec is not None:
                yield f"{o['kind']}/{o['metadata']['name']}", spec

    def containers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for where, spec in self.pod_specs():
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                yield f"{where}:{c['name']}", c


def flags(command: list[str]) -> dict[str, str | bool | list[str | bool]]:
    """--key=value / --flag arguments of a container command as a dict; a repeated flag gives a list."""
    out: dict[str, str | bool | list[str | bool]] = {}
    for arg in command[2:]:
        assert arg.startswith("--"), f"positional or malformed argument {arg!r} in {command}"
        key, sep, text = arg.partition("=")
        value: str | bool = text if sep else True
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out
