"""Dose optimisation to clinical targets: the regimen a precision-dosing tool would propose.

:func:`recommend_dose` searches a discrete grid of regimens (maintenance dose ×
interval × optional loading dose) that satisfies every hard constraint of
:class:`DoseConstraints` by construction (dose steps, minimum/maximum single
dose, maximum daily dose, allowed intervals, infusion-rate limit, maximum
loading dose), scores every candidate on the SAME posterior draws (common
random numbers) and returns a :class:`~medtwin.control.recommendation.Recommendation`.

How candidates are simulated
    For linear models (exact solution, outputs linear in the state) the
    response is affine in the dose amounts, so the trajectory of a candidate is
    ``base + dose · U(interval, infusion, first dose) + loading · W(infusion)``:
    the history (and initial state) ``base`` and each unit-dose response are
    simulated once for all draws (a few batched ``simulate`` calls on the
    shared-schedule fast path), and each candidate is a weighted sum — exact,
    not an approximation.  Linear metrics (AUC-type) are combined directly.
    Nonlinear models (e.g. a PD endpoint) simulate each candidate for all draws
    in one batched call per candidate.

Objectives
    ``"window"`` (the default): keep the median metric inside the target window
    with a margin (``WINDOW_MARGIN`` = 10 % of its width at each end: 420–580
    for 400–600 mg·h/L) and maximise P(target) subject to both tails bounded,
    P(below) <= ``WINDOW_TAIL`` and P(above) <= ``WINDOW_TAIL`` (0.25).
    Candidates are tiered: both met; median inside the margin only; the rest by
    the median's distance to the margin window; within a tier higher P(target),
    then the smaller larger tail, then the median closer to the centre.  The
    old objectives stay available.  Aimed at steady state, regimens with the
    same steady state (the same daily maintenance: loading doses and intervals
    do not change it) are ranked by the same objective on the asked-for day, so
    a loading dose is chosen for that day.  ``"pta"``: maximise P(target attained) subject to P(toxic) <= ε
    (``max_toxic_probability``); ties go to the lower P(toxic), then the median
    metric closer to the target window's centre, then the lower daily dose,
    then the longer interval.  ``"median"``: minimise the distance of the median
    metric to the window (0 inside), ties to the median closer to the window's
    centre, then higher P(target).  Both keep P(toxic) <= ε when a toxicity
    threshold is given.  If no candidate meets it the status is
    ``"infeasible-fallback"`` and the least-toxic candidate is returned (never an
    unconstrained answer).

Steady state and the evaluation window
    By default candidates are scored at steady state
    (:mod:`medtwin.control.steady`: the core's SS=1 semantics, exact for linear
    models), as AUC24 guidance (Rybak 2020) targets steady-state exposure; the
    evaluation window (default ``(start_time + 48, start_time + 72)`` h, the
    third day, or the day the clinician asks about) is reported beside it, and
    is what candidates are scored on when ``aim="window"`` (the default when a
    window is given).  The result gives both and the time to 90 % of steady
    state of the recommended regimen.

Sensitivity
    The most influential parameter is the one whose log-draws have the largest
    absolute Spearman rank correlation with the target metric under the
    recommended regimen.  The search is re-run with that parameter fixed at its
    posterior 5th and 95th percentiles (the other parameters shifted by their
    linear regression on it, i.e. conditioned on it for a Gaussian posterior),
    giving the recommendations there.

Examples
--------
>>> import numpy as np
>>> from medtwin.control.targets import AUC24Window, Threshold
>>> from medtwin.core.observation import ResidualError
>>> from medtwin.core.population import IndividualPrior
>>> from medtwin.infer.posterior import Posterior
>>> z = np.log([2.0, 10.0])                                  # CL 2 L/h, V 10 L, almost no uncertainty
>>> prior = IndividualPrior("pk1_iv", ("CL", "V"), z, np.eye(2) * 1e-6, {}, ResidualError("additive", 1.0))
>>> from medtwin.models import get_model
>>> post = Posterior(get_model("pk1_iv"), prior, "laplace", ("CL", "V"), z, np.eye(2) * 1e-6, None, (), z,
...                  np.eye(2) * 1e-6, "converged", "")
>>> rec = recommend_dose(post, AUC24Window(400.0, 600.0), constraints=DoseConstraints(max_dose_mg=2000.0),
...                      toxic=Threshold(AUC24Window(), above=600.0), n_draws=200)
>>> rec.action["daily_mg"]                                   # AUC24 = daily / CL = 1000 / 2 = 500 mg·h/L
1000.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtwin.control.candidates import DoseConstraints, _Candidate, _candidates, _dose, _maintenance, candidate_regimen
from medtwin.control.recommendation import Recommendation
from medtwin.control.targets import Exposure, Target, Threshold
from medtwin.core.events import Regimen
from medtwin.core.simulate import simulate
from medtwin.control.status import RecommendationStatus
from medtwin.control.steady import steady_candidate_metrics, time_to_steady_state
from medtwin.errors import DataError, ModelError

__all__ = ["DoseConstraints", "recommend_dose"]

OBJECTIVES = ("window", "pta", "median")
AIMS = ("steady-state", "window")
#: "window" objective: the median is kept this fraction of the window's width inside each bound ...
WINDOW_MARGIN = 0.1
#: ... and P(metric below low) and P(metric above high) are each at most this (when any candidate allows it).
WINDOW_TAIL = 0.25
_PRE = 1e-6  # h: a grid point this much before every dose time reads the pre-dose level


def _grid(window, history: Regimen, keys, loading_keys, start, step) -> np.ndarray:
    """Window grid (``step`` h) plus every dose time, a point just before it, and every infusion end."""
    lo, hi = window
    points = [np.arange(lo, hi + 1e-9, step), [hi]]
    events = [(e.time, e.amount / e.rate if e.rate > 0 else 0.0) for e in history.expanded()]
    for interval, hours, first in keys:
        events.extend((t, hours) for t in np.arange(first, hi + 1e-9, interval))
    events.extend((start, hours) for hours in loading_keys)
    for t, hours in events:
        points.append([t - _PRE, t, t + hours])
    grid = np.unique(np.round(np.concatenate([np.asarray(p, float) for p in points]), 9))
    return grid[(grid >= lo - 1e-9) & (grid <= hi + 1e-9)]


class _Scorer:
    """Scores every candidate on one parameter table (the draws)."""

    def __init__(self, model, target: Target, toxic: Threshold | None, window, history, start, until, cmt, grid_h):
        self.model, self.target, self.toxic, self.window = model, target, toxic, window
        self.history, self.start, self.until, self.cmt, self.grid_h = history, start, until, cmt, grid_h
        self.linear = model.is_linear and all(o.linear for o in model.outputs)

    def _sim(self, table, regimen, grid) -> dict[str, np.ndarray]:
        tr = simulate(self.model, table, regimen, grid, keep_states=False)
        return {name: np.asarray(tr.output(name), float) for name in self.model.output_names}

    def _metrics(self, outputs, grid) -> tuple[np.ndarray, np.ndarray | None]:
        exposure = Exposure(grid, outputs)
        tox = self.toxic.metric(exposure, self.window) if self.toxic is not None else None
        return self.target.metric(exposure, self.window), tox

    def score(self, table, candidates) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per candidate: (target metric per draw, toxic metric per draw or None)."""
        if not self.linear:
            grid = self._grid(candidates)
            return [self._metrics(self._sim(table, self.history + candidate_regimen(c, self.start, self.until,
                                                                                    self.cmt), grid), grid)
                    for c in candidates]
        keys = sorted({(c.interval, c.infusion, self.start + (c.interval if c.loading > 0 else 0.0))
                       for c in candidates})
        loading_keys = sorted({c.loading_infusion for c in candidates if c.loading > 0})
        grid = _grid(self.window, self.history, keys, loading_keys, self.start, self.grid_h)
        zero = self._sim(table, Regimen(), grid)
        base = self._sim(table, self.history, grid)
        unit = {k: self._sim(table, _maintenance(1.0, k[0], k[1], k[2], self.until, self.cmt), grid) for k in keys}
        load = {h: self._sim(table, Regimen((_dose(1.0, self.start, h, self.cmt),)), grid) for h in loading_keys}
        unit = {k: {o: v[o] - zero[o] for o in v} for k, v in unit.items()}
        load = {h: {o: v[o] - zero[o] for o in v} for h, v in load.items()}
        fast = self.target.linear and (self.toxic is None or self.toxic.linear)
        if fast:
            m_base, m_unit, m_load = (self._metrics(base, grid), {k: self._metrics(v, grid) for k, v in unit.items()},
                                      {h: self._metrics(v, grid) for h, v in load.items()})
        out = []
        for c in candidates:
            key = (c.interval, c.infusion, self.start + (c.interval if c.loading > 0 else 0.0))
            if fast:
                parts = [(1.0, m_base), (c.dose, m_unit[key])] + ([(c.loading, m_load[c.loading_infusion])]
                                                                   if c.loading > 0 else [])
                target = sum(w * m[0] for w, m in parts)
                tox = None if self.toxic is None else sum(w * m[1] for w, m in parts)
                out.append((target, tox))
                continue
            outputs = {o: base[o] + c.dose * unit[key][o] + (c.loading * load[c.loading_infusion][o]
                                                               if c.loading > 0 else 0.0) for o in base}
            out.append(self._metrics(outputs, grid))
        return out

    def _grid(self, candidates):
        keys = {(c.interval, c.infusion, self.start + (c.interval if c.loading > 0 else 0.0)) for c in candidates}
        return _grid(self.window, self.history, sorted(keys),
                     sorted({c.loading_infusion for c in candidates if c.loading > 0}), self.start, self.grid_h)


