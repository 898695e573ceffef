"""Cox proportional hazards with time-varying covariates (counting-process data), Breslow or Efron ties.

Data are intervals (start, stop] per row with the covariates constant on the interval and the event flag
at ``stop`` (the counting-process layout of Andersen & Gill 1982, Ann Stat 10:1100, doi:10.1214/aos/1176345976;
lifelines' ``CoxTimeVaryingFitter`` and R's ``coxph(Surv(start, stop, event) ~ ...)``).  A row is at risk at
an event time t when start < t <= stop.  Ties among event times use Breslow's (1974) or Efron's (1977,
JASA 72:557, doi:10.1080/01621459.1977.10480613) approximation of the partial likelihood; lifelines uses
Efron, scikit-survival either.

The partial log-likelihood, its gradient and information are written out in numpy (one pass per distinct
event time), Newton–Raphson with step halving maximises it; standard errors come from the inverse
information; the baseline cumulative hazard is Breslow's estimator Σ d_k / Σ_risk exp(x'β) (with either ties
method, as lifelines).

Examples
--------
>>> import numpy as np
>>> t = np.array([1.0, 2.0, 3.0, 4.0]); e = np.array([1, 1, 0, 1]); x = np.array([[0.0], [1.0], [0.0], [1.0]])
>>> fit = fit_cox(x, t, e)
>>> fit.converged
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.errors import DataError, EstimationError

__all__ = ["CoxFit", "fit_cox"]


@dataclass(frozen=True)
class CoxFit:
    """A fitted Cox model.

    ``coef`` (p,) log hazard ratios; ``cov`` (p, p) inverse information; ``loglik`` partial log-likelihood;
    ``baseline_times`` (m,) distinct event times and ``baseline_cumhaz`` (m,) H0 there (covariates at 0, not
    centred); ``ties`` the method; ``converged`` and ``n_iter``.
    """

    coef: np.ndarray
    cov: np.ndarray
    loglik: float
    baseline_times: np.ndarray
    baseline_cumhaz: np.ndarray
    ties: str
    converged: bool
    n_iter: int

    @property
    def se(self) -> np.ndarray:
        """Standard errors of ``coef``."""
        return np.sqrt(np.diag(self.cov))

    def cumulative_hazard(self, t, x) -> np.ndarray:
        """H(t | x) = H0(t)·exp(x'β) for fixed covariates x (p,) at times t (step function, right-continuous)."""
        t = np.asarray(t, float)
        idx = np.searchsorted(self.baseline_times, t, side="right")
        h0 = np.concatenate([[0.0], self.baseline_cumhaz])[idx]
        return h0 * float(np.exp(np.asarray(x, float) @ self.coef))

    def survival(self, t, x) -> np.ndarray:
        """S(t | x) = exp(−H(t | x))."""
        return np.exp(-self.cumulative_hazard(t, x))


class _Events:
    """Per distinct event time: the risk-set rows and the tied event rows."""

    def __init__(self, start, stop, event):
        self.times = np.unique(stop[event == 1])
        self.risk, self.dead = [], []
        for t in self.times:
            self.risk.append(np.nonzero((start < t) & (stop >= t))[0])
            self.dead.append(np.nonzero((stop == t) & (event == 1))[0])


def _partial(beta, x, ev: _Events, ties: str, want_baseline: bool = False):
    """Partial log-likelihood, gradient, information (and baseline hazard increments)."""
    p = x.shape[1]
    eta = x @ beta
    shift = np.max(eta) if eta.size else 0.0
    r = np.exp(eta - shift)
    ll, grad, info = 0.0, np.zeros(p), np.zeros((p, p))
    dh = np.zeros(len(ev.times))
    for k, (risk, dead) in enumerate(zip(ev.risk, ev.dead)):
        rr, xr = r[risk], x[risk]
        s0, s1 = rr.sum(), rr @ xr
        s2 = (xr * rr[:, None]).T @ xr
        d = len(dead)
        dh[k] = d / (s0 * np.exp(shift))  # Breslow's estimator of the baseline hazard increment (as lifelines)
        ll += eta[dead].sum()
        grad += x[dead].sum(axis=0)
        if ties == "breslow" or d == 1:
            ll -= d * (np.log(s0) + shift)
            mean = s1 / s0
            grad -= d * mean
            info += d * (s2 / s0 - np.outer(mean, mean))
            continue
        rd, xd = r[dead], x[dead]
        t0, t1 = rd.sum(), rd @ xd
        t2 = (xd * rd[:, None]).T @ xd
        for j in range(d):
            f = j / d
            a0, a1, a2 = s0 - f * t0, s1 - f * t1, s2 - f * t2
            ll -= np.log(a0) + shift
            mean = a1 / a0
            grad -= mean
            info += a2 / a0 - np.outer(mean, mean)
    return (ll, grad, info, dh) if want_baseline else (ll, grad, info)


def fit_cox(covariates, stop, event, *, start=None, ties: str = "efron", tol: float = 1e-10,
            max_iter: int = 50) -> CoxFit:
    """Fit a Cox PH model by Newton–Raphson on the partial likelihood.

    Parameters
    ----------
    covariates : array_like, shape (n, p)
        Covariates per row (constant on the row's interval).
    stop : array_like, shape (n,)
        Interval end (event or censoring time of the row).
    event : array_like, shape (n,)
        1 when the row ends in an event.
    start : array_like, shape (n,), optional
        Interval start (default 0: one row per subject, fixed covariates).
    ties : {"efron", "breslow"}
    tol : float
        Convergence when the Newton decrement's step max-norm falls below ``tol``.

    Returns
    -------
    CoxFit

    Examples
    --------
    >>> x = np.array([[1.0], [0.0], [1.0], [0.0], [1.0]])
    >>> fit_cox(x, [2.0, 3.0, 3.0, 5.0, 6.0], [1, 1, 1, 0, 1], ties="breslow").ties
    'breslow'
    """
    stop = np.asarray(stop, float)
    n = stop.shape[0]
    x = np.asarray(covariates, float).reshape(n, -1)
    event = np.asarray(event)
    start = np.zeros(n) if start is None else np.asarray(start, float)
    if ties not in ("efron", "breslow"):
        raise DataError(f"fit_cox: ties must be 'efron' or 'breslow', got {ties!r}")
    if event.shape != (n,) or start.shape != (n,):
        raise DataError("fit_cox: stop, event and start must have one length")
    if not np.all(np.isin(event, (0, 1))):
        raise DataError("fit_cox: event must be 0 or 1")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(stop)) or np.any(start >= stop):
        raise DataError("fit_cox: covariates and times must be finite with start < stop")
    if event.sum() == 0:
        raise EstimationError("fit_cox: no events")
    ev = _Events(start, stop, event.astype(int))
    beta = np.zeros(x.shape[1])
    ll, grad, info = _partial(beta, x, ev, ties)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        step = np.linalg.solve(info, grad)
        lam = 1.0
        while True:
            new = _partial(beta + lam * step, x, ev, ties)
            if np.isfinite(new[0]) and new[0] >= ll - 1e-12 * abs(ll):
                break
            lam /= 2
            if lam < 1e-10:
                raise EstimationError("fit_cox: the partial likelihood did not increase (separation?)")
        beta = beta + lam * step
        ll, grad, info = new
        if np.max(np.abs(lam * step)) < tol:
            converged = True
            break
    ll, grad, info, dh = _partial(beta, x, ev, ties, want_baseline=True)
    return CoxFit(beta, np.linalg.inv(info), float(ll), ev.times, np.cumsum(dh), ties, converged, it)
