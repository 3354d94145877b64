"""Convert the CWRU load files into the plant-data format: one directory per plant (motor load).

`python -m plantfed.tasks.bearing.convert SRC DEST [--healthy] [--channel DE|FE|BA]` writes
`DEST/load0hp/B_7.npz` and so on, from the files of one accelerometer channel (drive end by default). Signals are
copied unchanged (the healthy one stays at 48 kHz; the loader resamples), so loading the converted directories
gives exactly what loading the CWRU files of that channel directly gives.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from plantfed.tasks.bearing.cwru import CHANNELS, DEFAULT_CHANNEL, channel, cwru_files, plant_name, read_cwru_file
from plantfed.tasks.bearing.plant_files import write_recording


def convert_cwru(src: Path, dest: Path, healthy: bool = False, channel_name: str = DEFAULT_CHANNEL) -> list[Path]:
    """Write each CWRU load file of one channel in `src` as a plant directory under `dest`; returns the directories."""
    wanted = channel(channel_name)
    files = cwru_files(src, wanted)
    if not files:
        raise ValueError(f"{src}: no CWRU load files of channel {wanted} (load<N>hp_<rpm>rpm_{wanted}.npz) found")
    plants = []
    for path in files:
        plant_dir = dest / plant_name(path)
        for recording in read_cwru_file(path, healthy=healthy):
            write_recording(plant_dir, recording)
        plants.append(plant_dir)
    return plants


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert CWRU load files to plantfed plant-data directories.")
    parser.add_argument("src", type=Path, help="directory with load<N>hp_<rpm>rpm_<channel>.npz files")
    parser.add_argument("dest", type=Path, help="output root; one sub-directory per plant")
    parser.add_argument("--healthy", action="store_true", help="include the 0 HP healthy recording (48 kHz)")
    parser.add_argument(
        "--channel",
        default=DEFAULT_CHANNEL,
        type=str.upper,
        choices=tuple(CHANNELS),
        help="accelerometer: " + ", ".join(f"{key} {what}" for key, what in CHANNELS.items()) + " (default DE)",
    )
    args = parser.parse_args(argv)
    try:
        plants = convert_cwru(args.src, args.dest, args.healthy, args.channel)
    except ValueError as exc:
        parser.exit(2, f"convert: {exc}\n")
    for plant_dir in plants:
        print(plant_dir)


if __name__ == "__main__":
    main()