class _MixtureScorer:
    """Scores a mixture: each component's draws (a list of tables, one per component) with its own model's
    :class:`_Scorer`; a candidate's per-draw metrics are the components' concatenated, in order."""

    def __init__(self, scorers_and_counts):
        self.scorers = [s for s, _ in scorers_and_counts]
        self.bounds = np.cumsum([0] + [n for _, n in scorers_and_counts])
        self.target, self.toxic = self.scorers[0].target, self.scorers[0].toxic

    def score(self, tables, candidates):
        parts = [s.score(t, candidates) for s, t in zip(self.scorers, tables)]
        return [(np.concatenate([p[i][0] for p in parts]),
                 None if self.toxic is None else np.concatenate([p[i][1] for p in parts]))
                for i in range(len(candidates))]

    def part(self, values, k: int) -> np.ndarray:
        """Component ``k``'s slice of concatenated per-draw values."""
        return values[self.bounds[k]:self.bounds[k + 1]]


@dataclass(frozen=True)
class _Scored:
    candidate: _Candidate
    p_target: float
    p_toxic: float
    median: float
    p05: float
    p95: float
    distance: float
    off_centre: float
    values: Any = None
    p_below: float = 0.0
    p_above: float = 0.0
    margin_distance: float = 0.0

    def row(self) -> dict:
        return {**self.candidate.action(), "p_target": self.p_target, "p_toxic": self.p_toxic,
                "median_metric": self.median, "distance": self.distance, "p_below": self.p_below,
                "p_above": self.p_above}

    def stats(self) -> dict:
        """The metric's distribution over the draws: median, 5th/95th percentiles, P(in/below/above target)."""
        return {"median": self.median, "p05": self.p05, "p95": self.p95, "p_target": self.p_target,
                "p_below": self.p_below, "p_above": self.p_above}


