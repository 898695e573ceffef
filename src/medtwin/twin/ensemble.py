"""A live ensemble of twins of different models, averaged online by their predictive likelihood.

:class:`EnsembleTwin` runs several live
:class:`~medtwin.twin.calibrated.CalibratedTwin` members side by side on the same
readings and inputs — for the ICU glycaemic twin, ICING and the Bergman minimal
model with insulin kinetics, each with its own disturbance state and band
calibration.  Each member stores its own ``horizon_h``-ahead forecasts; when a
reading resolves one, the member's calibrated Gaussian predictive log density
of that reading,

    ℓ_m = −½ (log 2π c_m + e_m² / c_m)     (e_m: error of the member's mean, c_m: its calibrated variance),

is added to the member's discounted score S_m ← φ·S_m + ℓ_m (φ = ``forgetting`` per
scored forecast, a memory of about 1/(1 − φ) forecasts, so the weights follow a
patient whose behaviour moves from one model's range to the other's).  The
weights are Bayesian model averaging with exponential forgetting (dynamic model
averaging, Raftery AE, Kárný M, Ettler P. Technometrics 2010;52:52-66):

    w_m = π_m · exp(S_m) / Σ_j π_j · exp(S_j),

floored at ``weight_floor`` (then renormalized) so a member that is behind can
come back.  The forecast is the mixture Σ w_m p_m: the members' predictive draws
are pooled, ``n_draws`` in all, member m contributing a share w_m of them
(:func:`mixture_band`; shares rounded by the largest remainder), so the band's
quantiles and median are the mixture's.

Regime alarms: each member keeps its own hourly detector (and re-opens its own
parameters on its alarm); the ensemble reports an alarm when the member carrying
the most weight at that moment raises one (:attr:`EnsembleTwin.alarms`).

Examples
--------
>>> import numpy as np
>>> w = mixture_weights(np.log([0.5, 0.5]), np.array([-1.0, -3.0]))
>>> [round(float(x), 3) for x in w]
[0.881, 0.119]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from medtwin.core.events import Regimen
from medtwin.errors import DataError

__all__ = ["EnsembleTwin", "mixture_band", "mixture_weights", "draw_counts", "gaussian_log_density"]


def gaussian_log_density(error: float, variance: float) -> float:
    """log N(error; 0, variance) — a member's predictive log density of one reading (variance in output units²)."""
    if not variance > 0:
        raise DataError(f"gaussian_log_density: variance must be > 0, got {variance}")
    return -0.5 * (math.log(2.0 * math.pi * variance) + error * error / variance)


def mixture_weights(log_prior, scores, floor: float = 0.0) -> np.ndarray:
    """Posterior model weights softmax(log π + S), each floored at ``floor`` and renormalized to sum to one.

    Parameters
    ----------
    log_prior : array_like, shape (M,)
        Log prior weights (need not be normalized).
    scores : array_like, shape (M,)
        Discounted sums of predictive log densities.
    floor : float
        Smallest weight, 0 <= floor < 1/M.

    Returns
    -------
    ndarray, shape (M,)
    """
    a = np.asarray(log_prior, dtype=float) + np.asarray(scores, dtype=float)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise DataError("mixture_weights: finite 1-d log prior and scores needed")
    if not 0.0 <= floor < 1.0 / a.size:
        raise DataError(f"mixture_weights: floor must be in [0, 1/{a.size}), got {floor}")
    w = np.exp(a - a.max())
    w = w / w.sum()
    if floor > 0:
        w = np.maximum(w, floor)
        w = w / w.sum()
    return w


