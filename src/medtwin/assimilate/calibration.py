"""Calibrating predictive bands online: innovation-based covariance matching, coverage and PIT.

A twin whose model is not the patient's (always, at a bedside) under-states
its forecast uncertainty: its band holds only the noise its own model assumes.
:class:`CovarianceMatching` estimates the missing part from the twin's own
forecast errors (innovations) as they come in, with exponential forgetting
(Mehra RK. On the identification of variances and adaptive Kalman filtering.
IEEE Trans Autom Control 1970;15:175-184; Mohamed AH, Schwarz KP. Adaptive
Kalman filtering for INS/GPS. J Geodesy 1999;73:193-203):

- ``kind="additive"`` — a discrepancy (or measurement-noise) variance
  σ̂² = E_w[e² − s²], where s² is the variance the model predicted for the
  innovation e: the classical innovation-based estimate of R (floored);
- ``kind="scale"`` — a variance multiplier λ̂ = E_w[e²/s²] (λ = 1 for a
  calibrated model), the covariance-matching form of a fading factor.

E_w is an exponentially weighted mean with forgetting factor γ (effective
memory 1/(1 − γ) innovations) started from a prior value with a prior weight
(pseudo-innovations), so the first few forecasts are not trusted blindly.

The scores: :func:`coverage` (share of observations inside the bands),
:func:`pit_values` (probability integral transform of each observation under
its predictive draws) and :func:`pit_summary` (mean, sd — 0.5 and 0.289 for a
uniform PIT — and the Kolmogorov–Smirnov distance to the uniform).

Examples
--------
>>> cm = CovarianceMatching("additive", forgetting=0.9, prior=1.0, prior_weight=1.0)
>>> state = cm.init()
>>> for e in (2.0, -2.0, 2.0):
...     state = cm.update(state, e, 1.0)        # e² − s² = 3 each time
>>> round(cm.value(state), 3)             # (0.9³·1 + 3·(0.9² + 0.9 + 1))/(0.9³ + 0.9² + 0.9 + 1)
2.576
>>> coverage([0.0, 0.0], [1.0, 1.0], [0.5, 2.0])
0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medtwin.errors import DataError

__all__ = ["CovarianceMatching", "MatchingState", "coverage", "pit_values", "pit_summary", "standardized_errors"]


@dataclass(frozen=True)
class MatchingState:
    """Running weighted mean of the matching samples: ``mean`` after total weight ``weight``, ``n`` innovations."""

    mean: float
    weight: float
    n: int = 0


@dataclass(frozen=True)
class CovarianceMatching:
    """Online innovation-based covariance matching (see the module docstring).

    Parameters
    ----------
    kind : {"additive", "scale"}
        Estimate an added variance (σ̂² = E_w[e² − s²]) or a variance multiplier (λ̂ = E_w[e²/s²]).
    forgetting : float
        γ in (0, 1]: weight of the past per new innovation (1: no forgetting).
    prior : float, optional
        Starting value (default 0 for ``additive``, 1 for ``scale``).
    prior_weight : float
        Weight of the prior, in innovations.
    floor, ceiling : float
        Bounds of the value used (:meth:`value`); the running mean itself is not clipped.

    Examples
    --------
    >>> cm = CovarianceMatching("scale", forgetting=1.0, prior_weight=1.0)
    >>> s = cm.update(cm.init(), 3.0, 1.0)              # e²/s² = 9
    >>> cm.value(s), cm.variance(s, 2.0)                # (1·1 + 9)/2 = 5
    (5.0, 10.0)
    """

    kind: str = "scale"
    forgetting: float = 0.95
    prior: float | None = None
    prior_weight: float = 4.0
    floor: float = 0.0
    ceiling: float = math.inf

    def __post_init__(self):
        if self.kind not in ("additive", "scale"):
            raise DataError(f"CovarianceMatching: kind must be 'additive' or 'scale', got {self.kind!r}")
        if not (0.0 < self.forgetting <= 1.0):
            raise DataError(f"CovarianceMatching: forgetting must be in (0, 1], got {self.forgetting!r}")
        if not (self.prior_weight >= 0 and math.isfinite(self.prior_weight)):
            raise DataError(f"CovarianceMatching: prior_weight must be a finite number >= 0, got {self.prior_weight!r}")
        if not (self.floor <= self.ceiling):
            raise DataError("CovarianceMatching: floor must not exceed ceiling")

    @property
    def start(self) -> float:
        """The prior value (0 for an added variance, 1 for a multiplier unless given)."""
        if self.prior is not None:
            return float(self.prior)
        return 0.0 if self.kind == "additive" else 1.0

    def init(self) -> MatchingState:
        """The state before any innovation."""
        return MatchingState(self.start, float(self.prior_weight), 0)

    def sample(self, innovation: float, predicted_variance: float) -> float:
        """One matching sample: e² − s² (additive) or e²/s² (scale)."""
        e2 = float(innovation) ** 2
        if self.kind == "additive":
            return e2 - float(predicted_variance)
        if not predicted_variance > 0:
            raise DataError(f"CovarianceMatching: predicted variance must be > 0, got {predicted_variance!r}")
        return e2 / float(predicted_variance)

    def update(self, state: MatchingState, innovation: float, predicted_variance: float) -> MatchingState:
        """The state after one innovation ``e`` whose model-predicted variance was ``s²``.

        A non-finite innovation or variance leaves the state unchanged.
        """
        if not (math.isfinite(innovation) and math.isfinite(predicted_variance)):
            return state
        x = self.sample(innovation, predicted_variance)
        kept = self.forgetting * state.weight
        weight = kept + 1.0
        return MatchingState((kept * state.mean + x) / weight, weight, state.n + 1)

    def value(self, state: MatchingState) -> float:
        """The current estimate (σ̂² or λ̂) within [floor, ceiling]."""
        return float(min(max(state.mean, self.floor), self.ceiling))

    def variance(self, state: MatchingState, predicted_variance):
        """The calibrated variance of a new prediction whose model variance is ``predicted_variance``."""
        v = self.value(state)
        pv = np.asarray(predicted_variance, dtype=float)
        out = pv + v if self.kind == "additive" else pv * v
        return float(out) if out.ndim == 0 else out


def coverage(lower, upper, observed) -> float:
    """Share of ``observed`` within [lower, upper] (element-wise; NaN bounds or observations are skipped).

    Examples
    --------
    >>> coverage([1.0, 1.0, np.nan], [2.0, 3.0, 1.0], [1.5, 4.0, 1.0])
    0.5
    """
    lo, hi, y = (np.asarray(a, dtype=float).ravel() for a in (lower, upper, observed))
    if not (lo.shape == hi.shape == y.shape):
        raise DataError(f"coverage: lower, upper and observed must have one shape, got {lo.shape}, {hi.shape}, {y.shape}")
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
    if not ok.any():
        raise DataError("coverage: no finite (lower, upper, observed) triple")
    return float(np.mean((lo[ok] <= y[ok]) & (y[ok] <= hi[ok])))


def pit_values(draws, observed) -> np.ndarray:
    """PIT of each observation under its predictive draws, randomised at ties: shape (n,).

    Parameters
    ----------
    draws : array_like, shape (n, n_draws)
        Predictive draws of each of ``n`` observations.
    observed : array_like, shape (n,)

    Examples
    --------
    >>> pit_values([[1.0, 2.0, 3.0, 4.0]], [2.5]).tolist()
    [0.5]
    """
    d = np.asarray(draws, dtype=float)
    y = np.asarray(observed, dtype=float).ravel()
    if d.ndim != 2 or d.shape[0] != y.size or d.shape[1] < 1:
        raise DataError(f"pit_values: draws must be (n, n_draws) with n = {y.size}, got {d.shape}")
    below = np.mean(d < y[:, None], axis=1)
    ties = np.mean(d == y[:, None], axis=1)
    return below + 0.5 * ties


def pit_summary(pit) -> dict:
    """Mean, sd, Kolmogorov–Smirnov distance to U(0, 1) and the share in each 10 % tail of PIT values.

    A calibrated forecast has mean 0.5, sd 1/√12 ≈ 0.289, a small KS distance
    and 0.1 in each tail; too narrow a band gives a U shape (sd > 0.289, heavy tails).

    Examples
    --------
    >>> s = pit_summary(np.linspace(0.0, 1.0, 101))
    >>> round(s["mean"], 3), round(s["sd"], 3), s["ks"] < 0.02
    (0.5, 0.292, True)
    """
    p = np.sort(np.asarray(pit, dtype=float).ravel())
    p = p[np.isfinite(p)]
    if p.size == 0:
        raise DataError("pit_summary: no finite PIT value")
    n = p.size
    ecdf_hi, ecdf_lo = np.arange(1, n + 1) / n, np.arange(n) / n
    ks = float(max(np.max(ecdf_hi - p), np.max(p - ecdf_lo)))
    return {"n": int(n), "mean": float(p.mean()), "sd": float(p.std()), "ks": ks,
            "low_tail": float(np.mean(p < 0.1)), "high_tail": float(np.mean(p > 0.9))}


def standardized_errors(matching: CovarianceMatching, errors, variances) -> np.ndarray:
    """Errors standardized by the calibrated variance *before* each one is learnt from: z_k = e_k/√v̂_k.

    The sequence a regime detector sees in :class:`medtwin.twin.calibrated.CalibratedTwin`: each error is
    scored with the calibration of the errors before it, then added to it.

    Parameters
    ----------
    matching : CovarianceMatching
    errors, variances : array_like, shape (n,)
        Forecast errors e_k and their model-predicted variances s²_k.

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> cm = CovarianceMatching("scale", forgetting=1.0, prior_weight=1.0)
    >>> standardized_errors(cm, [3.0, 3.0], [1.0, 1.0]).round(3).tolist()   # λ̂: 1, then (1 + 9)/2 = 5
    [3.0, 1.342]
    """
    e = np.asarray(errors, dtype=float).ravel()
    v = np.asarray(variances, dtype=float).ravel()
    if e.shape != v.shape:
        raise DataError(f"standardized_errors: errors and variances must have one shape, got {e.shape}, {v.shape}")
    state, z = matching.init(), np.empty(e.size)
    for k in range(e.size):
        z[k] = e[k] / math.sqrt(matching.variance(state, v[k]))
        state = matching.update(state, e[k], v[k])
    return z