def margin_window(target: Target, margin: float = WINDOW_MARGIN) -> tuple:
    """The target window shrunk by ``margin`` of its width at each end (a one-sided target is not shrunk).

    Examples
    --------
    >>> from medtwin.control.targets import AUC24Window
    >>> margin_window(AUC24Window(400.0, 600.0))
    (420.0, 580.0)
    """
    low, high = target.low, target.high
    if low is not None and high is not None:
        width = high - low
        return (low + margin * width, high - margin * width)
    return (low, high)


def _draw_stats(metrics, target: Target, toxic: Threshold | None) -> np.ndarray | None:
    """Per candidate (rows): median, p05, p95, P(target), P(toxic), P(below), P(above) of its draws, in one
    vectorised pass; None unless every candidate has the same number of draws, all finite (then per candidate)."""
    if not metrics or len({len(v) for v, _ in metrics}) != 1:
        return None
    values = np.vstack([v for v, _ in metrics])
    if not np.isfinite(values).all():
        return None
    zeros = np.zeros(len(values))
    return np.column_stack([
        *np.quantile(values, (0.5, 0.05, 0.95), axis=1), np.mean(target.attained(values), axis=1),
        np.mean(toxic.attained(np.vstack([t for _, t in metrics])), axis=1) if toxic is not None else zeros,
        np.mean(values < target.low, axis=1) if target.low is not None else zeros,
        np.mean(values > target.high, axis=1) if target.high is not None else zeros])


