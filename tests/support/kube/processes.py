"""Child processes that cannot outlive the test run.

Every process is started in its own session (so its whole process group can be signalled),
with PR_SET_PDEATHSIG so the kernel kills it if the test process dies, and is registered so
that an atexit hook and a SIGTERM handler stop whatever a failed or interrupted run left.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so all children are
forked by one long-lived daemon thread rather than by whichever (short-lived) thread asks.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _Spawner:
    """Owns the forking thread and the set of live children."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen], Future]] = queue.SimpleQueue()
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="child-spawner", daemon=True).start()
        atexit.register(self.kill_all)
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                signal.signal(signal.SIGTERM, self._on_sigterm)

    def _serve(self) -> None:
        while True:
            start, future = self._requests.get()
            try:
                future.set_result(start())
            except BaseException as exc:  # delivered to the caller, not lost in this thread
                future.set_exception(exc)

    def spawn(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        future: Future[subprocess.Popen] = Future()
        self._requests.put((start, future))
        proc = future.result()
        with self._lock:
            self._children.add(proc)
        return proc

    def forget(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._children.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            children = list(self._children)
        for proc in children:
            terminate(proc, grace=2.0)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.kill_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


# Created at import (normally on the main thread) so the SIGTERM handler can be installed.
_spawner = _Spawner()


def spawn(
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen:
    """Start ``argv`` in a new session with stdout+stderr appended to ``log``."""
    parent = os.getpid()

    def start() -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent(parent),
            )

    return _spawner.spawn(start)


def signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds; return the exit code.

    The group is always swept with SIGKILL at the end so that children the leader left
    behind do not linger.
    """
    if proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc, signal.SIGKILL)
    code = proc.wait()
    _spawner.forget(proc)
    return code


def forget(proc: subprocess.Popen) -> None:
    """Drop a process that exited on its own from the cleanup set."""
    _spawner.forget(proc)
