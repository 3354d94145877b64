"""Real Kubernetes for tests: control planes built from the pinned binaries, fake GPU nodes
whose pods run as local processes, and wait helpers. See docs/development.md.
"""

from .cluster import CommandFailed, KubeCluster
from .controlplane import ControlPlane, ControlPlaneError, start_many
from .existing import ExistingCluster
from .noderunner import NodeRunner, NodeRunnerProcess, read_log
from .nodes import GPU_RESOURCE, PLANT_LABEL, NodeSpec
from .provisioner import STORAGE_CLASS
from .testbin import TestbinMissing, go_available, testbin_dir
from .wait import ConditionTimeout, wait_for, watch_until

__all__ = [
    "GPU_RESOURCE",
    "PLANT_LABEL",
    "STORAGE_CLASS",
    "CommandFailed",
    "ConditionTimeout",
    "ControlPlane",
    "ControlPlaneError",
    "ExistingCluster",
    "KubeCluster",
    "NodeRunner",
    "NodeRunnerProcess",
    "NodeSpec",
    "TestbinMissing",
    "go_available",
    "read_log",
    "start_many",
    "testbin_dir",
    "wait_for",
    "watch_until",
]
