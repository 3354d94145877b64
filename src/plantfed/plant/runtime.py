"""One plant's part in one round: fetch the base model, train locally, privatise, compress, upload, report.

This is what a plant's training pod runs (`plantfed train`) and what `plantfed simulate` runs per plant per
round, so the simulator exercises exactly the production path. Raw data never leaves this process: only
the (clipped, noised, compressed) weight delta and a few aggregate metrics are sent.

Memory: a model's worth is held once for the weights, plus what training itself needs (gradients, optimiser
state), never copies of it. The base weights are not kept through training: the delta is taken in place in the
trained weights, reading the base tensor by tensor from the cached model file; gradients and optimiser state are
gone by then; clipping and noise work in place; the update is encoded, written and hashed tensor by tensor.
"""

from __future__ import annotations

import fnmatch
import json
import math
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from plantfed.contract.plant_metrics import (
    EVALUATED_VERSION,
    SAMPLES,
    SAMPLES_PER_SECOND,
    TEST,
    TRAIN,
    VAL,
    base_key,
    local_key,
    split_scores,
)
from plantfed.contract.records import Codec, DPMode, DPParams, EvaluationRecord, UpdateMeta
from plantfed.contract.scores import objective_entry
from plantfed.exchange.client import ExchangeClient
from plantfed.formats import codecs
from plantfed.plant.model_cache import ModelCache
from plantfed.plant.privacy import clip_and_noise_, global_l2_norm
from plantfed.plant.training import (
    LocalTrainingConfig,
    Progress,
    SampleDP,
    evaluate,
    pick_device,
    train_local,
    unpredictable_generator,
)
from plantfed.tasks.partition import label_skewed
from plantfed.tasks.sdk import DataSpec, Task, check_scores, dataset_size


@dataclass(frozen=True)
class ParticipationConfig:
    """Everything a round tells a plant besides the base model."""

    training: LocalTrainingConfig = field(default_factory=LocalTrainingConfig)
    codec: Codec = Codec.NONE
    #: LOCAL: clip the whole update to `clip_norm` and noise it once; SAMPLE: DP-SGD with per-example
    #: clipping to `clip_norm` and noise on every batch (`clip_norm` 0 turns either off)
    dp_mode: DPMode = DPMode.LOCAL
    clip_norm: float = 0.0
    noise_multiplier: float = 0.0
    variant: str = "full"
    seed: int = 0
    device: str = "auto"
    label_skew_alpha: float = 0.0


@dataclass
class ParticipationReport:
    plant: str
    round_id: str
    base_version: int
    num_samples: int
    metrics: dict[str, float]
    train_seconds: float
    payload_bytes: int
    bytes_sent: int
    update_norm: float
    duplicate: bool
    #: where training ran ("cuda:0", "cpu"): a plant whose GPU silently went missing shows up here
    device: str = "cpu"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class RoundNotForThisPlant(RuntimeError):
    """The hub says this plant has no part in the round (not assigned, or the round already closed)."""


