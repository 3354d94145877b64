"""ε accounting of each plant's participation history with opacus's RDP analysis, and a durable ledger.

What one accountant step is (docs/security.md says why):

* **local DP** (the plant clips its whole update to C and adds N(0, (σ·C)²) before upload): one Gaussian
  mechanism per round on the plant's update, sensitivity C, noise multiplier σ, sampling rate q = 1 (the
  plant always includes its own update; subsampling by the hub's selection is not credited, because the
  plant cannot verify it). One `DPRelease(σ, q=1, steps=1)` per round the plant uploaded.
* **central DP** (the hub clips each update to C and adds N(0, (σ·C·w_max)²) to the weighted mean): one
  Gaussian mechanism per round, noise multiplier σ relative to one plant's clipped contribution, with
  q = the plant's probability of being selected for the round (1 unless the selection is random and
  independent of the data). Recorded for each plant whose update was aggregated.
* **sample-level DP** (DP-SGD on the plant, opacus's `PrivacyEngine`: each example's gradient clipped to C,
  N(0, (σ·C)²) added to every batch, batches Poisson-sampled at rate q): `steps` compositions of the
  subsampled Gaussian mechanism, exactly what opacus's own accountant records for the plant's training.
  One `DPRelease(σ, q, steps)` per round, with the (σ, q, steps) the plant declared with its update.

Local and central DP give an update-level guarantee (equivalently plant-level per round): they bound what the
released updates or aggregates reveal about a plant's whole local dataset in that round. Sample-level DP bounds
what everything the plant released reveals about any one of its records, which is far cheaper in noise.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from plantfed.contract.naming import check_name
from plantfed.contract.records import DPMode, DPParams, DPRelease, LedgerEntry
from plantfed.engine.store import LedgerError as LedgerError  # the store holds the ledger, so raises its error
from plantfed.engine.store import ModelStore

RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
"""The Rényi orders opacus's `RDPAccountant` searches (its DEFAULT_ALPHAS; a test keeps them equal)."""


