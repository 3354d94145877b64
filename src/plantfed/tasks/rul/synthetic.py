"""A synthetic run-to-failure fleet: each unit degrades from healthy to failure, seen through noisy sensors.

Unit u of a plant lives T_u cycles (drawn per plant: each plant runs its machines differently). Its hidden
health falls as h(t) = 1 - (t / T_u)^k, with a unit-specific wear exponent k, and each of the sensor channels
reads a plant-specific offset + gain_c * (1 - h(t)) + noise. The target at cycle t is the remaining useful life
T_u - t, capped at `cap` cycles (the usual piecewise-linear RUL: early in life nothing tells how long a healthy
unit will last). Splits are by unit, so no unit's history is in two splits. Everything derives from
(seed, plant_index): every run, and every process of a plant, generates the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CHANNELS = 4


@dataclass(frozen=True)
class RulOptions:
    """How much data a plant generates; built from `DataSpec.options` (all optional)."""

    units: int = 12
    window: int = 16
    cap: float = 100.0
    noise: float = 0.05
    min_life: int = 80
    max_life: int = 160

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RulOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"rul task: unknown data option(s) {unknown}; known: {sorted(known)}")
        opts = cls(**{k: type(getattr(cls, k))(v) for k, v in options.items()})
        if opts.units < 3:
            raise ValueError(f"rul task: option units={opts.units}: need at least 3 (one per split)")
        if opts.window < 2 or opts.min_life <= opts.window or opts.max_life < opts.min_life:
            raise ValueError(
                f"rul task: need 2 <= window < min_life <= max_life, got window={opts.window}, "
                f"min_life={opts.min_life}, max_life={opts.max_life}"
            )
        if opts.cap <= 0 or opts.noise < 0:
            raise ValueError(f"rul task: cap must be > 0 and noise >= 0, got cap={opts.cap}, noise={opts.noise}")
        return opts


@dataclass(frozen=True)
class Unit:
    """One unit's sensor history, shape (cycles, CHANNELS), and its RUL at every cycle (capped)."""

    sensors: np.ndarray
    rul: np.ndarray


def plant_units(seed: int, plant_index: int, opts: RulOptions) -> list[Unit]:
    """The run-to-failure histories of one plant's units."""
    plant = np.random.default_rng([seed, plant_index, 0x5B1])
    offset = plant.normal(0.0, 0.3, CHANNELS)
    gain = plant.uniform(0.6, 1.4, CHANNELS)
    life_lo = opts.min_life + int(plant.integers(0, max(1, (opts.max_life - opts.min_life) // 3)))
    units = []
    for u in range(opts.units):
        rng = np.random.default_rng([seed, plant_index, u, 0x5B2])
        life = int(rng.integers(life_lo, opts.max_life + 1))
        wear = rng.uniform(1.5, 3.0)
        t = np.arange(life, dtype=np.float64)
        damage = (t / life) ** wear
        sensors = offset + np.outer(damage, gain) + rng.normal(0.0, opts.noise, (life, CHANNELS))
        rul = np.minimum(life - 1 - t, opts.cap)
        units.append(Unit(sensors.astype(np.float32), rul.astype(np.float32)))
    return units


def windows(units: list[Unit], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every `window`-cycle slice of every unit, shape (N, CHANNELS, window), and the RUL at its last cycle."""
    xs, ys = [], []
    for unit in units:
        for end in range(window, len(unit.rul) + 1):
            xs.append(unit.sensors[end - window : end].T)
            ys.append(unit.rul[end - 1])
    if not xs:
        return np.zeros((0, CHANNELS, window), np.float32), np.zeros(0, np.float32)
    return np.stack(xs), np.asarray(ys, dtype=np.float32)
