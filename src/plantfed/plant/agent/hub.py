"""The agent's view of the hub cluster, through the plant's restricted ServiceAccount.

The hub chart's Role lets this identity get/watch/patch only its own PlantParticipant (by resourceNames)
and read rounds and models; nothing here asks for more.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from plantfed.contract.naming import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"


class Hub:
    def __init__(self, api: client.ApiClient, namespace: str, plant: str) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.plant = plant

    def participant(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "plantparticipants", self.plant)

    def patch_status(self, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch fields of our own status; fields not named (the operator's conditions) stay as they are."""
        return self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            "plantparticipants",
            self.plant,
            {"status": status},
            _content_type=MERGE_PATCH,
        )

    def list(self, plural: str) -> dict[str, Any]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)

    def rounds(self) -> list[dict[str, Any]]:
        return list(self.list("federatedrounds").get("items") or [])

    def models(self) -> list[dict[str, Any]]:
        return list(self.list("federatedmodels").get("items") or [])
