"""The life of one pod on a fake node: volumes, init containers, containers, probes,
restarts, status reports and graceful deletion, driven by one thread per pod.

The thread owns the pod's status, so reports are never reordered; it wakes when the API
object changes, when a container exits, or at the next probe/restart deadline.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import probes
from .podenv import ConfigError, DataLookup, Pod, container_argv, container_env
from .processes import signal_group, spawn, terminate
from .testbin import REPO_ROOT
from .volumes import VolumeContext, VolumeNotReady, materialize

SANDBOX = Path(__file__).with_name("sandbox.py")
RESTART_BACKOFF_START = 1.0
RESTART_BACKOFF_CAP = 10.0
RETRY_SETUP_AFTER = 2.0
_SMP = "application/strategic-merge-patch+json"

log = logging.getLogger(__name__)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeContext:
    """What a pod worker needs from the node it runs on."""

    node_name: str
    core: client.CoreV1Api
    sandboxes: Path
    logs: Path
    lookup: DataLookup
    allocatable: Mapping[str, str]
    base_env: Callable[[Pod], dict[str, str]]
    hosts_file: Callable[[str], Path]
    finished: Callable[[str], None]


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    spec_file: Path | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    next_start: float = 0.0
    done: bool = False
    exit_code: int | None = None
    probes: dict[str, probes.ProbeTracker] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return self.proc is not None

    @property
    def ready(self) -> bool:
        if not self.running:
            return False
        tracker = self.probes.get("readinessProbe")
        startup = self.probes.get("startupProbe")
        return (startup is None or bool(startup.passing)) and (tracker is None or bool(tracker.passing))


def host_paths_to_keep(argv: list[str], env: dict[str, str]) -> list[str]:
    """Host directories a container runs from (interpreter, venv, checkout, PATH, script
    files named in argv), which a volume mounted over e.g. /tmp must not hide."""
    candidates = [str(REPO_ROOT), sys.prefix, sys.base_prefix, *sys.path]
    candidates += [*env.get("PATH", "").split(os.pathsep), *env.get("PYTHONPATH", "").split(os.pathsep)]
    for arg in argv:
        if os.path.isabs(arg) and os.path.exists(arg):
            candidates.append(arg if os.path.isdir(arg) else os.path.dirname(arg))
    keep: list[str] = []
    for path in sorted({os.path.normpath(p) for p in candidates if p and os.path.isabs(p) and os.path.isdir(p)}):
        if not any(path == k or path.startswith(k + "/") for k in keep):
            keep.append(path)
    return keep


class PodWorker:
    """Runs one pod; ``update()`` feeds it newer API objects, ``gone()`` a force deletion."""

    def __init__(self, pod: Pod, ctx: NodeContext) -> None:
        meta = pod["metadata"]
        self._thread = threading.Thread(target=self._run, name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._gone = False
        self._stop_grace: float | None = None
        self._stage = "setup"
        self._retry_at = 0.0
        self._volumes: dict[str, Path] = {}
        self._setup_error: str | None = None
        self._phase = "Pending"
        self._start_time = (pod.get("status") or {}).get("startTime") or now_rfc3339()
        self._transitions: dict[str, tuple[str, str]] = {}
        self._pushed: dict[str, Any] | None = None
        self._events_sent: set[tuple[str, str]] = set()
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
        self.log_dir = ctx.logs / self.namespace / self.pod_name / f"{stamp}-{self.uid}"
        self.sandbox = ctx.sandboxes / self.uid
        spec = pod["spec"]
        self.init_containers = [Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False) for c in spec.get("containers") or []]
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self._stage = "finished"  # a previous runner finished it; only deletion is left

    # -- inputs from the node runner ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def update(self, pod: Pod) -> None:
        with self._lock:
            self.pod = pod
        self._wake.set()

    def gone(self) -> None:
        """The API object vanished (force deletion): kill the containers at once."""
        self._gone = True
        self._wake.set()

    def stop(self, grace: float) -> None:
        """The node is shutting down: stop the containers, leave the API object alone."""
        self._stop_grace = grace
        self._wake.set()

    # -- main loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod worker %s/%s failed", self.namespace, self.pod_name)
            self._kill_all(grace=0)
        finally:
            shutil.rmtree(self.sandbox, ignore_errors=True)
            self.ctx.finished(self.uid)

    def _loop(self) -> None:
        while True:
            if self._gone or self._stop_grace is not None:
                self._kill_all(grace=self._stop_grace or 0.0)
                return
            with self._lock:
                pod = self.pod
            if pod["metadata"].get("deletionTimestamp"):
                self._delete_pod(pod)
                return
            now = time.monotonic()
            if self._stage == "setup" and now >= self._retry_at:
                self._setup(now)
            if self._stage == "init":
                self._step_init(now)
            if self._stage == "main":
                self._step_main(now)
            self._run_probes(now)
            self._push_status()
            self._wake.wait(timeout=self._sleep_for(time.monotonic()))
            self._wake.clear()

    def _sleep_for(self, now: float) -> float:
        deadlines = [now + 5.0]
        if self._stage == "setup":
            deadlines.append(self._retry_at)
        for c in self.init_containers + self.containers:
            if not c.running and not c.done and c.next_start > now:  # a pending (re)start
                deadlines.append(c.next_start)
            deadlines += [t.next_at for t in c.probes.values()]
        return max(0.05, min(deadlines) - now)

    # -- setup ----------------------------------------------------------------------------

    def _setup(self, now: float) -> None:
        try:
            if self.sandbox.exists():
                shutil.rmtree(self.sandbox)
            volume_ctx = VolumeContext(self.ctx.core, self.ctx.lookup, self.ctx.allocatable)
            self._volumes = materialize(self.pod, self.sandbox / "volumes", volume_ctx)
        except (VolumeNotReady, ConfigError) as exc:
            self._setup_error = str(exc)
            self._event("FailedMount", f"MountVolume.SetUp failed: {exc}", "Warning")
            self._retry_at = now + RETRY_SETUP_AFTER
            return
        except ApiException as exc:
            self._retry_at = now + RETRY_SETUP_AFTER
            log.warning("pod %s/%s setup: %s", self.namespace, self.pod_name, exc)
            return
        self._setup_error = None
        self._stage = "init" if self.init_containers else "main"

    # -- containers -----------------------------------------------------------------------

    def _mounts(self, container: Container) -> list[dict[str, Any]]:
        mounts = [{"source": str(self.ctx.hosts_file(self.namespace)), "target": "/etc/hosts", "readOnly": True}]
        for vm in container.spec.get("volumeMounts") or []:
            if vm["name"] not in self._volumes:
                raise ConfigError(f"volumeMount {vm['name']!r} names no volume of the pod")
            source = self._volumes[vm["name"]]
            sub = vm.get("subPath") or ""
            if sub:
                if ".." in Path(sub).parts or Path(sub).is_absolute():
                    raise ConfigError(f"subPath {sub!r} must be a relative path inside the volume")
                source = source / sub
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append({"source": str(source), "target": vm["mountPath"], "readOnly": bool(vm.get("readOnly"))})
        return mounts

    def _start(self, c: Container, now: float) -> None:
        try:
            env = container_env(self.pod, c.spec, self.ctx.base_env(self.pod), self.ctx.lookup, self.ctx.allocatable)
            argv = container_argv(c.spec, env)
            mounts = self._mounts(c)
        except ConfigError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            self._event("Failed", f"Error: {exc}", "Warning")
            c.next_start = now + RETRY_SETUP_AFTER
            return
        except ApiException as exc:  # reading a ConfigMap/Secret failed: try again shortly
            log.warning("pod %s/%s container %s: %s", self.namespace, self.pod_name, c.name, exc)
            c.next_start = now + RETRY_SETUP_AFTER
            return
        container_dir = self.sandbox / "containers" / c.name
        container_dir.mkdir(parents=True, exist_ok=True)
        c.spec_file = container_dir / "spec.json"
        spec = {
            "argv": argv,
            "env": env,
            "workingDir": c.spec.get("workingDir"),
            "mounts": mounts,
            "keepVisible": host_paths_to_keep(argv, env),
        }
        c.spec_file.write_text(json.dumps(spec))
        c.spec_file.chmod(0o600)
        c.env = env
        log_file = self.log_dir / c.name / f"{c.restart_count}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        c.proc = spawn([sys.executable, "-I", str(SANDBOX), str(c.spec_file)], log=log_file)
        c.started_at = now_rfc3339()
        c.started_mono = now
        c.state = {"running": {"startedAt": c.started_at}}
        c.probes = {
            kind: probes.ProbeTracker(c.spec[kind], now)
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if c.spec.get(kind)
        }
        proc = c.proc

        def reaped() -> None:
            proc.wait()
            self._wake.set()

        threading.Thread(target=reaped, name=f"wait-{c.name}", daemon=True).start()
        self._event("Started", f"Started container {c.name}")

    def _reap(self, c: Container) -> int | None:
        """If the container's process exited, record it and return its exit code."""
        if c.proc is None or c.proc.poll() is None:
            return None
        code = terminate(c.proc, grace=0)  # also sweeps what the process left in its group
        code = 128 - code if code < 0 else code
        c.proc = None
        c.exit_code = code
        c.probes = {}
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": c.started_at,
                "finishedAt": now_rfc3339(),
            }
        }
        return code

    def _schedule_restart(self, c: Container, now: float) -> None:
        delay = (
            0.0
            if c.restart_count == 0
            else min(RESTART_BACKOFF_CAP, RESTART_BACKOFF_START * 2 ** (c.restart_count - 1))
        )
        c.last_state = c.state
        c.restart_count += 1
        c.next_start = now + delay
        if delay:
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:.0f}s restarting failed container={c.name} pod={self.pod_name}",
                }
            }
            self._event("BackOff", f"Back-off restarting failed container {c.name}", "Warning")

    def _restart_policy(self) -> str:
        return self.pod["spec"].get("restartPolicy") or "Always"

    def _step_init(self, now: float) -> None:
        for c in self.init_containers:
            if c.done:
                continue
            if not c.running and now >= c.next_start and c.exit_code is None:
                self._start(c, now)
            code = self._reap(c)
            if code is None:
                return
            if code == 0:
                c.done = True
                continue
            if self._restart_policy() == "Never":
                c.done = True
                self._finish("Failed")
                return
            self._schedule_restart(c, now)
            c.exit_code = None
            return
        self._stage = "main"

    def _step_main(self, now: float) -> None:
        policy = self._restart_policy()
        for c in self.containers:
            if c.done:
                continue
            if not c.running and c.exit_code is None and now >= c.next_start:
                self._start(c, now)
            code = self._reap(c)
            if code is None:
                continue
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                self._schedule_restart(c, now)
                c.exit_code = None
            else:
                c.done = True
        if all(c.done for c in self.containers):
            self._finish("Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed")
        elif any(c.running or c.restart_count for c in self.containers):
            self._phase = "Running"

    def _finish(self, phase: str) -> None:
        self._phase = phase
        self._stage = "finished"

    def _run_exec_probe(self, c: Container) -> Callable[[list[str], float], int]:
        def run(command: list[str], timeout: float) -> int:
            spec = json.loads(c.spec_file.read_text()) if c.spec_file else {}
            spec["argv"] = command
            probe_file = c.spec_file.with_name("probe.json")
            probe_file.write_text(json.dumps(spec))
            return subprocess.run(
                [sys.executable, "-I", str(SANDBOX), str(probe_file)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            ).returncode

        return run

    def _run_probes(self, now: float) -> None:
        for c in self.init_containers + self.containers:
            if not c.running:
                continue
            startup = c.probes.get("startupProbe")
            order = ["startupProbe"] if startup and not startup.passing else ["readinessProbe", "livenessProbe"]
            for kind in order:
                tracker = c.probes.get(kind)
                if tracker is None or not tracker.due(now):
                    continue
                try:
                    ok = probes.check(tracker.spec, c.spec, self._run_exec_probe(c))
                except ValueError as exc:
                    self._event("Unhealthy", f"{kind}: {exc}", "Warning")
                    ok = False
                tracker.record(ok, time.monotonic())
                if not ok:
                    self._event("Unhealthy", f"{kind} failed for container {c.name}", "Warning")
                if kind != "readinessProbe" and tracker.passing is False and c.proc is not None:
                    self._event("Killing", f"Container {c.name} failed {kind}, will be restarted")
                    terminate(c.proc, grace=self._grace_seconds(self.pod))

    # -- deletion -------------------------------------------------------------------------

    @staticmethod
    def _grace_seconds(pod: Pod) -> float:
        meta_grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if meta_grace is not None:
            return float(meta_grace)
        return float(pod["spec"].get("terminationGracePeriodSeconds") or 30)

    def _kill_all(self, grace: float) -> None:
        running = [c for c in self.init_containers + self.containers if c.proc is not None]
        for c in running:
            self._event("Killing", f"Stopping container {c.name}")
            signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in running:
            terminate(c.proc, grace=max(0.0, deadline - time.monotonic()))
            self._reap_killed(c)

    def _reap_killed(self, c: Container) -> None:
        code = c.proc.returncode if c.proc is not None else 0
        code = 128 - code if code < 0 else code
        c.proc = None
        c.exit_code = code
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": c.started_at,
                "finishedAt": now_rfc3339(),
            }
        }

    def _delete_pod(self, pod: Pod) -> None:
        """Graceful deletion: SIGTERM, SIGKILL after the grace period, then remove the object."""
        self._kill_all(self._grace_seconds(pod))
        for c in self.init_containers + self.containers:
            if isinstance(c.state.get("waiting"), dict):
                c.state = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}
        self._push_status()
        try:
            self.ctx.core.delete_namespaced_pod(
                self.pod_name,
                self.namespace,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid)),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # -- status ---------------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            self._transitions[kind] = (status, now_rfc3339())
        condition = {"type": kind, "status": status, "lastTransitionTime": self._transitions[kind][1]}
        if reason and not ok:
            condition["reason"] = reason
        return condition

    def _container_status(self, c: Container) -> dict[str, Any]:
        status = {
            "name": c.name,
            "state": c.state,
            "lastState": c.last_state,
            "ready": c.ready,
            "restartCount": c.restart_count,
            "image": c.spec.get("image") or "",
            "imageID": "",
            "started": c.running,
        }
        if c.started_at:
            status["containerID"] = f"fakenode://{self.uid}/{c.name}/{c.restart_count}"
        return status

    def _status(self) -> dict[str, Any]:
        sandbox_ready = self._stage not in ("setup",)
        initialized = self._stage in ("main",) or (
            self._stage == "finished" and all(c.done for c in self.init_containers)
        )
        terminal = self._phase in ("Succeeded", "Failed")
        containers_ready = not terminal and all(c.ready for c in self.containers)
        not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
        status: dict[str, Any] = {
            "phase": self._phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self._start_time,
            "conditions": [
                self._condition("PodReadyToStartContainers", sandbox_ready),
                self._condition("Initialized", initialized or terminal, "ContainersNotInitialized"),
                self._condition("ContainersReady", containers_ready, not_ready_reason),
                self._condition("Ready", containers_ready, not_ready_reason),
            ],
            "containerStatuses": [self._container_status(c) for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [self._container_status(c) for c in self.init_containers]
        if sandbox_ready:
            status["podIP"] = "127.0.0.1"
            status["podIPs"] = [{"ip": "127.0.0.1"}]
        # Explicit null: a strategic merge patch would otherwise keep a resolved error.
        status["message"] = self._setup_error if self._stage == "setup" else None
        return status

    def _push_status(self) -> None:
        if self._stage == "finished" and self._pushed is None and self._phase == "Pending":
            return  # finished by an earlier runner: its last report stands
        status = self._status()
        if status == self._pushed:
            return
        try:
            self.ctx.core.patch_namespaced_pod_status(
                self.pod_name, self.namespace, {"status": status}, _content_type=_SMP
            )
            self._pushed = status
        except ApiException as exc:
            if exc.status == 404:
                self._gone = True
            else:
                log.warning("pod %s/%s status: %s %s", self.namespace, self.pod_name, exc.status, exc.reason)

    def _event(self, reason: str, message: str, kind: str = "Normal") -> None:
        if (reason, message) in self._events_sent and kind == "Warning":
            return
        self._events_sent.add((reason, message))
        now = now_rfc3339()
        try:
            self.ctx.core.create_namespaced_event(
                self.namespace,
                {
                    "metadata": {"generateName": f"{self.pod_name}."},
                    "involvedObject": {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "namespace": self.namespace,
                        "name": self.pod_name,
                        "uid": self.uid,
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "source": {"component": "kubelet", "host": self.ctx.node_name},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                },
            )
        except ApiException:
            pass  # events are best-effort, as in the kubelet