def _summarise(candidates, metrics, target: Target, toxic: Threshold | None) -> list[_Scored]:
    out = []
    centre = target.centre()
    inner_low, inner_high = margin_window(target)
    stats = _draw_stats(metrics, target, toxic)
    for i, (c, (values, tox)) in enumerate(zip(candidates, metrics)):
        if stats is not None:
            median, p05, p95, p_target, p_toxic, p_below, p_above = stats[i]
            out.append(_scored(c, values, median, p05, p95, float(p_target), float(p_toxic), float(p_below),
                               float(p_above), target, centre, inner_low, inner_high))
            continue
        finite = values[np.isfinite(values)]
        median, p05, p95 = (np.quantile(finite, (0.5, 0.05, 0.95)) if finite.size else (np.nan,) * 3)
        p_toxic = float(np.mean(toxic.attained(tox))) if toxic is not None else 0.0
        p_below = float(np.mean(values < target.low)) if target.low is not None else 0.0
        p_above = float(np.mean(values > target.high)) if target.high is not None else 0.0
        out.append(_scored(c, values, median, p05, p95, float(np.mean(target.attained(values))), p_toxic, p_below,
                           p_above, target, centre, inner_low, inner_high))
    return out


def _scored(c, values, median, p05, p95, p_target, p_toxic, p_below, p_above, target, centre, inner_low,
            inner_high) -> _Scored:
    """One candidate's :class:`_Scored` from its draw statistics (the rankings' distances computed here)."""
    off = abs(median - centre) if centre is not None and np.isfinite(median) else 0.0
    distance = target.distance(median) if np.isfinite(median) else math.inf
    margin_distance = (max((inner_low - median) if inner_low is not None else 0.0,
                           (median - inner_high) if inner_high is not None else 0.0, 0.0)
                       if np.isfinite(median) else math.inf)
    return _Scored(c, p_target, p_toxic, float(median), float(p05), float(p95), distance, float(off), values,
                   p_below, p_above, margin_distance)


def _objective_key(s: _Scored, objective: str) -> tuple:
    """The objective's ranking key of one scored candidate (smaller is better; no tie-breakers)."""
    if objective == "window":
        inside = s.margin_distance <= 1e-9
        bounded = inside and s.p_below <= WINDOW_TAIL + 1e-12 and s.p_above <= WINDOW_TAIL + 1e-12
        tier = 0 if bounded else (1 if inside else 2)
        return (tier, s.margin_distance if tier == 2 else 0.0, -round(s.p_target, 12),
                round(max(s.p_below, s.p_above), 12), round(s.off_centre, 9))
    if objective == "pta":
        return (-round(s.p_target, 12), round(s.p_toxic, 12), round(s.off_centre, 9))
    return (round(s.distance, 9), round(s.off_centre, 9), -round(s.p_target, 12), round(s.p_toxic, 12))


def _rank(scored: list[_Scored], objective: str, eps: float, secondary: dict | None = None
          ) -> tuple[list[_Scored], bool]:
    """Candidates best first and whether the best meets P(toxic) <= eps.

    ``secondary`` (candidate -> its _Scored over the evaluation window) breaks ties of the primary (steady-state)
    key with the same objective on the asked-for day: among regimens with the same steady state (the same daily
    maintenance; loading doses and intervals do not change it) the one best on that day wins.
    """
    def tail(s):
        return (s.candidate.dose * 24.0 / s.candidate.interval, -s.candidate.interval, s.candidate.loading,
                s.candidate.dose)

    def key(s):
        second = _objective_key(secondary[s.candidate], objective) if secondary is not None else ()
        return _objective_key(s, objective) + second + tail(s)

    feasible = [s for s in scored if s.p_toxic <= eps + 1e-12]
    if feasible:
        return sorted(feasible, key=key), True
    return sorted(scored, key=lambda s: (round(s.p_toxic, 12), -round(s.p_target, 12), s.off_centre) + tail(s)), False


def _active(best: _Scored, ranked_all: list[_Scored], c: DoseConstraints, eps: float, toxic, feasible) -> tuple:
    cand = best.candidate
    out = [f"dose rounded to {c.dose_step_mg:g} mg steps"]
    if cand.dose >= c.doses()[-1] - 1e-9:
        out.append(f"max single dose {c.max_dose_mg:g} mg binding")
    if cand.dose <= c.doses()[0] + 1e-9:
        out.append(f"min single dose {c.min_dose_mg:g} mg binding")
    if c.max_daily_mg is not None and not c.daily_ok(cand.dose + c.dose_step_mg, cand.interval):
        out.append(f"max daily dose {c.max_daily_mg:g} mg binding")
    if c.max_rate_mg_per_h is not None and cand.infusion > c.min_infusion_h + 1e-9:
        out.append(f"infusion limited to {c.max_rate_mg_per_h:g} mg/h -> {cand.infusion:g} h")
    if cand.loading > 0 and cand.loading >= c.loading_doses()[-1] - 1e-9:
        out.append(f"max loading dose {c.loading_doses()[-1]:g} mg binding")
    if toxic is not None and feasible and any(s.p_target > best.p_target + 1e-12 and s.p_toxic > eps + 1e-12
                                              for s in ranked_all):
        out.append(f"P(toxic) <= {eps:g} binding")
    if toxic is not None and not feasible:
        out.append(f"P(toxic) <= {eps:g} cannot be met")
    return tuple(out)


