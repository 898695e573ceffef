"""Exposure → toxicity: vancomycin-associated acute kidney injury (AKI) risk as a function of AUC24.

P(AKI within 7 days | AUC24) is a logistic curve in log exposure,

    logit P = logit p_ref + slope · ln(AUC24 / auc_ref),     AUC24 in mg·h/L,

so that the risk ratio between two exposures follows the published exposure–toxicity relationships:

* Zasowski EJ, Murray KP, Trinh TD, et al. Identification of vancomycin exposure-toxicity thresholds in
  hospitalized patients receiving intravenous vancomycin. Antimicrob Agents Chemother 2018;62:e01684-17,
  doi:10.1128/AAC.01684-17 — 323 adults; CART thresholds AUC0–24 ≥ 677 mg·h/L (AUC24–48 ≥ 683,
  Cmin day 1 ≥ 18.8 mg/L); exposure above them carried a 3- to 4-fold nephrotoxicity risk (Poisson
  regression); predictive performance maximal for daily AUC between 600 and 800 mg·h/L.
* Lodise TP, Rosenkranz SL, Finnemeyer M, et al. The Emperor's New Clothes: PROVIDE. Clin Infect Dis
  2020;70:1536–45, doi:10.1093/cid/ciz460 — prospective MRSA bacteraemia cohort; AKI more frequent above
  day-1 AUC ≥ 515 and day-2 AUC ≥ 650 mg·h/L (CART), no efficacy gain above AUC 400–600.
* Neely MN, Kato L, Youn G, et al. Prospective trial on the use of trough concentration versus area under
  the curve to determine therapeutic vancomycin dosing. Antimicrob Agents Chemother 2018;62:e02042-17,
  doi:10.1128/AAC.02042-17 — AUC-guided (Bayesian) dosing lowered nephrotoxicity versus trough-guided.
* Aljefri DM, Avedissian SN, Rhodes NJ, et al. Vancomycin area under the curve and acute kidney injury:
  a meta-analysis. Clin Infect Dis 2019;69:1881–7, doi:10.1093/cid/ciz051 — AUC-guided monitoring was
  associated with less AKI than trough-guided (OR ≈ 0.68).

Calibration of the default curve (:meth:`AKIExposureModel.vancomycin`): the slope is set so that the risk
at AUC24 = 800 is 3.5 times that at AUC24 = 500 (exposures typical of either side of Zasowski's 677 mg·h/L
threshold; 3.5 is the middle of the published 3- to 4-fold), and the reference risk p_ref = 0.07 at
AUC24 = 500 mg·h/L is a modelling assumption of the order of AKI incidence under AUC-guided dosing in the
cohorts above, NOT a single published figure (change it with ``AKIExposureModel(...)`` for a local cohort).

Examples
--------
>>> m = AKIExposureModel.vancomycin()
>>> round(float(m.probability(500.0)), 3), round(float(m.probability(800.0) / m.probability(500.0)), 2)
(0.07, 3.5)
>>> bool(aki_probability([300.0, 500.0, 900.0]).tolist() == sorted(aki_probability([300.0, 500.0, 900.0]).tolist()))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from medtwin.errors import DataError

__all__ = ["AKIExposureModel", "aki_probability", "expected_aki_probability", "simulate_aki", "calibrate"]


def _logit(p):
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class AKIExposureModel:
    """Logistic exposure–AKI curve: logit P = logit(p_ref) + slope·ln(AUC24/auc_ref).

    Parameters
    ----------
    p_ref : float
        P(AKI within ``horizon_days``) at ``auc_ref`` (0 < p_ref < 1).
    auc_ref : float
        Reference AUC24 (mg·h/L).
    slope : float
        Log-odds per unit ln(AUC24) (> 0: risk rises with exposure).
    horizon_days : float
        The risk horizon (days); 7 for the default curve.
    """

    p_ref: float
    auc_ref: float
    slope: float
    horizon_days: float = 7.0

    def __post_init__(self):
        if not 0 < self.p_ref < 1:
            raise DataError(f"AKIExposureModel: p_ref must be in (0, 1), got {self.p_ref}")
        if not self.auc_ref > 0 or not np.isfinite(self.slope) or not self.horizon_days > 0:
            raise DataError("AKIExposureModel: auc_ref and horizon_days must be > 0 and slope finite")

    @staticmethod
    def vancomycin(p_ref: float = 0.07, risk_ratio: float = 3.5, low_auc: float = 500.0,
                   high_auc: float = 800.0) -> AKIExposureModel:
        """The default curve: P(low_auc) = p_ref and P(high_auc)/P(low_auc) = risk_ratio (see module notes).

        >>> round(AKIExposureModel.vancomycin().slope, 3)
        3.109
        """
        if not 0 < p_ref * risk_ratio < 1 or risk_ratio <= 0 or not high_auc > low_auc > 0:
            raise DataError("AKIExposureModel.vancomycin: need 0 < p_ref·risk_ratio < 1 and high_auc > low_auc > 0")
        slope = (_logit(p_ref * risk_ratio) - _logit(p_ref)) / np.log(high_auc / low_auc)
        return AKIExposureModel(p_ref, low_auc, float(slope))

    def probability(self, auc24) -> np.ndarray:
        """P(AKI within the horizon) per AUC24 value (same shape); a non-finite AUC counts as certain AKI."""
        auc = np.asarray(auc24, dtype=float)
        out = np.ones_like(auc)
        ok = np.isfinite(auc)
        if np.any(auc[ok] < 0):
            raise DataError("AKIExposureModel.probability: AUC24 must be >= 0")
        with np.errstate(divide="ignore"):
            z = _logit(self.p_ref) + self.slope * (np.log(auc[ok]) - np.log(self.auc_ref))
        out[ok] = 1.0 / (1.0 + np.exp(-z))
        return out

    def auc_for_probability(self, p: float) -> float:
        """The AUC24 (mg·h/L) at which P(AKI) = p (the inverse curve)."""
        if not 0 < p < 1:
            raise DataError(f"auc_for_probability: p must be in (0, 1), got {p}")
        return float(self.auc_ref * np.exp((_logit(p) - _logit(self.p_ref)) / self.slope))


_DEFAULT = AKIExposureModel.vancomycin()


def aki_probability(auc24_draws, model: AKIExposureModel | None = None) -> np.ndarray:
    """P(AKI within 7 days | AUC24) for each draw (n,) — the per-draw risk a dose recommender averages.

    Parameters
    ----------
    auc24_draws : array_like, shape (n,)
        AUC24 (mg·h/L), e.g. posterior predictive draws for one candidate regimen.
    model : AKIExposureModel, optional
        Default :meth:`AKIExposureModel.vancomycin`.
    """
    return (model or _DEFAULT).probability(auc24_draws)


def expected_aki_probability(auc24_draws, model: AKIExposureModel | None = None) -> float:
    """P(AKI within 7 days) marginal over exposure uncertainty: the mean of :func:`aki_probability`.

    >>> round(expected_aki_probability([500.0, 500.0]), 3)
    0.07
    """
    p = aki_probability(auc24_draws, model)
    if p.size == 0:
        raise DataError("expected_aki_probability: no draws")
    return float(np.mean(p))


def simulate_aki(auc24, *, seed: int = 0, model: AKIExposureModel | None = None) -> np.ndarray:
    """Simulated AKI events (bool, shape of ``auc24``) for virtual patients: a trial endpoint.

    >>> simulate_aki([400.0, 1500.0], seed=1).dtype
    dtype('bool')
    """
    p = aki_probability(auc24, model)
    return np.random.default_rng(seed).random(p.shape) < p


def calibrate(auc_low: float, auc_high: float, p_low: float, p_high: float) -> AKIExposureModel:
    """The curve through two (AUC24, P) points (e.g. a local cohort's AKI rates at two exposures)."""
    if not (0 < p_low < 1 and 0 < p_high < 1 and auc_high > auc_low > 0):
        raise DataError("calibrate: need 0 < p < 1 and auc_high > auc_low > 0")
    slope = (_logit(p_high) - _logit(p_low)) / np.log(auc_high / auc_low)
    return AKIExposureModel(p_low, auc_low, float(slope))
