"""How simulate runs a plant's `plantfed train` / `plantfed evaluate`: a fresh process per Job, or a warm worker.

`fresh` is what a pod does: a new interpreter per Job, which imports torch (about 5.7 s and 955 MiB RSS on a
small CPU) before it trains for a second or two. `warm` keeps one worker process per plant alive across rounds
(`plantfed plant-worker`): simulate writes a Job's argv as one JSON line on the worker's stdin, the worker runs
it through the same `plantfed` command-line code in-process, from a clean slate (see `plantfed.cli`), with its
output appended to the Job's log, and answers one JSON status line on a pipe of its own. A worker is still one
OS process per plant with that plant's token and data, talking real gRPC to the hub; nothing is shared with the
hub or the other plants. Stopping a Job (cancel, timeout, activeDeadlineSeconds) kills its worker; the plant
gets a new one when it next has work.

Warm workers stay alive between Jobs, so their number is bounded by a memory budget: at most
`budget // per-worker memory` are alive at once. A worker's memory is its proportional set size (Pss: its
private pages plus its share of the pages all workers map from the same torch libraries) after a Job, the largest
measured so far (1 GiB until one is measured). Its RSS would count those ~550 MiB of shared library text once per
worker and fit half the fleet that really fits; the peak RSS is reported too. A Job that needs a worker beyond
that evicts the least recently used idle worker, or waits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Protocol

FRESH, WARM = "fresh", "warm"
MODES = (FRESH, WARM)
MIB = 1 << 20
#: A worker's memory before any has been measured: a bearing plant with torch imported peaks near 1 GiB RSS.
WORKER_MEMORY_GUESS = 1024 * MIB
#: Share of the machine's available memory warm workers may hold by default (the hub and aggregation need the rest).
DEFAULT_BUDGET_SHARE = 0.75


def plantfed_command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "plantfed", *argv]


def proc_memory(pid: int, file: str, field: str) -> int | None:
    """A memory field of `/proc/PID/FILE` in bytes (status: VmHWM, VmRSS; smaps_rollup: Pss), None if missing."""
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def available_memory() -> int:
    """MemAvailable of this machine in bytes (total physical memory where /proc/meminfo is missing)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget() -> int:
    return int(available_memory() * DEFAULT_BUDGET_SHARE)


