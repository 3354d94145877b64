"""Rolling-element bearing geometry and the defect frequencies it implies.

A fault on a race or a ball strikes at a rate fixed by the bearing's geometry and the shaft speed; those
rates are what a vibration analyst (and the synthetic generator) works with. Formulas are the standard
kinematic ones for a stationary outer race and no slip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BearingGeometry:
    """A bearing model: ball count, ball and pitch diameters (mm) and contact angle (degrees)."""

    name: str
    balls: int
    ball_diameter_mm: float
    pitch_diameter_mm: float
    contact_angle_deg: float = 0.0

    @property
    def _ratio(self) -> float:
        return self.ball_diameter_mm / self.pitch_diameter_mm * math.cos(math.radians(self.contact_angle_deg))

    def ftf(self, shaft_hz: float) -> float:
        """Fundamental train (cage) frequency."""
        return shaft_hz / 2 * (1 - self._ratio)

    def bpfo(self, shaft_hz: float) -> float:
        """Ball pass frequency, outer race: impulse rate of an outer-race defect."""
        return self.balls * shaft_hz / 2 * (1 - self._ratio)

    def bpfi(self, shaft_hz: float) -> float:
        """Ball pass frequency, inner race: impulse rate of an inner-race defect."""
        return self.balls * shaft_hz / 2 * (1 + self._ratio)

    def bsf(self, shaft_hz: float) -> float:
        """Ball spin frequency; a ball defect touches a race twice per spin turn (2 x BSF)."""
        return self.pitch_diameter_mm / (2 * self.ball_diameter_mm) * shaft_hz * (1 - self._ratio**2)


#: The CWRU drive-end bearing (SKF 6205-2RS JEM, dimensions published by the CWRU Bearing Data Center).
CWRU_DRIVE_END = BearingGeometry("6205-2RS JEM", balls=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)

#: Bearings of the same bore from different vendors: ball counts, sizes and contact angles differ, so the
#: defect frequencies at the same shaft speed differ too (what separates one plant's fleet from another's).
VENDOR_BEARINGS: tuple[BearingGeometry, ...] = (
    CWRU_DRIVE_END,
    BearingGeometry("vendor-b 8-ball", balls=8, ball_diameter_mm=8.73, pitch_diameter_mm=38.5),
    BearingGeometry(
        "vendor-c 10-ball 15deg", balls=10, ball_diameter_mm=7.14, pitch_diameter_mm=38.5, contact_angle_deg=15.0
    ),
    BearingGeometry("vendor-d 11-ball", balls=11, ball_diameter_mm=6.35, pitch_diameter_mm=39.0),
)
