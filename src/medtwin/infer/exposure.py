"""Exposure over a forecast window: AUC and the lowest level per draw, and the probabilities of target ranges.

Today's ``medtwin forecast`` defaults: the last 24 h of the horizon, AUC24 in
400-600 mg·h/L and a trough (the lowest level over the window) in 10-20 mg/L
(vancomycin); every one of them is a parameter.

Examples
--------
>>> import numpy as np
>>> from medtwin.core.data import PredictiveBand
>>> times = np.linspace(0.0, 48.0, 481)
>>> c = {"C": np.full((3, times.size), 20.0)}
>>> band = PredictiveBand(times=times, draws=c, observed=c, units={"C": "mg/L"})
>>> e = exposure(band, "C", end=48.0)
>>> e.window, round(float(e.auc[0]), 6), e.p_auc, e.p_trough
((24.0, 48.0), 480.0, 1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.errors import DataError
from medtwin.infer.posterior import probability

__all__ = ["AUC_TARGET", "Exposure", "TROUGH_RANGE", "WINDOW_H", "exposure"]

#: Default AUC target over the window (mg·h/L) and trough range (mg/L): vancomycin's.
AUC_TARGET = (400.0, 600.0)
TROUGH_RANGE = (10.0, 20.0)
#: Default window length (h), ending at the forecast's end.
WINDOW_H = 24.0


@dataclass(frozen=True)
class Exposure:
    """AUC and trough per draw over ``window`` (h) of one output, with the probabilities of the target ranges.

    ``auc`` (unit·h) and ``trough`` (unit) have shape (n_draws,); ``p_auc`` = P(AUC in ``auc_target``),
    ``p_trough`` = P(trough in ``trough_range``).
    """

    output: str
    unit: str
    window: tuple[float, float]
    auc: np.ndarray
    trough: np.ndarray
    auc_target: tuple[float, float]
    trough_range: tuple[float, float]
    p_auc: float
    p_trough: float


def exposure(band, output: str, *, end: float, window_h: float = WINDOW_H,
             auc_target: tuple[float, float] = AUC_TARGET,
             trough_range: tuple[float, float] = TROUGH_RANGE) -> Exposure:
    """AUC and lowest level of ``output`` over ``[end - window_h, end]`` h per draw of a PredictiveBand.

    Parameters
    ----------
    band : PredictiveBand
        Draws on a time grid (h) covering the window.
    output : str
        Output name (e.g. ``"C"``).
    end : float
        End of the window, h.
    window_h : float
        Window length, h (default 24: AUC24).
    auc_target, trough_range : (low, high)
        Ranges whose probabilities are reported (unit·h and unit).

    Raises
    ------
    DataError
        A non-positive window, a range with low > high, or a window the grid does not cover.
    """
    if not window_h > 0.0:
        raise DataError(f"exposure window must be positive, got {window_h!r} h")
    for name, (lo, hi) in (("auc_target", auc_target), ("trough_range", trough_range)):
        if not lo <= hi:
            raise DataError(f"exposure {name}: low {lo!r} above high {hi!r}")
    window = (float(end) - float(window_h), float(end))
    times = np.asarray(band.times)
    inside = (times >= window[0]) & (times <= window[1])
    if not inside.any():
        raise DataError(f"the forecast grid does not cover the window {window[0]:g}-{window[1]:g} h")
    auc = band.auc(output, *window)
    trough = np.min(band.draws[output][:, inside], axis=1)
    auc_target = (float(auc_target[0]), float(auc_target[1]))
    trough_range = (float(trough_range[0]), float(trough_range[1]))
    return Exposure(output, band.units.get(output, ""), window, auc, trough, auc_target, trough_range,
                    probability(auc, *auc_target), probability(trough, *trough_range))
