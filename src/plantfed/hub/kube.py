"""Kubernetes API access for the handlers: custom objects and Jobs as plain dicts.

The handlers read objects fresh from the API server before every decision (kopf's cached body
may predate the handler's own last status patch), and patch status with a resourceVersion
precondition so a decision made from an outdated object is refused (409) and retried.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from plantfed.contract.api.common import GROUP, VERSION
from plantfed.hub.reconcile.patch import finalizer_release

MERGE_PATCH = "application/merge-patch+json"

log = logging.getLogger(__name__)


def load_config() -> None:
    """In-cluster ServiceAccount credentials when running in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class Kube:
    """The few API calls the operator makes; one instance per process (thread-safe client)."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient()
        self.custom = client.CustomObjectsApi(self.api)
        self.batch = client.BatchV1Api(self.api)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return cast(
                dict[str, Any], self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        """The objects of one kind in `namespace`, or in every namespace for None (a cluster-wide operator)."""
        if namespace is None:
            listing = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return list(cast(dict[str, Any], listing).get("items", []))

    def release_finalizers(self, plurals: tuple[str, ...], namespace: str | None, finalizer: str) -> int:
        """Take `finalizer` off every object of `plurals` in `namespace` (None: everywhere); how many it was on.

        See `finalizer_release` for why. An object that changes meanwhile is read again (409); one that cannot
        be patched is logged and skipped, so the rest are still released.
        """
        released = 0
        for plural in plurals:
            for body in self.list(plural, namespace):
                meta = body["metadata"]
                try:
                    released += self._release(plural, body, finalizer)
                except ApiException as exc:
                    log.warning("could not release %s %s/%s: %s", plural, meta["namespace"], meta["name"], exc)
        return released

    def _release(self, plural: str, body: dict[str, Any] | None, finalizer: str, attempts: int = 3) -> bool:
        for attempt in range(attempts):
            patch = finalizer_release(body["metadata"], finalizer) if body is not None else None
            if body is None or patch is None:
                return False
            meta = body["metadata"]
            try:
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], plural, meta["name"], patch, _content_type=MERGE_PATCH
                )
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return False
                if exc.status != 409 or attempt == attempts - 1:
                    raise
            body = self.get(plural, meta["namespace"], meta["name"])
        return False

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> bool:
        """Create; False when an object of that name exists already (the action was done before)."""
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def patch_labels(self, plural: str, body: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
        """Merge `labels` into the object's metadata, refused with 409 if it changed since `body` was read."""
        meta = body["metadata"]
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"], "labels": labels}}
        patched = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], plural, meta["name"], patch, _content_type=MERGE_PATCH
        )
        return cast(dict[str, Any], patched)

    def delete(self, plural: str, namespace: str, name: str, uid: str) -> bool:
        """Delete that object (the uid must match, so a re-created namesake is kept); False when it is gone."""
        options = client.V1DeleteOptions(
            propagation_policy="Background", preconditions=client.V1Preconditions(uid=uid) if uid else None
        )
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body=options)
            return True
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise

    def patch_status(self, plural: str, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch `status`, refused with 409 if the object changed since `body` was read."""
        meta = body["metadata"]
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        patched = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], plural, meta["name"], patch, _content_type=MERGE_PATCH
        )
        return cast(dict[str, Any], patched)

    def patch_status_fields(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge-patch fields of `status` that only the operator writes (no precondition); False if gone."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}, _content_type=MERGE_PATCH
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            # Without preloading the client returns the raw HTTP response (its annotation says V1Job).
            response: Any = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(response.data)

    def create_job(self, body: dict[str, Any]) -> bool:
        """Create; False when the Job exists already (409)."""
        try:
            # The client serialises a plain dict as well; its annotation names only the V1Job model.
            self.batch.create_namespaced_job(body["metadata"]["namespace"], body)  # type: ignore[arg-type]
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
