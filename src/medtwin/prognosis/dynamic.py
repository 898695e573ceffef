"""Dynamic prediction from a fitted joint model, for one patient (live) or a cohort at a landmark.

P(event in (t, t+Δ] | T > t, y_i(s ≤ t)) = 1 − ∫ S(t+Δ | b) p(b | y, T > t) db / ∫ S(t | b) p(b | y, T > t) db
with p(b | y, T > t) ∝ S(t | b)·p(b | y): the Gauss–Hermite rule of the fit, centred on the LMM posterior
p(b | y) and reweighted by S(t | b).  Parameters are plugged in at their MLE (JM's ``survfitJM`` also
averages over the parameters' sampling distribution; the plug-in is its first-order version).

:func:`landmark_metrics` scores predictions at a landmark t_L and horizon Δ on subjects at risk at t_L:
time-dependent AUC and Brier score with inverse-probability-of-censoring weights (Kaplan–Meier of the
censoring times; Blanche, Dartigues & Jacqmin-Gadda 2013, Stat Med 32:5381, doi:10.1002/sim.5958) and a
calibration table (mean predicted vs IPCW observed risk per predicted-risk group).

Examples
--------
>>> from medtwin.prognosis.joint import JointFit, JointParameters
>>> p = JointParameters.example()
>>> fit = JointFit(p, p.to_vector(), np.eye(13), (), 0.0, True, 9)
>>> twin = DynamicPredictor(fit, w_long=[1.0], w_surv=[1.0]).observe(0.0, 2.1).observe(1.0, 2.6)
>>> twin.times, twin.values
((0.0, 1.0), (2.1, 2.6))

``twin.probability(1.0, 2.0)`` is then P(event in (1, 3] | event-free at 1, both measurements) (about
0.49 here; the first call compiles the predictor, about a second).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from medtwin.errors import DataError
from medtwin.prognosis.joint import JointData, JointFit, _arrays, _Spec

__all__ = ["DynamicPredictor", "dynamic_probabilities", "landmark_metrics", "score_landmark", "LandmarkMetrics"]


def _conditional_risk(spec, theta, y, tt, mask, wl, wv, t, horizon):
    _, mu, chol = spec.posterior_b(theta, y, tt, mask, wl)
    b = mu[None, :] + spec.nodes @ chol.T
    k, c = spec.log_hazard_terms(theta, b, wl, wv)
    log_s_t = -spec.cumhaz(theta, k, c, t)
    log_s_h = -spec.cumhaz(theta, k, c, t + horizon)
    lw = spec.log_w + log_s_t
    ratio = jnp.exp(jax.scipy.special.logsumexp(spec.log_w + log_s_h) - jax.scipy.special.logsumexp(lw))
    return 1.0 - ratio


@dataclass(frozen=True)
class DynamicPredictor:
    """One patient's event-risk predictor, updated as biomarker measurements arrive (a plain value).

    Parameters
    ----------
    fit : JointFit
    w_long, w_surv : array_like
        The patient's baseline covariates (as in the fit's data).
    times, values : tuple of float
        Measurements so far (time units of the fit; biomarker units).
    """

    fit: JointFit
    w_long: tuple = ()
    w_surv: tuple = ()
    times: tuple = field(default=())
    values: tuple = field(default=())

    def __post_init__(self):
        object.__setattr__(self, "w_long", tuple(float(v) for v in np.atleast_1d(self.w_long)))
        object.__setattr__(self, "w_surv", tuple(float(v) for v in np.atleast_1d(self.w_surv)))
        p = self.fit.params
        if len(self.w_long) != len(p.beta) // 2 - 1 or len(self.w_surv) != len(p.gamma):
            raise DataError(f"DynamicPredictor: the fit needs {len(p.beta) // 2 - 1} longitudinal and "
                            f"{len(p.gamma)} hazard covariates")

    def observe(self, t: float, y: float) -> DynamicPredictor:
        """A new predictor with the measurement (t, y) added in time order.

        A late measurement (t before the last one, as live streams deliver them) is inserted where it
        belongs, after any measurement at the same time, so the predictor equals the one fed in time order.
        """
        if not (np.isfinite(t) and np.isfinite(y)) or t < 0:
            raise DataError(f"DynamicPredictor.observe: t and y must be finite and t >= 0, got t={t}, y={y}")
        k = int(np.searchsorted(np.asarray(self.times, dtype=float), float(t), side="right"))
        return DynamicPredictor(self.fit, self.w_long, self.w_surv,
                                self.times[:k] + (float(t),) + self.times[k:],
                                self.values[:k] + (float(y),) + self.values[k:])

    def probability(self, t: float, horizon: float) -> float:
        """P(event in (t, t + horizon] | event-free at t, the measurements up to t)."""
        if not (t >= 0 and horizon > 0):
            raise DataError("DynamicPredictor.probability: need t >= 0 and horizon > 0")
        use = [i for i, s in enumerate(self.times) if s <= t]
        width = max(8, 1 << (len(use) - 1).bit_length()) if use else 8  # padded: few compiled shapes
        tt, y, mask = np.zeros(width), np.zeros(width), np.zeros(width)
        tt[:len(use)] = [self.times[i] for i in use]
        y[:len(use)] = [self.values[i] for i in use]
        mask[:len(use)] = 1.0
        f = _compiled_single(self.fit.spec().key())
        return float(f(jnp.asarray(self.fit.theta), jnp.asarray(y), jnp.asarray(tt), jnp.asarray(mask),
                       jnp.asarray(self.w_long), jnp.asarray(self.w_surv), float(t), float(horizon)))


@functools.lru_cache(maxsize=16)
def _compiled_single(key):
    spec = _Spec(key[0], key[1], key[2], np.asarray(key[3]), key[4])
    return jax.jit(lambda theta, y, tt, m, wl, wv, t, h: _conditional_risk(spec, theta, y, tt, m, wl, wv, t, h))


def dynamic_probabilities(fit: JointFit, data: JointData, t: float, horizon: float) -> np.ndarray:
    """P(event in (t, t+Δ] | T > t, measurements ≤ t) for every subject of ``data`` (N,) (meaningful for
    subjects still event-free at t)."""
    y, tt, mask, wl, wv, _, _ = _arrays(data.truncate(t))
    f = _compiled_risk(fit.spec().key())
    return np.asarray(f(jnp.asarray(fit.theta), y, tt, mask, wl, wv, float(t), float(horizon)))


@functools.lru_cache(maxsize=16)
def _compiled_risk(key):
    spec = _Spec(key[0], key[1], key[2], np.asarray(key[3]), key[4])
    risk = jax.vmap(lambda theta, y, tt, m, wl, wv, t, h: _conditional_risk(spec, theta, y, tt, m, wl, wv, t, h),
                    in_axes=(None, 0, 0, 0, 0, 0, None, None))
    return jax.jit(risk)


@dataclass(frozen=True)
class LandmarkMetrics:
    """AUC and Brier at (landmark, horizon); ``calibration`` rows (mean predicted, observed, weight)."""

    landmark: float
    horizon: float
    auc: float
    brier: float
    n_at_risk: int
    n_events: int
    calibration: np.ndarray


def _censoring_km(time, event):
    """Kaplan–Meier of the censoring distribution G(t) (censoring as the 'event'), as a step function."""
    times = np.unique(time[event == 0])
    g, out = 1.0, []
    for s in times:
        n = np.count_nonzero(time >= s)
        g *= 1.0 - np.count_nonzero((time == s) & (event == 0)) / n
        out.append(g)
    out = np.asarray(out)
    return lambda t: np.concatenate([[1.0], out])[np.searchsorted(times, t, side="left")]  # G(t-)


def landmark_metrics(fit: JointFit, data: JointData, landmark: float, horizon: float, *,
                     n_groups: int = 5) -> LandmarkMetrics:
    """IPCW time-dependent AUC, Brier score and calibration groups at one landmark.

    Parameters
    ----------
    fit : JointFit
    data : JointData
        Subjects to score (those with time > landmark are used, measurements ≤ landmark).
    landmark, horizon : float
    n_groups : int
        Calibration groups (quantiles of predicted risk).

    Returns
    -------
    LandmarkMetrics
    """
    at_risk = data.time > landmark
    if at_risk.sum() < 2:
        raise DataError(f"landmark_metrics: fewer than 2 subjects at risk at {landmark}")
    p = dynamic_probabilities(fit, data, landmark, horizon)
    return score_landmark(p, data.time, data.event, landmark, horizon, n_groups=n_groups)


def score_landmark(predicted, time, event, landmark: float, horizon: float, *, n_groups: int = 5) -> LandmarkMetrics:
    """IPCW AUC, Brier and calibration of any risk predictions (N,) for subjects at risk at ``landmark``.

    ``predicted`` holds P(event in (landmark, landmark + horizon]) per subject (subjects with
    time <= landmark are ignored), so a joint model and a baseline (e.g. a last-value Cox model) are scored
    alike.
    """
    time, event = np.asarray(time, float), np.asarray(event, float)
    at_risk = time > landmark
    if at_risk.sum() < 2:
        raise DataError(f"score_landmark: fewer than 2 subjects at risk at {landmark}")
    p = np.asarray(predicted, float)[at_risk]
    t, e = time[at_risk], event[at_risk]
    g = _censoring_km(t, e)
    end = landmark + horizon
    case = (t <= end) & (e == 1)
    control = t > end
    w = np.where(case, 1.0 / np.maximum(g(t), 1e-12), 0.0) + np.where(control, 1.0 / max(g(end), 1e-12), 0.0)
    outcome = case.astype(float)
    brier = float(np.sum(w * (p - outcome) ** 2) / at_risk.sum())
    pc, wc = p[case], w[case]
    pn, wn = p[control], w[control]
    if pc.size == 0 or pn.size == 0:
        auc = float("nan")
    else:
        greater = (pc[:, None] > pn[None, :]) + 0.5 * (pc[:, None] == pn[None, :])
        auc = float(np.sum(wc[:, None] * wn[None, :] * greater) / (wc.sum() * wn.sum()))
    edges = np.quantile(p, np.linspace(0, 1, n_groups + 1))
    grp = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_groups - 1)
    rows = []
    for j in range(n_groups):
        sel = (grp == j) & (w > 0)
        if sel.any():
            rows.append((float(p[grp == j].mean()), float(np.sum(w[sel] * outcome[sel]) / np.sum(w[sel])),
                         int(np.count_nonzero(grp == j))))
    return LandmarkMetrics(float(landmark), float(horizon), auc, brier, int(at_risk.sum()), int(case.sum()),
                           np.asarray(rows))
