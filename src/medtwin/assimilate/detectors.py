"""Regime-change detection on standardized innovations: a two-sided CUSUM (Page 1954).

Used by continual adaptation (:mod:`medtwin.twin.adaptation`) and by the
live twin (:class:`medtwin.twin.TwinSettings` ``regime_detector``).  The
detector is an immutable value; its state is passed in and returned.

Examples
--------
>>> c = Cusum()
>>> state, alarm, statistic = c.update(c.init(), 3.0)
>>> alarm, statistic
(False, 2.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from medtwin.errors import DataError


def siegmund_arl(k: float, h: float, shift: float = 0.0) -> float:
    """Siegmund's approximation of the average run length of a one-sided CUSUM on N(shift, 1) data.

    S ← max(0, S + z − k), alarm when S > h.  With Δ = shift − k and
    b = h + 1.166: ARL = (e^(−2Δb) + 2Δb − 1) / (2Δ²), or b² when Δ = 0.

    Examples
    --------
    >>> round(siegmund_arl(0.5, 4.0), 1)
    338.1
    """
    delta, b = shift - k, h + 1.166
    if abs(delta) < 1e-12:
        return b * b
    return (math.exp(-2.0 * delta * b) + 2.0 * delta * b - 1.0) / (2.0 * delta * delta)


@dataclass(frozen=True)
class CusumState:
    """State of a two-sided CUSUM: the upper and lower sums, their excursion starts (h), observations seen."""

    upper: float = 0.0
    lower: float = 0.0
    upper_start: float = 0.0
    lower_start: float = 0.0
    n: int = 0


@dataclass(frozen=True)
class Cusum:
    """Two-sided CUSUM for a mean shift of standardized innovations z (Page 1954).

    S⁺ ← max(0, S⁺ + z − k), S⁻ ← max(0, S⁻ − z − k); alarm when either
    exceeds ``h``; both restart at 0 after an alarm.  ``k`` is half the shift
    (in sd) the chart is tuned to; ``h`` sets the false-alarm rate
    (:meth:`arl0`).  Defaults k = 0.5, h = 5: ARL0 ≈ 470 observations, delay
    ≈ 4 observations for a 2-sd shift.

    Examples
    --------
    >>> c = Cusum.calibrate(arl0=200.0)
    >>> round(c.h, 2), round(c.arl0(), 0)
    (4.16, 200.0)
    """

    k: float = 0.5
    h: float = 5.0

    def __post_init__(self):
        if not (self.k >= 0 and self.h > 0 and math.isfinite(self.h)):
            raise DataError(f"Cusum: need k >= 0 and a finite h > 0, got k={self.k}, h={self.h}")

    def init(self) -> CusumState:
        return CusumState()

    def update(self, state: CusumState, z: float, time: float | None = None) -> tuple[CusumState, bool, float]:
        """One standardized innovation ``z`` (observed at ``time`` h): (new state, alarm, statistic max(S⁺, S⁻))."""
        t = float(state.n if time is None else time)
        up, lo = state.upper + z - self.k, state.lower - z - self.k
        up_start = t if state.upper <= 0 < up else state.upper_start
        lo_start = t if state.lower <= 0 < lo else state.lower_start
        up, lo = max(0.0, up), max(0.0, lo)
        statistic = max(up, lo)
        alarm = statistic > self.h
        if alarm:
            return CusumState(0.0, 0.0, 0.0, 0.0, state.n + 1), True, statistic
        return CusumState(up, lo, up_start, lo_start, state.n + 1), False, statistic

    def onset_of(self, previous: CusumState, z: float, time: float) -> float:
        """Change-point estimate (h) of an alarm raised by ``z`` at ``time`` from state ``previous``:
        the start of the excursion of the side that crossed ``h``."""
        if previous.upper + z - self.k > self.h:
            return previous.upper_start if previous.upper > 0 else float(time)
        return previous.lower_start if previous.lower > 0 else float(time)

    def run(self, z: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Alarms (bool) and statistics of a whole sequence, from a fresh state."""
        state, alarms, stats = self.init(), [], []
        for value in np.asarray(z, dtype=float):
            state, alarm, s = self.update(state, float(value))
            alarms.append(alarm)
            stats.append(s)
        return np.asarray(alarms), np.asarray(stats)

    def arl0(self) -> float:
        """In-control ARL (observations between false alarms) of the two-sided chart: ARL⁺/2 by symmetry."""
        return 0.5 * siegmund_arl(self.k, self.h)

    def delay(self, shift: float) -> float:
        """Expected detection delay (observations) for a mean shift of ``shift`` sd (Siegmund, upper side)."""
        return siegmund_arl(self.k, self.h, abs(shift))

    @classmethod
    def calibrate(cls, arl0: float, k: float = 0.5) -> "Cusum":
        """The chart with in-control ARL ``arl0`` (observations), h by bisection on :meth:`arl0`."""
        if not arl0 > 1:
            raise DataError(f"Cusum.calibrate: arl0 must be > 1, got {arl0}")
        lo, hi = 1e-6, 50.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cls(k, mid).arl0() < arl0 else (lo, mid)
        return cls(k, 0.5 * (lo + hi))
