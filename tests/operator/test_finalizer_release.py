"""An operator that stops takes kopf's finalizer off what it watches, and nothing else."""

from __future__ import annotations

from plantfed.hub.reconcile.patch import apply_merge_patch, finalizer_release

KOPF = "kopf.zalando.org/KopfFinalizerMarker"


def test_only_kopfs_finalizer_is_removed_and_others_are_kept():
    meta = {"resourceVersion": "42", "finalizers": ["example.com/backup", KOPF]}
    patch = finalizer_release(meta, KOPF)
    assert patch == {"metadata": {"resourceVersion": "42", "finalizers": ["example.com/backup"]}}


def test_the_last_finalizer_leaves_no_empty_list_behind():
    patch = finalizer_release({"resourceVersion": "7", "finalizers": [KOPF]}, KOPF)
    assert patch is not None
    assert apply_merge_patch({"resourceVersion": "7", "finalizers": [KOPF], "name": "r1"}, patch["metadata"]) == {
        "resourceVersion": "7",
        "name": "r1",
    }


def test_an_object_without_it_is_not_patched():
    assert finalizer_release({"resourceVersion": "1"}, KOPF) is None
    assert finalizer_release({"resourceVersion": "1", "finalizers": ["example.com/backup"]}, KOPF) is None
