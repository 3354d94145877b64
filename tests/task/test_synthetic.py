"""The synthetic generator's physics: fault impacts repeat at the bearing's defect frequency."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfiltfilt

from plantfed.tasks.bearing.bearing_geometry import CWRU_DRIVE_END, VENDOR_BEARINGS
from plantfed.tasks.bearing.synthetic import (
    SYNTHETIC_FS,
    SyntheticSizes,
    generate_signal,
    plant_profile,
    synthetic_plant,
)

SECONDS = 8.0


def envelope_spectrum(signal: np.ndarray, resonance_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Classic bearing diagnosis: band-pass around the resonance, Hilbert envelope, its spectrum."""
    band = [0.6 * resonance_hz, min(1.4 * resonance_hz, 0.49 * SYNTHETIC_FS)]
    sos = butter(4, band, btype="band", fs=SYNTHETIC_FS, output="sos")
    envelope = np.abs(hilbert(sosfiltfilt(sos, signal)))
    envelope -= envelope.mean()
    return np.fft.rfftfreq(len(envelope), 1 / SYNTHETIC_FS), np.abs(np.fft.rfft(envelope))


@pytest.mark.parametrize("plant_index", range(4))
@pytest.mark.parametrize("label", ["outer", "inner", "ball"])
def test_envelope_spectrum_peaks_at_the_vendors_defect_frequency(plant_index: int, label: str) -> None:
    profile = plant_profile(seed=0, plant_index=plant_index)
    signal = generate_signal(profile, label, SECONDS, 1.5, profile.rpm, np.random.default_rng(1))
    freqs, spectrum = envelope_spectrum(signal, profile.resonance_hz)
    shaft = profile.shaft_hz
    bearing = profile.bearing
    expected = {"outer": bearing.bpfo(shaft), "inner": bearing.bpfi(shaft), "ball": 2 * bearing.bsf(shaft)}[label]
    # A band holding all three candidate defect frequencies: the peak must pick the right one.
    band = (freqs > 0.8 * bearing.bpfo(shaft)) & (freqs < 1.2 * bearing.bpfi(shaft))
    peak = freqs[band][np.argmax(spectrum[band])]
    assert abs(peak - expected) <= 1.0 / SECONDS


def test_cwru_bearing_matches_the_published_defect_multiples() -> None:
    # CWRU lists the 6205-2RS JEM defect frequencies as multiples of shaft speed.
    assert CWRU_DRIVE_END.bpfo(1.0) == pytest.approx(3.5848, abs=2e-3)
    assert CWRU_DRIVE_END.bpfi(1.0) == pytest.approx(5.4152, abs=2e-3)
    assert CWRU_DRIVE_END.bsf(1.0) == pytest.approx(2.357, abs=2e-3)
    assert CWRU_DRIVE_END.ftf(1.0) == pytest.approx(0.3983, abs=2e-3)


def test_vendors_have_different_defect_frequencies_at_the_same_speed() -> None:
    bpfo = [b.bpfo(30.0) for b in VENDOR_BEARINGS]
    assert len({round(f, 1) for f in bpfo}) == len(VENDOR_BEARINGS)


def test_plants_differ_in_speed_and_vendor() -> None:
    profiles = [plant_profile(seed=0, plant_index=i) for i in range(4)]
    assert len({p.bearing for p in profiles}) == 4
    for slow, fast in itertools.pairwise(profiles):
        assert 1.05 < fast.rpm / slow.rpm < 1.27


def test_deterministic_per_seed_and_plant() -> None:
    sizes = SyntheticSizes(recordings_per_class=1, seconds=1.0)
    first = synthetic_plant(7, 2, sizes)
    again = synthetic_plant(7, 2, sizes)
    other_plant = synthetic_plant(7, 3, sizes)
    other_seed = synthetic_plant(8, 2, sizes)
    for a, b, c, d in zip(first, again, other_plant, other_seed, strict=True):
        assert np.array_equal(a.signal, b.signal)
        assert not np.array_equal(a.signal, c.signal) and not np.array_equal(a.signal, d.signal)


def test_every_class_is_generated_at_every_plant() -> None:
    recordings = synthetic_plant(0, 1, SyntheticSizes(recordings_per_class=2, seconds=1.0))
    assert sorted({r.label for r in recordings}) == ["ball", "inner", "normal", "outer"]
    assert all(r.fs == SYNTHETIC_FS and len(r.signal) == int(SYNTHETIC_FS) for r in recordings)
