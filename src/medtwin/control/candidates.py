"""Hard constraints of a dose recommendation and the candidate regimens they allow.

:class:`DoseConstraints` (dose steps, intervals, infusion rate, daily and per-dose limits, loading doses) is a
value checked at construction; :func:`candidate_regimen` turns one allowed candidate into a Regimen.  The search
over candidates is :func:`medtwin.control.dosing.recommend_dose`.

Examples
--------
>>> c = DoseConstraints(max_dose_mg=2000.0)
>>> candidate = _candidates(c)[0]
>>> candidate_regimen(candidate, 0.0, 48.0).expanded()[0].amount == candidate.dose
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medtwin.core.events import DoseEvent, Regimen
from medtwin.errors import DataError

__all__ = ["DoseConstraints", "candidate_regimen"]


def _positive(name: str, value, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = value is not None and isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise DataError(f"dose constraints: {name} must be a finite number {'>= 0' if allow_zero else '> 0'}"
                        f"{' or None' if allow_none else ''}, got {value!r}")


@dataclass(frozen=True)
class DoseConstraints:
    """Hard constraints of a dose recommendation (never violated by a candidate).

    Parameters
    ----------
    dose_step_mg : float
        Doses are multiples of this step (available strengths / rounding), mg.
    min_dose_mg, max_dose_mg : float
        Smallest and largest single maintenance dose, mg.
    max_daily_mg : float, optional
        Largest maintenance amount per 24 h (dose · 24 / interval), mg.
    intervals_h : tuple of float
        Allowed dosing intervals, h.
    max_rate_mg_per_h : float, optional
        Infusion-rate limit: duration = max(min_infusion_h, dose / rate rounded up to ``infusion_step_h``);
        a dose whose infusion would outlast the interval is not proposed at that interval (bags never overlap,
        so the summed rate never exceeds the limit).
    min_infusion_h : float
        Shortest infusion, h; 0 with no rate limit means a bolus (or an oral dose).
    infusion_step_h : float
        Infusion durations are rounded up to multiples of this step, h.
    loading : bool
        Whether a loading dose (at the start time, maintenance one interval later) may be proposed.
    max_loading_mg : float, optional
        Largest loading dose, mg (default: ``max_dose_mg``); loading doses are multiples of the dose step,
        above the maintenance dose, and outside the daily maximum (which applies to maintenance).
    cmt : int, optional
        Dose compartment (1-based; default: the model's).

    Examples
    --------
    >>> c = DoseConstraints(dose_step_mg=250.0, max_dose_mg=1000.0, max_rate_mg_per_h=500.0)
    >>> c.doses().tolist(), c.infusion_h(750.0)
    ([250.0, 500.0, 750.0, 1000.0], 1.5)
    >>> DoseConstraints(intervals_h=())
    Traceback (most recent call last):
    ...
    medtwin.errors.DataError: dose constraints: give at least one allowed interval (h)
    """

    dose_step_mg: float = 250.0
    min_dose_mg: float = 250.0
    max_dose_mg: float = 4000.0
    max_daily_mg: float | None = None
    intervals_h: tuple = (6.0, 8.0, 12.0, 24.0)
    max_rate_mg_per_h: float | None = None
    min_infusion_h: float = 1.0
    infusion_step_h: float = 0.5
    loading: bool = False
    max_loading_mg: float | None = None
    cmt: int | None = None

    def __post_init__(self):
        _positive("dose_step_mg", self.dose_step_mg)
        _positive("min_dose_mg", self.min_dose_mg)
        _positive("max_dose_mg", self.max_dose_mg)
        _positive("max_daily_mg", self.max_daily_mg, allow_none=True)
        _positive("max_rate_mg_per_h", self.max_rate_mg_per_h, allow_none=True)
        _positive("min_infusion_h", self.min_infusion_h, allow_zero=True)
        _positive("infusion_step_h", self.infusion_step_h)
        _positive("max_loading_mg", self.max_loading_mg, allow_none=True)
        if self.min_dose_mg > self.max_dose_mg:
            raise DataError(f"dose constraints: min_dose_mg {self.min_dose_mg} is above max_dose_mg {self.max_dose_mg}")
        intervals = tuple(float(i) for i in np.atleast_1d(np.asarray(self.intervals_h, dtype=float)))
        if not intervals:
            raise DataError("dose constraints: give at least one allowed interval (h)")
        for value in intervals:
            _positive("every interval in intervals_h", value)
        object.__setattr__(self, "intervals_h", tuple(sorted(set(intervals))))
        if self.doses().size == 0:
            raise DataError(f"dose constraints: no multiple of {self.dose_step_mg} mg lies in "
                            f"[{self.min_dose_mg}, {self.max_dose_mg}] mg")
        if self.max_daily_mg is not None and not any(self.doses()[0] * 24.0 / i <= self.max_daily_mg * (1 + 1e-12)
                                                     for i in intervals):
            raise DataError(f"dose constraints: max_daily_mg {self.max_daily_mg} allows no dose at any interval "
                            f"{intervals} h")
        if not any(self.daily_ok(d, i) and self.fits(d, i) for d in self.doses() for i in intervals):
            smallest = self.doses()[0]
            limit = ("" if self.max_rate_mg_per_h is None
                     else f" at the rate limit of {self.max_rate_mg_per_h:g} mg/h")
            raise DataError(f"dose constraints: no allowed dose can be infused within its interval: the smallest, "
                            f"{smallest:g} mg, takes {self.infusion_h(smallest):g} h{limit} (shortest infusion "
                            f"{self.min_infusion_h:g} h), longer than the longest allowed interval "
                            f"{max(intervals):g} h")
        if self.loading and self.loading_doses().size == 0:
            raise DataError(f"dose constraints: no loading dose (a multiple of {self.dose_step_mg} mg) is "
                            f"<= max_loading_mg {self.max_loading_mg}")
        if self.cmt is not None and (int(self.cmt) != self.cmt or self.cmt < 1):
            raise DataError(f"dose constraints: cmt must be a positive integer, got {self.cmt!r}")

    def doses(self) -> np.ndarray:
        """Allowed single maintenance doses (mg), ascending."""
        step = float(self.dose_step_mg)
        lo = math.ceil(self.min_dose_mg / step - 1e-9)
        hi = math.floor(self.max_dose_mg / step + 1e-9)
        return np.arange(lo, hi + 1, dtype=float) * step

    def loading_doses(self) -> np.ndarray:
        """Allowed loading doses (mg, excluding none), ascending."""
        top = self.max_loading_mg if self.max_loading_mg is not None else self.max_dose_mg
        k = math.floor(top / self.dose_step_mg + 1e-9)
        return np.arange(1, k + 1, dtype=float) * self.dose_step_mg

    def infusion_h(self, dose: float) -> float:
        """Infusion duration (h) of ``dose`` mg: the minimum, or longer to respect the rate limit."""
        duration = float(self.min_infusion_h)
        if self.max_rate_mg_per_h is not None:
            step = float(self.infusion_step_h)
            needed = math.ceil(dose / self.max_rate_mg_per_h / step - 1e-9) * step
            duration = max(duration, needed)
        return duration

    def fits(self, dose: float, interval: float) -> bool:
        """True when ``dose`` mg, infused at the rate limit, ends within ``interval`` h.

        An infusion that outlasted its interval would run alongside the next
        bag, and the summed rate would break the rate limit; with every
        infusion within its interval bags never overlap.
        """
        return self.infusion_h(dose) <= interval + 1e-9

    def daily_ok(self, dose: float, interval: float) -> bool:
        return self.max_daily_mg is None or dose * 24.0 / interval <= self.max_daily_mg * (1 + 1e-12)

    def describe(self) -> dict[str, str]:
        """Every constraint as name -> plain-text description."""
        out = {"dose_step": f"doses in {self.dose_step_mg:g} mg steps",
               "single_dose": f"single dose {self.min_dose_mg:g}-{self.max_dose_mg:g} mg",
               "intervals": "intervals " + "/".join(f"{i:g}" for i in self.intervals_h) + " h"}
        if self.max_daily_mg is not None:
            out["daily_dose"] = f"maintenance at most {self.max_daily_mg:g} mg per 24 h"
        if self.max_rate_mg_per_h is not None:
            out["infusion_rate"] = (f"infusion at most {self.max_rate_mg_per_h:g} mg/h, at least "
                                    f"{self.min_infusion_h:g} h, in {self.infusion_step_h:g} h steps, ending within "
                                    "its interval (no overlapping bags)")
        else:
            out["infusion"] = f"infusion over {self.min_infusion_h:g} h" if self.min_infusion_h > 0 else "bolus"
        if self.loading:
            out["loading"] = f"loading dose allowed, at most {self.loading_doses()[-1]:g} mg"
        return out

    def violations(self, action) -> list[str]:
        """Every hard constraint an action (``recommend_dose``'s action dict) breaks; empty when none."""
        out = []
        dose, interval, duration = action["dose_mg"], action["interval_h"], action["infusion_h"]
        if abs(dose / self.dose_step_mg - round(dose / self.dose_step_mg)) > 1e-9:
            out.append(f"dose {dose} mg is not a multiple of {self.dose_step_mg} mg")
        if not self.min_dose_mg - 1e-9 <= dose <= self.max_dose_mg + 1e-9:
            out.append(f"dose {dose} mg outside [{self.min_dose_mg}, {self.max_dose_mg}] mg")
        if not any(abs(interval - i) < 1e-9 for i in self.intervals_h):
            out.append(f"interval {interval} h not allowed")
        if not self.daily_ok(dose, interval):
            out.append(f"daily dose {dose * 24 / interval} mg above {self.max_daily_mg} mg")
        loading = action.get("loading_mg", 0.0)
        for what, hours in (("infusion", duration), ("loading infusion", action.get("loading_infusion_h", 0.0))):
            if hours > interval + 1e-9:
                out.append(f"{what} over {hours} h outlasts the {interval} h interval (bags would overlap)")
        for amount, hours in ((dose, duration), (loading, action.get("loading_infusion_h", 0.0))):
            if amount > 0 and self.max_rate_mg_per_h is not None and amount / hours > self.max_rate_mg_per_h * (1 + 1e-9):
                out.append(f"infusion rate {amount / hours} mg/h above {self.max_rate_mg_per_h} mg/h")
        if loading > 0 and (not self.loading or loading > self.loading_doses()[-1] + 1e-9
                            or abs(loading / self.dose_step_mg - round(loading / self.dose_step_mg)) > 1e-9):
            out.append(f"loading dose {loading} mg not allowed")
        return out


@dataclass(frozen=True)
class _Candidate:
    dose: float
    interval: float
    infusion: float
    loading: float
    loading_infusion: float

    def action(self) -> dict[str, float]:
        out = {"dose_mg": self.dose, "interval_h": self.interval, "infusion_h": self.infusion,
               "loading_mg": self.loading, "daily_mg": self.dose * 24.0 / self.interval}
        if self.loading > 0:
            out["loading_infusion_h"] = self.loading_infusion
        return out

    def label(self) -> str:
        text = f"{self.dose:g} mg q{self.interval:g}h over {self.infusion:g} h"
        return (f"loading {self.loading:g} mg, then " + text) if self.loading > 0 else text


def _candidates(c: DoseConstraints) -> list[_Candidate]:
    loads = c.loading_doses() if c.loading else np.zeros(0)
    out = []
    for interval in c.intervals_h:
        for dose in c.doses():
            if not (c.daily_ok(dose, interval) and c.fits(dose, interval)):
                continue
            out.append(_Candidate(float(dose), interval, c.infusion_h(dose), 0.0, 0.0))
            out.extend(_Candidate(float(dose), interval, c.infusion_h(dose), float(load), c.infusion_h(load))
                       for load in loads if load > dose and c.fits(load, interval))
    return out


def _dose(amount: float, time: float, hours: float, cmt) -> DoseEvent:
    return DoseEvent(time=time, amount=amount, cmt=cmt, rate=amount / hours if hours > 0 else 0.0)


def _maintenance(amount, interval, hours, first, until, cmt) -> Regimen:
    n = max(1, math.ceil((until - first) / interval - 1e-9))
    event = _dose(amount, first, hours, cmt)
    return Regimen((DoseEvent(time=first, amount=amount, cmt=cmt, rate=event.rate, ii=interval if n > 1 else 0.0,
                              addl=n - 1),))


def candidate_regimen(candidate: _Candidate, start: float, until: float, cmt=None) -> Regimen:
    """The candidate as a Regimen from ``start`` h up to ``until`` h (loading first, maintenance one interval on)."""
    if candidate.loading > 0:
        return (Regimen((_dose(candidate.loading, start, candidate.loading_infusion, cmt),))
                + _maintenance(candidate.dose, candidate.interval, candidate.infusion, start + candidate.interval,
                               until, cmt))
    return _maintenance(candidate.dose, candidate.interval, candidate.infusion, start, until, cmt)
