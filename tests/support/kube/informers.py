"""Stopping the kubernetes client's SharedInformer without blocking or noise."""

from __future__ import annotations

import logging
import threading

from kubernetes.informer import SharedInformer


class _QuietAfterStop(logging.Filter):
    """Drops the informer's tracebacks from threads told to stop: their watch connection
    breaking as the runner or the API server goes away is expected, not an error."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in self.stopped


_quiet_after_stop = _QuietAfterStop()
logging.getLogger("kubernetes.informer.informer").addFilter(_quiet_after_stop)


def stop_informer(informer: SharedInformer) -> None:
    """SharedInformer.stop() joins a thread blocked on the watch; don't wait for it."""
    thread = getattr(informer, "_thread", None)
    if thread is not None and thread.ident is not None:
        _quiet_after_stop.stopped.add(thread.ident)
    threading.Thread(target=informer.stop, name="informer-stop", daemon=True).start()
