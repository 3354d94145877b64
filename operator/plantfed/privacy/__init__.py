"""Differential-privacy accounting for plants' participation (see docs/security.md)."""

from plantfed.privacy.accounting import (
    DPMode,
    DPRelease,
    LedgerEntry,
    LedgerError,
    PrivacyLedger,
    central_release,
    epsilon_for,
    ledger_round_id,
    release_for_update,
    round_releases,
)

__all__ = [
    "DPMode", "DPRelease", "LedgerEntry", "LedgerError", "PrivacyLedger", "central_release", "epsilon_for",
    "ledger_round_id", "release_for_update", "round_releases",
]
