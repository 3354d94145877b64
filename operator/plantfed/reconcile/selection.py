"""Which plants a round assigns, and why each of the others was left out.

A reason per excluded plant is what lets an OT engineer answer "why did my plant not train?"
from `kubectl describe` alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plantfed.api.common import ConditionStatus, LabelSelector, SelectorOperator
from plantfed.api.participant import PlantParticipant
from plantfed.api.round import PrivacyMode, RoundTemplate
from plantfed.reconcile.readiness import DEFAULT_HEARTBEAT_TIMEOUT, plant_readiness
from plantfed.reconcile.schedule import open_window


@dataclass(frozen=True)
class Exclusion:
    plant: str
    reason: str
    message: str


@dataclass(frozen=True)
class Selection:
    """Eligible plant ids (sorted, so the same inputs give the same assignment) and exclusions."""

    eligible: tuple[str, ...]
    excluded: tuple[Exclusion, ...]


def matches_selector(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """`metav1.LabelSelector` semantics: all requirements must hold; an empty selector matches all."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        ok = {
            SelectorOperator.IN: present and labels.get(req.key) in req.values,
            SelectorOperator.NOT_IN: not present or labels.get(req.key) not in req.values,
            SelectorOperator.EXISTS: present,
            SelectorOperator.DOES_NOT_EXIST: not present,
        }[req.operator]
        if not ok:
            return False
    return True


def _ineligible(
    pp: PlantParticipant, spec: RoundTemplate, now: datetime, heartbeat_timeout: timedelta
) -> tuple[str, str] | None:
    """Why a candidate plant cannot train now, or None; the first reason that applies wins."""
    if pp.metadata.deletion_timestamp is not None:
        return "Deleting", "the PlantParticipant is being deleted"
    if pp.spec.paused:
        return "Paused", "spec.paused is true"
    ready = plant_readiness(pp, now, heartbeat_timeout)
    if ready.status is not ConditionStatus.TRUE:
        return "NotReady", ready.message
    window = open_window(pp.spec.maintenance_windows, now)
    if window is not None:
        until = window.end.strftime("%Y-%m-%dT%H:%M:%SZ")
        return "InMaintenance", f"maintenance window {window.window.schedule!r} until {until}"
    if pp.spec.capacity.gpus < spec.pod.gpus:
        return "InsufficientGpus", f"round needs {spec.pod.gpus} GPUs, plant has {pp.spec.capacity.gpus}"
    budget = spec.privacy.epsilon_budget
    spent = pp.status.dp_epsilon
    if spec.privacy.mode is not PrivacyMode.OFF and budget is not None and spent is not None and spent >= budget:
        return "PrivacyBudgetExhausted", f"plant has spent epsilon {spent:g} of the budget {budget:g}"
    return None


def select_plants(
    spec: RoundTemplate,
    plants: Sequence[PlantParticipant],
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> Selection:
    """Plants the round may assign at `now`.

    Candidates are the plants named in `spec.plants` (every plant when unset), narrowed by
    `spec.plantSelector`. Named plants that are missing or do not match the selector are reported
    as exclusions; unnamed plants that do not match are simply not candidates.
    """
    by_id = {pp.spec.plant_id: pp for pp in plants}
    named = spec.plants is not None
    excluded: list[Exclusion] = []
    candidates: list[PlantParticipant] = []
    for plant_id in sorted(set(spec.plants or ()) if named else by_id):
        pp = by_id.get(plant_id)
        if pp is None:
            excluded.append(Exclusion(plant_id, "NotFound", "no PlantParticipant with this plantId"))
        elif spec.plant_selector is not None and not matches_selector(spec.plant_selector, pp.metadata.labels):
            if named:
                excluded.append(Exclusion(plant_id, "SelectorMismatch", "labels do not match plantSelector"))
        else:
            candidates.append(pp)
    eligible: list[str] = []
    for pp in candidates:
        why = _ineligible(pp, spec, now, heartbeat_timeout)
        if why is None:
            eligible.append(pp.spec.plant_id)
        else:
            excluded.append(Exclusion(pp.spec.plant_id, *why))
    return Selection(tuple(eligible), tuple(sorted(excluded, key=lambda e: e.plant)))
