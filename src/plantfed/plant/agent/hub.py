"""The agent's view of the hub cluster, through the plant's restricted ServiceAccount.

The hub chart's Role lets this identity get/watch its own PlantParticipant and patch only its status (both by
resourceNames), and read rounds and models; nothing here asks for more. Rounds are listed and watched with the
label selector `assigned_label(plant)` (the operator labels each round for the plants it assigns), so another
plant's round changing costs this agent no read.
"""

from __future__ import annotations

import builtins
from typing import Any, cast

from kubernetes import client

from plantfed.contract.naming import GROUP, VERSION, assigned_label

MERGE_PATCH = "application/merge-patch+json"


class Hub:
    def __init__(self, api: client.ApiClient, namespace: str, plant: str) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.plant = plant

    def participant(self, timeout: float | None = None) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "plantparticipants", self.plant, _request_timeout=timeout
        )
        return cast(dict[str, Any], found)

    def patch_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch fields of our own status; fields not named (the operator's conditions) stay as they are."""
        patched = self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            "plantparticipants",
            self.plant,
            {"status": status},
            _content_type=MERGE_PATCH,
        )
        return cast(dict[str, Any], patched)

    @property
    def round_selector(self) -> str:
        """Only the rounds the operator assigned this plant to."""
        return assigned_label(self.plant)

    def list(self, plural: str, **kwargs: Any) -> dict[str, Any]:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, **kwargs)
        return cast(dict[str, Any], listing)

    # `list` above is a method here, so the builtin is named explicitly in annotations.
    def rounds(self) -> builtins.list[dict[str, Any]]:
        return list(self.list("federatedrounds", label_selector=self.round_selector).get("items") or [])

    def models(self) -> builtins.list[dict[str, Any]]:
        return list(self.list("federatedmodels").get("items") or [])
