"""Vancomycin two-compartment population PK model (Goti et al. 2018), the flagship dosing scenario.

Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Hospitalized patients with
and without hemodialysis have markedly different vancomycin pharmacokinetics: a
population pharmacokinetic model-based analysis. Ther Drug Monit
2018;40(2):212-221. doi:10.1097/FTD.0000000000000490 (Table 2, final model):

====================  ===========================================  ==========
parameter             typical value (70 kg, CrCl 120 mL/min)        IIV (CV)
====================  ===========================================  ==========
CL (L/h)              4.5 · (CRCL/120)^0.8 · 0.7^DIAL               39.8 %
V1 (central, L)       58.4 · (WT/70) · 0.5^DIAL                     81.6 %
Q (L/h)               6.5                                           —
V2 (peripheral, L)    38.4 · (WT/70)                                57.1 %
residual error        additive 3.4 mg/L + proportional 22.7 %
====================  ===========================================  ==========

CRCL is Cockcroft–Gault creatinine clearance in mL/min (truncated at 150 in the
source data), WT total body weight in kg, DIAL 1 for intermittent haemodialysis.
Doses are IV infusions into CMT 1 (central).  The exposure target used across
medtwin is AUC24 400–600 mg·h/L (Rybak et al., Am J Health Syst Pharm 2020).

Examples
--------
>>> m = library_models()[0]
>>> typical = m.typical_parameters({"CRCL": 60.0, "WT": 80.0})
>>> round(float(typical["CL"]), 3)
2.585
"""

from __future__ import annotations

import math

import numpy as np

from medtwin.core.model import DoseTarget, Model
from medtwin.models.pk import _a_pk2_iv, _conc, CENTRAL, PERIPHERAL, Parameter

CITATION = (
    "Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Ther Drug Monit 2018;40(2):212-221. "
    "doi:10.1097/FTD.0000000000000490 (Table 2)"
)

#: Inter-individual variability as log-normal variances ω² = ln(CV² + 1) (Goti 2018 Table 2).
IIV_OMEGA2 = {"CL": math.log(0.398**2 + 1), "V1": math.log(0.816**2 + 1), "V2": math.log(0.571**2 + 1)}
#: Residual error (Goti 2018 Table 2): additive SD in mg/L and proportional SD (fraction).
RESIDUAL_ERROR = {"additive_sd": 3.4, "proportional_sd": 0.227}
#: Physiological range of hospitalised adults the covariate model is declared valid for (not the study's range):
#: CrCl mL/min (the model truncates at 150), weight kg, dialysis 0/1. The population file declares the same.
COVARIATE_RANGES = {"CRCL": (0.0, 400.0), "WT": (25.0, 300.0), "DIAL": (0.0, 1.0)}
#: The AUC24 exposure window (mg·h/L) of the 2020 ASHP/IDSA consensus guideline.
AUC24_TARGET = (400.0, 600.0)


def _covariate_model(typical: dict, covariates: dict) -> dict:
    crcl = np.clip(covariates["CRCL"], 1e-3, 150.0)
    weight = covariates["WT"]
    dial = covariates.get("DIAL", np.zeros_like(weight))
    return {
        "CL": 4.5 * (crcl / 120.0) ** 0.8 * 0.7**dial,
        "V1": 58.4 * (weight / 70.0) * 0.5**dial,
        "Q": np.full_like(np.asarray(weight, dtype=float), 6.5),
        "V2": 38.4 * (weight / 70.0),
    }


def vancomycin_goti2018() -> Model:
    """The Goti 2018 vancomycin model (typical values for 70 kg, CrCl 120 mL/min, no dialysis)."""
    params = (
        Parameter("CL", "L/h", 4.5, 1e-6, math.inf, "log", "clearance"),
        Parameter("V1", "L", 58.4, 1e-6, math.inf, "log", "central volume"),
        Parameter("Q", "L/h", 6.5, 0.0, math.inf, "log", "inter-compartmental clearance"),
        Parameter("V2", "L", 38.4, 1e-6, math.inf, "log", "peripheral volume"),
    )
    return Model(
        name="vancomycin_goti2018",
        description="vancomycin 2-compartment IV model, CL driven by Cockcroft-Gault CrCl (Goti 2018)",
        states=(CENTRAL, PERIPHERAL),
        parameters=params,
        outputs=(_conc(0, 1),),
        dose_targets=(DoseTarget(1, "iv"),),
        linear_matrix=_a_pk2_iv,
        covariate_model=_covariate_model,
        covariates=("CRCL", "WT"),
        covariate_units={"CRCL": "mL/min", "WT": "kg", "DIAL": "0/1, optional (default 0)"},
        covariate_ranges=COVARIATE_RANGES,
        citation=CITATION,
    )


def library_models() -> list[Model]:
    return [vancomycin_goti2018()]
