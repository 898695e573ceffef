"""Residual error models and the log-likelihood of observations.

An observation ``y`` of a model prediction ``f`` is normal with variance

==============  ======================================  =========================
model           variance ``Var(y | f)``                 NONMEM ``$ERROR``
==============  ======================================  =========================
additive        a²                                      ``Y = F + EPS(1)``
proportional    b²·f²                                   ``Y = F + F*EPS(1)``
combined        a² + b²·f²                              ``Y = F + F*EPS(1) + EPS(2)``
==============  ======================================  =========================

with ``a`` the additive standard deviation (in the output's unit, e.g. mg/L)
and ``b`` the proportional standard deviation (a fraction: 0.2 is 20 %).  NONMEM
reports σ², the variances of the EPS: σ²_add = a², σ²_prop = b².

Observations below the lower limit of quantification (BLQ) are handled by
Beal's M3 method: a BLQ record contributes P(y < LLOQ | f) = Φ((LLOQ − f)/√Var)
to the likelihood instead of a density.

Every function is pure and uses arithmetic plus ``log`` and the normal
log-CDF only, so it runs on numpy arrays and on JAX arrays (the array module
is taken from the inputs).

Objective-function convention.  :func:`minus2ll` returns −2·log-likelihood.
With ``nonmem_constant=True`` it drops n·log(2π) for the n non-BLQ records, as
NONMEM's objective function value (OFV) does; the M3 terms have no constant.

Examples
--------
>>> import numpy as np
>>> err = ResidualError("proportional", proportional=0.1)
>>> round(float(err.variance(10.0)), 12)
1.0
>>> round(float(loglik(np.array([11.0]), np.array([10.0]), err)[0]), 6)
-1.418939
>>> round(float(minus2ll([11.0], [10.0], err, nonmem_constant=True)), 6)
1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medtwin.errors import ParameterError

__all__ = ["ERROR_MODELS", "ResidualError", "residual_variance", "normal_loglik", "m3_loglik", "loglik",
           "minus2ll"]

#: The residual error models.
ERROR_MODELS = ("additive", "proportional", "combined")

LOG_2PI = math.log(2.0 * math.pi)


def _xp(*arrays):
    """numpy, or jax.numpy when any input is a JAX array (no import of JAX otherwise)."""
    for a in arrays:
        if type(a).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


def _log_ndtr(z):
    """log Φ(z), accurate in the far tails (scipy's or JAX's ``log_ndtr``)."""
    if _xp(z) is np:
        from scipy.special import log_ndtr

        return log_ndtr(z)
    from jax.scipy.special import log_ndtr

    return log_ndtr(z)


@dataclass(frozen=True)
class ResidualError:
    """A residual error model (see the module table).

    Parameters
    ----------
    model : {"additive", "proportional", "combined"}
        The form of the variance.
    additive : float
        Additive standard deviation ``a`` in ``unit`` (used by additive and combined).
    proportional : float
        Proportional standard deviation ``b`` (a fraction; used by proportional and combined).
    output : str
        The model output observed (e.g. ``"C"``).
    unit : str
        Unit of the output and of ``additive`` (e.g. ``"mg/L"``).

    Examples
    --------
    >>> {k: round(v, 6) for k, v in ResidualError("combined", additive=3.4, proportional=0.227).sigma2.items()}
    {'additive': 11.56, 'proportional': 0.051529}
    >>> ResidualError("additive", additive=-1.0)
    Traceback (most recent call last):
    ...
    medtwin.errors.ParameterError: residual error: additive SD must be finite and >= 0, got -1.0
    """

    model: str
    additive: float = 0.0
    proportional: float = 0.0
    output: str = "C"
    unit: str = "mg/L"

    def __post_init__(self):
        if self.model not in ERROR_MODELS:
            raise ParameterError(f"residual error: model must be one of {ERROR_MODELS}, got {self.model!r}")
        for name in ("additive", "proportional"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ParameterError(f"residual error: {name} SD must be finite and >= 0, got {value!r}")
        needs = {"additive": ("additive",), "proportional": ("proportional",),
                 "combined": ("additive", "proportional")}[self.model]
        for name in needs:
            if getattr(self, name) <= 0:
                raise ParameterError(f"residual error: a {self.model} model needs {name} SD > 0")
        unused = {"additive": "proportional", "proportional": "additive"}.get(self.model)
        if unused and getattr(self, unused) != 0:
            raise ParameterError(f"residual error: a {self.model} model has no {unused} SD (got {getattr(self, unused)})")

    @property
    def sigma2(self) -> dict:
        """NONMEM's σ² of each estimated component (variances: (unit)² and fraction²)."""
        names = {"additive": ("additive",), "proportional": ("proportional",),
                 "combined": ("additive", "proportional")}[self.model]
        return {name: float(getattr(self, name)) ** 2 for name in names}

    def variance(self, f):
        """Var(y | f) for predictions ``f`` (same shape; (unit)²)."""
        return residual_variance(f, self.additive**2, self.proportional**2)


