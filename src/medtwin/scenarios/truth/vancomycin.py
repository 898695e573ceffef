"""Foreign vancomycin truth models: published population models the twin's priors do not use.

The twin's vancomycin priors are Goti 2018 (shipped) and, through model averaging, Thomson 2009, Buelga
2005, Colin 2019 and Llopis-Salvia 2006.  The virtual patients here come from two other published
one-compartment models of critically ill adults, each written from its paper's final-model table (values
cross-checked against the nlmixr2lib transcriptions ``Roberts_2011_vancomycin.R`` and
``Revilla_2010_vancomycin.R``, which cite the same tables):

**Roberts 2011** -- Roberts JA, Taccone FS, Udy AA, Vincent JL, Jacobs F, Lipman J. Vancomycin dosing in
critically ill patients: robust methods for improved continuous-infusion regimens. Antimicrob Agents
Chemother 2011;55(6):2704-2709. doi:10.1128/AAC.01708-10 (Eq. 3-4, Table 2; 206 septic ICU patients):

    CL (L/h) = 4.58 · CrCl / 100 · exp(η_CL)     CrCl: urinary creatinine clearance, mL/min/1.73 m²
    V  (L)   = 1.53 · TBW · exp(η_V)              TBW: total body weight, kg
    IIV: CV 38.9 % (CL), 37.4 % (V); residual 19.9 % proportional + 2.4 mg/L additive

**Revilla 2010** -- Revilla N, Martín-Suárez A, Paz Pérez M, Martín González F, Fernández de Gatta MM.
Vancomycin dosing assessment in intensive care unit patients based on a population
pharmacokinetic/pharmacodynamic simulation. Br J Clin Pharmacol 2010;70(2):201-212.
doi:10.1111/j.1365-2125.2010.03679.x (Table 4 final model; 191 medical ICU patients):

    CL (mL/min/kg) = 0.67 · CLcr / TBW + AGE^-0.24        CLcr mL/min, AGE years
    V  (L/kg)      = 0.82 · 2.49^(SCr > 1 mg/dL)
    IIV: CV 30.13 % (CL), 22.83 % (V); residual 4.23 mg/L additive

Log-normal IIV as ω² = ln(CV² + 1).  Both papers measured CrCl from urine; here the clinician's (and the
twin's) CrCl is Cockcroft-Gault and the truth uses it too (BSA-normalised for Roberts) -- an assumption.

Covariates (:func:`sample_hospital_adults`) are correlated through Cockcroft-Gault: age, sex, weight,
height, serum creatinine drawn as below, CrCl computed from them.  The age, sex and weight spread follow
the two cohorts (Revilla: age 61.1 ± 16.3 y, 34 % women, 73.0 ± 13.3 kg, SCr 1.4 ± 1.0 mg/dL; Roberts: age
58.1 ± 14.8 y, 38.4 % women, 74.8 ± 15.8 kg); the distributions' shapes, heights, the SCr-age slope and
the clips are assumptions stated in the code.

Examples
--------
>>> patients = truth_model("roberts2011").sample(3, seed=1)
>>> [p.truth for p in patients], all(10.0 <= p.covariates["CRCL"] <= 200.0 for p in patients)
(['roberts2011', 'roberts2011', 'roberts2011'], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from medtwin.core.events import Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.models import get_model

__all__ = ["PopulationTruth", "RevillaICU2010", "RobertsICU2011", "TRUTH_MODELS", "TruePatient",
           "sample_hospital_adults", "truth_model"]

#: Roberts 2011 Table 2 (final covariate model).
ROBERTS = {"CL_per_100": 4.58, "V_per_kg": 1.53, "cv_CL": 0.389, "cv_V": 0.374, "prop": 0.199, "add": 2.4}
#: Revilla 2010 Table 4 (final model).
REVILLA = {"renal_slope": 0.67, "age_exponent": -0.24, "V_per_kg": 0.82, "V_scr_factor": 2.49, "scr_cut": 1.0,
           "cv_CL": 0.3013, "cv_V": 0.2283, "add": 4.23}


def omega2(cv: float) -> float:
    """Log-normal variance of a CV: ln(CV² + 1)."""
    return math.log(cv * cv + 1.0)


def cockcroft_gault(age, weight, scr, female) -> np.ndarray:
    """Cockcroft-Gault creatinine clearance (mL/min): (140 − age) · weight / (72 · SCr) · 0.85 if female."""
    return (140.0 - np.asarray(age)) * np.asarray(weight) / (72.0 * np.asarray(scr)) * np.where(female, 0.85, 1.0)


def dubois_bsa(weight, height) -> np.ndarray:
    """Body surface area (m²), Du Bois & Du Bois 1916: 0.007184 · W^0.425 · H^0.725 (kg, cm)."""
    return 0.007184 * np.asarray(weight) ** 0.425 * np.asarray(height) ** 0.725


def sample_hospital_adults(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Correlated covariates of ``n`` hospitalised adults on vancomycin (each value an array of shape (n,)).

    AGE ~ N(60, 16²) y clipped to [18, 90]; SEX female with p = 0.36; weight log-normal, median 78 kg (men) or
    66 kg (women), σ_log 0.2, clipped to [40, 160] kg; height N(176, 7²) / N(163, 7²) cm; SCr log-normal,
    median 1.0 (men) or 0.8 (women) mg/dL rising 0.8 %/y of age above 60, σ_log 0.45, clipped to [0.4, 6];
    CRCL = Cockcroft-Gault (mL/min) clipped to [10, 200]; CRCL_BSA = CRCL · 1.73 / BSA (Du Bois).  The cohort
    means follow Revilla 2010 and Roberts 2011 (module docstring); shapes and clips are assumptions.
    """
    if int(n) < 1:
        raise DataError(f"need at least one patient, got {n!r}")
    rng = np.random.default_rng([int(seed), 1416])
    n = int(n)
    age = np.clip(rng.normal(60.0, 16.0, n), 18.0, 90.0)
    female = rng.random(n) < 0.36
    weight = np.clip(np.where(female, 66.0, 78.0) * np.exp(0.2 * rng.standard_normal(n)), 40.0, 160.0)
    height = np.where(female, 163.0, 176.0) + 7.0 * rng.standard_normal(n)
    scr = np.clip(np.where(female, 0.8, 1.0) * np.exp(0.008 * (age - 60.0) + 0.45 * rng.standard_normal(n)),
                  0.4, 6.0)
    crcl = np.clip(cockcroft_gault(age, weight, scr, female), 10.0, 200.0)
    bsa = dubois_bsa(weight, height)
    return {"AGE": age, "SEX": female.astype(float), "WT": weight, "HT": height, "SCR": scr, "CRCL": crcl,
            "BSA": bsa, "CRCL_BSA": crcl * 1.73 / bsa, "DIAL": np.zeros(n)}


