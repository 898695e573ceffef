"""Exposure targets for dose optimisation: what to aim at and what counts as toxic.

A target is an immutable value that turns simulated outputs on a time grid
into one number per posterior draw (its *metric*) over an evaluation window
``(start, end)`` in h, and says which values attain it.  Every target reads
either a :class:`~medtwin.core.data.PredictiveBand` (its ``draws``) or an
:class:`Exposure` (``times`` (T,) and ``outputs`` name -> (n_draws, T)).

==================  ==========================================================  ============
target              metric per draw over the window                             unit
==================  ==========================================================  ============
``AUC24Window``     AUC (trapezoid) scaled to 24 h: AUC_window · 24 / length    mg·h/L
``TroughWindow``    lowest level in the window (see below)                      mg/L
``PeakWindow``      highest level in the window (end of infusion on the grid)   mg/L
``AUCOverMIC``      AUC24 / MIC                                                 h (ratio)
``TimeAboveMIC``    fraction of the window with the output above the MIC        1
``OutputWindow``    mean, min, max of any output (a PD endpoint), or its value  output unit
                    at one time
==================  ==========================================================  ============

Troughs: the dose optimiser (:mod:`medtwin.control.dosing`) puts a point just
before every dose time (1e-6 h earlier) on the grid, so the minimum over the
window is the pre-dose level; for IV infusions at or near steady state it is
the trough before the next dose.  Peaks: infusion end times are on the grid,
so the maximum is the end-of-infusion level.

A target attains when ``low <= metric <= high`` (either bound may be None).
Toxicity uses the same machinery: :class:`Threshold` wraps any target as a
metric and calls a draw toxic when its metric is above ``above`` (or below
``below``); e.g. ``Threshold(AUC24Window(), above=600.0)`` (nephrotoxicity
rises above 600 mg·h/L) or ``Threshold(TroughWindow(), above=20.0)``.

Failed draws (NaN outputs) never attain a target and always count as toxic.

Examples
--------
>>> import numpy as np
>>> t = np.linspace(0.0, 24.0, 25)
>>> exposure = Exposure(t, {"C": np.vstack([np.full(25, 20.0), np.full(25, 30.0)])})
>>> target = AUC24Window(400.0, 600.0)
>>> values = target.metric(exposure, (0.0, 24.0))
>>> values.tolist(), target.attained(values).tolist()
([480.0, 720.0], [True, False])
>>> Threshold(target, above=600.0).attained(values).tolist()
[False, True]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from medtwin.errors import DataError

__all__ = ["AUC24Window", "AUCOverMIC", "Exposure", "OutputWindow", "PeakWindow", "Target", "Threshold",
           "TimeAboveMIC", "TroughWindow"]

_STATISTICS = ("mean", "min", "max", "at")


@dataclass(frozen=True, eq=False)
class Exposure:
    """Simulated outputs on a grid: ``times`` (T,) in h and ``outputs`` name -> (n_draws, T).

    Times may repeat (a zero-width step) and must be non-decreasing.
    """

    times: np.ndarray
    outputs: Mapping[str, np.ndarray]

    def __post_init__(self):
        times = np.asarray(self.times, dtype=float)
        if times.ndim != 1 or np.any(np.diff(times) < 0):
            raise DataError("exposure: times must be one-dimensional and non-decreasing (h)")
        object.__setattr__(self, "times", times)
        arrays = {}
        for name, values in self.outputs.items():
            values = np.atleast_2d(np.asarray(values, dtype=float))
            if values.shape[-1] != times.size:
                raise DataError(f"exposure: output {name!r} has {values.shape[-1]} columns for {times.size} times")
            arrays[name] = values
        object.__setattr__(self, "outputs", arrays)


def as_exposure(source) -> Exposure:
    """An :class:`Exposure` from a PredictiveBand, an Exposure or a pair ``(times, outputs)``."""
    if isinstance(source, Exposure):
        return source
    if hasattr(source, "draws") and hasattr(source, "times"):
        return Exposure(source.times, source.draws)
    if isinstance(source, tuple) and len(source) == 2:
        return Exposure(*source)
    raise DataError(f"target: expected a PredictiveBand, an Exposure or (times, outputs), got {type(source).__name__}")


def _window(times: np.ndarray, window) -> np.ndarray:
    try:
        start, end = (float(w) for w in window)
    except (TypeError, ValueError):
        raise DataError(f"target: window must be (start, end) in h, got {window!r}") from None
    if not end > start:
        raise DataError(f"target: window end {end} h must be after its start {start} h")
    mask = (times >= start - 1e-9) & (times <= end + 1e-9)
    if mask.sum() < 2:
        raise DataError(f"target: fewer than two grid times in the window [{start}, {end}] h")
    return mask


def _check_bounds(who: str, low, high) -> None:
    for name, value in (("low", low), ("high", high)):
        if value is not None and not np.isfinite(value):
            raise DataError(f"{who}: {name} must be a finite number or None, got {value!r}")
    if low is not None and high is not None and low > high:
        raise DataError(f"{who}: low {low} is above high {high}")


@dataclass(frozen=True)
class Target:
    """Base class: a window ``[low, high]`` on a per-draw metric of ``output``.

    Subclasses define :meth:`_values` (the metric on the window's grid) and
    ``name``/``unit``.  ``linear`` is True when the metric is a linear
    functional of the output trajectory (the optimiser then combines metrics of
    superposed responses instead of trajectories).
    """

    low: float | None = None
    high: float | None = None
    output: str = "C"
    name = "metric"
    unit = ""
    linear = False

    def __post_init__(self):
        _check_bounds(type(self).__name__, self.low, self.high)

    def metric(self, source, window) -> np.ndarray:
        """Metric per draw, shape (n_draws,), over ``window`` = (start, end) h."""
        exposure = as_exposure(source)
        if self.output not in exposure.outputs:
            raise DataError(f"{type(self).__name__}: no output {self.output!r}; have {sorted(exposure.outputs)}")
        mask = _window(exposure.times, window)
        return self._values(exposure.times[mask], exposure.outputs[self.output][:, mask], window)

    def _values(self, t: np.ndarray, y: np.ndarray, window) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def attained(self, values) -> np.ndarray:
        """True where ``low <= value <= high`` (NaN: False), same shape as ``values``."""
        values = np.asarray(values, dtype=float)
        ok = np.isfinite(values)
        if self.low is not None:
            ok &= values >= self.low
        if self.high is not None:
            ok &= values <= self.high
        return ok

    def distance(self, value: float) -> float:
        """How far ``value`` lies outside ``[low, high]`` (0 inside; metric units)."""
        below = self.low - value if self.low is not None else 0.0
        above = value - self.high if self.high is not None else 0.0
        return float(max(below, above, 0.0))

    def centre(self) -> float | None:
        """The middle of the window (the one bound when only one is given)."""
        bounds = [b for b in (self.low, self.high) if b is not None]
        return float(np.mean(bounds)) if bounds else None

    def describe(self) -> dict:
        """Name, bounds, unit, output and the metric's definition."""
        return {"name": self.name, "low": self.low, "high": self.high, "unit": self.unit, "output": self.output,
                "metric": (type(self).__doc__ or "").strip().splitlines()[0]}


def _init(obj, **values) -> None:
    """Positional constructors in clinical order (the dataclass order puts low/high first)."""
    for key, value in values.items():
        object.__setattr__(obj, key, value)
    obj.__post_init__()


def _auc(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.trapezoid(y, t, axis=-1)


@dataclass(frozen=True)
class AUC24Window(Target):
    """AUC over the window scaled to 24 h (mg·h/L): AUC_window · 24 / window length.

    Examples
    --------
    >>> AUC24Window(400.0, 600.0).describe()["unit"]
    'mg*h/L'
    """

    name = "AUC24"
    unit = "mg*h/L"
    linear = True

    def _values(self, t, y, window):
        return _auc(t, y) * 24.0 / (float(window[1]) - float(window[0]))


@dataclass(frozen=True)
class TroughWindow(Target):
    """Lowest level in the window (mg/L): the pre-dose trough on the optimiser's grid."""

    name = "trough"
    unit = "mg/L"

    def _values(self, t, y, window):
        return np.min(y, axis=-1)


@dataclass(frozen=True)
class PeakWindow(Target):
    """Highest level in the window (mg/L): the end-of-infusion peak on the optimiser's grid."""

    name = "peak"
    unit = "mg/L"

    def _values(self, t, y, window):
        return np.max(y, axis=-1)


@dataclass(frozen=True, init=False)
class AUCOverMIC(Target):
    """AUC24 / MIC (h): AUC over the window scaled to 24 h, divided by the MIC (mg/L).

    Examples
    --------
    >>> AUCOverMIC(mic=1.0, low=400.0).describe()["mic"]
    1.0
    """

    mic: float = 1.0
    name = "AUC24/MIC"
    unit = "h"
    linear = True

    def __init__(self, mic: float, low: float | None = None, high: float | None = None, output: str = "C"):
        _init(self, mic=float(mic), low=low, high=high, output=output)

    def __post_init__(self):
        super().__post_init__()
        if not (np.isfinite(self.mic) and self.mic > 0):
            raise DataError(f"AUCOverMIC: mic must be > 0 mg/L, got {self.mic!r}")

    def _values(self, t, y, window):
        return _auc(t, y) * 24.0 / (float(window[1]) - float(window[0])) / self.mic

    def describe(self) -> dict:
        return {**super().describe(), "mic": self.mic}


@dataclass(frozen=True, init=False)
class TimeAboveMIC(Target):
    """Fraction (0-1) of the window with the output above the MIC (mg/L), linear between grid points.

    ``min_fraction`` is the lower bound (e.g. 0.5 for 50 % fT>MIC); ``low`` is
    set from it.

    Examples
    --------
    >>> t = np.array([0.0, 1.0, 2.0])
    >>> TimeAboveMIC(mic=1.0, min_fraction=0.5).metric((t, {"C": [[2.0, 0.0, 0.0]]}), (0.0, 2.0)).tolist()
    [0.25]
    """

    mic: float = 1.0
    min_fraction: float = 0.5
    name = "fT>MIC"
    unit = "1"

    def __init__(self, mic: float, min_fraction: float = 0.5, output: str = "C"):
        _init(self, mic=float(mic), min_fraction=float(min_fraction), low=None, high=None, output=output)

    def __post_init__(self):
        if not (np.isfinite(self.mic) and self.mic > 0):
            raise DataError(f"TimeAboveMIC: mic must be > 0 mg/L, got {self.mic!r}")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise DataError(f"TimeAboveMIC: min_fraction must be in [0, 1], got {self.min_fraction!r}")
        object.__setattr__(self, "low", float(self.min_fraction))
        super().__post_init__()

    def _values(self, t, y, window):
        a, b = y[:, :-1] - self.mic, y[:, 1:] - self.mic
        dt = np.diff(t)
        with np.errstate(invalid="ignore", divide="ignore"):
            crossing = np.where(a > 0, a, b) / np.abs(a - b)       # the part of a crossing step above the MIC
        part = np.where((a > 0) & (b > 0), 1.0, np.where((a > 0) ^ (b > 0), np.nan_to_num(crossing), 0.0))
        value = np.sum(part * dt, axis=-1) / (float(window[1]) - float(window[0]))
        return np.where(np.all(np.isfinite(y), axis=-1), value, np.nan)

    def describe(self) -> dict:
        return {**super().describe(), "mic": self.mic, "min_fraction": self.min_fraction}


@dataclass(frozen=True, init=False)
class OutputWindow(Target):
    """A statistic of any output over the window (a PD endpoint): time-mean, min, max or the value ``at`` a time.

    ``statistic="at"`` reads the value at ``at`` h (the window end when None).

    Examples
    --------
    >>> t = np.array([0.0, 1.0, 2.0])
    >>> OutputWindow("E", 0.5, 1.5, statistic="mean").metric((t, {"E": [[0.0, 1.0, 2.0]]}), (0.0, 2.0)).tolist()
    [1.0]
    """

    statistic: str = "mean"
    at: float | None = None
    unit: str = ""

    def __init__(self, output: str, low: float | None = None, high: float | None = None, statistic: str = "mean",
                 at: float | None = None, unit: str = ""):
        _init(self, output=output, low=low, high=high, statistic=statistic, at=at, unit=unit)

    def __post_init__(self):
        super().__post_init__()
        if self.statistic not in _STATISTICS:
            raise DataError(f"OutputWindow: statistic must be one of {_STATISTICS}, not {self.statistic!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.statistic}({self.output})"

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return self.statistic in ("mean", "at")

    def _values(self, t, y, window):
        if self.statistic == "mean":
            return _auc(t, y) / (float(window[1]) - float(window[0]))
        if self.statistic == "min":
            return np.min(y, axis=-1)
        if self.statistic == "max":
            return np.max(y, axis=-1)
        when = float(window[1]) if self.at is None else float(self.at)
        k = np.flatnonzero(np.abs(t - when) < 1e-9)
        if k.size == 0:
            raise DataError(f"OutputWindow: {when} h is not a grid time inside the window")
        return y[:, k[-1]]

    def describe(self) -> dict:
        return {**super().describe(), "statistic": self.statistic, "at": self.at}


@dataclass(frozen=True)
class Threshold:
    """Toxic exposure: the metric of ``metric_target`` above ``above`` (or below ``below``).

    The wrapped target's own bounds are ignored; only its metric is used.
    ``attained`` is True for toxic draws (NaN metric: toxic).

    Examples
    --------
    >>> Threshold(TroughWindow(), above=20.0).describe()["above"]
    20.0
    """

    metric_target: Target = field(default_factory=AUC24Window)
    above: float | None = None
    below: float | None = None

    def __post_init__(self):
        if not isinstance(self.metric_target, Target):
            raise DataError(f"Threshold: metric_target must be a Target, got {type(self.metric_target).__name__}")
        if self.above is None and self.below is None:
            raise DataError("Threshold: give above, below or both")
        for value in (self.above, self.below):
            if value is not None and not np.isfinite(value):
                raise DataError(f"Threshold: bounds must be finite, got {value!r}")

    @property
    def output(self) -> str:
        return self.metric_target.output

    @property
    def linear(self) -> bool:
        return self.metric_target.linear

    def metric(self, source, window) -> np.ndarray:
        """The wrapped target's metric per draw, shape (n_draws,)."""
        return self.metric_target.metric(source, window)

    def attained(self, values) -> np.ndarray:
        """True where the exposure is toxic (or the draw failed)."""
        values = np.asarray(values, dtype=float)
        toxic = ~np.isfinite(values)
        if self.above is not None:
            toxic |= values > self.above
        if self.below is not None:
            toxic |= values < self.below
        return toxic

    def describe(self) -> dict:
        inner = self.metric_target.describe()
        return {"name": f"toxic {inner['name']}", "above": self.above, "below": self.below, "unit": inner["unit"],
                "output": inner["output"]}
