"""The plantfed API (group, version: `plantfed.contract.naming`): the CRDs as pydantic models, source of the YAML."""

from plantfed.contract.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    LabelSelector,
    MetricGoal,
)
from plantfed.contract.api.model import FederatedModel, FederatedModelSpec, FederatedModelStatus
from plantfed.contract.api.participant import (
    PlantParticipant,
    PlantParticipantSpec,
    PlantParticipantStatus,
)
from plantfed.contract.api.round import (
    FederatedRound,
    FederatedRoundSpec,
    FederatedRoundStatus,
    RoundTemplate,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "LabelSelector",
    "MetricGoal",
    "FederatedModel",
    "FederatedModelSpec",
    "FederatedModelStatus",
    "FederatedRound",
    "FederatedRoundSpec",
    "FederatedRoundStatus",
    "RoundTemplate",
    "PlantParticipant",
    "PlantParticipantSpec",
    "PlantParticipantStatus",
]
