"""Convert the CWRU load files into the plant-data format: one directory per plant (motor load).

`python -m plantfed.tasks.bearing.convert SRC DEST [--healthy]` writes `DEST/load0hp/B_7.npz`
and so on. Signals are copied unchanged (the healthy one stays at 48 kHz; the loader resamples), so loading
the converted directories gives exactly what loading the CWRU files directly gives.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from plantfed.tasks.bearing.cwru import cwru_files, plant_name, read_cwru_file
from plantfed.tasks.bearing.plant_files import write_recording


def convert_cwru(src: Path, dest: Path, healthy: bool = False) -> list[Path]:
    """Write each CWRU load file in `src` as a plant directory under `dest`; returns the directories."""
    files = cwru_files(src)
    if not files:
        raise ValueError(f"{src}: no CWRU load files (load<N>hp_<rpm>rpm_DE.npz) found")
    plants = []
    for path in files:
        plant_dir = dest / plant_name(path)
        for recording in read_cwru_file(path, healthy=healthy):
            write_recording(plant_dir, recording)
        plants.append(plant_dir)
    return plants


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert CWRU load files to plantfed plant-data directories.")
    parser.add_argument("src", type=Path, help="directory with load<N>hp_<rpm>rpm_DE.npz files")
    parser.add_argument("dest", type=Path, help="output root; one sub-directory per plant")
    parser.add_argument("--healthy", action="store_true", help="include the 0 HP healthy recording (48 kHz)")
    args = parser.parse_args(argv)
    for plant_dir in convert_cwru(args.src, args.dest, args.healthy):
        print(plant_dir)


if __name__ == "__main__":
    main()