@functools.cache
def _rdp_analysis() -> ModuleType:
    """opacus's RDP analysis (`opacus/accountants/analysis/rdp.py`: numpy and scipy only), loaded on its own.

    It holds the two functions `RDPAccountant.get_epsilon` composes. Importing it the usual way runs
    `opacus/__init__`, which imports torch: about 650 MB resident, which would more than double the
    operator's memory for a few dozen floating-point operations per plant.
    """
    spec = importlib.util.find_spec("opacus")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("opacus is not installed; it is needed to account for differential privacy")
    path = Path(spec.submodule_search_locations[0]) / "accountants" / "analysis" / "rdp.py"
    module_spec = importlib.util.spec_from_file_location("plantfed.engine.privacy._opacus_rdp", path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load opacus's RDP analysis from {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=4096)
def _rdp(release: DPRelease) -> tuple[float, ...]:
    """The release's Rényi DP at each of `RDP_ORDERS` (cached: a ledger repeats the same few releases)."""
    rdp = _rdp_analysis().compute_rdp(
        q=release.sample_rate, noise_multiplier=release.noise_multiplier, steps=release.steps, orders=RDP_ORDERS
    )
    return tuple(float(x) for x in rdp)


def epsilon_for(history: Sequence[DPRelease], delta: float) -> float:
    """ε at `delta` of composing every release in `history` (opacus RDP accounting); inf if any had no noise."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not history:
        return 0.0
    if any(r.noise_multiplier <= 0 for r in history):
        return math.inf
    total = [sum(orders) for orders in zip(*(_rdp(r) for r in history), strict=True)]
    epsilon, _order = _rdp_analysis().get_privacy_spent(orders=RDP_ORDERS, rdp=total, delta=delta)
    return float(epsilon)


def dearest_epsilon(history: Sequence[DPRelease], alternatives: Sequence[Sequence[DPRelease]], delta: float) -> float:
    """ε after `history` plus the dearest of `alternatives` (what one more round may cost; see `round_costs`)."""
    return max((epsilon_for([*history, *alt], delta) for alt in alternatives), default=epsilon_for(history, delta))


def release_for_update(dp: DPParams) -> DPRelease | None:
    """The plant-side release a plant's update metadata declares, or None when it did not even clip.

    A DP-SGD update is charged the (σ, q, steps) it declares; a local one is a single release of the whole
    update (q = 1), whatever SGD did inside. `DPParams` already refuses noise without a clipping bound.
    """
    if dp.clip_norm <= 0:
        return None
    sigma = dp.noise_multiplier
    if dp.mode is DPMode.SAMPLE:
        return DPRelease(
            mode=DPMode.SAMPLE,
            noise_multiplier=sigma,
            sample_rate=dp.sample_rate,
            steps=dp.steps,
            clip_norm=dp.clip_norm,
        )
    return DPRelease(mode=DPMode.LOCAL, noise_multiplier=sigma, sample_rate=1.0, steps=1, clip_norm=dp.clip_norm)


def central_release(noise_multiplier: float, clip_norm: float, participation_rate: float = 1.0) -> DPRelease:
    """The central-DP release charged to each aggregated plant for one round."""
    return DPRelease(
        mode=DPMode.CENTRAL,
        noise_multiplier=noise_multiplier,
        sample_rate=participation_rate,
        steps=1,
        clip_norm=clip_norm,
    )


def round_releases(
    local: DPParams | None, central_noise_multiplier: float | None, central_clip_norm: float = 0.0
) -> dict[DPMode, DPRelease]:
    """What one round costs a plant: the local release (only if the plant added noise) and the hub's central one.

    A plant that only clipped (e.g. under central DP, where the hub adds the noise) made no local release.
    When both mechanisms are on, both are charged (a conservative composition).
    """
    out: dict[DPMode, DPRelease] = {}
    release = release_for_update(local) if local is not None else None
    if release is not None and release.noise_multiplier > 0:
        out[release.mode] = release
    if central_noise_multiplier is not None:
        out[DPMode.CENTRAL] = central_release(central_noise_multiplier, central_clip_norm)
    return out


#: The most batches per epoch a plant's first DP-SGD round is priced at (see `plant_release_alternatives`);
#: each costs one cached RDP evaluation (~50 ms) per (σ, epochs).
FIRST_ROUND_BATCHES = 32


def plant_release_alternatives(
    mode: DPMode, *, clip_norm: float, noise_multiplier: float, epochs: int, history: Sequence[DPRelease]
) -> list[DPRelease]:
    """What a plant's own side of its next round may cost it, known before it trains (for the ε budget).

    LOCAL is one release whatever the data. DP-SGD's cost depends on the plant's data size N, which the hub
    never sees. After one DP-SGD round it is known: opacus samples at q = 1/batches per epoch, so that round's
    q gives the batches per epoch (assuming the plant's data and batch size are unchanged). Before it, every
    batches-per-epoch count b is possible, and ε(q = 1/b, steps = epochs·b) is not monotone in b (at small σ
    b = 2..4 costs more than b = 1); so each b up to FIRST_ROUND_BATCHES is an alternative and the budget
    check takes the dearest. Beyond it ε keeps falling for any σ >= 0.3 (a test checks σ 0.5..2 up to a
    million records; below 0.3 ε is above 40, no budget anyone sets). Aggregation charges what really ran.
    """
    if mode is DPMode.CENTRAL:
        raise ValueError("the central release is the hub's, see central_release")
    if mode is DPMode.LOCAL:
        return [DPRelease(mode=mode, noise_multiplier=noise_multiplier, clip_norm=clip_norm)]
    last = next((r for r in reversed(history) if r.mode is DPMode.SAMPLE), None)
    if last is not None:
        batches = [max(1, round(1 / last.sample_rate))]
    else:
        batches = list(range(1, FIRST_ROUND_BATCHES + 1))
    return [
        DPRelease(
            mode=mode, noise_multiplier=noise_multiplier, sample_rate=1 / b, steps=epochs * b, clip_norm=clip_norm
        )
        for b in batches
    ]


def round_costs(
    plant_mode: DPMode | None,
    *,
    clip_norm: float,
    noise_multiplier: float,
    epochs: int,
    central: DPRelease | None,
    history: Sequence[DPRelease],
) -> list[list[DPRelease]]:
    """What one more round may cost a plant with this ledger `history`: its own release (when `plant_mode` is
    set and it adds noise) plus the hub's `central` one, one list per case `plant_release_alternatives` cannot
    tell apart. The budget check (operator and simulate alike) takes the dearest (`dearest_epsilon`).
    """
    hub = [central] if central is not None else []
    if plant_mode is None or noise_multiplier <= 0:
        return [hub]
    own = plant_release_alternatives(
        plant_mode, clip_norm=clip_norm, noise_multiplier=noise_multiplier, epochs=epochs, history=history
    )
    return [[release, *hub] for release in own]


def ledger_round_id(round_id: str, mode: DPMode) -> str:
    """Key of one release in the ledger: a round's central release is recorded next to the plant's own."""
    return f"{round_id}.central" if mode is DPMode.CENTRAL else round_id


class PrivacyLedger:
    """Per-plant release history of one lineage, kept by the model store (see `ModelStore.editing_ledger`).

    `record` is idempotent per (round, plant): recording the same release again changes nothing, a
    different release for an already recorded round is refused (a round is charged exactly once).
    """

    def __init__(self, store: ModelStore | str | os.PathLike[str], model: str) -> None:
        """`store` is the model store, or the root directory of one (opened as a `ModelStore`)."""
        self.store = store if isinstance(store, ModelStore) else ModelStore(store)
        self.model = check_name("model", model)

    @property
    def path(self) -> Path:
        return self.store.ledger_path(self.model)

    def record(self, round_id: str, plant: str, release: DPRelease) -> bool:
        """Charge `release` to `plant` for `round_id`; returns False if it was already recorded."""
        check_name("round", round_id)
        check_name("plant", plant)
        with self.store.editing_ledger(self.model) as ledger:
            entries = ledger.plants.setdefault(plant, [])
            for entry in entries:
                if entry.round_id == round_id:
                    if entry.release == release:
                        return False
                    raise LedgerError(
                        f"plant {plant!r} already has a different release recorded for round {round_id!r}: "
                        f"{entry.release.model_dump()} != {release.model_dump()}"
                    )
            entries.append(LedgerEntry(round_id=round_id, release=release))
            return True

    def charge_round(self, round_id: str, plant: str, releases: Mapping[DPMode, DPRelease]) -> bool:
        """Record what one round cost `plant` (see `round_releases`); True if anything was new."""
        recorded = [self.record(ledger_round_id(round_id, mode), plant, r) for mode, r in releases.items()]
        return any(recorded)

    def entries(self) -> dict[str, list[LedgerEntry]]:
        """Every plant's recorded releases with their round ids, in recording order."""
        return self.store.read_ledger(self.model).plants

    def history(self, plant: str) -> list[DPRelease]:
        return [e.release for e in self.entries().get(plant, [])]

    def rounds(self, plant: str) -> list[str]:
        return [e.round_id for e in self.entries().get(plant, [])]

    def plants(self) -> list[str]:
        return sorted(self.entries())

    def epsilon(self, plant: str, delta: float) -> float:
        """ε spent by `plant` so far at `delta` (0 for a plant never charged)."""
        return epsilon_for(self.history(plant), delta)
