"""Pure reconcile logic: spec + observed state + `now` → new status and typed actions.

No Kubernetes client, no I/O, no clock reads here; kopf handlers are thin adapters that gather
observations, call these functions, patch status and execute the actions.
"""

from plantfed.hub.reconcile.actions import (
    Action,
    CloseExchangeRound,
    CreateAggregationJob,
    CreateRound,
    DeleteRound,
    EmitEvent,
    EventType,
    InitializeModel,
    OpenExchangeRound,
    Promote,
    RecordPrivacySpend,
)
from plantfed.hub.reconcile.conditions import get_condition, is_true, set_condition
from plantfed.hub.reconcile.model import (
    ModelDecision,
    expired_rounds,
    new_round,
    reconcile_model,
    round_name,
    round_number,
)
from plantfed.hub.reconcile.patch import apply_merge_patch, merge_patch, status_patch
from plantfed.hub.reconcile.readiness import (
    ParticipantDecision,
    plant_readiness,
    reconcile_participant,
)
from plantfed.hub.reconcile.round import (
    JobObservation,
    JobState,
    ObservedRound,
    RoundDecision,
    Upload,
    aggregation_job_name,
    assignment_labels,
    promotion_verdict,
    reconcile_round,
)
from plantfed.hub.reconcile.selection import (
    Exclusion,
    Selection,
    matches_selector,
    round_dp_costs,
    select_plants,
)

__all__ = [
    "Action",
    "CloseExchangeRound",
    "CreateAggregationJob",
    "CreateRound",
    "DeleteRound",
    "EmitEvent",
    "EventType",
    "InitializeModel",
    "OpenExchangeRound",
    "Promote",
    "RecordPrivacySpend",
    "get_condition",
    "is_true",
    "set_condition",
    "ModelDecision",
    "expired_rounds",
    "new_round",
    "reconcile_model",
    "round_name",
    "round_number",
    "apply_merge_patch",
    "merge_patch",
    "status_patch",
    "ParticipantDecision",
    "plant_readiness",
    "reconcile_participant",
    "JobObservation",
    "JobState",
    "ObservedRound",
    "RoundDecision",
    "Upload",
    "promotion_verdict",
    "aggregation_job_name",
    "assignment_labels",
    "reconcile_round",
    "Exclusion",
    "Selection",
    "matches_selector",
    "round_dp_costs",
    "select_plants",
]
