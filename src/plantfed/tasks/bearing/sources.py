"""Decide what `DataSpec.path` points at and read that plant's recordings.

- None: the built-in synthetic fleet (plant `plant_index` of it).
- A directory of CWRU load files: plant i is the i-th motor load (`load0hp` ... `load3hp`).
- A directory of plant-data `.npz` files: that one plant's data.
- A directory of plant directories (what `convert` writes): plant i is the i-th directory by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantfed.tasks.bearing.cwru import cwru_files, plant_name, read_cwru_file
from plantfed.tasks.bearing.plant_files import read_plant_dir
from plantfed.tasks.bearing.recording import Recording
from plantfed.tasks.bearing.synthetic import SyntheticSizes, plant_profile, synthetic_plant
from plantfed.tasks.sdk import DataSpec


@dataclass(frozen=True)
class PlantSource:
    """A plant's recordings plus a description of where they came from (goes into `PlantData.info`)."""

    recordings: list[Recording]
    info: dict[str, Any]


def _pick(items: list[Path], spec: DataSpec, what: str) -> Path:
    if spec.num_plants > len(items):
        raise ValueError(f"{spec.path}: holds {len(items)} {what}, fewer than num_plants={spec.num_plants}")
    if not 0 <= spec.plant_index < spec.num_plants:
        raise ValueError(f"plant_index={spec.plant_index} is outside 0..{spec.num_plants - 1}")
    return items[spec.plant_index]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def read_source(spec: DataSpec) -> PlantSource:
    """The recordings of the plant `spec` describes."""
    if spec.path is None:
        sizes = SyntheticSizes(
            recordings_per_class=int(spec.options.get("recordings_per_class", SyntheticSizes.recordings_per_class)),
            seconds=float(spec.options.get("seconds", SyntheticSizes.seconds)),
        )
        profile = plant_profile(spec.seed, spec.plant_index)
        info = {
            "source": "synthetic",
            "plant": spec.plant,
            "rpm": profile.rpm,
            "bearing": profile.bearing.name,
            "resonance_hz": profile.resonance_hz,
            "sensor_gain": profile.gain,
        }
        return PlantSource(synthetic_plant(spec.seed, spec.plant_index, sizes), info)

    path = Path(spec.path)
    if not path.is_dir():
        raise ValueError(f"{path}: bearing data path must be a directory (see docs/plant-data.md)")
    loads = cwru_files(path)
    if loads:
        chosen = _pick(loads, spec, "CWRU load files")
        healthy = _as_bool(spec.options.get("healthy", False))
        return PlantSource(
            read_cwru_file(chosen, healthy=healthy),
            {"source": "cwru", "plant": plant_name(chosen), "file": str(chosen), "healthy": healthy},
        )
    if any(path.glob("*.npz")):
        return PlantSource(read_plant_dir(path), {"source": "plant-files", "plant": spec.plant, "file": str(path)})
    plants = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("*.npz")))
    if plants:
        chosen = _pick(plants, spec, "plant directories")
        return PlantSource(read_plant_dir(chosen), {"source": "plant-files", "plant": chosen.name, "file": str(chosen)})
    raise ValueError(
        f"{path}: no CWRU load files, plant-data .npz files or plant directories found (see docs/plant-data.md)"
    )
