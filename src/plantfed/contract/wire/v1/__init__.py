"""Version 1 of the hub <-> plant wire protocol (generated; do not edit by hand)."""
