"""One covariance inflation: how a twin re-opens its parameters (regime alarms, continual adaptation).

Both the live twin (:meth:`medtwin.twin.Twin.assimilate` on a regime alarm,
:func:`medtwin.twin.inflate_parameters`) and continual adaptation
(:func:`medtwin.twin.adaptation.adapt`, ``Consolidation``) make
parameters plastic again the same way: the variances of chosen coordinates
are multiplied by a factor f with the correlations kept (cov ← D cov D,
D = diag(√(target/var)) on those coordinates, 1 elsewhere), bounded above by
a cap so repeated alarms never make the twin less certain than the
population:

- ``cap`` a vector (one variance per inflated coordinate, e.g. the prior's):
  each variance becomes min(f·var, max(var, cap));
- ``cap`` a matrix Ω (the population covariance of the coordinates): the
  result is bounded by Ω in the Loewner order (:func:`cap_covariance`).

Examples
--------
>>> import numpy as np
>>> inflate_covariance(np.diag([1.0, 0.1, 0.1]), 4.0, indices=[1, 2], cap=[0.2, 1.0]).diagonal().round(12).tolist()
[1.0, 0.2, 0.4]
"""

from __future__ import annotations

import numpy as np

from medtwin.errors import DataError

__all__ = ["cap_covariance", "inflate_covariance", "inflation_scale"]


def cap_covariance(covariance, bound) -> np.ndarray:
    """The covariance with every generalized eigenvalue against ``bound`` clipped at 1 (Σ ≼ Ω, Loewner).

    Examples
    --------
    >>> cap_covariance(np.diag([4.0, 0.5]), np.eye(2)).diagonal().tolist()
    [1.0, 0.5]
    """
    sigma, omega = np.asarray(covariance, dtype=float), np.asarray(bound, dtype=float)
    root = np.linalg.cholesky(omega)
    inv = np.linalg.inv(root)
    w, v = np.linalg.eigh(inv @ sigma @ inv.T)
    capped = root @ (v * np.minimum(w, 1.0)) @ v.T @ root.T
    return 0.5 * (capped + capped.T)


def inflation_scale(variances, factor: float, indices=None, cap=None) -> np.ndarray:
    """Per-coordinate standard-deviation scale (n,) of the inflation (1 outside ``indices``).

    ``cap`` a vector (len(indices),) bounds each inflated variance by max(var, cap); a matrix cap is applied
    afterwards by :func:`inflate_covariance`, not here.
    """
    if not (np.isfinite(factor) and factor >= 1.0):
        raise DataError(f"inflation factor must be a finite number >= 1, got {factor!r}")
    var_all = np.asarray(variances, dtype=float)
    idx = np.arange(var_all.size) if indices is None else np.asarray(indices, dtype=int)
    scale = np.ones(var_all.size)
    if cap is not None and np.ndim(cap) == 1:
        var = np.clip(var_all[idx], 1e-300, None)
        target = np.minimum(factor * var, np.maximum(var, np.asarray(cap, dtype=float)))
        scale[idx] = np.sqrt(target / var)
    else:
        scale[idx] = np.sqrt(factor)
    return scale


def inflate_covariance(covariance, factor: float, *, indices=None, cap=None) -> np.ndarray:
    """``covariance`` with the variances of ``indices`` (default: all) multiplied by ``factor``, capped.

    Parameters
    ----------
    covariance : array_like, shape (n, n)
    factor : float
        f >= 1.
    indices : sequence of int, optional
        Coordinates to inflate.
    cap : array_like, optional
        Shape (len(indices),): per-variance bound max(var, cap); shape (n, n): Loewner bound.

    Returns
    -------
    ndarray, shape (n, n)
    """
    cov = np.asarray(covariance, dtype=float)
    scale = inflation_scale(np.diag(np.atleast_2d(cov)), factor, indices, cap)
    out = cov * np.outer(scale, scale)
    if cap is not None and np.ndim(cap) == 2:
        out = cap_covariance(out, cap)
    return out