def worker_capacity(budget: int, worker_memory: int) -> int:
    """How many warm workers fit in `budget` bytes; always at least one, or nothing could ever run."""
    return max(1, budget // max(1, worker_memory))


class Run(Protocol):
    """One Job's process as simulate watches it: the same calls whether it is a fresh process or a warm worker."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float) -> int:
        """The exit code; raises `subprocess.TimeoutExpired` if it has none after `timeout` seconds."""
        ...

    def kill(self) -> None:
        """SIGKILL now and reap."""
        ...

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s, reap."""
        ...


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FreshRun:
    """`plantfed ARGV` as a process of its own, as a pod runs it."""

    def __init__(self, argv: list[str], log: Path, env: Mapping[str, str]) -> None:
        self._log: IO[bytes] | None = open(log, "ab")
        self.proc = subprocess.Popen(plantfed_command(argv), stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def _closed(self, code: int | None) -> int | None:
        if code is not None and self._log is not None:
            self._log.close()
            self._log = None
        return code

    def poll(self) -> int | None:
        return self._closed(self.proc.poll())

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._closed(code)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self._closed(self.proc.wait())

    def stop(self) -> None:
        _stop(self.proc)
        self._closed(self.proc.returncode)


class Fresh:
    """A fresh process per Job: no limit beyond simulate's `--parallel`."""

    mode = FRESH
    max_alive = 0

    def warm_for(self, plant: str) -> bool:
        return False

    def start(self, plant: str, argv: list[str], log: Path, env: Mapping[str, str], *, overflow: bool = False) -> Run:
        return FreshRun(argv, log, env)

    def close(self) -> None:
        pass


class Worker:
    """One warm `plantfed plant-worker` process of one plant, and the status lines it has answered."""

    def __init__(self, plant: str, log: Path, env: Mapping[str, str]) -> None:
        self.plant = plant
        read, write = os.pipe()
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                plantfed_command(["plant-worker", "--status-fd", str(write)]),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=(write,),
            )
        os.close(write)
        self._status = os.fdopen(read, "rb")
        self._done: dict[int, int] = {}
        self._cond = threading.Condition()
        self.job: int | None = None
        self.used = time.monotonic()
        #: Measured after each Job: peak RSS (VmHWM) and the largest Pss (see the module docstring).
        self.peak_rss: int | None = None
        self.memory: int | None = None
        threading.Thread(target=self._read, name=f"worker-{plant}", daemon=True).start()

    def _read(self) -> None:
        """Collect status lines until the worker's end of the pipe closes (it exited or was killed)."""
        for line in self._status:
            answer = json.loads(line)
            with self._cond:
                self._done[int(answer["id"])] = int(answer["code"])
                self._cond.notify_all()
        self._status.close()
        self.proc.wait()
        with self._cond:
            self._cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def idle(self) -> bool:
        return self.job is None and self.alive

    def submit(self, job: int, argv: list[str], log: Path) -> None:
        assert self.proc.stdin is not None and self.job is None
        self.job, self.used = job, time.monotonic()
        self.proc.stdin.write((json.dumps({"id": job, "argv": argv, "log": str(log)}) + "\n").encode())
        self.proc.stdin.flush()

    def code(self, job: int) -> int | None:
        """The Job's exit code: its status line, or the worker's own exit code if it died first (a crash)."""
        with self._cond:
            if job in self._done:
                if self.job == job:
                    self.job, self.used = None, time.monotonic()
                    self._measure()
                return self._done[job]
            return self.proc.poll()

    def _measure(self) -> None:
        rss = proc_memory(self.proc.pid, "status", "VmHWM")
        pss = proc_memory(self.proc.pid, "smaps_rollup", "Pss") or rss
        self.peak_rss = max(rss or 0, self.peak_rss or 0) or None
        self.memory = max(pss or 0, self.memory or 0) or None

    def wait(self, job: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (code := self.code(job)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(f"plant-worker {self.plant}", timeout)
                self._cond.wait(min(left, 1.0))
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        """End of input: an idle worker exits by itself; one still busy is stopped."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _stop(self.proc)


class WarmRun:
    """One Job inside a warm worker; stopping the Job kills its worker (a fresh one comes when needed)."""

    def __init__(self, worker: Worker, job: int) -> None:
        self.worker, self.job = worker, job

    def poll(self) -> int | None:
        return self.worker.code(self.job)

    def wait(self, timeout: float) -> int:
        return self.worker.wait(self.job, timeout)

    def kill(self) -> None:
        self.worker.kill()

    def stop(self) -> None:
        _stop(self.worker.proc)


class Warm:
    """Warm workers, at most `capacity` alive at once (see the module docstring)."""

    mode = WARM

    def __init__(self, budget: int | None = None) -> None:
        self.budget = default_budget() if budget is None else budget
        self.workers: list[Worker] = []
        #: Every worker ever started, for the largest peak RSS (evicted ones included).
        self.started: list[Worker] = []
        self.max_alive = 0
        self._jobs = 0
        self._lock = threading.Lock()

    def warm_for(self, plant: str) -> bool:
        """The plant has an idle worker: its next Job starts without importing anything."""
        return any(w.plant == plant and w.idle for w in self.workers)

    @property
    def worker_memory(self) -> int:
        """The largest Pss any worker has had after a Job (the guess until one has finished a Job)."""
        return max((w.memory for w in self.started if w.memory), default=WORKER_MEMORY_GUESS)

    @property
    def worker_peak_rss(self) -> int | None:
        return max((w.peak_rss for w in self.started if w.peak_rss), default=None)

    @property
    def capacity(self) -> int:
        return worker_capacity(self.budget, self.worker_memory)

    def start(
        self, plant: str, argv: list[str], log: Path, env: Mapping[str, str], *, overflow: bool = False
    ) -> Run | None:
        """Run the Job in an idle worker of the plant, or a new one if the budget allows; None: it must wait.

        `overflow`: every live worker is busy with an upload held until the virtual clock moves, which cannot
        move before this Job has run, so it gets a worker beyond the budget rather than never.
        """
        with self._lock:
            for dead in [w for w in self.workers if not w.alive]:
                dead.close()
                self.workers.remove(dead)
            worker = next((w for w in self.workers if w.plant == plant and w.idle), None)
            if worker is None:
                if len(self.workers) >= self.capacity:
                    idle = [w for w in self.workers if w.idle]
                    if idle:
                        lru = min(idle, key=lambda w: w.used)
                        lru.close()
                        self.workers.remove(lru)
                    elif not overflow:
                        return None
                worker = Worker(plant, log, env)
                self.workers.append(worker)
                self.started.append(worker)
                self.max_alive = max(self.max_alive, len(self.workers))
            self._jobs += 1
            worker.submit(self._jobs, argv, log)
            return WarmRun(worker, self._jobs)

    def close(self) -> None:
        with self._lock:
            for worker in self.workers:
                worker.close()
            self.workers.clear()


def processes(mode: str, memory_budget: int | None = None) -> Fresh | Warm:
    if mode == FRESH:
        return Fresh()
    if mode == WARM:
        return Warm(memory_budget)
    raise ValueError(f"plant processes must be one of {', '.join(MODES)}, not {mode!r}")
