"""Decide what `DataSpec.path` points at and read that plant's recordings.

- None: the built-in synthetic fleet (plant `plant_index` of it).
- A directory of CWRU load files: plant i is the i-th motor load (`load0hp` ... `load3hp`), of the channel that
  option `channel` names (DE, FE or BA; default DE).
- A directory of plant-data `.npz` files: that one plant's data, refused when `num_plants > 1` (every plant would
  get the same samples) unless the runtime partitions it (`DataSpec.runtime_partition`).
- A directory of plant directories (what `convert` writes): plant i is the i-th directory by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantfed.tasks.bearing.cwru import DEFAULT_CHANNEL, channel, channels_in, cwru_files, plant_name, read_cwru_file
from plantfed.tasks.bearing.plant_files import read_plant_dir
from plantfed.tasks.bearing.recording import Recording
from plantfed.tasks.bearing.synthetic import SyntheticSizes, plant_profile, synthetic_plant
from plantfed.tasks.sdk import DataSpec, require_own_data


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


@dataclass(frozen=True)
class Located:
    """What a spec's path points at, from file names alone: the kind of source, its file or directory, its name."""

    kind: str
    path: Path | None
    plant: str


def locate(spec: DataSpec) -> Located:
    """The plant `spec` describes; reads no samples, so naming a plant is cheap."""
    if spec.path is None:
        return Located("synthetic", None, spec.plant)
    path = Path(spec.path)
    if not path.is_dir():
        raise ValueError(f"{path}: bearing data path must be a directory (see docs/plant-data.md)")
    wanted = channel(spec.options.get("channel", DEFAULT_CHANNEL))
    loads = cwru_files(path, wanted)
    if loads:
        chosen = _pick(loads, spec, f"CWRU {wanted} load files")
        return Located("cwru", chosen, plant_name(chosen))
    present = channels_in(path)
    if present:
        raise ValueError(
            f"{path}: holds CWRU load files of channel(s) {', '.join(sorted(present))}, none of channel {wanted}; "
            f"pick one with --data-option channel={sorted(present)[0]}"
        )
    if any(path.glob("*.npz")):
        require_own_data(spec, f"{path} (a directory of .npz recordings)")
        return Located("plant-files", path, spec.plant)
    plants = sorted(p for p in path.iterdir() if p.is_dir() and any(p.glob("*.npz")))
    if plants:
        chosen = _pick(plants, spec, "plant directories")
        return Located("plant-files", chosen, chosen.name)
    raise ValueError(
        f"{path}: no CWRU load files, plant-data .npz files or plant directories found (see docs/plant-data.md)"
    )


def read_source(spec: DataSpec) -> PlantSource:
    """The recordings of the plant `spec` describes."""
    where = locate(spec)
    if where.path is None:
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
    if where.kind == "cwru":
        healthy = _as_bool(spec.options.get("healthy", False))
        return PlantSource(
            read_cwru_file(where.path, healthy=healthy),
            {"source": "cwru", "plant": where.plant, "file": str(where.path), "healthy": healthy},
        )
    return PlantSource(
        read_plant_dir(where.path), {"source": "plant-files", "plant": where.plant, "file": str(where.path)}
    )
