"""The agent's threads: heartbeat, level-triggered sync, model-cache downloads, and watches that wake the sync.

Nothing here decides anything (that is `decide`); it observes, calls `decide`, and executes the actions.
Every failure to reach the hub, the plant's API server or the exchange is logged and retried with
backoff; the agent never exits because the hub is away, and training Jobs already running are not
touched by it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from plantfed.contract.api.model import FederatedModel
from plantfed.contract.api.participant import PlantParticipant
from plantfed.contract.api.round import FederatedRound
from plantfed.contract.metrics import Metrics
from plantfed.contract.naming import GROUP, ROUND_UID_KEY, VERSION
from plantfed.exchange.errors import ExchangeError
from plantfed.plant.agent.config import AgentConfig
from plantfed.plant.agent.decide import (
    AgentView,
    CancelTrainingJob,
    CreateTrainingJob,
    RefreshModel,
    ReportAssignment,
    decide,
    my_entry,
)
from plantfed.plant.agent.hub import Hub
from plantfed.plant.agent.jobspec import token_secret, training_job
from plantfed.plant.agent.local import LocalCluster
from plantfed.plant.agent.naming import COMPONENT, EVALUATE_COMPONENT, selector
from plantfed.plant.agent.observe import TrainingObservation
from plantfed.plant.model_cache import ModelCache

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0


def agent_version() -> str:
    try:
        return metadata.version("plantfed")
    except metadata.PackageNotFoundError:
        return "unknown"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Backoff:
    """Exponential delay after consecutive failures, reset by a success."""

    def __init__(self, base: float, cap: float = MAX_BACKOFF) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def success(self) -> float:
        self.failures = 0
        return self.base

    def failure(self) -> float:
        self.failures += 1
        return min(self.cap, self.base * 2 ** (self.failures - 1))


def _parse(cls: Any, items: list[dict[str, Any]]) -> list[Any]:
    """Objects that do not validate (a newer CRD version, say) are skipped with a warning, not fatal."""
    out = []
    for item in items:
        try:
            out.append(cls.from_object(item))
        except ValueError as exc:
            log.warning("ignoring %s %s: %s", cls.__name__, (item.get("metadata") or {}).get("name"), exc)
    return out


class ModelCacheWorker:
    """Downloads promoted versions one at a time, off the sync loop, so a slow hub never stalls training."""

    def __init__(self, cache: ModelCache, on_change: Callable[[], None], metrics: Metrics, plant: str) -> None:
        self.cache = cache
        self.on_change = on_change
        self.metrics = metrics
        self.plant = plant
        self._wanted: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.last_error: dict[str, str] = {}

    def cached(self, models: set[str]) -> dict[str, int | None]:
        found = (
            {m.name for m in self.cache.root.iterdir() if (m / "current.json").exists()}
            if self.cache.root.exists()
            else set()
        )
        return {m: (cur.version if (cur := self.cache.current(m)) else None) for m in models | found}

    def request(self, model: str, version: int) -> None:
        with self._lock:
            self._wanted[model] = version
        self._wake.set()

    def _next(self, now: float) -> tuple[str, int] | None:
        with self._lock:
            for model, version in sorted(self._wanted.items()):
                if self._retry_at.get(model, 0.0) <= now:
                    return model, version
        return None

    def run(self, stop: threading.Event, clock: Callable[[], float]) -> None:
        while not stop.is_set():
            job = self._next(clock())
            if job is None:
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            self._refresh(*job, clock())

    def _refresh(self, model: str, version: int, now: float) -> None:
        backoff = self._backoff.setdefault(model, Backoff(5.0))
        try:
            info, error = self.cache.refresh(model)
        except (ExchangeError, OSError, ValueError) as exc:
            info, error = self.cache.current(model), f"hub unreachable, serving cached model: {exc}"
        held = info.version if info is not None else None
        if held is not None:
            self.metrics.cached_model_version.labels(model, self.plant).set(held)
        with self._lock:
            if error is None and held is not None and held >= version:
                self._wanted.pop(model, None)
                self._retry_at.pop(model, None)
                self.last_error.pop(model, None)
                backoff.success()
            else:
                delay = backoff.failure()
                self._retry_at[model] = now + delay
                self.last_error[model] = error or f"exchange served version {held}, waiting for {version}"
                log.warning(
                    "model %s v%s not cached yet (%s); holding v%s, retry in %.0fs",
                    model,
                    version,
                    self.last_error[model],
                    held,
                    delay,
                )
        if error is None:
            log.info("model %s: cached version %s", model, held)
            self.on_change()


class Agent:
    def __init__(
        self,
        cfg: AgentConfig,
        hub: Hub,
        local: LocalCluster,
        cache: ModelCache,
        metrics: Metrics | None = None,
        token_reader: Callable[[], str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.hub = hub
        self.local = local
        self.metrics = metrics or Metrics()
        self.stop = threading.Event()
        self.sync_wake = threading.Event()
        self.heartbeat_wake = threading.Event()
        self.cache = ModelCacheWorker(cache, self.heartbeat_wake.set, self.metrics, cfg.plant)
        self.version = agent_version()
        self._token_reader = token_reader or (lambda: cfg.token_file.read_text().strip())
        self._reported_model: str | None = None
        self._secured: set[str] = set()

    # -- heartbeat ----------------------------------------------------------------------------------------
    def model_version(self) -> int | None:
        cached = self.cache.cached(set())
        model = self._reported_model
        if model is None and len(cached) == 1:
            model = next(iter(cached))
        return cached.get(model) if model is not None else None

    def heartbeat_once(self) -> None:
        pp = PlantParticipant.from_object(self.hub.participant())
        status: dict[str, Any] = {
            "lastHeartbeatTime": rfc3339(utcnow()),
            "agentVersion": self.version,
            "observedGeneration": pp.metadata.generation,
        }
        version = self.model_version()
        if version is not None:
            status["modelVersion"] = version
        self.hub.patch_status(status)

    def _heartbeats(self) -> None:
        backoff = Backoff(1.0, cap=self.cfg.heartbeat_seconds)
        while not self.stop.is_set():
            try:
                self.heartbeat_once()
                backoff.success()
                delay = self.cfg.heartbeat_seconds
            except ApiException as exc:
                delay = backoff.failure()
                self._count_error("hub")
                if exc.status in (401, 403, 404):
                    log.error(
                        "heartbeat refused by the hub (%s %s): check that PlantParticipant %s exists in namespace "
                        "%s and that --hub-kubeconfig is this plant's ServiceAccount",
                        exc.status,
                        exc.reason,
                        self.cfg.plant,
                        self.cfg.hub_namespace,
                    )
                else:
                    log.warning("heartbeat failed (%s %s); retrying in %.0fs", exc.status, exc.reason, delay)
            except Exception as exc:  # hub unreachable (urllib3), invalid object: keep beating
                delay = backoff.failure()
                self._count_error("hub")
                log.warning("heartbeat failed (%s); retrying in %.0fs", exc, delay)
            if self.heartbeat_wake.wait(delay):
                self.heartbeat_wake.clear()

    # -- sync ---------------------------------------------------------------------------------------------
    def observe(self) -> AgentView:
        pp = PlantParticipant.from_object(self.hub.participant())
        rounds = _parse(FederatedRound, self.hub.rounds())
        if pp.status.assignment is not None:  # modelVersion reports the model of the round status shows
            self._reported_model = next(
                (fr.spec.model_ref for fr in rounds if fr.name == pp.status.assignment.round), self._reported_model
            )
        models = {m.name: m for m in _parse(FederatedModel, self.hub.models())}
        jobs = self.local.jobs()
        trainings, evaluations = jobs[COMPONENT], jobs[EVALUATE_COMPONENT]
        mine = {fr.spec.model_ref for fr in rounds if my_entry(fr, self.cfg.plant) is not None}
        return AgentView(
            plant=self.cfg.plant,
            participant=pp,
            rounds=rounds,
            models=models,
            trainings=trainings,
            cached=self.cache.cached(mine | set(self.cfg.models)),
            max_gpus=self.cfg.gpus,
            now=utcnow(),
            followed_models=frozenset(self.cfg.models),
            evaluations=evaluations,
        )

    def sync_once(self) -> tuple[Any, ...]:
        view = self.observe()
        self._secure_running([*view.trainings.values(), *view.evaluations.values()])
        actions = decide(view)
        for action in actions:
            self.execute(action, view)
        return actions

    def execute(self, action: Any, view: AgentView) -> None:
        if isinstance(action, CreateTrainingJob):
            job, created = self.local.create_job(training_job(action.spec, self.cfg))
            made_for = (job["metadata"].get("annotations") or {}).get(ROUND_UID_KEY, "")
            if made_for != action.spec.round_uid:
                log.info(
                    "round %s: Job %s of an earlier round of that name is still being deleted; retrying",
                    action.spec.round,
                    job["metadata"]["name"],
                )
                return
            self._secure(job["metadata"]["name"], job["metadata"]["uid"], action.spec.round)
            if created:
                self.metrics.agent_training_jobs.labels(self.cfg.plant, "created").inc()
                log.info("round %s: created %s Job %s", action.spec.round, action.spec.purpose, job["metadata"]["name"])
        elif isinstance(action, CancelTrainingJob):
            self.local.delete_job(action.job_name)
            self.metrics.agent_training_jobs.labels(self.cfg.plant, "cancelled").inc()
            log.info("round %s: deleted training Job %s (%s)", action.round, action.job_name, action.reason)
        elif isinstance(action, ReportAssignment):
            self.hub.patch_status({"assignment": action.assignment.to_dict()})
            rounds = {fr.name: fr for fr in view.rounds}
            if (fr := rounds.get(action.assignment.round)) is not None:
                self._reported_model = fr.spec.model_ref
            log.info(
                "round %s: %s %s", action.assignment.round, action.assignment.state.value, action.assignment.message
            )
        elif isinstance(action, RefreshModel):
            self.cache.request(action.model, action.version)

    def _secure(self, job_name: str, job_uid: str, round_name: str) -> None:
        ca = self.cfg.ca_file.read_text() if self.cfg.ca_file is not None else None
        self.local.ensure_secret(
            token_secret(self.cfg.plant, self.cfg.namespace, job_name, job_uid, round_name, self._token_reader(), ca)
        )
        self._secured.add(job_uid)

    def _secure_running(self, jobs: Iterable[TrainingObservation]) -> None:
        """After a restart, make sure every running Job has its token Secret (a crash may have come between)."""
        for training in jobs:
            if training.active and training.job_uid and training.job_uid not in self._secured:
                self._secure(training.job_name, training.job_uid, training.round)

    def _count_error(self, target: str) -> None:
        self.metrics.agent_errors.labels(self.cfg.plant, target).inc()

    def _syncs(self) -> None:
        backoff = Backoff(self.cfg.sync_seconds)
        while not self.stop.is_set():
            try:
                self.sync_once()
                delay = backoff.success()
            except ApiException as exc:
                delay = backoff.failure()
                self._count_error("kubernetes")
                log.warning(
                    "sync failed (%s %s: %s); retrying in %.0fs", exc.status, exc.reason, (exc.body or "")[:300], delay
                )
            except Exception as exc:
                delay = backoff.failure()
                self._count_error("kubernetes")
                log.warning("sync failed (%s: %s); retrying in %.0fs", type(exc).__name__, exc, delay)
            if self.sync_wake.wait(delay):
                self.sync_wake.clear()

    # -- watches ------------------------------------------------------------------------------------------
    def _watch(self, what: str, list_func: Callable[..., Any], **kwargs: Any) -> None:
        """Wake the sync on any change; the sync itself re-lists, so a lost event costs one sync period."""
        backoff = Backoff(1.0, cap=60.0)
        version: str | None = None
        while not self.stop.is_set():
            stream = watch.Watch()
            try:
                if version is None:  # (re-)list: first start, or our resourceVersion expired (410 Gone)
                    version = _resource_version(list_func(**kwargs))
                for event in stream.stream(list_func, resource_version=version, timeout_seconds=60, **kwargs):
                    version = _resource_version(event["object"]) or version
                    self.sync_wake.set()
                    if self.stop.is_set():
                        return
                backoff.success()
            except Exception as exc:  # ApiException (410 included), hub or API server unreachable
                version = None
                log.debug("watch of %s interrupted (%s)", what, exc)
                if not (isinstance(exc, ApiException) and exc.status == 410) and self.stop.wait(backoff.failure()):
                    return
            finally:
                stream.stop()

    def run(self, clock: Callable[[], float]) -> None:
        threads = [
            threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True),
            threading.Thread(target=self.cache.run, args=(self.stop, clock), name="model-cache", daemon=True),
            threading.Thread(
                target=self._watch,
                name="watch-rounds",
                daemon=True,
                args=("federatedrounds", self.hub.custom.list_namespaced_custom_object),
                kwargs={
                    "group": GROUP,
                    "version": VERSION,
                    "namespace": self.cfg.hub_namespace,
                    "plural": "federatedrounds",
                    "label_selector": self.hub.round_selector,
                },
            ),
            threading.Thread(
                target=self._watch,
                name="watch-models",
                daemon=True,
                args=("federatedmodels", self.hub.custom.list_namespaced_custom_object),
                kwargs={
                    "group": GROUP,
                    "version": VERSION,
                    "namespace": self.cfg.hub_namespace,
                    "plural": "federatedmodels",
                },
            ),
            threading.Thread(
                target=self._watch,
                name="watch-pods",
                daemon=True,
                args=("training pods", self.local.core.list_namespaced_pod),
                kwargs={"namespace": self.cfg.namespace, "label_selector": selector(self.cfg.plant)},
            ),
        ]
        for thread in threads:
            thread.start()
        self._syncs()


def _resource_version(obj: Any) -> str | None:
    """resourceVersion of a list or object, whether the client returned a dict (custom objects) or a model."""
    meta = obj.get("metadata") if isinstance(obj, dict) else getattr(obj, "metadata", None)
    if isinstance(meta, dict):
        return meta.get("resourceVersion")
    return getattr(meta, "resource_version", None)


def default_cache(cfg: AgentConfig, client: Any) -> ModelCache:
    """The same directory `plantfed train --state-dir` uses for models, so training finds the cached base."""
    return ModelCache(Path(cfg.cache_dir) / "models", client)