@dataclass(frozen=True, eq=False)
class TruePatient:
    """One hidden virtual patient: covariates the clinician sees, true parameters of a library model."""

    id: int
    truth: str
    covariates: Mapping[str, float]
    model_name: str
    params: Mapping[str, float]
    citation: str = ""
    extra: Mapping[str, float] = field(default_factory=dict)

    def outputs(self, regimen: Regimen, times) -> dict[str, np.ndarray]:
        """Noise-free outputs (name -> (T,)) at ``times`` h under ``regimen``."""
        model = get_model(self.model_name)
        tr = simulate(model, dict(self.params), regimen, np.asarray(times, float), keep_states=False)
        return {name: np.asarray(tr.output(name), float).reshape(-1) for name in model.output_names}

    def model(self):
        """The library model the truth is simulated with."""
        return get_model(self.model_name)


def _patients(name, citation, model_name, covariates, params, extra=None) -> list[TruePatient]:
    n = len(next(iter(params.values())))
    keys = ("AGE", "SEX", "WT", "HT", "SCR", "CRCL", "DIAL")
    return [TruePatient(k, name, {c: float(covariates[c][k]) for c in keys}, model_name,
                        {p: float(v[k]) for p, v in params.items()}, citation,
                        {e: float(v[k]) for e, v in (extra or {}).items()}) for k in range(n)]


