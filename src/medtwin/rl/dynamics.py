"""Batched virtual patients for the RL environments: many patients stepped at once on one model definition.

:class:`GlucoseBatch` steps ICU patients of :mod:`medtwin.scenarios.glucose_patients`
(the Bergman minimal model with insulin kinetics, ``bergman_insulin``, hour-by-hour
insulin sensitivity) with a fixed-step classical Runge–Kutta (RK4) over a
trailing patient axis, on the library model's own vector field
(``model.rhs()``: arithmetic only, so it evaluates on arrays of patients);
constant infusions enter the compartments their dose targets name.
:class:`VancoBatch` steps the vancomycin patients of
:mod:`medtwin.scenarios.vanco_loop` (one compartment, Matzke clearance) on the
exact solution of ``dA/dt = R - (CL/V) A`` over piecewise-constant infusions:
the closed-form path.

Both are checked against ``medtwin.core.simulate.simulate`` (adaptive
Dormand–Prince, rtol 1e-10) and the vancomycin harness' own daily AUC in
``tests/unit/test_rl_envs.py``.

Examples
--------
>>> import numpy as np
>>> from medtwin.scenarios.glucose_patients import sample_icu_patients
>>> batch = GlucoseBatch(sample_icu_patients(3, hours=4, seed=0), enteral_g_per_h=3.5)
>>> g = batch.advance(1.0, np.array([0.0, 2.0, 4.0]))   # one hour at 0, 2 and 4 U/h insulin
>>> g.shape, bool(np.all(g[-1, 2] < g[-1, 0]))            # (grid points, patients); more insulin, lower glucose
((12, 3), True)
"""

from __future__ import annotations

import numpy as np

from medtwin.errors import DataError
from medtwin.models import get_model
from medtwin.models.glucose import MMOL_PER_G_GLUCOSE

__all__ = ["GlucoseBatch", "VancoBatch"]

INSULIN_CMT, ENTERAL_CMT = 2, 3


class GlucoseBatch:
    """ICU patients stepped together by RK4 (``substeps_per_h``), glucose read every ``grid_min`` minutes.

    Parameters
    ----------
    patients : sequence of SyntheticICUPatient
        All of one model (``bergman_insulin`` or ``icing``); SI follows each patient's hourly multipliers.
    enteral_g_per_h : float
        Constant enteral feed, g glucose/h.
    substeps_per_h : int
        RK4 steps per hour (24: 2.5 min).
    grid_min : float
        Spacing of the glucose readings returned by :meth:`advance`, min (a multiple of the RK4 step).
    """

    def __init__(self, patients, *, enteral_g_per_h: float = 3.5, substeps_per_h: int = 24, grid_min: float = 5.0):
        if not patients:
            raise DataError("GlucoseBatch: no patients")
        names = {p.model for p in patients}
        if len(names) != 1:
            raise DataError(f"GlucoseBatch: patients of one model needed, got {sorted(names)}")
        self.model = get_model(names.pop())
        self.n = len(patients)
        self.table = np.stack([self.model.parameter_table(dict(p.parameters))[0] for p in patients], axis=1)
        self.si_index = self.model.parameter_names.index("SI")
        self.si0 = self.table[self.si_index].copy()
        hours = min(p.hours for p in patients)
        self.multipliers = np.stack([np.asarray(p.si_multipliers[:hours], float) for p in patients], axis=1)
        self.rhs = self.model.rhs()
        self.g_out = self.model.output_functions()[self.model.output_names.index("G")]
        self.dt = 1.0 / int(substeps_per_h)
        self.every = int(round(grid_min / 60.0 / self.dt))
        if self.every < 1 or abs(self.every * self.dt - grid_min / 60.0) > 1e-9:
            raise DataError("GlucoseBatch: grid_min must be a multiple of the RK4 step")
        self.feed = enteral_g_per_h * MMOL_PER_G_GLUCOSE
        init = self.model.init()(self.table)
        self.x = np.stack([np.broadcast_to(np.asarray(v, float), (self.n,)) for v in init]).astype(float)
        self.t = 0.0

    def glucose(self) -> np.ndarray:
        """True plasma glucose now, mmol/L, shape (n,)."""
        return np.asarray(self.g_out(self.x, self.table), float)

    def _field(self, t, x, p, u):
        dx = self.rhs(t, x, p)
        return np.stack([d + u_j for d, u_j in zip(dx, u)])

    def advance(self, hours: float, insulin_u_per_h) -> np.ndarray:
        """Hold ``insulin_u_per_h`` (n,) for ``hours``; returns the true glucose on the grid, shape (k, n)."""
        steps = int(round(hours / self.dt))
        if steps < 1 or abs(steps * self.dt - hours) > 1e-9:
            raise DataError(f"GlucoseBatch: advance by a multiple of {self.dt:g} h, not {hours}")
        u = np.zeros((self.model.n_states, self.n))
        u[INSULIN_CMT - 1] = 1000.0 * np.broadcast_to(np.asarray(insulin_u_per_h, float), (self.n,))
        u[ENTERAL_CMT - 1] = self.feed
        p = self.table.copy()
        out = []
        H = self.multipliers.shape[0]
        for k in range(steps):
            hour = min(int(np.floor(self.t + 1e-9)), H - 1)
            p[self.si_index] = self.si0 * self.multipliers[hour]
            t, x, h = self.t, self.x, self.dt
            k1 = self._field(t, x, p, u)
            k2 = self._field(t + h / 2, x + h / 2 * k1, p, u)
            k3 = self._field(t + h / 2, x + h / 2 * k2, p, u)
            k4 = self._field(t + h, x + h * k3, p, u)
            self.x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
            self.t = round(t + h, 12)
            if (k + 1) % self.every == 0:
                out.append(self.glucose())
        return np.array(out)


class VancoBatch:
    """One-compartment vancomycin patients (``cl`` L/h, ``v`` L), exact over piecewise-constant infusions."""

    def __init__(self, patients):
        if not patients:
            raise DataError("VancoBatch: no patients")
        self.cl = np.array([p.cl for p in patients], float)
        self.v = np.array([p.v for p in patients], float)
        self.k = self.cl / self.v
        self.a = np.zeros(len(patients))
        self.t = 0.0

    def segment(self, duration: float, rate) -> np.ndarray:
        """Infuse ``rate`` mg/h (n,) for ``duration`` h; returns the AUC of the segment, mg·h/L, shape (n,)."""
        if duration < 0:
            raise DataError("VancoBatch: negative duration")
        rate = np.broadcast_to(np.asarray(rate, float), self.a.shape)
        e = np.exp(-self.k * duration)
        a1 = self.a * e + rate / self.k * (1.0 - e)
        auc = (self.a + rate * duration - a1) / self.cl
        self.a = a1
        self.t += duration
        return auc

    def concentration(self) -> np.ndarray:
        """True concentration now, mg/L, shape (n,)."""
        return self.a / self.v

    def concentration_after(self, duration: float) -> np.ndarray:
        """True concentration ``duration`` h from now with no infusion running (mg/L)."""
        return self.a * np.exp(-self.k * duration) / self.v
