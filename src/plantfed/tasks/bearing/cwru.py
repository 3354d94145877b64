"""The CWRU bearing data (one `.npz` per motor load) as four natural plants.

Each file holds the drive-end channel of the 12 kHz fault experiments at one motor load; the load (and so
the shaft speed) is what makes the plants differ. Array names give the class: `B_*` ball, `IR_*` inner race,
`OR@<pos>_*` outer race. The only healthy recording, `Normal@48k`, exists at 0 HP and 48 kHz; it is left out
unless asked for, so the default benchmark has the same three fault classes at every plant.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from plantfed.tasks.bearing.recording import Recording

FILE_PATTERN = re.compile(r"^load(\d+)hp_(\d+)rpm_DE\.npz$")
CWRU_FS = 12_000.0
HEALTHY_KEY = "Normal@48k"
HEALTHY_FS = 48_000.0


def cwru_files(directory: Path) -> list[Path]:
    """The CWRU load files in a directory, ordered by motor load (empty if it is not a CWRU directory)."""
    matches = [(int(m.group(1)), p) for p in directory.glob("*.npz") if (m := FILE_PATTERN.match(p.name))]
    return [p for _, p in sorted(matches)]


def plant_name(path: Path) -> str:
    """`load0hp` for `load0hp_1797rpm_DE.npz`."""
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
    if match is None:
        raise ValueError(f"{path}: not a CWRU load file (expected a name like load0hp_1797rpm_DE.npz)")
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