@dataclass(frozen=True)
class RobertsICU2011:
    """Roberts 2011 (septic ICU adults, 1-compartment): see the module docstring."""

    name: str = "roberts2011"
    drug: str = "vancomycin"
    citation: str = ("Roberts JA et al. Antimicrob Agents Chemother 2011;55(6):2704-2709. "
                     "doi:10.1128/AAC.01708-10 (Eq. 3-4, Table 2)")

    @staticmethod
    def typical(covariates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Typical CL (L/h) and V (L) for covariates CRCL_BSA (mL/min/1.73 m²) and WT (kg)."""
        return {"CL": ROBERTS["CL_per_100"] * np.asarray(covariates["CRCL_BSA"]) / 100.0,
                "V": ROBERTS["V_per_kg"] * np.asarray(covariates["WT"])}

    def log_prior(self, covariates: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Log typical (CL L/h, V L) and log SDs for one patient's covariates (CRCL, WT, HT).

        The prior a ceiling policy (:mod:`medtwin.scenarios.ceiling`) uses; never a twin's.
        """
        crcl_bsa = float(covariates["CRCL"]) * 1.73 / float(dubois_bsa(covariates["WT"], covariates["HT"]))
        typical = self.typical({"CRCL_BSA": crcl_bsa, "WT": float(covariates["WT"])})
        return (np.log([float(typical["CL"]), float(typical["V"])]),
                np.sqrt([omega2(ROBERTS["cv_CL"]), omega2(ROBERTS["cv_V"])]))

    def sample(self, n: int, seed: int = 0) -> list[TruePatient]:
        cov = sample_hospital_adults(n, seed)
        rng = np.random.default_rng([int(seed), 2011])
        typical = self.typical(cov)
        eta = rng.standard_normal((2, len(cov["WT"]))) * np.sqrt([[omega2(ROBERTS["cv_CL"])], [omega2(ROBERTS["cv_V"])]])
        params = {"CL": typical["CL"] * np.exp(eta[0]), "V": typical["V"] * np.exp(eta[1])}
        return _patients(self.name, self.citation, "pk1_iv", cov, params)


@dataclass(frozen=True)
class RevillaICU2010:
    """Revilla 2010 (medical ICU adults, 1-compartment): see the module docstring."""

    name: str = "revilla2010"
    drug: str = "vancomycin"
    citation: str = ("Revilla N et al. Br J Clin Pharmacol 2010;70(2):201-212. "
                     "doi:10.1111/j.1365-2125.2010.03679.x (Table 4)")

    @staticmethod
    def typical(covariates: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Typical CL (L/h) and V (L) for CRCL (mL/min), WT (kg), AGE (y), SCR (mg/dL)."""
        wt = np.asarray(covariates["WT"], float)
        per_kg = (REVILLA["renal_slope"] * np.asarray(covariates["CRCL"]) / wt
                  + np.asarray(covariates["AGE"], float) ** REVILLA["age_exponent"])      # mL/min/kg
        v = REVILLA["V_per_kg"] * REVILLA["V_scr_factor"] ** (np.asarray(covariates["SCR"]) > REVILLA["scr_cut"]) * wt
        return {"CL": per_kg * wt * 0.06, "V": v}

    def log_prior(self, covariates: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Log typical (CL L/h, V L) and log SDs for one patient's covariates (CRCL, WT, AGE, SCR).

        The prior a ceiling policy (:mod:`medtwin.scenarios.ceiling`) uses; never a twin's.
        """
        typical = self.typical({k: float(covariates[k]) for k in ("CRCL", "WT", "AGE", "SCR")})
        return (np.log([float(typical["CL"]), float(typical["V"])]),
                np.sqrt([omega2(REVILLA["cv_CL"]), omega2(REVILLA["cv_V"])]))

    def sample(self, n: int, seed: int = 0) -> list[TruePatient]:
        cov = sample_hospital_adults(n, seed)
        rng = np.random.default_rng([int(seed), 2010])
        typical = self.typical(cov)
        eta = rng.standard_normal((2, len(cov["WT"]))) * np.sqrt([[omega2(REVILLA["cv_CL"])], [omega2(REVILLA["cv_V"])]])
        params = {"CL": typical["CL"] * np.exp(eta[0]), "V": typical["V"] * np.exp(eta[1])}
        return _patients(self.name, self.citation, "pk1_iv", cov, params)


@dataclass(frozen=True, eq=False)
class PopulationTruth:
    """Any population file as a truth model: its prior for each patient's covariates, one η draw per patient.

    Use it to test a twin on its own model (a sanity check) or on a user's population file.  The covariates
    are those of :func:`sample_hospital_adults` (CRCL Cockcroft-Gault mL/min, WT kg, AGE, SCR, SEX, DIAL=0).
    """

    population: object
    drug: str = "vancomycin"

    @property
    def name(self) -> str:
        return str(self.population.name)

    @property
    def citation(self) -> str:
        return str(getattr(self.population, "citation", ""))

    def sample(self, n: int, seed: int = 0) -> list[TruePatient]:
        cov = sample_hospital_adults(n, seed)
        rng = np.random.default_rng([int(seed), 77])
        out = []
        for k in range(int(n)):
            covariates = {c: float(cov[c][k]) for c in ("AGE", "SEX", "WT", "HT", "SCR", "CRCL", "DIAL")}
            prior = self.population.prior_for(covariates)
            draw = rng.multivariate_normal(np.asarray(prior.log_mean), np.asarray(prior.covariance))
            params = {**{p: float(v) for p, v in prior.fixed.items()},
                      **{p: float(np.exp(v)) for p, v in zip(prior.parameters, draw)}}
            out.append(TruePatient(k, self.name, covariates, str(prior.model), params, self.citation))
        return out


TRUTH_MODELS = {"roberts2011": RobertsICU2011(), "revilla2010": RevillaICU2010()}


def truth_model(name_or_path):
    """A truth model by name (:data:`TRUTH_MODELS`) or a population file path (:class:`PopulationTruth`)."""
    if not isinstance(name_or_path, str):
        return name_or_path
    if name_or_path in TRUTH_MODELS:
        return TRUTH_MODELS[name_or_path]
    if name_or_path.endswith((".yaml", ".yml", ".json")):
        from medtwin.io.population_file import load_population

        return PopulationTruth(load_population(name_or_path))
    raise DataError(f"unknown truth model {name_or_path!r}: use one of {sorted(TRUTH_MODELS)} or a population file "
                    "(.yaml/.yml/.json)")
