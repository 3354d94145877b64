"""What the reconcile functions ask the outside world to do.

Each action is idempotent by construction (named objects, exchange round ids, store versions),
so a handler may execute an action again after a crash without harm; the reconcile functions
keep asking for it until the observed state shows it done.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from plantfed.contract.api.model import InitialWeights
from plantfed.contract.api.round import FederatedRound, Privacy, Strategy
from plantfed.contract.records import Codec, RoundRecord


@dataclass(frozen=True)
class OpenExchangeRound:
    """Open the round on the gRPC exchange so the assigned plants may upload (no-op if open)."""

    record: RoundRecord


@dataclass(frozen=True)
class CloseExchangeRound:
    """Stop accepting uploads for the round (no-op if already closed)."""

    round_id: str


@dataclass(frozen=True)
class CreateAggregationJob:
    """Create the batch/v1 Job that aggregates exactly `plants`' updates (409 Conflict = done).

    The plant list comes from the round's status, frozen before this action is issued, so a
    re-created Job aggregates the same set.
    """

    name: str
    round_id: str
    model: str
    base_version: int
    plants: tuple[str, ...]
    strategy: Strategy
    privacy: Privacy
    compression: Codec


@dataclass(frozen=True)
class Promote:
    """Mark `version` as the model's promoted version in the store."""

    model: str
    version: int
    round_id: str


@dataclass(frozen=True)
class CreateRound:
    """Create the FederatedRound (owned by its FederatedModel; 409 Conflict = done)."""

    round: FederatedRound


@dataclass(frozen=True)
class DeleteRound:
    """Delete a finished round past the model's retention (only that object: the uid must match; 404 = done)."""

    name: str
    uid: str


@dataclass(frozen=True)
class InitializeModel:
    """Write version 0 of the lineage to the store, from a seed or a published version."""

    model: str
    task: str
    variant: str
    initial_weights: InitialWeights


@dataclass(frozen=True)
class RecordPrivacySpend:
    """Set the plant's `PlantParticipant.status.dpEpsilon` to the ε it has spent (that field alone)."""

    plant: str
    epsilon: float


class EventType(str, Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class EmitEvent:
    """A Kubernetes Event on the reconciled object; emitted once, on the transition it reports."""

    type: EventType
    reason: str
    message: str


Action = (
    OpenExchangeRound
    | CloseExchangeRound
    | CreateAggregationJob
    | Promote
    | CreateRound
    | DeleteRound
    | InitializeModel
    | RecordPrivacySpend
    | EmitEvent
)