def _score(scorer, table, candidates, aim: str):
    """Per candidate (target metric draws, toxic metric draws): at steady state or over the scorer's window.

    A mixture scorer (``scorers``: one per component, ``table`` a list of their draws) is scored per component
    with the component's own model and the draws concatenated in order.
    """
    if aim != "steady-state":
        return scorer.score(table, candidates)
    if hasattr(scorer, "scorers"):
        parts = [_score(s, t, candidates, aim) for s, t in zip(scorer.scorers, table)]
        return [(np.concatenate([p[i][0] for p in parts]),
                 None if scorer.toxic is None else np.concatenate([p[i][1] for p in parts]))
                for i in range(len(candidates))]
    return steady_candidate_metrics(scorer.model, table, scorer.target, scorer.toxic, candidates, scorer.cmt,
                                    scorer.grid_h)


def _search(scorer, table, candidates, objective, eps, aim="window"):
    scored = _summarise(candidates, _score(scorer, table, candidates, aim), scorer.target, scorer.toxic)
    secondary = None
    if aim == "steady-state":  # ties at steady state are broken on the asked-for day (loading dose, interval)
        windowed = _summarise(candidates, _score(scorer, table, candidates, "window"), scorer.target, scorer.toxic)
        secondary = {w.candidate: w for w in windowed}
    ranked, feasible = _rank(scored, objective, eps, secondary)
    return scored, ranked, feasible, secondary


def _time_to_steady(scorer, table, best: _Scored, steady_values, start, cmt, n_steady: int = 200) -> dict:
    """Time to 90 % of steady state of the best candidate over (at most) ``n_steady`` draws, per component."""
    mixture = hasattr(scorer, "scorers")
    parts = (list(zip(scorer.scorers, table, np.split(np.asarray(steady_values), scorer.bounds[1:-1])))
             if mixture else [(scorer, table, np.asarray(steady_values))])
    total = sum(len(v) for _, _, v in parts)
    horizon_days = 28
    regimen = candidate_regimen(best.candidate, start, start + (horizon_days + 2) * 24.0, cmt)
    hours = []
    for component, draws, values in parts:
        n = int(np.ceil(len(values) * min(1.0, n_steady / max(total, 1))))
        if n == 0:
            continue
        sub = {k: np.asarray(v)[:n] for k, v in draws.items()}
        hours.append(time_to_steady_state(component.model, sub, component.history, regimen, start,
                                          best.candidate.interval, component.target, values[:n],
                                          horizon_days=horizon_days, grid_h=component.grid_h))
    hours = np.concatenate(hours) if hours else np.array([np.nan])
    ok = hours[~np.isnan(hours)]

    def finite(q):  # None: not within the horizon (or no draw): JSON and the provenance digests refuse inf/NaN
        value = float(np.quantile(ok, q)) if ok.size else math.inf
        return value if math.isfinite(value) else None

    return {"median_h": finite(0.5), "p90_h": finite(0.9),
            "share_beyond_horizon": float(np.mean(np.isinf(ok))) if ok.size else 1.0,
            "tolerance": 0.1, "horizon_h": horizon_days * 24.0, "from_h": start,
            "definition": "hours after the first new dose until the target metric stays within 10 % of its "
                          "steady-state value (quantiles over draws; None: not within the horizon)"}


def _both_horizons(scorer, table, best: _Scored, aim: str, start: float, cmt, secondary: dict | None = None) -> dict:
    """The best candidate at steady state and over the window, and its time to 90 % of steady state.

    ``secondary`` (candidate -> its _Scored on the other horizon, from :func:`_search`) is reused when it holds
    the best candidate: the same draws and the same scoring, so the same numbers without a second simulation.
    """
    other = "window" if aim == "steady-state" else "steady-state"
    if secondary is not None and best.candidate in secondary:
        stats_other = secondary[best.candidate]
    else:
        (stats_other,) = _summarise([best.candidate], _score(scorer, table, [best.candidate], other), scorer.target,
                                    scorer.toxic)
    steady, windowed = (best, stats_other) if aim == "steady-state" else (stats_other, best)
    return {"steady_state": steady.stats(), "window": windowed.stats(),
            "time_to_90pct_steady_state": _time_to_steady(scorer, table, best, steady.values, start, cmt)}


