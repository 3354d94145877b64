"""The plant agent: takes round assignments from the hub and runs training as a Job in the plant's cluster.

Pure parts (`observe`, `decide`, `jobspec`) turn what the agent sees into typed actions and manifests and are
tested without a cluster; `hub`, `local` and `loop` are the thin I/O around them. See docs/architecture.md,
step 3 ("Train at the plant") and step 8 ("Cache at the plant").
"""

from plantfed.plant.agent.config import AgentConfig
from plantfed.plant.agent.decide import (
    AgentView,
    CancelTrainingJob,
    CreateTrainingJob,
    RefreshModel,
    ReportAssignment,
    TrainingSpec,
    decide,
)
from plantfed.plant.agent.observe import TrainingObservation, TrainingPhase, observe_training

__all__ = [
    "AgentConfig",
    "AgentView",
    "CancelTrainingJob",
    "CreateTrainingJob",
    "RefreshModel",
    "ReportAssignment",
    "TrainingSpec",
    "decide",
    "TrainingObservation",
    "TrainingPhase",
    "observe_training",
]
