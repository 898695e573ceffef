"""Dosing events and regimens with NONMEM semantics.

One :class:`DoseEvent` is one NONMEM dose record:

=========  ====================================================================
field      NONMEM meaning
=========  ====================================================================
time       TIME, h
amount     AMT, mg (before bioavailability F)
cmt        CMT, 1-based compartment (``None``: the model's default dose target)
rate       RATE: 0 bolus; > 0 zero-order rate in mg/h; -1 rate modelled by the
           dose target's ``rate`` parameter (R1); -2 duration modelled by its
           ``duration`` parameter (D1)
ii, addl   II (h) and ADDL: ``addl`` further doses every ``ii`` hours
ss         SS: 0 none; 1 reset then steady state; 2 steady state added to the
           current state.  With ``amount = 0`` and ``rate > 0``: a steady-state
           constant infusion (II = 0)
evid       1 dose; 4 reset then dose; 3 reset only (``amount`` must be 0)
=========  ====================================================================

Semantics the simulator implements (NONMEM's): the lag time ALAGn shifts the
dose, Fn scales the amount; with a given RATE the duration becomes F·AMT/RATE;
with RATE = -2 the rate becomes F·AMT/D.  Records at the same time are applied
in record order; an observation record after a dose record at the same time
sees the post-dose state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from medtwin.errors import DataError

TIME_UNITS = {"h": 1.0, "hour": 1.0, "hours": 1.0, "min": 1.0 / 60.0, "d": 24.0, "day": 24.0, "days": 24.0, "week": 168.0}
AMOUNT_UNITS = {"mg": 1.0, "g": 1000.0, "ug": 1e-3, "µg": 1e-3, "mcg": 1e-3, "ng": 1e-6}

EVID_OBSERVATION, EVID_DOSE, EVID_OTHER, EVID_RESET, EVID_RESET_DOSE = 0, 1, 2, 3, 4


def time_in_hours(value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` (h, min, d, week) to hours."""
    try:
        return float(value) * TIME_UNITS[unit]
    except KeyError:
        raise DataError(f"unknown time unit {unit!r}; use one of {sorted(TIME_UNITS)}") from None


