"""Covariate hooks used by covariate models: allometry, renal function, power effects.

All functions are vectorised over numpy arrays.

Examples
--------
>>> round(float(cockcroft_gault(age=60, weight=70, serum_creatinine=1.0, female=False)), 2)
77.78
>>> float(allometric(140.0, exponent=0.75))
1.681792830507429
"""

from __future__ import annotations

import numpy as np

from medtwin.errors import DataError


def _positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise DataError(f"covariate {name} must be finite and > 0, got {value!r}")
    return arr


def allometric(weight, reference: float = 70.0, exponent: float = 0.75) -> np.ndarray:
    """Allometric factor (weight/reference)^exponent; weight in kg (0.75 clearances, 1 volumes)."""
    return (_positive("weight", weight) / reference) ** exponent


def power_effect(value, reference: float, exponent: float, name: str = "covariate") -> np.ndarray:
    """Power covariate effect (value/reference)^exponent, e.g. (CRCL/120)^0.8."""
    return (_positive(name, value) / reference) ** exponent


def cockcroft_gault(age, weight, serum_creatinine, female) -> np.ndarray:
    """Creatinine clearance (mL/min) by Cockcroft & Gault (Nephron 1976;16:31-41).

    CrCl = (140 − age[y]) · weight[kg] / (72 · SCr[mg/dL]) · (0.85 if female).
    """
    age = np.asarray(age, dtype=float)
    if np.any(age < 0) or np.any(age >= 140):
        raise DataError(f"age must be in [0, 140) years, got {age!r}")
    crcl = (140.0 - age) * _positive("weight", weight) / (72.0 * _positive("serum_creatinine", serum_creatinine))
    return crcl * np.where(np.asarray(female, dtype=bool), 0.85, 1.0)