def draw_counts(weights, n_draws: int) -> np.ndarray:
    """Integer draws per member summing to ``n_draws``, proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    if n_draws < 1 or w.ndim != 1 or np.any(w < 0) or not w.sum() > 0:
        raise DataError("draw_counts: n_draws >= 1 and non-negative weights with a positive sum needed")
    exact = n_draws * w / w.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_draws - counts.sum()]] += 1
    return counts


def mixture_band(bands, weights, n_draws: int):
    """The mixture Σ w_m p_m of predictive bands on one time grid, as ``n_draws`` pooled draws.

    Member m contributes its first ``draw_counts(weights, n_draws)[m]`` draws (its draws are
    independent, so these are a random subset); outputs present in every band are kept.

    Parameters
    ----------
    bands : sequence of PredictiveBand
        The members' bands (same ``times``; each with at least its share of draws).
    weights : array_like, shape (M,)
        Mixture weights.
    n_draws : int
        Draws of the mixture.

    Returns
    -------
    PredictiveBand
    """
    from medtwin.core.data import PredictiveBand

    if len(bands) != len(weights) or not bands:
        raise DataError("mixture_band: one weight per band needed")
    times = bands[0].times
    if any(b.times.shape != times.shape or not np.allclose(b.times, times) for b in bands):
        raise DataError("mixture_band: the bands must share their times")
    counts = draw_counts(weights, n_draws)
    pooled = {}
    for kind in ("draws", "observed"):
        names = set.intersection(*(set(getattr(b, kind)) for b in bands))
        out = {}
        for name in sorted(names):
            parts = []
            for b, c in zip(bands, counts):
                f = np.asarray(getattr(b, kind)[name])
                if c > f.shape[0]:
                    raise DataError(f"mixture_band: a member has {f.shape[0]} draws, {c} needed")
                parts.append(f[:c])
            out[name] = np.concatenate(parts, axis=0)
        pooled[kind] = out
    units = {k: v for k, v in bands[0].units.items() if k in pooled["draws"] or k in pooled["observed"]}
    return PredictiveBand(times=times, draws=pooled["draws"], observed=pooled["observed"], units=units,
                          failed=int(sum(b.failed for b in bands)))


@dataclass(frozen=True, eq=False)
class EnsembleTwin:
    """Several calibrated live twins averaged by predictive likelihood (see the module docstring).

    Attributes
    ----------
    members : tuple of CalibratedTwin
        The members (each with its own model, calibration and detector).
    names : tuple of str
        A label per member.
    log_prior : ndarray, shape (M,)
        Log prior weights (default: equal).
    forgetting : float
        φ, discount of the scores per scored forecast (0 < φ <= 1).
    weight_floor : float
        Smallest weight of a member.
    temper : float
        Factor on each log density before it enters the scores (1: plain Bayes; below 1 flattens the weights,
        e.g. for overlapping forecasts; 1 kept, docs/decisions.md).
    scores : ndarray, shape (M,)
        Discounted predictive log densities so far.
    resolved : tuple of int
        Forecasts of each member already scored into ``scores``.
    alarms : tuple of float
        Times (h) of the ensemble's regime alarms.
    """

    members: tuple
    names: tuple
    log_prior: np.ndarray
    forgetting: float = 0.95
    weight_floor: float = 0.02
    temper: float = 1.0
    scores: np.ndarray | None = None
    resolved: tuple = ()
    alarms: tuple = ()

    @classmethod
    def create(cls, members, names=None, *, prior=None, forgetting: float = 0.95,
               weight_floor: float = 0.02, temper: float = 1.0) -> "EnsembleTwin":
        """Ensemble of ``members`` (CalibratedTwins) with prior weights ``prior`` (default equal)."""
        members = tuple(members)
        m = len(members)
        if m < 1:
            raise DataError("EnsembleTwin: at least one member needed")
        names = tuple(names) if names is not None else tuple(f"m{k}" for k in range(m))
        prior = np.full(m, 1.0 / m) if prior is None else np.asarray(prior, dtype=float)
        if len(names) != m or prior.shape != (m,) or np.any(prior <= 0):
            raise DataError("EnsembleTwin: one name and one positive prior weight per member needed")
        if not (0.0 < forgetting <= 1.0) or not (0.0 <= weight_floor < 1.0 / m) or not 0.0 < temper <= 1.0:
            raise DataError(f"EnsembleTwin: 0 < forgetting <= 1, 0 <= weight_floor < 1/{m}, 0 < temper <= 1 needed")
        return cls(members, names, np.log(prior / prior.sum()), float(forgetting), float(weight_floor),
                   float(temper), np.zeros(m), tuple(len(x.scored) for x in members), ())

    @property
    def weights(self) -> np.ndarray:
        """Current model weights (sum to one)."""
        return mixture_weights(self.log_prior, self.scores, self.weight_floor)

    @property
    def twin(self):
        """The twin of the mechanistic member with the most weight (for its belief, history and time)."""
        order = np.argsort(-self.weights, kind="stable")
        return next(self.members[k].twin for k in order if hasattr(self.members[k], "twin"))

    def assimilate(self, measurements, inputs: Regimen | None = None) -> "EnsembleTwin":
        """Assimilate into every member, fold the newly resolved forecasts into the scores, collect alarms."""
        leader = int(np.argmax(self.weights))
        members = tuple(x.assimilate(measurements, inputs) for x in self.members)
        alarms = list(self.alarms)
        known = set(self.alarms)
        for t in members[leader].alarms[len(self.members[leader].alarms):]:
            if t not in known:
                alarms.append(float(t))
        new = [x.scored[r:] for x, r in zip(members, self.resolved)]
        scores = np.array(self.scores, dtype=float)
        by_target = [{round(s[0], 9): s for s in part} for part in new]
        common = sorted(set.intersection(*(set(d) for d in by_target))) if by_target else []
        for target in common:
            loglik = np.array([gaussian_log_density(d[target][1], d[target][3]) for d in by_target])
            scores = self.forgetting * scores + self.temper * loglik
        return replace(self, members=members, scores=scores, resolved=tuple(len(x.scored) for x in members),
                       alarms=tuple(alarms))

    def forecast(self, regimen: Regimen | None = None, horizon: float = 1.0, *, step: float = 0.25,
                 n_draws: int = 500, seed: int = 0):
        """The mixture of the members' calibrated predictive bands (members with no draws are not run).

        Each member that contributes draws runs with all ``n_draws`` (so that its own band and calibration are
        estimated on as many draws as a single twin's) and gives the first of them.
        """
        counts = draw_counts(self.weights, n_draws)
        keep = np.flatnonzero(counts > 0)
        bands = [self.members[k].forecast(regimen, horizon, step=step, n_draws=n_draws, seed=seed) for k in keep]
        return mixture_band(bands, counts[keep].astype(float), int(counts[keep].sum()))
