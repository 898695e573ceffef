"""Trial endpoints: what each one measures, its unit and kind, and how it is computed from a trajectory.

Only the endpoints are kept per patient (never the trajectories), so a trial's memory is bounded by
its number of patients times the number of endpoints.

============================  =====  ==========  =============================================================
endpoint                      kind   unit        meaning
============================  =====  ==========  =============================================================
``auc``                       cont.  mg·h/L      pk: AUC of C over the ``window`` (trapezoid on a 0.05-h grid)
``cmax``                      cont.  mg/L        pk: highest C in the window
``attainment``                cont.  fraction    vancomycin: share of days 2.. with AUC24 in 400–600 mg·h/L
                                                 (pk: 1 if the window AUC is in ``target``)
``all_days_in_target``        binary 0/1         vancomycin: every day 2.. in 400–600 mg·h/L
``auc24_mean``                cont.  mg·h/L      vancomycin: mean daily AUC24 over days 2..
``toxic_800``                 binary 0/1         vancomycin: some day's AUC24 > 800 mg·h/L (toxicity risk)
``days_above_600``            cont.  fraction    vancomycin: share of days 2.. with AUC24 > 600 mg·h/L
``aki_7d``                    cont.  probability vancomycin: P(AKI within 7 d) of the highest daily AUC24 by
                                                 :class:`medtwin.control.aki.AKIRisk`'s exposure–AKI curve
``total_g``                   cont.  g           vancomycin: drug given
``tir``                       cont.  fraction    glucose: time in the scenario's range (4.4–8.0 mmol/L by
                                                 default, ICU), true glucose every 5 min
``tir_3_9_10``                cont.  fraction    glucose: time in 3.9–10 mmol/L
``time_below_4``              cont.  fraction    glucose: time below 4.0 mmol/L
``hypo_2_2``                  binary 0/1         glucose: any true glucose below 2.2 mmol/L (severe)
``mean_glucose``              cont.  mmol/L      glucose: mean true glucose
``insulin_u``                 cont.  U           glucose: insulin given
============================  =====  ==========  =============================================================

Examples
--------
>>> import numpy as np
>>> sorted(glucose_endpoints(np.array([3.0, 5.0, 9.0, 12.0]), 20.0, (4.4, 8.0)).items())[:3]
[('hypo_2_2', 0.0), ('insulin_u', 20.0), ('mean_glucose', 7.25)]
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from medtwin.errors import PostRandomisationError

__all__ = ["ENDPOINTS", "check_strata", "endpoint_kind", "scenario_endpoints", "vanco_endpoints", "glucose_endpoints",
           "pk_endpoints"]

#: endpoint -> (kind "binary" | "continuous", unit, scenario)
ENDPOINTS = {
    "auc": ("continuous", "mg·h/L", "pk"), "cmax": ("continuous", "mg/L", "pk"),
    "attainment": ("continuous", "fraction", "vancomycin|pk"),
    "all_days_in_target": ("binary", "0/1", "vancomycin"), "auc24_mean": ("continuous", "mg·h/L", "vancomycin"),
    "toxic_800": ("binary", "0/1", "vancomycin"), "days_above_600": ("continuous", "fraction", "vancomycin"),
    "aki_7d": ("continuous", "probability", "vancomycin"), "total_g": ("continuous", "g", "vancomycin"),
    "tir": ("continuous", "fraction", "glucose"), "tir_3_9_10": ("continuous", "fraction", "glucose"),
    "time_below_4": ("continuous", "fraction", "glucose"), "hypo_2_2": ("binary", "0/1", "glucose"),
    "mean_glucose": ("continuous", "mmol/L", "glucose"), "insulin_u": ("continuous", "U", "glucose"),
}


def endpoint_kind(name: str) -> str:
    """"binary" or "continuous" (an unknown name counts as continuous)."""
    return ENDPOINTS.get(name, ("continuous",))[0]


def scenario_endpoints(scenario: str) -> list[str]:
    """The endpoints a scenario's patients carry, in table order."""
    return [k for k, (_, _, s) in ENDPOINTS.items() if scenario in s.split("|")]


def vanco_endpoints(auc24, total_g: float, *, low: float = 400.0, high: float = 600.0) -> dict:
    """Endpoints of one patient from its daily AUC24 (mg·h/L) on days 2.. and the drug given (g)."""
    from medtwin.control.aki import AKIRisk

    auc = np.asarray(auc24, float)
    inside = (auc >= low) & (auc <= high)
    return {"attainment": float(np.mean(inside)), "all_days_in_target": float(np.all(inside)),
            "auc24_mean": float(np.mean(auc)), "toxic_800": float(np.any(auc > 800.0)),
            "days_above_600": float(np.mean(auc > high)),
            "aki_7d": float(AKIRisk().attained([float(np.max(auc))])[0]), "total_g": float(total_g)}


def glucose_endpoints(glucose, insulin_u: float, target: tuple) -> dict:
    """Endpoints of one patient from its true glucose every 5 min (mmol/L) and the insulin given (U)."""
    g = np.asarray(glucose, float)
    return {"tir": float(np.mean((g >= target[0]) & (g <= target[1]))),
            "tir_3_9_10": float(np.mean((g >= 3.9) & (g <= 10.0))), "time_below_4": float(np.mean(g < 4.0)),
            "hypo_2_2": float(np.any(g < 2.2)), "mean_glucose": float(np.mean(g)), "insulin_u": float(insulin_u)}


def pk_endpoints(times, concentrations, window: tuple, target: tuple) -> dict:
    """Window AUC (trapezoid), Cmax and target attainment per patient; ``concentrations`` (n, len(times))."""
    t = np.asarray(times, float)
    c = np.asarray(concentrations, float)
    keep = (t >= window[0] - 1e-9) & (t <= window[1] + 1e-9)
    tk, ck = t[keep], c[:, keep]
    # trapezoid as a sequential cumulative sum: np.sum/np.trapezoid over axis 1 sum pairwise in an order that
    # depends on the number of rows, and a patient's AUC must not depend on its chunk (bit for bit)
    pieces = np.diff(tk) * (ck[:, 1:] + ck[:, :-1]) / 2.0
    auc = np.cumsum(pieces, axis=1)[:, -1] if pieces.shape[1] else np.zeros(len(ck))
    return {"auc": auc, "cmax": ck.max(axis=1),
            "attainment": ((auc >= target[0]) & (auc <= target[1])).astype(float)}


def check_strata(strata: Mapping | Sequence, baseline: Sequence[str]) -> None:
    """Raise :class:`PostRandomisationError` for a stratum variable that is not a baseline covariate."""
    for name in strata:
        if name not in baseline:
            kind = "an endpoint" if name in ENDPOINTS else "not a baseline covariate"
            raise PostRandomisationError(
                f"stratum {name!r} refused: it is {kind}, measured or computed after randomisation, so the arm "
                f"changes who falls in each band and the within-band comparison is no longer randomised "
                f"(conditioning on a post-treatment variable). Stratify on baseline covariates only: "
                f"{sorted(baseline)}", variable=name)
