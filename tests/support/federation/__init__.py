"""A federation installed as a user would: the hub chart in one cluster, the plant chart in each plant's
(used by tests/e2e; the clusters come from support.kube)."""
