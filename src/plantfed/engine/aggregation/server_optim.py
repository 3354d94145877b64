"""Server optimisers: how the aggregated delta becomes the step applied to the global model.

Notation: `x_t` the global model of round t, `Δ_t` the aggregated delta (weighted mean of the plants'
`local − base`, or the robust aggregate), i.e. the negative pseudo-gradient `−g_t`; `η` the server
learning rate. Operations are per coordinate.

* FedAvg / FedProx / trimmed mean / median (server SGD):  x_{t+1} = x_t + η Δ_t  (η = 1 is plain averaging).
* FedAvgM (Hsu et al. 2019, "Measuring the Effects of Non-Identical Data Distribution"), momentum μ:
      v_t = μ v_{t−1} + Δ_t,   x_{t+1} = x_t + η v_t,   v_{−1} = 0.
* FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2), β1, β2, τ:
      m_t = β1 m_{t−1} + (1 − β1) Δ_t
      v_t = β2 v_{t−1} + (1 − β2) Δ_t²
      x_{t+1} = x_t + η m_t / (√v_t + τ),   m_{−1} = 0,  v_{−1} = τ²  (the paper's "v_{−1} ≥ τ²"), no bias correction.
* FedYogi (same paper): as FedAdam but  v_t = v_{t−1} − (1 − β2) Δ_t² · sign(v_{t−1} − Δ_t²).

State (m, v or the momentum) persists between rounds in `<state_dir>/server_state.safetensors` (in a model
store, `state_dir` is the section `ModelStore.stage_server_state` hands out and `keep_server_state` keeps): entries
`<slot>/<parameter>`, metadata naming the strategy and the number of steps taken. It is read lazily,
one parameter at a time, and the next round's state is streamed to a new file that atomically replaces
the old one, so the optimiser also runs in memory proportional to one tensor. A state file written by a
different strategy, or with shapes that do not match the model, is refused rather than silently reset;
a parameter with no entry (new in this model) starts from the initial values above.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import torch

from plantfed.engine.aggregation.config import StrategyConfig, StrategyName
from plantfed.formats.codecs import KIND_KEY, PayloadError, SafetensorsFile
from plantfed.formats.memory import MemoryTracker
from plantfed.formats.numerics import dot
from plantfed.formats.stream_writer import StreamingWriter, TensorSpec

STATE_FILE = "server_state.safetensors"
KIND_SERVER_STATE = "server_state"
STRATEGY_KEY = "plantfed.strategy"
STEP_KEY = "plantfed.step"

_SLOTS: dict[StrategyName, tuple[str, ...]] = {
    StrategyName.FEDADAM: ("m", "v"),
    StrategyName.FEDYOGI: ("m", "v"),
    StrategyName.FEDAVGM: ("momentum",),
}


class ServerOptimizer:
    """Context manager applying one round's server step parameter by parameter.

    `apply(name, param, delta)` must be called once per parameter in `specs` order; the new state file
    replaces the old one when the context exits without error.
    """

    def __init__(
        self, config: StrategyConfig, state_dir: Path | None, specs: Mapping[str, TensorSpec], tracker: MemoryTracker
    ):
        self.config = config
        self.slots = _SLOTS.get(config.name, ())
        self.lr = config.server_learning_rate
        self.tracker = tracker
        self.specs = dict(specs)
        self.state_path = Path(state_dir) / STATE_FILE if state_dir is not None and self.slots else None
        self.step: int | None = None
        self._previous: SafetensorsFile | None = None
        self._writer: StreamingWriter | None = None

    def __enter__(self) -> ServerOptimizer:
        if self.state_path is None and self.slots:
            raise ValueError(f"{self.config.name.value} keeps optimiser state between rounds: pass state_dir")
        if self.state_path is None:
            return self
        previous_steps = 0
        if self.state_path.exists():
            self._previous = SafetensorsFile(self.state_path, role="server state")
            meta = self._previous.metadata
            if meta.get(KIND_KEY) != KIND_SERVER_STATE or meta.get(STRATEGY_KEY) != self.config.name.value:
                self._previous.close()
                raise PayloadError(
                    f"server state {self.state_path} was written by strategy {meta.get(STRATEGY_KEY)!r}, "
                    f"not {self.config.name.value!r}; use a fresh state_dir when changing strategy"
                )
            previous_steps = int(meta.get(STEP_KEY, "0"))
        self.step = previous_steps + 1
        state_specs = {
            f"{slot}/{name}": TensorSpec(torch.float32, spec.shape)
            for name, spec in self.specs.items()
            for slot in self.slots
        }
        metadata = {KIND_KEY: KIND_SERVER_STATE, STRATEGY_KEY: self.config.name.value, STEP_KEY: str(self.step)}
        self._writer = StreamingWriter(self.state_path, state_specs, metadata).__enter__()
        return self

    def _load(self, slot: str, name: str, initial: float) -> torch.Tensor:
        key = f"{slot}/{name}"
        shape = self.specs[name].shape
        if self._previous is None or key not in self._previous.specs:
            return torch.full(shape, initial, dtype=torch.float32)
        spec = self._previous.specs[key]
        if spec != TensorSpec(torch.float32, shape):
            raise PayloadError(
                f"server state {self.state_path}: {key!r} is {spec.describe()}, the model needs F32{list(shape)}"
            )
        return self._previous.tensor(key)

    def apply(self, name: str, param: torch.Tensor, delta: torch.Tensor) -> float:
        """Add this round's step to `param` (float32, in place); return the step's squared L2 norm."""
        name_cfg = self.config.name
        if name_cfg is StrategyName.FEDAVGM:
            velocity = self._load("momentum", name, 0.0)
            with self.tracker.live(velocity):
                velocity.mul_(self.config.momentum).add_(delta)
                param.add_(velocity, alpha=self.lr)
                self._save("momentum", name, velocity)
                return self.lr**2 * dot(velocity, velocity, self.tracker)
        if name_cfg in (StrategyName.FEDADAM, StrategyName.FEDYOGI):
            return self._adaptive(name, param, delta)
        param.add_(delta, alpha=self.lr)
        return self.lr**2 * dot(delta, delta, self.tracker)

    def _adaptive(self, name: str, param: torch.Tensor, delta: torch.Tensor) -> float:
        cfg = self.config
        first = self._load("m", name, 0.0)
        with self.tracker.live(first):
            second = self._load("v", name, cfg.tau**2)
            with self.tracker.live(second):
                first.mul_(cfg.beta1).add_(delta, alpha=1 - cfg.beta1)
                work = delta * delta
                with self.tracker.live(work):
                    if cfg.name is StrategyName.FEDADAM:
                        second.mul_(cfg.beta2).add_(work, alpha=1 - cfg.beta2)
                    else:
                        sign = torch.sub(second, work).sign_()
                        with self.tracker.live(sign):
                            second.sub_(sign.mul_(work), alpha=1 - cfg.beta2)
                        del sign
                    torch.sqrt(second, out=work)
                    torch.div(first, work.add_(cfg.tau), out=work)
                    param.add_(work, alpha=self.lr)
                    self._save("m", name, first)
                    self._save("v", name, second)
                    return self.lr**2 * dot(work, work, self.tracker)

    def _save(self, slot: str, name: str, value: torch.Tensor) -> None:
        assert self._writer is not None
        self._writer.write(f"{slot}/{name}", value)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._writer is not None:
                self._writer.__exit__(exc_type, exc, tb)
        finally:
            if self._previous is not None:
                self._previous.close()
