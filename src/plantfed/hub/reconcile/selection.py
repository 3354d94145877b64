"""Which plants a round assigns, and why each of the others was left out.

A reason per excluded plant is what lets an OT engineer answer "why did my plant not train?"
from `kubectl describe` alone.

The ε budget is checked against the lineage's privacy ledger (what aggregation charged each plant), not
against the spent ε alone: a plant is left out when one more round with this round's DP parameters would
take it above the budget, so no round ever overspends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plantfed.contract.api.common import ConditionStatus, LabelSelector, SelectorOperator
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import PrivacyMode, RoundTemplate
from plantfed.engine.privacy.accounting import (
    DPMode,
    DPRelease,
    central_release,
    dearest_epsilon,
    epsilon_for,
    round_costs,
)
from plantfed.hub.reconcile.readiness import DEFAULT_HEARTBEAT_TIMEOUT, plant_readiness
from plantfed.hub.reconcile.schedule import open_window


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


def round_dp_costs(spec: RoundTemplate, history: Sequence[DPRelease] = ()) -> list[list[DPRelease]]:
    """What taking part in a round with this spec may cost a plant with this ledger `history`.

    One list of releases (the plant's own, the hub's central one) per case the hub cannot tell apart before
    the plant trains (see `plant_release_alternatives`); the budget check takes the dearest.
    """
    privacy = spec.privacy
    if privacy.mode is PrivacyMode.OFF:
        return []
    plant_mode = {PrivacyMode.LOCAL: DPMode.LOCAL, PrivacyMode.SAMPLE: DPMode.SAMPLE}.get(privacy.mode)
    central = (
        central_release(privacy.noise_multiplier, spec.strategy.norm_bound or privacy.clip_norm)
        if privacy.mode is PrivacyMode.CENTRAL
        else None
    )
    return round_costs(
        plant_mode,
        clip_norm=privacy.clip_norm,
        noise_multiplier=privacy.noise_multiplier,
        epochs=spec.training.epochs,
        central=central,
        history=history,
    )


def _over_budget(spec: RoundTemplate, history: Sequence[DPRelease]) -> str | None:
    """Why one more round would overspend the plant's ε budget, or None when it fits (or there is none)."""
    budget, delta = spec.privacy.epsilon_budget, spec.privacy.delta
    if spec.privacy.mode is PrivacyMode.OFF or budget is None:
        return None
    projected = dearest_epsilon(history, round_dp_costs(spec, history), delta)
    if projected <= budget:
        return None
    spent = epsilon_for(list(history), delta)
    return (
        f"epsilon spent {spent:.4g}; one more round would make it {projected:.4g}, "
        f"above the budget {budget:g} (delta {delta:g})"
    )


def _ineligible(
    pp: PlantParticipant,
    spec: RoundTemplate,
    now: datetime,
    heartbeat_timeout: timedelta,
    history: Sequence[DPRelease],
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
    over = _over_budget(spec, history)
    if over is not None:
        return "PrivacyBudgetExhausted", over
    return None


def select_plants(
    spec: RoundTemplate,
    plants: Sequence[PlantParticipant],
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    privacy: Mapping[str, Sequence[DPRelease]] | None = None,
) -> Selection:
    """Plants the round may assign at `now`.

    Candidates are the plants named in `spec.plants` (every plant when unset), narrowed by
    `spec.plantSelector`. Named plants that are missing or do not match the selector are reported
    as exclusions; unnamed plants that do not match are simply not candidates. `privacy` is each
    plant's release history in the round's lineage (the privacy ledger; a plant not in it has spent nothing).
    """
    histories = privacy or {}
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
        why = _ineligible(pp, spec, now, heartbeat_timeout, histories.get(pp.spec.plant_id, ()))
        if why is None:
            eligible.append(pp.spec.plant_id)
        else:
            excluded.append(Exclusion(pp.spec.plant_id, *why))
    return Selection(tuple(eligible), tuple(sorted(excluded, key=lambda e: e.plant)))
