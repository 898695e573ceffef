"""Exposure at steady state, and when a regimen gets there.

AUC24 guidance (Rybak et al., Am J Health Syst Pharm 2020;77:835-864) targets
*steady-state* exposure.  A regimen judged on one early day (say day 3) can
look right while the patient is still far from steady state (a large or slowly
equilibrating peripheral volume), so the dose optimiser scores candidates at
steady state and reports the day the clinician asks about beside it.

How the steady state is computed
    One maintenance dose with the core's NONMEM steady-state semantics
    (``SS=1``: reset, then the state the regimen converges to, then the dose)
    is simulated over one dosing interval ``[0, II]`` on a grid that holds
    ``grid_h`` steps, the infusion end and a point just before ``II`` (the
    trough).  The target's metric over the window ``(0, II)`` is the
    steady-state metric: ``AUC24Window`` gives AUC_tau · 24 / II, which for a
    linear model is Dose / CL · 24 / II (checked in the tests against that
    closed form).  For linear models with outputs linear in the state the
    steady-state outputs scale with the dose, so one unit-dose simulation per
    (interval, infusion) serves every dose; nonlinear models simulate every
    candidate.  Loading doses and the dose history do not change a steady
    state.

Time to steady state
    :func:`time_to_steady_state` simulates history + regimen day after day and
    returns, per draw, the end of the first period from which on the target's
    metric stays within ``tolerance`` (10 %) of its steady-state value: the
    "time to 90 % of steady state" a clinician reads.

Examples
--------
>>> import numpy as np
>>> from medtwin.control.targets import AUC24Window
>>> from medtwin.models import get_model
>>> table = {"CL": np.array([2.0, 4.0]), "V": np.array([10.0, 40.0])}
>>> unit = steady_unit_metrics(get_model("pk1_iv"), table, AUC24Window(), None, [(12.0, 1.0)], None, 0.25)
>>> np.round(1000.0 * unit[(12.0, 1.0)][0], 3).tolist()        # 1000 mg q12h: 2000 mg/day / CL
[1000.0, 500.0]
"""

from __future__ import annotations

import math

import numpy as np

from medtwin.control.targets import Exposure
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import DataError

__all__ = ["steady_regimen", "steady_unit_metrics", "steady_candidate_metrics", "time_to_steady_state"]

_PRE = 1e-6


def steady_regimen(amount: float, interval: float, infusion: float, cmt=None, time: float = 0.0) -> Regimen:
    """One steady-state (SS=1) maintenance record: ``amount`` mg every ``interval`` h over ``infusion`` h."""
    rate = amount / infusion if infusion > 0 else 0.0
    return Regimen((DoseEvent(time=time, amount=amount, cmt=cmt, rate=rate, ii=interval, ss=1),))


def _grid(interval: float, infusion: float, step: float) -> np.ndarray:
    points = np.concatenate([np.arange(0.0, interval, step), [interval - _PRE, interval, min(infusion, interval)]])
    return np.unique(np.round(points, 9))


def _metrics(model, outputs, grid, interval, target, toxic):
    exposure = Exposure(grid, outputs)
    window = (0.0, interval)
    return (target.metric(exposure, window), None if toxic is None else toxic.metric(exposure, window))


def _outputs(model, table, regimen, grid) -> dict:
    tr = simulate(model, table, regimen, grid, keep_states=False)
    return {name: np.asarray(tr.output(name), float) for name in model.output_names}


def steady_unit_metrics(model, table, target, toxic, keys, cmt, grid_h) -> dict:
    """Per (interval, infusion) key: steady-state (target, toxic) metrics of a 1-mg maintenance dose.

    Only for linear models with linear outputs and linear metrics (the metric of ``d`` mg is ``d`` times it).
    """
    out = {}
    for interval, infusion in keys:
        grid = _grid(interval, infusion, grid_h)
        outputs = _outputs(model, table, steady_regimen(1.0, interval, infusion, cmt), grid)
        out[(interval, infusion)] = _metrics(model, outputs, grid, interval, target, toxic)
    return out


