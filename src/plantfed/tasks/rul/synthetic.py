"""Run-to-failure histories: the on-disk format, and a synthetic fleet whose units degrade to failure.

On disk (a plant's data directory, or its `rul/` sub-directory when the volume holds other tasks' data too): one
`.npz` file per unit, key `sensors`, a float array (cycles, channels) whose last row is the cycle the unit failed
in; read with `allow_pickle=False`.


Unit u of a plant lives T_u cycles (drawn per plant: each plant runs its machines differently). Its hidden
health falls as h(t) = 1 - (t / T_u)^k, with a unit-specific wear exponent k, and each of the sensor channels
reads a plant-specific offset + gain_c * (1 - h(t)) + noise. The target at cycle t is the remaining useful life
T_u - t, capped at `cap` cycles (the usual piecewise-linear RUL: early in life nothing tells how long a healthy
unit will last). Splits are by unit, so no unit's history is in two splits. Everything derives from
(seed, plant_index): every run, and every process of a plant, generates the same data.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
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
    """One unit's sensor history, shape (cycles, CHANNELS), run until it failed in its last cycle."""

    sensors: np.ndarray

    def rul(self, cap: float) -> np.ndarray:
        """Cycles left after each cycle, capped at `cap`."""
        cycles = len(self.sensors)
        return np.minimum(cycles - 1 - np.arange(cycles), cap).astype(np.float32)


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
        units.append(Unit(sensors.astype(np.float32)))
    return units


def write_units(directory: Path, units: list[Unit]) -> list[Path]:
    """Write units in the on-disk format; returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, unit in enumerate(units):
        paths.append(directory / f"unit_{i:03d}.npz")
        np.savez_compressed(paths[-1], sensors=unit.sensors)
    return paths


def read_units(directory: Path, window: int) -> list[Unit]:
    """The units of a plant directory, in file-name order; every problem is reported with the file's path."""
    files = sorted(directory.glob("*.npz"))
    if not files:
        raise ValueError(f"{directory}: no run-to-failure .npz files (one per unit, key 'sensors')")
    units = []
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as data:
                sensors = data["sensors"] if "sensors" in data.files else None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
        if sensors is None:
            raise ValueError(f"{path}: missing key 'sensors' (a float array of cycles x {CHANNELS} channels)")
        if sensors.ndim != 2 or sensors.shape[1] != CHANNELS or not np.issubdtype(sensors.dtype, np.floating):
            raise ValueError(f"{path}: 'sensors' must be float, shape (cycles, {CHANNELS}), got {sensors.shape}")
        if len(sensors) < window or not np.all(np.isfinite(sensors)):
            raise ValueError(f"{path}: 'sensors' needs at least {window} finite cycles, got {len(sensors)}")
        units.append(Unit(sensors.astype(np.float32)))
    return units


def windows(units: list[Unit], window: int, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Every `window`-cycle slice of every unit, shape (N, CHANNELS, window), and the RUL at its last cycle."""
    xs, ys = [], []
    for unit in units:
        rul = unit.rul(cap)
        for end in range(window, len(rul) + 1):
            xs.append(unit.sensors[end - window : end].T)
            ys.append(rul[end - 1])
    if not xs:
        return np.zeros((0, CHANNELS, window), np.float32), np.zeros(0, np.float32)
    return np.stack(xs), np.asarray(ys, dtype=np.float32)
