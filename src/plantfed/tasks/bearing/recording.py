"""One vibration recording: the unit every data source (plant files, CWRU, synthetic) produces."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly


@dataclass(frozen=True)
class Recording:
    """A 1-D accelerometer signal with its class label and where it came from.

    `name` is unique within a plant; `source` is the file (or generator) it was read from, used in errors.
    """

    name: str
    signal: np.ndarray
    fs: float
    label: str
    rpm: float | None = None
    source: str = ""

    def resampled(self, fs: float) -> Recording:
        """This recording at sampling rate `fs` (polyphase, anti-aliased); itself if already there."""
        if self.fs == fs:
            return self
        ratio = Fraction(fs / self.fs).limit_denominator(1000)
        signal = resample_poly(self.signal.astype(np.float64), ratio.numerator, ratio.denominator)
        return Recording(self.name, signal.astype(np.float32), fs, self.label, self.rpm, self.source)
