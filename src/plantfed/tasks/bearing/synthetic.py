"""Physically plausible synthetic bearing vibration, one fleet per plant.

A bearing defect produces a short impact each time a rolling element passes it; each impact rings the
machine's structural resonance (a decaying sinusoid). The impact rate is the defect frequency (BPFO, BPFI,
2 x BSF), set by shaft speed and bearing geometry, and the impact strength is modulated by where the defect
sits relative to the load zone: an inner-race defect turns with the shaft (modulation at shaft rate), a ball
defect travels with the cage (modulation at FTF). Plants differ in shaft speed, bearing vendor (geometry),
resonance, sensor gain and noise, which is the non-IID structure federated training has to cope with.
Everything is drawn from `numpy.random.default_rng((seed, plant_index, ...))`, so a plant is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from plantfed.tasks.bearing.bearing_geometry import VENDOR_BEARINGS, BearingGeometry
from plantfed.tasks.bearing.labels import CLASSES
from plantfed.tasks.bearing.recording import Recording

SYNTHETIC_FS = 12_000.0
_STREAM = 0xBEA121  # separates this generator's random streams from any other use of the same seed


@dataclass(frozen=True)
class PlantProfile:
    """What makes one plant's machines sound different from another's."""

    rpm: float
    bearing: BearingGeometry
    resonance_hz: float
    damping: float
    gain: float
    noise_rms: float

    @property
    def shaft_hz(self) -> float:
        return self.rpm / 60.0


@dataclass(frozen=True)
class SyntheticSizes:
    """How much data a synthetic plant has: recordings per class and seconds per recording."""

    recordings_per_class: int = 5
    seconds: float = 8.0


def plant_profile(seed: int, plant_index: int) -> PlantProfile:
    """The operating point of a plant: each next plant runs ~15 % faster and uses the next vendor's bearing."""
    rng = np.random.default_rng((seed, plant_index, _STREAM))
    return PlantProfile(
        rpm=1500.0 * 1.15 ** (plant_index % 4) * rng.uniform(0.97, 1.03),
        bearing=VENDOR_BEARINGS[plant_index % len(VENDOR_BEARINGS)],
        resonance_hz=rng.uniform(2200.0, 4200.0),
        damping=rng.uniform(0.03, 0.06),
        gain=rng.uniform(0.5, 2.0),
        noise_rms=rng.uniform(0.25, 0.4),
    )


def defect_frequency(profile: PlantProfile, label: str, shaft_hz: float) -> float:
    """Impact rate of a defect of class `label` (0 for a healthy bearing)."""
    b = profile.bearing
    return {"normal": 0.0, "outer": b.bpfo(shaft_hz), "inner": b.bpfi(shaft_hz), "ball": 2 * b.bsf(shaft_hz)}[label]


def _impact_amplitudes(
    label: str, times: np.ndarray, shaft_hz: float, cage_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """Impact strength over time: constant for a fixed outer-race defect, load-zone modulated otherwise."""
    scatter = 1.0 + 0.1 * rng.standard_normal(len(times))
    if label == "outer":
        return scatter
    if label == "inner":
        zone = 0.5 + 0.5 * np.cos(2 * np.pi * shaft_hz * times + rng.uniform(0, 2 * np.pi))
        return scatter * (0.15 + zone**1.5)
    zone = 0.5 + 0.5 * np.cos(2 * np.pi * cage_hz * times + rng.uniform(0, 2 * np.pi))
    race = np.where(np.arange(len(times)) % 2 == 0, 1.0, 0.6)  # outer- then inner-race contact each spin turn
    return scatter * race * (0.2 + zone)


def _resonance(profile: PlantProfile, fs: float) -> np.ndarray:
    """Impulse response of the structure: a decaying sinusoid at the plant's resonance.

    Scaled to a fixed energy (peak about 1 at 3 kHz and 4.5 % damping), so a defect's severity means the
    same vibration energy at every plant and no plant is made easy or hard by its resonance alone.
    """
    omega = 2 * np.pi * profile.resonance_hz
    length = int(6.0 / (profile.damping * omega) * fs)  # ~6 time constants
    t = np.arange(length) / fs
    response = np.exp(-profile.damping * omega * t) * np.sin(omega * np.sqrt(1 - profile.damping**2) * t)
    return 2.0 * response / np.linalg.norm(response)


def generate_signal(
    profile: PlantProfile,
    label: str,
    seconds: float,
    severity: float,
    rpm: float,
    rng: np.random.Generator,
    fs: float = SYNTHETIC_FS,
) -> np.ndarray:
    """One accelerometer signal of a machine with the given defect, severity and shaft speed."""
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    shaft_hz = rpm / 60.0
    signal = np.zeros(n)
    for harmonic, amplitude in ((1, rng.uniform(0.1, 0.4)), (2, rng.uniform(0.05, 0.2)), (3, rng.uniform(0, 0.1))):
        signal += amplitude * np.sin(2 * np.pi * harmonic * shaft_hz * t + rng.uniform(0, 2 * np.pi))

    impacts = np.zeros(n)
    rate = defect_frequency(profile, label, shaft_hz)
    if rate > 0:
        period = 1.0 / rate
        times = np.arange(rng.uniform(0, period), seconds, period)
        times = times + 0.01 * period * rng.standard_normal(len(times))  # small random slip of each impact
        times = times[(times >= 0) & (times < seconds)]
        amplitudes = severity * _impact_amplitudes(label, times, shaft_hz, profile.bearing.ftf(shaft_hz), rng)
        np.add.at(impacts, np.minimum((times * fs).astype(int), n - 1), amplitudes)
    knocks = rng.random(n) < 3.0 / fs  # a few unrelated process knocks per second, in every class
    impacts[knocks] += rng.uniform(0.5, 2.0, int(knocks.sum()))
    signal += fftconvolve(impacts, _resonance(profile, fs))[:n]
    signal += profile.noise_rms * rng.standard_normal(n)
    return (profile.gain * signal).astype(np.float32)


def synthetic_plant(seed: int, plant_index: int, sizes: SyntheticSizes = SyntheticSizes()) -> list[Recording]:
    """All recordings of one synthetic plant: every class, several machines of varying fault severity."""
    profile = plant_profile(seed, plant_index)
    source = f"synthetic(seed={seed}, plant_index={plant_index})"
    recordings = []
    for class_id, label in enumerate(CLASSES):
        for k in range(sizes.recordings_per_class):
            rng = np.random.default_rng((seed, plant_index, _STREAM, class_id, k))
            rpm = profile.rpm * rng.uniform(0.98, 1.02)  # load varies a little from machine to machine
            severity = rng.uniform(0.6, 2.5)
            signal = generate_signal(profile, label, sizes.seconds, severity, rpm, rng)
            recordings.append(Recording(f"{label}_{k}", signal, SYNTHETIC_FS, label, rpm, source))
    return recordings