def is_local(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def load_global_into(
    model: torch.nn.Module, global_state: dict[str, torch.Tensor], personal: dict[str, torch.Tensor]
) -> None:
    """Load the global weights a variant shares with the full model, then this plant's personal layers.

    A light variant owns a subset of the full model's names; anything it does not have is ignored, and a
    name it has but the global model lacks keeps its freshly initialised (or personal) value.
    """
    own = model.state_dict()
    merged = {name: global_state[name] for name in own if name in global_state}
    merged.update({name: t for name, t in personal.items() if name in own})
    for name, tensor in merged.items():
        if tensor.shape != own[name].shape:
            raise ValueError(
                f"global tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"the {type(model).__name__} expects {tuple(own[name].shape)}"
            )
    model.load_state_dict(merged, strict=False)


class PlantRuntime:
    """A plant's training runtime, bound to its task, data and local state directory."""

    def __init__(self, plant: str, task: Task, data: DataSpec, state_dir: Path, client: ExchangeClient):
        self.plant = plant
        self.task = task
        self.data = data
        self.state_dir = Path(state_dir)
        self.client = client
        self.cache = ModelCache(self.state_dir / "models", client)
        self.local_patterns = tuple(task.local_parameter_patterns())

    @property
    def _personal_path(self) -> Path:
        return self.state_dir / "personal.safetensors"

    def _personal_state(self) -> dict[str, torch.Tensor]:
        return codecs.load_state(self._personal_path) if self._personal_path.exists() else {}

    def build_model(self, global_state: dict[str, torch.Tensor], variant: str, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = self.task.build_model(variant)
        load_global_into(model, global_state, self._personal_state())
        return model

    def participate(
        self, round_id: str, cfg: ParticipationConfig, *, progress: Progress | None = None
    ) -> ParticipationReport:
        info = self.client.get_round(round_id)
        if not info.assigned:
            raise RoundNotForThisPlant(f"plant {self.plant} is not assigned to round {round_id}")
        if not info.open:
            raise RoundNotForThisPlant(f"round {round_id} is closed; nothing to train")
        base_path, base_version = self.cache.fetch(info.model, info.base_version)
        seed = cfg.seed * 1_000_003 + hash_round(round_id)
        model = self.build_model(codecs.load_state(base_path), cfg.variant, seed)  # the loaded state is dropped
        unshared = self._unshared_initial_values(model, base_path)
        device = pick_device(cfg.device)
        plant_data = self.task.load_data(self.data)
        train_set = plant_data.train
        if cfg.label_skew_alpha > 0:
            train_set = label_skewed(
                train_set,
                cfg.label_skew_alpha,
                seed=cfg.seed,
                plant_index=self.data.plant_index,
                num_plants=self.data.num_plants,
            )

        metrics: dict[str, float] = {}
        for split_name, split in ((VAL, plant_data.val), (TEST, plant_data.test)):
            scores = evaluate(self.task, model, split, device)
            check_scores(self.task, scores, split_name)
            metrics.update({base_key(split_name, key): value for key, value in scores.items()})

        sample_dp = cfg.dp_mode is DPMode.SAMPLE and cfg.clip_norm > 0
        training = (
            replace(cfg.training, sample_dp=SampleDP(cfg.clip_norm, cfg.noise_multiplier))
            if sample_dp
            else cfg.training
        )
        result = train_local(self.task, model, train_set, training, device, seed=seed, progress=progress)
        metrics.update(split_scores(TRAIN, result.train_scores))
        metrics.update(objective_entry(self.task.primary_score()))
        metrics[SAMPLES_PER_SECOND] = result.samples_per_second
        scores = evaluate(self.task, model, plant_data.val, device)
        check_scores(self.task, scores, VAL, finite=False)  # a diverged run's NaN is left out below, not a bug
        metrics.update({local_key(VAL, key): value for key, value in scores.items()})

        trained = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        self._save_personal(trained)
        delta = delta_in_place(
            {name: t for name, t in trained.items() if not is_local(name, self.local_patterns)}, base_path, unshared
        )
        del trained
        if sample_dp:
            # DP-SGD already bounded and noised every record's contribution; the update is post-processing.
            norm = global_l2_norm(delta)
        else:
            norm = clip_and_noise_(
                delta,
                clip_norm=cfg.clip_norm,
                noise_multiplier=cfg.noise_multiplier,
                generator=unpredictable_generator(torch.device("cpu")),
            )
        payload_path = self.state_dir / "outbox" / f"{round_id}.safetensors"
        payload_path.parent.mkdir(parents=True, exist_ok=True)
        digest = codecs.stream_update(delta, payload_path, cfg.codec)
        del delta

        # A score of an empty split (or of a diverged run) is NaN; the hub accepts finite numbers only, so such a
        # score is left out rather than costing the plant its whole update.
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        meta = UpdateMeta(
            plant=self.plant,
            round_id=round_id,
            base_version=base_version,
            num_samples=dataset_size(train_set),
            metrics=metrics,
            train_seconds=result.seconds,
            codec=cfg.codec,
            # Local DP is one Gaussian release of the whole clipped update per round (q = 1), whatever SGD did
            # inside; reporting SGD's steps and batch rate there would invite an accountant to over-credit it.
            # DP-SGD reports exactly what opacus's accountant recorded.
            dp=result.dp
            if result.dp is not None
            else DPParams(
                clip_norm=cfg.clip_norm,
                noise_multiplier=cfg.noise_multiplier,
                steps=1 if cfg.clip_norm > 0 else 0,
                sample_rate=1.0 if cfg.clip_norm > 0 else 0.0,
            ),
            total_bytes=payload_path.stat().st_size,
            sha256=digest,
            variant=cfg.variant,
        )
        receipt = self.client.upload_update(meta, payload_path)
        return ParticipationReport(
            plant=self.plant,
            round_id=round_id,
            base_version=base_version,
            num_samples=meta.num_samples,
            metrics=metrics,
            train_seconds=result.seconds,
            payload_bytes=meta.total_bytes,
            bytes_sent=receipt.bytes_sent,
            update_norm=norm,
            duplicate=receipt.duplicate,
            device=str(next(model.parameters()).device),
        )

    def evaluate_version(self, model_name: str, version: int | None, variant: str = "full") -> dict[str, float]:
        """Federated evaluation: the plant scores a global model on its own test split and reports numbers only."""
        path, resolved = self.cache.fetch(model_name, version)
        model = self.build_model(codecs.load_state(path), variant, seed=0)
        plant_data = self.task.load_data(self.data)
        scores = evaluate(self.task, model, plant_data.test, pick_device())
        check_scores(self.task, scores, TEST, finite=False)
        out = split_scores(TEST, scores)
        out[EVALUATED_VERSION] = float(resolved)
        return out

    def evaluate_candidate(self, round_id: str, variant: str = "full", device: str = "auto") -> EvaluationRecord:
        """Score the round's aggregated candidate on this plant's validation split and report it to the hub.

        The hub promotes on these numbers (compared with the base version, which this plant scored on the same
        split before training), so a candidate is judged on every contributing plant's data without any of it
        leaving the plant.
        """
        info = self.client.get_round(round_id)
        if not info.assigned:
            raise RoundNotForThisPlant(f"plant {self.plant} is not assigned to round {round_id}")
        if info.candidate_version is None:
            raise RoundNotForThisPlant(f"round {round_id} has no aggregated candidate to evaluate yet")
        path, version = self.cache.fetch(info.model, info.candidate_version)
        model = self.build_model(codecs.load_state(path), variant, seed=0)
        scores = evaluate(self.task, model, self.task.load_data(self.data).val, pick_device(device))
        check_scores(self.task, scores, VAL, finite=False)
        samples = int(scores.pop(SAMPLES))
        if samples == 0:
            raise ValueError(
                f"plant {self.plant}: the validation split is empty; nothing to score version {version} on"
            )
        evaluation = EvaluationRecord(
            plant=self.plant,
            round_id=round_id,
            version=version,
            num_samples=samples,
            metrics=split_scores(VAL, scores),
        )
        kept, _duplicate = self.client.submit_evaluation(evaluation)
        return kept

    def _unshared_initial_values(self, model: torch.nn.Module, base_path: Path) -> dict[str, torch.Tensor]:
        """Copies of the shared tensors the base model lacks (they keep their initial values): their delta's base.

        Usually none; everything else's base is read back from `base_path` when the delta is taken.
        """
        with codecs.SafetensorsFile(base_path, role="model") as base:
            names = set(base.specs)
        return {
            name: t.detach().cpu().clone()
            for name, t in model.state_dict().items()
            if name not in names and not is_local(name, self.local_patterns)
        }

    def _save_personal(self, trained: dict[str, torch.Tensor]) -> None:
        personal = {k: v for k, v in trained.items() if is_local(k, self.local_patterns)}
        if personal:
            codecs.save_state(personal, self._personal_path)


def delta_in_place(
    trained: dict[str, torch.Tensor], base_path: Path, unshared: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`trained - base` for float tensors, in the trained tensors' own memory; non-float ones as they are.

    The base is read tensor by tensor from `base_path` (or taken from `unshared` for names it lacks), so no
    second model's worth is allocated. Tensors sharing storage (tied weights) are copied first, or the shared
    memory would have the base subtracted twice. Returns `trained`, now holding the delta.
    """
    seen: set[int] = set()
    for name, t in trained.items():
        key = t.untyped_storage().data_ptr()
        if t.numel() and key in seen:
            trained[name] = t.clone()
        seen.add(key)
    with codecs.SafetensorsFile(base_path, role="model") as base:
        for name, t in trained.items():
            if not t.is_floating_point():
                continue
            reference = unshared[name] if name in unshared else base.tensor(name)
            torch.sub(t, reference.to(t.dtype), out=t)
            del reference
    return trained


def hash_round(round_id: str) -> int:
    """A stable per-round seed offset (Python's hash() is salted per process)."""
    return zlib.crc32(round_id.encode())
