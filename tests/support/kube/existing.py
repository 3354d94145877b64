"""A cluster the developer already runs (kind, k3d...), named by PLANTFED_TEST_KUBECONFIG."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import yaml

from .cluster import KubeCluster


class ExistingCluster(KubeCluster):
    """Wraps an admin kubeconfig; ``stop()`` leaves the cluster running."""

    def __init__(self, kubeconfig: Path, name: str = "existing", directory: Path | None = None) -> None:
        self.name = name
        self.kubeconfig = Path(kubeconfig)
        self.directory = directory or Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        document = yaml.safe_load(self.kubeconfig.read_text())
        contexts = {c["name"]: c["context"] for c in document.get("contexts") or []}
        current = contexts.get(document.get("current-context"))
        if current is None:
            raise ValueError(f"{self.kubeconfig}: no current-context")
        clusters = {c["name"]: c["cluster"] for c in document.get("clusters") or []}
        cluster = clusters[current["cluster"]]
        self.server = cluster["server"]
        if "certificate-authority-data" in cluster:
            self.ca_file = self.directory / "ca.crt"
            self.ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        elif "certificate-authority" in cluster:
            self.ca_file = (self.kubeconfig.parent / cluster["certificate-authority"]).resolve()
        else:
            raise ValueError(f"{self.kubeconfig}: cluster {current['cluster']!r} has no CA")
