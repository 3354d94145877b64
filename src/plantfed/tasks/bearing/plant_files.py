"""The plant-data format: a directory of `.npz` files, one vibration recording each.

Keys of each file (see docs/plant-data.md): `signal` (1-D float), `label` (string: normal, ball, inner or
outer), `fs` (sampling rate, Hz), and optionally `rpm` (shaft speed). Files are read with
`allow_pickle=False`, so nothing on a plant's volume can execute code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from plantfed.tasks.bearing.labels import class_index
from plantfed.tasks.bearing.recording import Recording

REQUIRED_KEYS = ("signal", "label", "fs")


def _scalar(data: np.lib.npyio.NpzFile, key: str, path: Path) -> float:
    value = data[key]
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise ValueError(f"{path}: '{key}' must be a single number, got dtype {value.dtype} shape {value.shape}")
    number = float(value.reshape(()))
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{path}: '{key}' must be a positive number, got {number}")
    return number


def read_recording(path: Path) -> Recording:
    """Read and validate one recording file; every problem is reported with the file's path."""
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an .npz archive (holds a single array); see docs/plant-data.md")
    with data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; a recording needs {list(REQUIRED_KEYS)}")
        try:
            signal = data["signal"]
            label = data["label"]
        except ValueError as exc:
            raise ValueError(f"{path}: holds a pickled object array, which is refused ({exc})") from None
        if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.floating):
            raise ValueError(
                f"{path}: 'signal' must be a 1-D float array, got dtype {signal.dtype} shape {signal.shape}"
            )
        if not np.all(np.isfinite(signal)):
            raise ValueError(f"{path}: 'signal' contains NaN or infinite values")
        if label.shape != () or label.dtype.kind != "U":
            raise ValueError(f"{path}: 'label' must be a single string, got dtype {label.dtype} shape {label.shape}")
        label_name = str(label)
        class_index(label_name, path)
        fs = _scalar(data, "fs", path)
        rpm = _scalar(data, "rpm", path) if "rpm" in data.files else None
        return Recording(path.stem, signal.astype(np.float32), fs, label_name, rpm, str(path))


def read_plant_dir(directory: Path) -> list[Recording]:
    """All recordings of one plant directory, in file-name order."""
    files = sorted(directory.glob("*.npz"))
    if not files:
        raise ValueError(f"{directory}: no .npz recordings found (see docs/plant-data.md for the format)")
    return [read_recording(f) for f in files]


def write_recording(directory: Path, recording: Recording) -> Path:
    """Write one recording in the plant-data format; returns the file written."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{recording.name}.npz"
    fields: dict[str, np.ndarray] = {
        "signal": np.asarray(recording.signal, dtype=np.float32),
        "label": np.array(recording.label),
        "fs": np.array(float(recording.fs)),
    }
    if recording.rpm is not None:
        fields["rpm"] = np.array(float(recording.rpm))
    # numpy's stub types **kwds like its `allow_pickle: bool` keyword; every field here is an array.
    np.savez_compressed(path, **fields)  # type: ignore[arg-type]
    return path