def steady_candidate_metrics(model, table, target, toxic, candidates, cmt, grid_h) -> list:
    """Per candidate (``dose``, ``interval``, ``infusion`` attributes): steady-state (target, toxic) metric draws."""
    linear = model.is_linear and all(o.linear for o in model.outputs)
    keys = sorted({(c.interval, c.infusion) for c in candidates})
    if linear and _area_type(target) and (toxic is None or _area_type(toxic.metric_target)):
        # AUC over one interval at steady state = AUC_0^inf of one dose, whatever the interval and infusion
        # (superposition): one simulation serves every key, the per-day metric scaling as 1 / interval.
        interval, infusion = max(keys)
        (m_target, m_toxic), = steady_unit_metrics(model, table, target, toxic, [(interval, infusion)], cmt,
                                                   grid_h).values()
        unit = {k: (m_target * interval / k[0], None if toxic is None else m_toxic * interval / k[0]) for k in keys}
    elif linear and target.linear and (toxic is None or toxic.linear):
        unit = steady_unit_metrics(model, table, target, toxic, keys, cmt, grid_h)
    if linear and target.linear and (toxic is None or toxic.linear):
        return [(c.dose * unit[(c.interval, c.infusion)][0],
                 None if toxic is None else c.dose * unit[(c.interval, c.infusion)][1]) for c in candidates]
    out = []
    if linear:  # linear outputs, nonlinear metric (trough, peak): scale the outputs, not the metric
        grids = {k: _grid(k[0], k[1], grid_h) for k in keys}
        unit = {k: _outputs(model, table, steady_regimen(1.0, k[0], k[1], cmt), grids[k]) for k in keys}
        for c in candidates:
            k = (c.interval, c.infusion)
            out.append(_metrics(model, {o: c.dose * v for o, v in unit[k].items()}, grids[k], c.interval, target,
                                toxic))
        return out
    for c in candidates:
        grid = _grid(c.interval, c.infusion, grid_h)
        outputs = _outputs(model, table, steady_regimen(c.dose, c.interval, c.infusion, cmt), grid)
        out.append(_metrics(model, outputs, grid, c.interval, target, toxic))
    return out


def _area_type(target) -> bool:
    """True for metrics proportional to the area under the output over the window divided by its length."""
    from medtwin.control.targets import AUC24Window, AUCOverMIC, OutputWindow

    return isinstance(target, (AUC24Window, AUCOverMIC)) or (isinstance(target, OutputWindow)
                                                             and target.statistic == "mean")


def period_h(interval: float) -> float:
    """The period over which exposure is read day by day: 24 h, or the smallest multiple of II covering it."""
    return float(interval * math.ceil(24.0 / interval - 1e-9))


def time_to_steady_state(model, table, history: Regimen, regimen: Regimen, start: float, interval: float,
                         target, steady_values, *, tolerance: float = 0.1, horizon_days: int = 28,
                         grid_h: float = 0.25) -> np.ndarray:
    """Per draw: hours after ``start`` until the metric stays within ``tolerance`` of its steady state.

    Parameters
    ----------
    model, table
        The model and the parameter draws (name -> (n,)).
    history, regimen : Regimen
        Doses given so far and the new regimen from ``start`` (h); ``regimen`` must cover
        ``start + horizon_days · 24`` h.
    interval : float
        The maintenance interval (h): the metric is read over consecutive periods of :func:`period_h`.
    target : Target
        Whose metric is compared (e.g. ``AUC24Window``).
    steady_values : ndarray, shape (n,)
        The steady-state metric per draw (:func:`steady_candidate_metrics`).
    tolerance : float
        0.1: within 10 % of steady state ("90 % of steady state").

    Returns
    -------
    ndarray, shape (n,)
        Hours after ``start`` (the end of the first period from which on every period is within tolerance);
        ``inf`` when not reached within the horizon, NaN for a failed draw.
    """
    if not 0.0 < tolerance < 1.0:
        raise DataError(f"time_to_steady_state: tolerance must be in (0, 1), got {tolerance!r}")
    period = period_h(interval)
    n_periods = max(2, int(horizon_days * 24.0 // period))
    end = start + n_periods * period
    grid = np.unique(np.round(np.concatenate([np.arange(start, end + 1e-9, grid_h),
                                              start + period * np.arange(n_periods + 1)]), 9))
    outputs = _outputs(model, table, history + regimen, grid)
    exposure = Exposure(grid, outputs)
    values = np.column_stack([target.metric(exposure, (start + k * period, start + (k + 1) * period))
                              for k in range(n_periods)])
    steady = np.asarray(steady_values, float)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        close = np.abs(values / steady - 1.0) <= tolerance
    # the first period from which on every later period is close: reverse cumulative "all"
    tail_ok = np.flip(np.cumprod(np.flip(close, axis=1), axis=1), axis=1).astype(bool)
    first = np.where(tail_ok.any(axis=1), np.argmax(tail_ok, axis=1), -1)
    hours = np.where(first >= 0, (first + 1) * period, np.inf)
    return np.where(np.isfinite(steady[:, 0]) & np.all(np.isfinite(values), axis=1), hours, np.nan)