def residual_variance(f, additive_var, proportional_var):
    """a² + b²·f²: the variance of an observation with prediction ``f`` ((unit)²).

    Examples
    --------
    >>> float(residual_variance(2.0, 1.0, 0.25))
    2.0
    """
    return additive_var + proportional_var * f * f


def normal_loglik(y, f, var):
    """log N(y; f, var), elementwise.

    Examples
    --------
    >>> round(float(normal_loglik(0.0, 0.0, 1.0)), 6)
    -0.918939
    """
    xp = _xp(y, f, var)
    r = y - f
    return -0.5 * (LOG_2PI + xp.log(var) + r * r / var)


def m3_loglik(lloq, f, var):
    """Beal's M3 term log P(y < LLOQ) = log Φ((LLOQ − f)/√var), elementwise.

    Examples
    --------
    >>> round(float(m3_loglik(1.0, 1.0, 4.0)), 6)
    -0.693147
    """
    xp = _xp(lloq, f, var)
    return _log_ndtr((lloq - f) / xp.sqrt(var))


def loglik(y, f, error: ResidualError, *, blq=None, lloq=None):
    """Per-observation log-likelihood under ``error``; M3 for records flagged ``blq``.

    Parameters
    ----------
    y : array
        Observed values (output unit); ignored where ``blq`` is True.
    f : array
        Predictions (output unit), same shape.
    error : ResidualError
        The residual error model.
    blq : bool array, optional
        True where the observation is below the limit of quantification.
    lloq : array or float, optional
        The limit of quantification (output unit); needed when any ``blq``.

    Returns
    -------
    array
        log p(y | f) per record (natural log).
    """
    xp = _xp(y, f)
    y = xp.asarray(y, dtype=float)
    f = xp.asarray(f, dtype=float)
    var = error.variance(f)
    normal = normal_loglik(y, f, var)
    if blq is None:
        return normal
    if lloq is None:
        raise ParameterError("M3: observations flagged BLQ need an LLOQ")
    blq = xp.asarray(blq, dtype=bool)
    censored = m3_loglik(xp.asarray(lloq, dtype=float), f, var)
    return xp.where(blq, censored, normal)


def minus2ll(y, f, error: ResidualError, *, blq=None, lloq=None, nonmem_constant: bool = False):
    """−2 log-likelihood summed over records; ``nonmem_constant`` drops n·log(2π) (non-BLQ n).

    Examples
    --------
    >>> import numpy as np
    >>> err = ResidualError("additive", additive=1.0)
    >>> round(float(minus2ll(np.array([0.5, 0.0]), np.zeros(2), err, blq=[False, True], lloq=1.0)), 6)
    2.433385
    """
    xp = _xp(y, f)
    total = -2.0 * xp.sum(loglik(y, f, error, blq=blq, lloq=lloq))
    if nonmem_constant:
        n_normal = np.size(y) if blq is None else int(np.size(y) - np.count_nonzero(np.asarray(blq)))
        total = total - n_normal * LOG_2PI
    return total
