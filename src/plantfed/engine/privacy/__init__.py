"""Differential-privacy accounting for plants' participation (see docs/security.md)."""

from plantfed.engine.privacy.accounting import (
    DPMode,
    DPRelease,
    LedgerEntry,
    LedgerError,
    PrivacyLedger,
    central_release,
    dearest_epsilon,
    epsilon_for,
    ledger_round_id,
    plant_release_alternatives,
    release_for_update,
    round_costs,
    round_releases,
)

__all__ = [
    "DPMode",
    "DPRelease",
    "LedgerEntry",
    "LedgerError",
    "PrivacyLedger",
    "central_release",
    "dearest_epsilon",
    "epsilon_for",
    "ledger_round_id",
    "plant_release_alternatives",
    "release_for_update",
    "round_costs",
    "round_releases",
]
