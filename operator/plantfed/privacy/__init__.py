"""Differential-privacy accounting for plants' participation (see docs/security.md)."""

from plantfed.privacy.accounting import (
    DPMode,
    DPRelease,
    PrivacyLedger,
    central_release,
    epsilon_for,
    release_for_update,
)

__all__ = ["DPMode", "DPRelease", "PrivacyLedger", "central_release", "epsilon_for", "release_for_update"]