def _conditioned(z: np.ndarray, k: int, value: float) -> np.ndarray:
    """Draws with column ``k`` set to ``value`` and the others shifted by their regression on it."""
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    beta = cov[:, k] / cov[k, k] if cov[k, k] > 0 else np.eye(z.shape[1])[k]
    beta[k] = 1.0
    return z + np.outer(value - z[:, k], beta)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties sharing their average rank (as ``scipy.stats.rankdata``'s default).

    Examples
    --------
    >>> average_ranks(np.array([10.0, 30.0, 20.0, 30.0])).tolist()
    [1.0, 3.5, 2.0, 3.5]
    """
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    inverse = np.empty(len(values), dtype=np.intp)
    inverse[order] = np.arange(len(values))
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = np.cumsum(first)[inverse]  # 1-based index of each value's tie group
    bounds = np.r_[np.nonzero(first)[0], len(values)]  # where each tie group starts (and the end)
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of two 1-D arrays of equal length n >= 2, neither constant.

    The Pearson correlation of their average ranks (:func:`average_ranks`), computed as
    ``scipy.stats.spearmanr`` computes it, without importing ``scipy.stats`` (0.5 s of a command's start).

    Examples
    --------
    >>> round(spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 4.0, 9.0, 16.0])), 12)
    1.0
    >>> round(spearman(np.array([1.0, 2.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0, 0.0])), 6)  # scipy: -0.948683
    -0.948683
    """
    ranked = np.column_stack((average_ranks(x), average_ranks(y)))
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def _sensitivity(posterior, z, values, scorer, candidates, objective, eps, aim="window") -> dict:
    rho = np.zeros(z.shape[1])
    ok = np.isfinite(values)
    for k in range(z.shape[1]):
        if np.ptp(z[ok, k]) > 0 and np.ptp(values[ok]) > 0:
            rho[k] = spearman(z[ok, k], values[ok])
    k = int(np.argmax(np.abs(rho)))
    name = posterior.parameters[k]
    out = {"parameter": name, "unit": posterior.prior.units.get(name, ""),
           "method": "largest |Spearman rank correlation| of the log-parameter draws with the target metric "
                     "under the recommended regimen",
           "spearman": float(rho[k]), "all_spearman": {p: float(r) for p, r in zip(posterior.parameters, rho)}}
    for label, q in (("p05", 0.05), ("p95", 0.95)):
        value = float(np.quantile(z[:, k], q))
        table = posterior.parameter_table(_conditioned(z, k, value))
        ranked = _search(scorer, table, candidates, objective, eps, aim)[1]
        out[f"{name}_{label}"] = float(np.exp(value))
        out[f"recommended_at_{label}"] = ranked[0].candidate.label()
    return out


def _start_time(history: Regimen, start_time) -> float:
    doses = [e for e in history.expanded() if e.amount > 0 or e.rate > 0]
    if start_time is None:
        if not doses:
            return 0.0
        last = doses[-1]
        source = next(e for e in reversed(history.events) if e.time <= last.time and (e.amount > 0 or e.rate > 0))
        interval = source.ii if source.ii > 0 else (last.time - doses[-2].time if len(doses) > 1 else 0.0)
        if interval <= 0:
            raise DataError("recommend_dose: give start_time (h): the history's dosing interval is unknown")
        return float(last.time + interval)
    start = float(start_time)
    if not (math.isfinite(start) and start >= 0):
        raise DataError(f"recommend_dose: start_time must be >= 0 h, got {start_time!r}")
    late = [e.time for e in doses if e.time >= start - 1e-9]
    if late:
        raise DataError(f"recommend_dose: history has doses at or after start_time {start} h (first at {late[0]} h);"
                        " history holds doses already given")
    return start


def _same_model(model, expected):
    """``model`` when it is the posterior's model (same digest); a ModelError otherwise."""
    if model is not expected and getattr(model, "digest", None) is not None and model.digest() != expected.digest():
        raise ModelError(f"recommend_dose: model {model.name} is not the posterior's model {expected.name} "
                         "(digests differ)")
    return model


def _check_inputs(posterior, target, toxic, objective, eps, n_draws, model, aim="window"):
    if not isinstance(target, Target):
        raise DataError(f"recommend_dose: target must be a Target (medtwin.control.targets), got {type(target).__name__}")
    if toxic is not None and not isinstance(toxic, Threshold):
        raise DataError(f"recommend_dose: toxic must be a Threshold, got {type(toxic).__name__}")
    if objective not in OBJECTIVES:
        raise DataError(f"recommend_dose: objective must be one of {OBJECTIVES}, not {objective!r}")
    if aim not in AIMS:
        raise DataError(f"recommend_dose: aim must be one of {AIMS}, not {aim!r}")
    if not (isinstance(eps, (int, float)) and 0.0 <= eps <= 1.0):
        raise DataError(f"recommend_dose: max_toxic_probability must be in [0, 1], got {eps!r}")
    if int(n_draws) < 10:
        raise DataError(f"recommend_dose: n_draws must be >= 10, got {n_draws!r}")
    for who, t in (("target", target), ("toxic", toxic)):
        if t is not None and t.output not in model.output_names:
            raise DataError(f"recommend_dose: {who} output {t.output!r} is not an output of model {model.name} "
                            f"({list(model.output_names)})")


def recommend_dose(posterior, target: Target, *, constraints: DoseConstraints | None = None,
                   objective: str = "window", toxic: Threshold | None = None, max_toxic_probability: float = 0.1,
                   current: Regimen | None = None, history: Regimen = Regimen(), start_time: float | None = None,
                   evaluation_window=None, n_draws: int = 1000, seed: int = 0, model=None,
                   grid_h: float = 0.25, band_step_h: float = 0.25, sensitivity: bool = True,
                   aim: str | None = None) -> Recommendation:
    """The regimen that best hits ``target`` for this patient's posterior, with its explanation.

    Parameters
    ----------
    posterior : Posterior or ModelAveragedPosterior
        The personalized posterior (:func:`medtwin.infer.personalize.personalize`), or a mixture over
        candidate models (:func:`medtwin.infer.model_averaging.personalize_averaged`): each component's
        draws (``round(w_k · n_draws)``) are scored with the component's own model and pooled; the
        sensitivity is computed within the component with the most draws.
    target : Target
        What to aim at, e.g. ``AUC24Window(400, 600)`` (see :mod:`medtwin.control.targets`).
    constraints : DoseConstraints, optional
        Hard constraints (default ``DoseConstraints()``).
    objective : {"window", "pta", "median"}
        ``"window"`` (default): keep the median metric inside the target window with a margin of
        ``WINDOW_MARGIN`` (10 %) of its width and maximise P(target) with P(below) and P(above) each
        <= ``WINDOW_TAIL`` (0.25) where any candidate allows it; ``"pta"``: maximise P(target) subject to
        P(toxic) <= ε; ``"median"``: bring the median metric into the window.  All keep P(toxic) <= ε.
    toxic : Threshold, optional
        Toxic exposure, e.g. ``Threshold(AUC24Window(), above=600)``.
    max_toxic_probability : float
        ε: the largest acceptable P(toxic).
    current : Regimen, optional
        The regimen to compare with (from time 0, history included); default: ``history`` continued.
    history : Regimen
        Doses already given (all before ``start_time``).
    start_time : float, optional
        Time of the first new dose (h); default: the next dose of ``history`` (0 without history).
    evaluation_window : (float, float), optional
        The day the clinician asks about (h); default ``(start_time + 48, start_time + 72)``.  Reported beside
        the steady state; the target is aimed at it when ``aim="window"``.
    aim : {"steady-state", "window"}, optional
        Where candidates are scored: at steady state (:mod:`medtwin.control.steady`; the default when no
        ``evaluation_window`` is given) or over ``evaluation_window`` (the default when one is given).
    n_draws, seed : int
        Posterior draws (the same draws for every candidate and both bands).
    model : Model, optional
        Default ``posterior.model`` (given: must be that model, digest checked).
    grid_h, band_step_h : float
        Metric grid step in the window and band grid step (h).
    sensitivity : bool
        Compute the sensitivity to the most influential parameter (two more searches).

    Returns
    -------
    Recommendation
        ``kind="regimen"``; ``action`` (dose_mg, interval_h, infusion_h, loading_mg, daily_mg), ``regimen``
        from ``start_time`` to the window end, ``probabilities`` {"target" (where aimed), "target_steady_state",
        "target_window", "toxic"}, ``target`` (with ``aim``, ``expected_attainment``, ``steady_state`` and
        ``window`` {median, p05, p95, p_target, p_below, p_above} and ``time_to_90pct_steady_state``
        {median_h, p90_h} after the first new dose), ``predicted`` and ``current`` PredictiveBand,
        ``active_constraints``, ``runner_ups`` (next 3) and ``sensitivity``.
    """
    mixture = hasattr(posterior, "component_draws")  # a ModelAveragedPosterior: components of different models
    model = posterior.model if model is None else _same_model(model, posterior.model)  # mixture: its top model
    constraints = DoseConstraints() if constraints is None else constraints
    eps = max_toxic_probability
    aim = ("steady-state" if evaluation_window is None else "window") if aim is None else aim
    for component_model in ({c.model.name: c.model for c in posterior.components}.values() if mixture else (model,)):
        _check_inputs(posterior, target, toxic, objective, eps, n_draws, component_model, aim)
    if not isinstance(history, Regimen):
        raise DataError("recommend_dose: history must be a Regimen")
    start = _start_time(history, start_time)
    window = (start + 48.0, start + 72.0) if evaluation_window is None else tuple(float(w) for w in evaluation_window)
    if len(window) != 2 or not window[1] > window[0] or window[1] <= start:
        raise DataError(f"recommend_dose: evaluation_window must be (start, end) h ending after {start} h, "
                        f"got {evaluation_window!r}")
    if mixture:
        parts = posterior.component_draws(int(n_draws), seed)  # round(w_k n) draws of component k, own model
        scorer = _MixtureScorer([(_Scorer(p.model, target, toxic, window, history, start, window[1],
                                          constraints.cmt, grid_h), z.shape[0]) for _, p, z in parts])
        table = [p.parameter_table(z) for _, p, z in parts]
    else:
        z = posterior.sample(int(n_draws), seed)
        table = posterior.parameter_table(z)
        scorer = _Scorer(model, target, toxic, window, history, start, window[1], constraints.cmt, grid_h)
    candidates = _candidates(constraints)
    scored, ranked, feasible, secondary = _search(scorer, table, candidates, objective, eps, aim)
    best = ranked[0]
    horizons = _both_horizons(scorer, table, best, aim, start, constraints.cmt, secondary)
    regimen = candidate_regimen(best.candidate, start, window[1], constraints.cmt)
    if constraints.violations(best.candidate.action()):         # by construction never; a guard, not an assert
        raise DataError(f"recommend_dose: internal error, {constraints.violations(best.candidate.action())}")
    times = np.unique(np.round(np.concatenate([np.arange(0.0, window[1] + 1e-9, band_step_h), [window[1]]]), 9))
    predicted = posterior.predict(history + regimen, times, n_draws=n_draws, seed=seed)
    if current is None and any(e.amount > 0 or e.rate > 0 for e in history.expanded()):
        try:
            current = history.continued(window[1])
        except DataError:  # a single dose without II: "current" is what was given, not continued
            current = history
    current_band = posterior.predict(current, times, n_draws=n_draws, seed=seed) if current is not None else None
    if mixture and sensitivity:  # within the component with the most draws, on its own draws and model
        k = int(np.argmax([z.shape[0] for _, _, z in parts]))
        _, post_k, z = parts[k]
        sens = {"model": posterior.names[parts[k][0]],
                **_sensitivity(post_k, z, scorer.part(best.values, k), scorer.scorers[k], candidates, objective, eps,
                               aim)}
    else:
        sens = (_sensitivity(posterior, z, best.values, scorer, candidates, objective, eps, aim) if sensitivity else {})
    probabilities = {"target": best.p_target, "target_steady_state": horizons["steady_state"]["p_target"],
                     "target_window": horizons["window"]["p_target"]}
    if toxic is not None:
        probabilities["toxic"] = best.p_toxic
    described = {**target.describe(), "objective": objective, "aim": aim, "window_h": window, "median": best.median,
                 "p05": best.p05, "p95": best.p95, "expected_attainment": best.p_target, **horizons}
    if toxic is not None:
        described["toxic"] = toxic.describe()
        described["max_toxic_probability"] = eps
    message = f"{best.candidate.label()}: {len(candidates)} candidates on {int(n_draws)} posterior draws"
    if not feasible:
        message = (f"no candidate keeps P(toxic) <= {eps:g} (least toxic: P = {best.p_toxic:.3f}); returning the "
                   f"least-toxic candidate, {best.candidate.label()}; review the target, constraints or drug")
    constraint_text = constraints.describe()
    if toxic is not None:
        constraint_text["toxicity"] = f"P(toxic) <= {eps:g}"
    return Recommendation(
        kind="regimen", action=best.candidate.action(), status=RecommendationStatus.OPTIMAL if feasible
        else RecommendationStatus.INFEASIBLE_FALLBACK,
        target=described, constraints=constraint_text,
        active_constraints=_active(best, scored, constraints, eps, toxic, feasible), probabilities=probabilities,
        predicted=predicted, current=current_band, sensitivity=sens,
        runner_ups=tuple(s.row() for s in ranked[1:4]), regimen=regimen, message=message)
