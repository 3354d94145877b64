"""The kube-apiserver audit log of a control plane started with ``audit=True``.

The policy records every request at the ``Metadata`` level (who, verb, object, response code; never
bodies), which is what a live RBAC check needs: the (apiGroup, resource, verb) an identity actually
used, and whether it was ever refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
# One event per request once the response is complete (and one when a watch starts streaming).
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""

Grant = tuple[str, str, str]
"""(apiGroup, resource[/subresource], verb); the core group is ""."""


def write_policy(directory: Path) -> Path:
    path = directory / "audit-policy.yaml"
    path.write_text(POLICY)
    return path


def read_events(log: Path) -> Iterator[dict]:
    """Every event in ``log`` and in the files the API server rotated it into (``audit-<time>.log``)."""
    for path in sorted(log.parent.glob(f"{log.stem}*{log.suffix}")):
        with path.open() as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def grant_of(event: dict) -> Grant | None:
    """What an event exercised, or None for non-resource requests (discovery, /healthz)."""
    ref = event.get("objectRef")
    if not ref or "resource" not in ref:
        return None
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", ""), resource, event["verb"]


def by_user(events: Iterable[dict], username: str) -> list[dict]:
    return [e for e in events if e.get("user", {}).get("username") == username]


def rbac_grants(roles: Iterable[dict]) -> set[Grant]:
    """Every (apiGroup, resource, verb) the rules of Roles/ClusterRoles grant (resourceNames ignored)."""
    return {
        (group, resource, verb)
        for role in roles
        for rule in role.get("rules", [])
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }
