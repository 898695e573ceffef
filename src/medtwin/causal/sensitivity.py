"""Sensitivity of an estimated effect to unmeasured confounding: E-values and a bias-formula curve.

* :func:`e_value` — VanderWeele & Ding (2017, Ann Intern Med 167:268): the minimum strength of association,
  on the risk-ratio scale, that an unmeasured confounder would need with both the treatment and the outcome
  to explain away an observed risk ratio RR: ``E = RR + sqrt(RR (RR − 1))`` (RR ≥ 1; use 1/RR below 1).
  For the confidence interval the limit closer to 1 is used (E = 1 when the interval contains 1).
* :func:`e_value_difference` — for a difference of means, the approximate conversion of the same paper
  (standardised difference d = Δ / SD(Y), RR ≈ exp(0.91 d)).
* :func:`bias_curve` — the simple bias formula for one binary unmeasured confounder U with no interaction
  (VanderWeele & Arah 2011): bias = γ · δ, γ the effect of U on Y (outcome units) and δ = P(U=1 | A=1) −
  P(U=1 | A=0); the adjusted estimate and CI over a grid of (γ, δ).  :func:`plot_bias_curve` draws it
  (matplotlib, imported lazily).

Examples
--------
>>> round(e_value(3.9), 2), round(e_value(3.9, 1.8, 8.7)[1], 2)   # VanderWeele & Ding 2017's example
(7.26, 3.0)
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from medtwin.errors import DataError

__all__ = ["e_value", "e_value_difference", "bias_curve", "plot_bias_curve"]


def _e(rr: float) -> float:
    if rr < 1:
        rr = 1.0 / rr
    return rr + math.sqrt(rr * (rr - 1.0))


def e_value(rr: float, lower: float | None = None, upper: float | None = None):
    """E-value of a risk ratio (and of its CI limit closer to 1 when the limits are given).

    Returns the E-value (float), or ``(E_estimate, E_ci)`` when ``lower`` and ``upper`` are given.

    Examples
    --------
    >>> e_value(0.5, 0.3, 1.2)
    (3.414213562373095, 1.0)
    """
    values = [v for v in (rr, lower, upper) if v is not None]
    if any(not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) for v in values):
        raise DataError(f"risk ratios must be finite and > 0, got {values}")
    if (lower is None) != (upper is None):
        raise DataError("give both CI limits or neither")
    estimate = _e(rr)
    if lower is None:
        return estimate
    if not lower <= rr <= upper:
        raise DataError(f"CI ({lower}, {upper}) does not contain the estimate {rr}")
    if lower <= 1.0 <= upper:
        return estimate, 1.0
    return estimate, _e(lower if rr > 1 else upper)


def e_value_difference(estimate: float, sd: float, ci: Sequence[float] | None = None):
    """E-value of a difference of means via RR ≈ exp(0.91 · Δ/SD) (VanderWeele & Ding 2017, approximate).

    ``sd`` is the outcome's standard deviation (outcome units).  Returns a float, or (E, E_ci) with ``ci``.

    Examples
    --------
    >>> round(e_value_difference(3.4, 7.9), 2)   # RR = exp(0.91 · 3.4/7.9) = 1.479; 1.479 + √(1.479 · 0.479)
    2.32
    """
    if not (math.isfinite(sd) and sd > 0):
        raise DataError(f"outcome SD must be finite and > 0, got {sd}")
    rr = math.exp(0.91 * estimate / sd)
    if ci is None:
        return e_value(rr)
    lo, hi = (math.exp(0.91 * float(c) / sd) for c in ci)
    return e_value(rr, lo, hi)


def bias_curve(estimate: float, ci: Sequence[float], gamma: Sequence[float], delta: Sequence[float]) -> dict:
    """Estimate and CI corrected for an unmeasured binary confounder over a (γ, δ) grid.

    Parameters
    ----------
    estimate : float
        Observed difference (outcome units).
    ci : (float, float)
        Its confidence interval.
    gamma : sequence of float
        Effects of U on the outcome (outcome units), shape (g,).
    delta : sequence of float
        Prevalence differences of U between arms, in [-1, 1], shape (d,).

    Returns
    -------
    dict
        ``gamma`` (g,), ``delta`` (d,), ``adjusted``, ``lower``, ``upper`` (g, d) arrays.

    Examples
    --------
    >>> curve = bias_curve(3.4, (2.4, 4.5), [0.0, 5.0], [0.0, 0.5])
    >>> curve["adjusted"].tolist()
    [[3.4, 3.4], [3.4, 0.8999999999999999]]
    """
    g = np.asarray(gamma, dtype=float)
    d = np.asarray(delta, dtype=float)
    if g.ndim != 1 or d.ndim != 1 or not g.size or not d.size:
        raise DataError("gamma and delta must be non-empty one-dimensional grids")
    if np.any(np.abs(d) > 1):
        raise DataError("delta is a difference of prevalences and must lie in [-1, 1]")
    lo, hi = (float(c) for c in ci)
    if not lo <= estimate <= hi:
        raise DataError(f"CI ({lo}, {hi}) does not contain the estimate {estimate}")
    bias = g[:, None] * d[None, :]
    return {"gamma": g, "delta": d, "adjusted": estimate - bias, "lower": lo - bias, "upper": hi - bias}


def plot_bias_curve(curve: dict, *, ax=None, unit: str = ""):
    """Contours of the bias-corrected estimate over (δ, γ); the thick line is where it reaches 0, the
    dashed one where the CI starts to include 0.  Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    dd, gg = np.meshgrid(curve["delta"], curve["gamma"])
    filled = ax.contourf(dd, gg, curve["adjusted"], levels=12, cmap="RdBu_r")
    ax.figure.colorbar(filled, ax=ax, label=f"bias-corrected effect {unit}".strip())
    if curve["adjusted"].min() < 0 < curve["adjusted"].max():
        ax.contour(dd, gg, curve["adjusted"], levels=[0.0], colors="k", linewidths=2)
    if curve["lower"].min() < 0 < curve["lower"].max():
        ax.contour(dd, gg, curve["lower"], levels=[0.0], colors="k", linestyles="--")
    ax.set_xlabel("δ = P(U=1 | treated) − P(U=1 | control)")
    ax.set_ylabel(f"γ = effect of U on the outcome {unit}".strip())
    return ax
