"""plantfed's generated CRDs (crds/) installed into a test cluster."""

from __future__ import annotations

import yaml

from support.kube.environment import ClusterWithNodes
from support.paths import REPO

CRDS = REPO / "crds"


def apply_crds(cluster: ClusterWithNodes) -> None:
    """Apply the CRDs server-side and wait until they are Established.

    Server-side rather than owned by a Helm release, because tests sharing the session's cluster all apply
    them: applying again is a no-op, and no release's uninstall removes them from under another test.
    """
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for path in sorted(CRDS.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
