"""Inputs u(t) of a model between two times, from a NONMEM-style regimen.

Part of the core (pure, no I/O) because the observers, the controllers and the
synthetic-patient simulators of the model library all need it.  Observers and
the synthetic-patient simulators advance a state from one
measurement to the next; what happens in between (boluses, zero-order
infusions starting and stopping, resets) comes from the regimen through the
*same* segments the simulation kernels step over
(:func:`medtwin.core.schedule.compile_schedule`), so lag times, F, and the
bookkeeping of overlapping infusions follow NONMEM semantics exactly.

Convention: an action at time τ belongs to the half-open interval [t0, t1)
that contains it; a measurement taken at the same time as a dose sees the
pre-dose state (the usual trough convention).

Examples
--------
>>> from medtwin.models import get_model
>>> from medtwin.core.events import Regimen
>>> schedule = input_schedule(get_model("pk1_iv"), Regimen.single(100.0, time=1.0, rate=50.0))
>>> [(p.start, p.end, float(p.rates[0])) for p in schedule.pieces(0.0, 4.0)]
[(0.0, 1.0, 0.0), (1.0, 3.0, 50.0), (3.0, 4.0, 0.0)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.core.events import Regimen
from medtwin.core.model import Model
from medtwin.core.schedule import compile_schedule
from medtwin.errors import SimulationError


@dataclass(frozen=True)
class Piece:
    """One stretch [start, end) h with constant infusion rates.

    ``bolus`` (amount per state, model units) and ``reset`` act at ``start``,
    before the stretch is integrated (a reset first, then the bolus).
    """

    start: float
    end: float
    rates: np.ndarray
    bolus: np.ndarray
    reset: bool


@dataclass(frozen=True, eq=False)
class InputSchedule:
    """The change points of a regimen for one model, with the inputs at each.

    Attributes
    ----------
    times : ndarray, shape (K,)
        Times (h) at which something happens (after lag times), sorted, unique.
    boluses : ndarray, shape (K, n_states)
        Bioavailable bolus amounts added at ``times[k]`` (model units).
    resets : ndarray of bool, shape (K,)
        Whether the state returns to its initial value at ``times[k]``.
    rates : ndarray, shape (K, n_states)
        Infusion rates (units/h) in effect from ``times[k]`` to ``times[k+1]``.
    """

    times: np.ndarray
    boluses: np.ndarray
    resets: np.ndarray
    rates: np.ndarray
    n_states: int

    def rates_at(self, t: float) -> np.ndarray:
        """Infusion rates in effect just after time ``t`` (h), shape (n_states,)."""
        k = int(np.searchsorted(self.times, t, side="right")) - 1
        return self.rates[k].copy() if k >= 0 else np.zeros(self.n_states)

    def pieces(self, t0: float, t1: float) -> list[Piece]:
        """The stretches covering [t0, t1) with actions at their starts (see the module convention)."""
        if t1 < t0:
            raise SimulationError(f"cannot advance backwards in time: {t0} h -> {t1} h")
        zero = np.zeros(self.n_states)
        first = int(np.searchsorted(self.times, t0, side="left"))
        last = int(np.searchsorted(self.times, t1, side="left"))  # actions at t1 belong to the next interval
        out = []
        cursor = t0
        rates = self.rates[first - 1].copy() if first > 0 else zero.copy()  # after the last action before t0
        bolus, reset = zero, False
        for k in range(first, last):
            if self.times[k] > cursor:
                out.append(Piece(cursor, float(self.times[k]), rates, bolus, reset))
                cursor, bolus, reset = float(self.times[k]), zero, False
            bolus = bolus + self.boluses[k] if not self.resets[k] else self.boluses[k].copy()
            reset = reset or bool(self.resets[k])
            rates = self.rates[k].copy()
        if t1 > cursor or bolus.any() or reset:
            out.append(Piece(cursor, float(t1), rates, bolus, reset))
        return out


def input_schedule(model: Model, regimen: Regimen, theta=None) -> InputSchedule:
    """Build the :class:`InputSchedule` of ``regimen`` for ``model`` at parameters ``theta``.

    ``theta`` (mapping or vector, typical values when absent) sets F, lag times
    and modelled rates/durations.  Steady-state records are refused: an
    observer starts from a belief, not from an assumed steady state.
    """
    seg = compile_schedule(model, regimen, (), theta)
    if len(seg.ss_segment):
        raise SimulationError("steady-state (SS) dose records cannot drive an observer; give the doses explicitly")
    return InputSchedule(times=seg.start, boluses=seg.bolus, resets=seg.reset, rates=seg.rates,
                         n_states=model.n_states)