def amount_in_mg(value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` (mg, g, ug, ng) to mg."""
    try:
        return float(value) * AMOUNT_UNITS[unit]
    except KeyError:
        raise DataError(f"unknown amount unit {unit!r}; use one of {sorted(AMOUNT_UNITS)}") from None


@dataclass(frozen=True)
class DoseEvent:
    """One NONMEM dose (or reset) record; see the module docstring for fields and units."""

    time: float
    amount: float = 0.0
    cmt: int | None = None
    rate: float = 0.0
    ii: float = 0.0
    addl: int = 0
    ss: int = 0
    evid: int = EVID_DOSE

    def __post_init__(self):
        problems = validate_dose_fields(
            time=self.time, amount=self.amount, cmt=self.cmt, rate=self.rate,
            ii=self.ii, addl=self.addl, ss=self.ss, evid=self.evid,
        )
        if problems:
            field_name, reason = problems[0]
            raise DataError(f"dose event at t={self.time}: {field_name}: {reason}")

    @property
    def is_reset(self) -> bool:
        return self.evid in (EVID_RESET, EVID_RESET_DOSE)


def validate_dose_fields(*, time, amount, cmt, rate, ii, addl, ss, evid) -> list[tuple[str, str]]:
    """Return (field, reason) pairs for every NONMEM rule a dose record breaks."""
    problems: list[tuple[str, str]] = []
    values = {"TIME": time, "AMT": amount, "RATE": rate, "II": ii}
    for name, value in values.items():
        if not np.isfinite(value):
            problems.append((name, f"must be a finite number, got {value!r}"))
    if problems:
        return problems
    if evid not in (EVID_DOSE, EVID_RESET, EVID_RESET_DOSE):
        problems.append(("EVID", f"a dose record needs EVID 1, 3 or 4, got {evid}"))
    if time < 0:
        problems.append(("TIME", f"negative time {time}"))
    if amount < 0:
        problems.append(("AMT", f"negative amount {amount}"))
    if cmt is not None and (int(cmt) != cmt or cmt < 1):
        problems.append(("CMT", f"compartment must be a positive integer, got {cmt}"))
    if rate < 0 and rate not in (-1, -2):
        problems.append(("RATE", f"negative rate {rate} (only -1 modelled rate or -2 modelled duration are allowed)"))
    if ii < 0:
        problems.append(("II", f"negative interval {ii}"))
    if addl < 0 or int(addl) != addl:
        problems.append(("ADDL", f"must be a non-negative integer, got {addl}"))
    if addl > 0 and ii <= 0:
        problems.append(("II", "ADDL > 0 needs II > 0"))
    if ss not in (0, 1, 2):
        problems.append(("SS", f"must be 0, 1 or 2, got {ss}"))
    if ss in (1, 2):
        constant_infusion = amount == 0 and rate > 0
        if ii <= 0 and not constant_infusion:
            problems.append(("II", "SS dose without II > 0 (only a constant infusion, AMT=0 RATE>0, may have II=0)"))
        if constant_infusion and ii > 0:
            problems.append(("II", "a steady-state constant infusion (AMT=0, RATE>0) needs II=0"))
    if evid == EVID_RESET and (amount != 0 or rate != 0):
        problems.append(("AMT", "a reset record (EVID 3) carries no dose"))
    if evid in (EVID_DOSE, EVID_RESET_DOSE) and amount == 0 and not (ss in (1, 2) and rate > 0):
        problems.append(("AMT", "a dose record needs AMT > 0"))
    return problems


@dataclass(frozen=True)
class Regimen:
    """An immutable sequence of dose events, kept in time order (stable).

    Examples
    --------
    >>> r = Regimen.every(12, "h", 1000, "mg", cmt=1, duration=1, n=3)
    >>> [e.time for e in r.expanded()]
    [0.0, 12.0, 24.0]
    >>> r.expanded()[0].rate
    1000.0
    """

    events: tuple[DoseEvent, ...] = field(default_factory=tuple)

    def __post_init__(self):
        ordered = tuple(sorted(self.events, key=lambda e: e.time))
        object.__setattr__(self, "events", ordered)

    @classmethod
    def every(
        cls,
        interval: float,
        interval_unit: str,
        dose: float,
        dose_unit: str = "mg",
        *,
        n: int,
        cmt: int | None = None,
        duration: float | None = None,
        duration_unit: str = "h",
        start: float = 0.0,
        start_unit: str = "h",
    ) -> "Regimen":
        """``n`` doses of ``dose`` every ``interval``; an infusion when ``duration`` is given."""
        if n < 1:
            raise DataError(f"a regimen needs n >= 1 doses, got {n}")
        amount = amount_in_mg(dose, dose_unit)
        ii = time_in_hours(interval, interval_unit)
        rate = 0.0
        if duration is not None:
            hours = time_in_hours(duration, duration_unit)
            if hours <= 0:
                raise DataError(f"infusion duration must be > 0, got {duration} {duration_unit}")
            rate = amount / hours
        event = DoseEvent(
            time=time_in_hours(start, start_unit), amount=amount, cmt=cmt, rate=rate,
            ii=ii if n > 1 else 0.0, addl=n - 1,
        )
        return cls((event,))

    @classmethod
    def single(cls, amount: float, *, time: float = 0.0, cmt: int | None = None, rate: float = 0.0) -> "Regimen":
        """One dose of ``amount`` mg at ``time`` h (a bolus unless ``rate`` > 0 mg/h)."""
        return cls((DoseEvent(time=time, amount=amount, cmt=cmt, rate=rate),))

    def __add__(self, other: "Regimen") -> "Regimen":
        return Regimen(self.events + other.events)

    def __len__(self) -> int:
        return len(self.events)

    def expanded(self) -> tuple[DoseEvent, ...]:
        """Every ADDL dose as its own event (SS kept on the first), in stable time order."""
        out: list[tuple[float, int, DoseEvent]] = []
        for order, event in enumerate(self.events):
            out.append((event.time, order, replace(event, addl=0)))
            for k in range(1, event.addl + 1):
                out.append((event.time + k * event.ii, order, replace(event, time=event.time + k * event.ii, addl=0, ss=0, evid=EVID_DOSE)))
        out.sort(key=lambda item: (item[0], item[1]))
        return tuple(item[2] for item in out)

    def continued(self, until: float) -> "Regimen":
        """The current regimen carried on: the last dose repeated every interval up to ``until`` h (exclusive).

        The interval is the last dose record's II, or else the time between the
        last two doses.  Used to forecast "under the current regimen".

        Examples
        --------
        >>> r = Regimen.every(12.0, "h", 1000.0, n=3, duration=1.0).continued(60.0)
        >>> [e.time for e in r.expanded()]
        [0.0, 12.0, 24.0, 36.0, 48.0]
        """
        doses = [e for e in self.expanded() if e.amount > 0 or e.rate > 0]
        if not doses:
            raise DataError("cannot continue a regimen without doses")
        last = doses[-1]
        source = next(e for e in reversed(self.events) if e.time <= last.time and (e.amount > 0 or e.rate > 0))
        interval = source.ii if source.ii > 0 else (last.time - doses[-2].time if len(doses) > 1 else 0.0)
        if interval <= 0:
            raise DataError("cannot continue a regimen with a single dose and no II: give the interval")
        extra = []
        t = last.time + interval
        while t < until - 1e-9:
            extra.append(replace(last, time=t, ss=0, ii=0.0, addl=0))
            t += interval
        return Regimen(self.events + tuple(extra))

    def jump_times(self) -> np.ndarray:
        """Nominal dose times (h), before any lag time."""
        return np.array(sorted({e.time for e in self.expanded()}))

    def total_amount(self) -> float:
        """Total nominal amount (mg) over every expanded dose (excluding SS history)."""
        return float(sum(e.amount for e in self.expanded()))


# Columns of the flat event table handed to the numerical kernels.
EV_TIME, EV_CMT, EV_AMT, EV_RATE, EV_II, EV_SS, EV_EVID = range(7)
EVENT_COLUMNS = 7


def event_matrix(regimen: Regimen, n_states: int, default_cmt: int, dose_cmts: Iterable[int]) -> np.ndarray:
    """Flatten a regimen to a float matrix (n_events, 7) with 0-based compartment indices.

    Raises DataError when an event doses a compartment the model does not accept.
    """
    allowed = set(dose_cmts)
    rows = []
    for event in regimen.expanded():
        cmt = default_cmt if event.cmt is None else int(event.cmt)
        if event.evid != EVID_RESET and cmt not in allowed:
            raise DataError(
                f"dose at t={event.time} h targets CMT {cmt}, which does not accept doses "
                f"(dose compartments: {sorted(allowed)}; states: {n_states})"
            )
        rows.append((event.time, cmt - 1, event.amount, event.rate, event.ii, event.ss, event.evid))
    if not rows:
        return np.zeros((0, EVENT_COLUMNS))
    return np.array(rows, dtype=float)


def as_regimens(regimen: Regimen | Sequence[Regimen], n: int) -> list[Regimen]:
    """Broadcast one regimen to ``n`` patients or check a per-patient list has length ``n``."""
    if isinstance(regimen, Regimen):
        return [regimen] * n
    regimens = list(regimen)
    if len(regimens) != n:
        raise DataError(f"{len(regimens)} regimens for {n} patients")
    for i, r in enumerate(regimens):
        if not isinstance(r, Regimen):
            raise DataError(f"patient {i}: expected a Regimen, got {type(r).__name__}")
    return regimens
