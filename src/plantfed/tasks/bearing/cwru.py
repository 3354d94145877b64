"""The CWRU bearing data (one `.npz` per motor load and accelerometer channel) as four natural plants.

Each file holds one channel (`_DE` drive end, `_FE` fan end, `_BA` base) of the 12 kHz fault experiments at one
motor load; the load (and so the shaft speed) is what makes the plants differ. Array names give the class: `B_*`
ball, `IR_*` inner race, `OR@<pos>_*` outer race. The only healthy recording, `Normal@48k`, exists at 0 HP and
48 kHz; it is left out unless asked for, so the default benchmark has the same three fault classes at every plant.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from plantfed.tasks.bearing.recording import Recording

FILE_PATTERN = re.compile(r"^load(\d+)hp_(\d+)rpm_([A-Z]{2})\.npz$")
CHANNELS = {"DE": "drive end", "FE": "fan end", "BA": "base"}
"""The accelerometer channels CWRU recorded, by the suffix of their file names."""
DEFAULT_CHANNEL = "DE"
CWRU_FS = 12_000.0
HEALTHY_KEY = "Normal@48k"
HEALTHY_FS = 48_000.0


def channel(name: str) -> str:
    """A channel option (`DE`, `fe`, ...) checked and upper-cased; the error lists the channels."""
    upper = str(name).strip().upper()
    if upper not in CHANNELS:
        known = ", ".join(f"{key} ({what})" for key, what in CHANNELS.items())
        raise ValueError(f"option channel={name!r}: not a CWRU channel; use one of {known}")
    return upper


def channels_in(directory: Path) -> set[str]:
    """The channels a directory holds CWRU load files of (empty if it is not a CWRU directory)."""
    return {m.group(3) for p in directory.glob("*.npz") if (m := FILE_PATTERN.match(p.name))}


def cwru_files(directory: Path, channel_name: str = DEFAULT_CHANNEL) -> list[Path]:
    """The CWRU load files of one channel in a directory, ordered by motor load."""
    matches = [
        (int(m.group(1)), p)
        for p in directory.glob("*.npz")
        if (m := FILE_PATTERN.match(p.name)) and m.group(3) == channel_name
    ]
    return [p for _, p in sorted(matches)]


def plant_name(path: Path) -> str:
    """`load0hp` for `load0hp_1797rpm_DE.npz` (the same plant whichever channel)."""
    return path.name.split("_", 1)[0]


def label_of(key: str) -> str | None:
    """Class of a CWRU array name, or None for a name this task does not know."""
    if key.startswith("B_"):
        return "ball"
    if key.startswith("IR_"):
        return "inner"
    if key.startswith("OR@"):
        return "outer"
    if key == HEALTHY_KEY:
        return "normal"
    return None


def read_cwru_file(path: Path, healthy: bool = False) -> list[Recording]:
    """The recordings of one load file; `healthy` includes `Normal@48k` (at its native 48 kHz)."""
    match = FILE_PATTERN.match(path.name)
    if match is None or match.group(3) not in CHANNELS:
        raise ValueError(
            f"{path}: not a CWRU load file (expected a name like load0hp_1797rpm_DE.npz, channel {'/'.join(CHANNELS)})"
        )
    rpm = float(match.group(2))
    recordings = []
    with np.load(path, allow_pickle=False) as data:
        for key in sorted(data.files):
            label = label_of(key)
            if label is None:
                raise ValueError(f"{path}: unknown CWRU array {key!r}")
            if label == "normal" and not healthy:
                continue
            signal = data[key]
            if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.floating):
                raise ValueError(f"{path}: array {key!r} must be a 1-D float signal, got {signal.dtype} {signal.shape}")
            fs = HEALTHY_FS if label == "normal" else CWRU_FS
            name = "Normal" if label == "normal" else key.replace("@", "at")
            recordings.append(Recording(name, signal.astype(np.float32), fs, label, rpm, str(path)))
    return recordings
