"""Virtual cohorts: correlated baseline covariates from a Gaussian copula, inclusion criteria, θ draws.

A :class:`CohortSpec` describes adult patients by six sampled covariates —
``AGE`` (y), ``SEX`` (1 female, 0 male), ``HT`` (cm), ``WT`` (kg), ``SCR``
(serum creatinine, mg/dL), ``PRS`` (a polygenic risk score in SD units) — and
three derived ones — ``BMI`` (kg/m²), ``CRCL`` (Cockcroft–Gault, mL/min, actual
body weight) and ``EGFR`` (CKD-EPI 2021 race-free, mL/min/1.73 m²).

**Joint distribution.**  Sex is Bernoulli(``female``).  Given sex, the five
continuous covariates are a Gaussian copula: latent z ~ N(0, R) with the
correlation matrix R of :data:`DEFAULT_CORRELATION`, each z_k mapped through
Φ to a uniform and then through the sex-specific inverse CDF of its marginal
(normal, or log-normal, optionally truncated to ``[low, high]``).  The
correlations are those of the normal scores (for a log-normal marginal:
the Pearson correlation of the logarithms).  The defaults, with sources
(the values are rounded, "published-like"; the ones marked *assumption* are
ours):

========  ======================================  ==========================================================
name      marginal (male / female)                source
========  ======================================  ==========================================================
AGE       normal 58 ± 17 y, truncated 18–100      hospitalised adults given vancomycin (mean age 55–62 y in
                                                  e.g. Goti 2018, Ther Drug Monit 40:212; Thomson 2009,
                                                  J Antimicrob Chemother 63:1050) — rounded, assumption
SEX       P(female) = 0.42                        same cohorts (≈ 40 % women)
HT        normal 175.4 ± 7.6 / 161.5 ± 7.1 cm     NHANES 2015–2018 adults (Fryar CD et al. Anthropometric
                                                  reference data, NCHS Vital Health Stat 3(46), 2021)
WT        log-normal median 86 / 72 kg,           NHANES 2015–2018 (means 90.6 / 77.5 kg; log-SD chosen so the
          log-SD 0.21 / 0.25                      mean and 5th–95th percentiles match to a few kg)
SCR       log-normal median 0.95 / 0.75 mg/dL,    medians of adults (Jones CA et al. Am J Kidney Dis
          log-SD 0.40                             1998;32:992, NHANES III); the log-SD is widened for
                                                  hospitalised patients — assumption
PRS       normal 0 ± 1 (standardised)             by construction
========  ======================================  ==========================================================

Correlations of the normal scores (within sex): WT–HT 0.45 (NHANES, within-
sex r ≈ 0.4–0.5), AGE–HT −0.15 (secular trend and ageing), AGE–WT 0.05,
AGE–SCR 0.20 (creatinine rises with age in hospitalised adults: assumption),
WT–SCR 0.10 and HT–SCR 0.10 (muscle mass: assumption), PRS–SCR 0.25 (an eGFR
polygenic score explains ≈ 5–8 % of eGFR variance, Wuttke M et al. Nat Genet
2019;51:957, so |r| ≈ 0.25 — the score is oriented towards *lower* kidney
function), PRS with the others 0.

**Inclusion criteria** (e.g. ``{"CRCL": (20, 150), "AGE": (18, 90)}``, closed
intervals on any sampled or derived covariate) are applied by rejection: a
patient whose draw fails is drawn again, from a fresh stream, until accepted
(at most ``max_rounds`` times; then the patient's status is ``"ineligible"``).
The acceptance rate (accepted / candidates drawn) is reported.

**Seeds.**  Every random number of patient *i* is a fixed slot of a
counter-based stream (Philox) keyed by (trial seed, purpose, round): patient
*i* reads the slots ``[i·K, (i+1)·K)``, so its covariates and θ depend only on
(seed, i), never on how the patients are chunked.  Uniforms become normals by
the inverse CDF (a fixed number of draws per patient, unlike ziggurat).

Examples
--------
>>> spec = CohortSpec(inclusion={"CRCL": (20.0, 150.0), "AGE": (18.0, 90.0)})
>>> cohort = sample_cohort(spec, 0, 5, seed=7)
>>> sorted(cohort.covariates)[:4], cohort.covariates["AGE"].shape
(['AGE', 'BMI', 'CRCL', 'EGFR'], (5,))
>>> bool(np.all((cohort.covariates["CRCL"] >= 20) & (cohort.covariates["CRCL"] <= 150)))
True
>>> np.array_equal(sample_cohort(spec, 3, 5, seed=7).covariates["WT"], cohort.covariates["WT"][3:])
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from scipy.special import ndtr, ndtri

from medtwin.core.covariates import cockcroft_gault
from medtwin.errors import DataError

__all__ = ["Marginal", "CohortSpec", "Cohort", "DEFAULT_MARGINALS", "DEFAULT_CORRELATION", "CONTINUOUS",
           "SAMPLED", "DERIVED", "ckd_epi_2021", "sample_cohort", "draw_theta", "uniforms", "normals"]

#: The continuous covariates of the copula, in the order of the correlation matrix.
CONTINUOUS = ("AGE", "WT", "HT", "SCR", "PRS")
#: Every sampled covariate.
SAMPLED = CONTINUOUS + ("SEX",)
#: Covariates computed from the sampled ones.
DERIVED = ("BMI", "CRCL", "EGFR")
_UNITS = {"AGE": "y", "WT": "kg", "HT": "cm", "SCR": "mg/dL", "PRS": "SD", "SEX": "1 = female",
          "BMI": "kg/m^2", "CRCL": "mL/min", "EGFR": "mL/min/1.73 m^2"}
#: Uniform slots per patient and round of the covariate stream (5 copula + sex, padded to Philox's 4-blocks).
_COVARIATE_SLOTS = 8
_TINY = 2.0 ** -54


@dataclass(frozen=True)
class Marginal:
    """A marginal distribution, possibly sex-specific: ``loc``/``scale`` as (male, female).

    ``dist`` "normal": mean ``loc``, SD ``scale``; "lognormal": median ``loc``, log-SD ``scale``.  ``low`` and
    ``high`` truncate (the copula's uniform is mapped into the CDF's [F(low), F(high)], so no rejection).

    Examples
    --------
    >>> m = Marginal("normal", (175.4, 161.5), (7.6, 7.1))
    >>> [round(float(v), 1) for v in m.ppf(np.array([0.5, 0.5]), np.array([0, 1]))]
    [175.4, 161.5]
    """

    dist: str
    loc: tuple
    scale: tuple
    low: float = -np.inf
    high: float = np.inf

    def __post_init__(self):
        if self.dist not in ("normal", "lognormal"):
            raise DataError(f"marginal dist must be 'normal' or 'lognormal', got {self.dist!r}")
        loc = tuple(float(v) for v in np.broadcast_to(np.asarray(self.loc, float), (2,)))
        scale = tuple(float(v) for v in np.broadcast_to(np.asarray(self.scale, float), (2,)))
        if not all(np.isfinite(loc + scale)) or min(scale) <= 0 or (self.dist == "lognormal" and min(loc) <= 0):
            raise DataError(f"marginal {self.dist}: loc {loc} and scale {scale} must be finite, scale > 0 "
                            "(and loc > 0 for a log-normal median)")
        if not self.low < self.high:
            raise DataError(f"marginal truncation needs low < high, got [{self.low}, {self.high}]")
        object.__setattr__(self, "loc", loc)
        object.__setattr__(self, "scale", scale)

    def _standard(self, x, female):
        loc, scale = np.where(female, self.loc[1], self.loc[0]), np.where(female, self.scale[1], self.scale[0])
        if self.dist == "lognormal":
            with np.errstate(divide="ignore"):
                return (np.log(np.maximum(x, 0.0)) - np.log(loc)) / scale
        return (x - loc) / scale

    def ppf(self, u, female) -> np.ndarray:
        """Inverse CDF at uniforms ``u`` (shape (n,)) for patients of sex ``female`` (0/1, shape (n,))."""
        female = np.asarray(female, bool)
        lo, hi = ndtr(self._standard(self.low, female)), ndtr(self._standard(self.high, female))
        z = ndtri(np.clip(lo + np.asarray(u, float) * (hi - lo), _TINY, 1.0 - _TINY))
        loc, scale = np.where(female, self.loc[1], self.loc[0]), np.where(female, self.scale[1], self.scale[0])
        out = loc * np.exp(scale * z) if self.dist == "lognormal" else loc + scale * z
        return np.clip(out, self.low, self.high)

    def as_dict(self) -> dict:
        return {"dist": self.dist, "loc": list(self.loc), "scale": list(self.scale),
                "low": None if np.isinf(self.low) else self.low, "high": None if np.isinf(self.high) else self.high}


#: Default marginals of hospitalised adults (sources in the module docstring).
DEFAULT_MARGINALS = {
    "AGE": Marginal("normal", (58.0, 58.0), (17.0, 17.0), 18.0, 100.0),
    "WT": Marginal("lognormal", (86.0, 72.0), (0.21, 0.25), 35.0, 250.0),
    "HT": Marginal("normal", (175.4, 161.5), (7.6, 7.1), 130.0, 215.0),
    "SCR": Marginal("lognormal", (0.95, 0.75), (0.40, 0.40), 0.2, 15.0),
    "PRS": Marginal("normal", (0.0, 0.0), (1.0, 1.0)),
}
#: Default correlations of the copula's normal scores, as pairs (sources in the module docstring).
DEFAULT_CORRELATION = {("AGE", "WT"): 0.05, ("AGE", "HT"): -0.15, ("AGE", "SCR"): 0.20, ("WT", "HT"): 0.45,
                       ("WT", "SCR"): 0.10, ("HT", "SCR"): 0.10, ("SCR", "PRS"): 0.25}


def ckd_epi_2021(serum_creatinine, age, female) -> np.ndarray:
    """eGFR (mL/min/1.73 m²) by the race-free CKD-EPI 2021 creatinine equation (Inker LA et al. N Engl J Med
    2021;385:1737): 142 · min(SCr/κ, 1)^α · max(SCr/κ, 1)^−1.200 · 0.9938^age · (1.012 if female), with κ = 0.7
    (F) / 0.9 (M) and α = −0.241 (F) / −0.302 (M); SCr in mg/dL, age in years.

    Examples
    --------
    >>> round(float(ckd_epi_2021(1.0, 50, False)))  # the NKF calculator gives 92
    92
    """
    scr, age, female = np.asarray(serum_creatinine, float), np.asarray(age, float), np.asarray(female, bool)
    if np.any(~np.isfinite(scr)) or np.any(scr <= 0):
        raise DataError("CKD-EPI: serum creatinine must be finite and > 0 mg/dL")
    kappa, alpha = np.where(female, 0.7, 0.9), np.where(female, -0.241, -0.302)
    ratio = scr / kappa
    return (142.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.200 * 0.9938 ** age
            * np.where(female, 1.012, 1.0))


def _stream_key(seed: int, purpose: str, round_: int = 0) -> np.ndarray:
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.SeedSequence([int(seed), tag, int(round_)]).generate_state(2, np.uint64)


def uniforms(seed: int, purpose: str, start: int, stop: int, slots: int, round_: int = 0) -> np.ndarray:
    """Uniforms in (0, 1), shape (stop − start, slots): patient i's row depends only on (seed, purpose, round, i).

    ``slots`` is rounded up to a multiple of 4 (Philox yields 4 words per counter step); the extra are dropped.

    Examples
    --------
    >>> np.array_equal(uniforms(1, "x", 0, 6, 3)[2:], uniforms(1, "x", 2, 6, 3))
    True
    """
    if not 0 <= start <= stop:
        raise DataError(f"patient range [{start}, {stop}) is invalid")
    width = -(-int(slots) // 4) * 4
    bits = np.random.Philox(key=_stream_key(seed, purpose, round_))
    bits.advance(int(start) * width // 4)
    u = np.random.Generator(bits).random((stop - start, width))[:, :slots]
    return np.clip(u, _TINY, 1.0 - _TINY)


def normals(seed: int, purpose: str, start: int, stop: int, slots: int) -> np.ndarray:
    """Standard normals by inverse CDF of :func:`uniforms` (same per-patient independence of chunking)."""
    return ndtri(uniforms(seed, purpose, start, stop, slots))


@dataclass(frozen=True)
class CohortSpec:
    """Marginals, copula correlations, P(female), inclusion criteria and fixed covariates of a virtual cohort.

    Parameters
    ----------
    marginals : mapping name -> Marginal
        Overrides of :data:`DEFAULT_MARGINALS` (names of :data:`CONTINUOUS`).
    correlation : mapping (name, name) -> float
        Overrides of :data:`DEFAULT_CORRELATION` (the matrix must stay positive definite).
    female : float
        P(SEX = 1).
    inclusion : mapping name -> (low, high)
        Closed ranges on sampled or derived covariates (units of the module table).
    fixed : mapping name -> float
        Constant covariates every patient gets (e.g. ``{"DIAL": 0}``).
    max_rounds : int
        Redraws before a patient is declared ineligible.
    """

    marginals: Mapping = field(default_factory=dict)
    correlation: Mapping = field(default_factory=dict)
    female: float = 0.42
    inclusion: Mapping = field(default_factory=dict)
    fixed: Mapping = field(default_factory=dict)
    max_rounds: int = 200

    def __post_init__(self):
        unknown = sorted(set(self.marginals) - set(CONTINUOUS))
        if unknown:
            raise DataError(f"cohort marginals: unknown covariates {unknown}; known {list(CONTINUOUS)}")
        object.__setattr__(self, "marginals", {**DEFAULT_MARGINALS, **dict(self.marginals)})
        pairs = {**DEFAULT_CORRELATION}
        for pair, r in dict(self.correlation).items():
            a, b = pair if not isinstance(pair, str) else [s.strip() for s in pair.split(",")]
            if a not in CONTINUOUS or b not in CONTINUOUS or a == b:
                raise DataError(f"cohort correlation {pair!r}: give two different names of {list(CONTINUOUS)}")
            pairs.pop((b, a), None)
            pairs[(a, b)] = float(r)
        object.__setattr__(self, "correlation", pairs)
        matrix = self.matrix()
        if np.any(np.abs(matrix) > 1) or np.linalg.eigvalsh(matrix).min() <= 1e-10:
            raise DataError("cohort correlation: the matrix is not a positive-definite correlation matrix")
        if not 0.0 <= float(self.female) <= 1.0:
            raise DataError(f"cohort female: a probability in [0, 1], got {self.female}")
        for name, bounds in dict(self.inclusion).items():
            if name not in SAMPLED + DERIVED or len(bounds) != 2 or not float(bounds[0]) <= float(bounds[1]):
                raise DataError(f"cohort inclusion {name}: give a known covariate ({list(SAMPLED + DERIVED)}) "
                                f"and [low, high] with low <= high, got {bounds!r}")
        object.__setattr__(self, "inclusion", {k: (float(a), float(b)) for k, (a, b) in dict(self.inclusion).items()})
        object.__setattr__(self, "fixed", {str(k): float(v) for k, v in dict(self.fixed).items()})
        if int(self.max_rounds) < 1:
            raise DataError("cohort max_rounds must be >= 1")

    def matrix(self) -> np.ndarray:
        """The copula correlation matrix R over :data:`CONTINUOUS`."""
        r = np.eye(len(CONTINUOUS))
        for (a, b), v in self.correlation.items():
            i, j = CONTINUOUS.index(a), CONTINUOUS.index(b)
            r[i, j] = r[j, i] = v
        return r

    @classmethod
    def from_dict(cls, data: Mapping | None) -> "CohortSpec":
        """From YAML data: ``marginals: {WT: {dist, loc, scale, low, high}}``, ``correlation: {"WT,HT": 0.45}``,
        ``female``, ``inclusion: {CRCL: [20, 150]}``, ``fixed: {DIAL: 0}``, ``max_rounds``."""
        data = dict(data or {})
        unknown = sorted(set(data) - {"marginals", "correlation", "female", "inclusion", "fixed", "max_rounds"})
        if unknown:
            raise DataError(f"cohort: unknown fields {unknown}")
        marginals = {}
        for name, m in dict(data.pop("marginals", None) or {}).items():
            m = dict(m)
            low, high = m.pop("low", None), m.pop("high", None)
            marginals[name] = Marginal(low=-np.inf if low is None else float(low),
                                       high=np.inf if high is None else float(high), **m)
        return cls(marginals=marginals, **data)

    def as_dict(self) -> dict:
        return {"marginals": {k: m.as_dict() for k, m in self.marginals.items()},
                "correlation": {f"{a},{b}": r for (a, b), r in self.correlation.items()},
                "female": float(self.female), "inclusion": {k: list(v) for k, v in self.inclusion.items()},
                "fixed": dict(self.fixed), "max_rounds": int(self.max_rounds)}


@dataclass(frozen=True, eq=False)
class Cohort:
    """Patients ``[start, stop)``: covariates (name -> array (n,)), candidates drawn, eligibility."""

    start: int
    stop: int
    covariates: dict
    tries: np.ndarray
    eligible: np.ndarray

    @property
    def acceptance_rate(self) -> float:
        """Accepted patients / candidates drawn."""
        return float(np.sum(self.eligible) / max(1, np.sum(self.tries)))


def _draw_round(spec: CohortSpec, chol, seed: int, start: int, stop: int, round_: int) -> dict:
    u = uniforms(seed, "cohort", start, stop, _COVARIATE_SLOTS, round_)
    female = (u[:, len(CONTINUOUS)] < spec.female).astype(float)
    z = ndtri(u[:, :len(CONTINUOUS)]) @ chol.T
    out = {name: spec.marginals[name].ppf(ndtr(z[:, k]), female) for k, name in enumerate(CONTINUOUS)}
    out["SEX"] = female
    out["BMI"] = out["WT"] / (out["HT"] / 100.0) ** 2
    out["CRCL"] = cockcroft_gault(out["AGE"], out["WT"], out["SCR"], female)
    out["EGFR"] = ckd_epi_2021(out["SCR"], out["AGE"], female)
    return out


def sample_cohort(spec: CohortSpec, start: int, stop: int, *, seed: int) -> Cohort:
    """Covariates of patients ``start .. stop − 1`` (each a function of (seed, index) only).

    Returns
    -------
    Cohort
        ``covariates``: every name of :data:`SAMPLED`, :data:`DERIVED` and ``spec.fixed``, arrays of shape
        (stop − start,); ``tries``: candidates drawn per patient; ``eligible``: False where ``max_rounds``
        candidates all failed the inclusion criteria (those rows hold the last candidate).
    """
    n = int(stop) - int(start)
    chol = np.linalg.cholesky(spec.matrix())
    values: dict = {}
    tries = np.zeros(n, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    for round_ in range(int(spec.max_rounds)):
        drawn = _draw_round(spec, chol, seed, start, stop, round_)
        ok = np.ones(n, dtype=bool)
        for name, (low, high) in spec.inclusion.items():
            ok &= (drawn[name] >= low) & (drawn[name] <= high)
        take = pending & (ok | (round_ == spec.max_rounds - 1))
        if not values:
            values = {k: np.array(v) for k, v in drawn.items()}
        for k, v in drawn.items():
            values[k][take] = v[take]
        tries[pending] += 1
        pending &= ~ok
        if not pending.any():
            break
    for name, value in spec.fixed.items():
        values[name] = np.full(n, value)
    return Cohort(int(start), int(stop), values, tries, ~pending)


def draw_theta(population, covariates: Mapping, *, seed: int, start: int, stop: int) -> dict:
    """Individual parameters of ``population`` for patients ``start .. stop − 1``: TV(covariates)·exp(η), η ~ N(0, Ω).

    η of patient i depends only on (seed, i).  ``covariates``: name -> array (n,) holding every covariate of
    the population model.  Returns parameter -> array (n,) (model units).
    """
    k = len(population.iiv)
    n = int(stop) - int(start)
    eta = np.zeros((n, 0))
    if k:
        chol = np.linalg.cholesky(np.asarray(population.omega, float))
        eta = normals(seed, "eta", start, stop, k) @ chol.T
    needed = {c: np.asarray(covariates[c], float) for c in population.covariates if c in covariates}
    theta = population.individual_parameters(needed, eta if k else None)
    return {p: np.broadcast_to(np.asarray(v, float), (n,)).copy() for p, v in theta.items()}
