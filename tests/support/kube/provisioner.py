"""A dynamic provisioner that backs PersistentVolumeClaims with host directories.

It plays the external-provisioner role for StorageClass ``plantfed-local``: the real
PV controller in kube-controller-manager marks claims of that class for us, we create a
hostPath PersistentVolume pre-bound to the claim, and the PV controller completes the
binding. Released volumes of reclaim policy Delete are removed with their directory.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.informer import ADDED, MODIFIED, SharedInformer

from .informers import stop_informer

STORAGE_CLASS = "plantfed-local"
PROVISIONER = "plantfed.dev/local-dir"
_CLAIM_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"

log = logging.getLogger(__name__)


def ensure_storage_class(storage: client.StorageV1Api) -> None:
    """Create the class; make it the default unless the cluster already has one."""
    classes = storage.list_storage_class().items
    if any(c.metadata.name == STORAGE_CLASS for c in classes):
        return
    has_default = any((c.metadata.annotations or {}).get(_DEFAULT_CLASS) == "true" for c in classes)
    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {} if has_default else {_DEFAULT_CLASS: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    try:
        storage.create_storage_class(body)
    except ApiException as exc:
        if exc.status != 409:
            raise


class DirectoryProvisioner:
    def __init__(self, api: client.ApiClient, root: Path) -> None:
        self.core = client.CoreV1Api(api)
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._claims = SharedInformer(self.core.list_persistent_volume_claim_for_all_namespaces)
        self._volumes = SharedInformer(self.core.list_persistent_volume)
        for event in (ADDED, MODIFIED):
            self._claims.add_event_handler(event, self._on_claim)
            self._volumes.add_event_handler(event, self._on_volume)

    def start(self) -> None:
        ensure_storage_class(client.StorageV1Api(self.core.api_client))
        self._claims.start()
        self._volumes.start()

    def stop(self) -> None:
        for informer in (self._claims, self._volumes):
            stop_informer(informer)

    def _on_claim(self, pvc: client.V1PersistentVolumeClaim) -> None:
        annotations = pvc.metadata.annotations or {}
        if annotations.get(_CLAIM_ANNOTATION) != PROVISIONER or pvc.spec.volume_name:
            return
        if pvc.status is not None and pvc.status.phase != "Pending":
            return
        name = f"pvc-{pvc.metadata.uid}"
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        requests = (pvc.spec.resources.requests or {}) if pvc.spec.resources else {}
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {_PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": requests.get("storage", "1Gi")},
                "accessModes": pvc.spec.access_modes or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": pvc.spec.storage_class_name,
                "volumeMode": pvc.spec.volume_mode or "Filesystem",
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": pvc.metadata.namespace,
                    "name": pvc.metadata.name,
                    "uid": pvc.metadata.uid,
                },
            },
        }
        try:
            self.core.create_persistent_volume(body)
        except ApiException as exc:
            if exc.status != 409:  # 409: another runner of this cluster was faster
                log.warning("provisioning %s failed: %s", name, exc)

    def _on_volume(self, pv: client.V1PersistentVolume) -> None:
        annotations = pv.metadata.annotations or {}
        if annotations.get(_PROVISIONED_BY) != PROVISIONER:
            return
        if pv.status is None or pv.status.phase != "Released":
            return
        if pv.spec.persistent_volume_reclaim_policy != "Delete":
            return
        if pv.spec.host_path is not None:
            path = Path(pv.spec.host_path.path)
            if path.parent == self.root:
                shutil.rmtree(path, ignore_errors=True)
        try:
            self.core.delete_persistent_volume(pv.metadata.name)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("deleting %s failed: %s", pv.metadata.name, exc)
