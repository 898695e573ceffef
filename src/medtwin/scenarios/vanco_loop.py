"""Closed-loop evaluation of the vancomycin scenario: true patients, delayed levels, the twin, the dose optimiser.

For each virtual patient over ``days`` days:

* the **true patient** follows a *different* model from the twin's: one
  compartment with clearance from creatinine clearance by Matzke et al. (1984):
  CL (mL/min) = 0.689·CrCl + 3.66, and V = 0.72 L/kg, with log-normal
  between-patient variability (ω_CL = 0.25, ω_V = 0.15: assumptions); the twin
  uses the two-compartment Goti (2018) population model as its prior;
* trough (0.5 h before the daily dose at 24·k h) and peak (1 h after that
  dose's infusion ends) levels are drawn every day from day 2, with 10 %
  proportional + 0.5 mg/L additive error, and reported ``level_delay_h`` later;
* every ``decision_every_h`` hours a **policy** sets the regimen until the next
  decision.  The twin-guided policy personalizes the Goti prior on the levels
  reported so far (Laplace; the population prior itself before any level) and
  asks :func:`medtwin.control.dosing.recommend_dose` for the regimen maximising
  P(AUC24 in 400–600 mg·h/L) with P(AUC24 > 600) ≤ ε under the hard
  constraints; the standard of care is label dosing: 15 mg/kg actual body
  weight rounded to 250 mg, at most 2 g per dose, every 12 h (every 24 h when
  CrCl < 50 mL/min), infused at ≤ 1 g/h (IDSA/ASHP 2009 consensus; product label).

Outcomes on the true concentrations: AUC24 of days 2..``days`` (each day's
AUC over [24(d−1), 24d] h), the share of days in 400–600 mg·h/L, above 600
and below 400, total drug, and hard-constraint violations.

Examples
--------
>>> patients = sample_vanco_patients(2, seed=1)
>>> [p.id for p in patients], all(20 <= p.crcl <= 130 for p in patients)
([0, 1], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.models import get_model

MATZKE_SLOPE, MATZKE_INTERCEPT = 0.689, 3.66  # mL/min per mL/min, mL/min (Matzke 1984)
V_PER_KG = 0.72  # L/kg


@dataclass(frozen=True)
class VancoPatient:
    """A virtual patient: covariates and the true 1-compartment parameters."""

    id: int
    crcl: float
    weight: float
    cl: float
    v: float

    @property
    def covariates(self) -> dict:
        return {"CRCL": self.crcl, "WT": self.weight, "DIAL": 0.0}


def sample_vanco_patients(n: int, *, seed: int = 0, omega_cl: float = 0.25, omega_v: float = 0.15) -> list:
    """``n`` patients: CrCl uniform on 20–130 mL/min, weight uniform on 50–110 kg, Matzke CL and 0.72 L/kg V."""
    if n < 1:
        raise DataError(f"need at least one patient, got {n}")
    rng = np.random.default_rng([seed, 2018])
    out = []
    for k in range(int(n)):
        crcl, weight = float(rng.uniform(20.0, 130.0)), float(rng.uniform(50.0, 110.0))
        cl = (MATZKE_SLOPE * crcl + MATZKE_INTERCEPT) * 0.06 * math.exp(omega_cl * rng.standard_normal())
        v = V_PER_KG * weight * math.exp(omega_v * rng.standard_normal())
        out.append(VancoPatient(k, crcl, weight, cl, v))
    return out


@dataclass(frozen=True)
class VancoScenario:
    """The vancomycin closed-loop set-up (h, mg, mg/L, mg·h/L)."""

    days: int = 5
    decision_every_h: float = 24.0
    level_delay_h: float = 6.0
    proportional_error: float = 0.10
    additive_error: float = 0.5
    target_low: float = 400.0
    target_high: float = 600.0
    max_single_mg: float = 3000.0
    max_daily_mg: float = 4500.0
    max_rate_mg_per_h: float = 1000.0

    def __post_init__(self):
        if self.days < 2 or self.decision_every_h <= 0 or self.level_delay_h < 0:
            raise DataError("vancomycin scenario: need days >= 2, decision_every_h > 0, level_delay_h >= 0")


@dataclass(frozen=True)
class VancoOutcome:
    """One patient's closed-loop outcome."""

    patient: int
    policy: str
    auc24: np.ndarray
    days_in_target: float
    days_above: float
    days_below: float
    total_g: float
    violations: int
    regimen: Regimen
    statuses: tuple[str, ...] = ()


def true_concentrations(patient: VancoPatient, regimen: Regimen, times) -> np.ndarray:
    """True concentrations (mg/L) at ``times`` h: the 1-compartment patient, exact solution."""
    trajectory = simulate(get_model("pk1_iv"), {"CL": patient.cl, "V": patient.v}, regimen, np.asarray(times, float))
    return np.asarray(trajectory.output("C"), dtype=float).reshape(-1)


def daily_auc(patient: VancoPatient, regimen: Regimen, days: int) -> np.ndarray:
    """AUC (mg·h/L) of each day 1..days on a 6-minute grid (trapezoid)."""
    grid = np.arange(0.0, 24.0 * days + 1e-9, 0.1)
    c = true_concentrations(patient, regimen, grid)
    return np.array([np.trapezoid(c[(grid >= 24 * d - 1e-9) & (grid <= 24 * (d + 1) + 1e-9)],
                                  grid[(grid >= 24 * d - 1e-9) & (grid <= 24 * (d + 1) + 1e-9)]) for d in range(days)])


def _violations(regimen: Regimen, scenario: VancoScenario) -> int:
    doses = [e for e in regimen.expanded() if e.amount > 0]
    bad = sum(1 for e in doses if e.amount > scenario.max_single_mg + 1e-6
              or (e.rate > 0 and e.rate > scenario.max_rate_mg_per_h + 1e-6) or e.rate == 0)
    for day in range(scenario.days):
        total = sum(e.amount for e in doses if 24 * day <= e.time < 24 * (day + 1))
        bad += int(total > scenario.max_daily_mg + 1e-6)
    return bad


def run_vanco_patient(patient: VancoPatient, policy: Callable, scenario: VancoScenario = VancoScenario(), *,
                      name: str = "policy", seed: int = 0) -> VancoOutcome:
    """Simulate the loop for one patient under ``policy``.

    ``policy(patient_covariates, now, history, levels, until) -> (Regimen of the doses in [now, until), status)``;
    ``levels`` is a list of (time h, value mg/L) reported by ``now``; ``history`` the doses given so far.
    """
    rng = np.random.default_rng([seed, patient.id, 7])
    history = Regimen()
    drawn: list[tuple[float, float, float]] = []  # (time, value, reported at)
    statuses = []
    end = 24.0 * scenario.days
    decisions = np.arange(0.0, end, scenario.decision_every_h)
    for k, now in enumerate(decisions):
        until = float(decisions[k + 1]) if k + 1 < len(decisions) else end
        levels = [(t, v) for t, v, reported in drawn if reported <= now + 1e-9]
        new, status = policy(patient.covariates, float(now), history, levels, until)
        history = history + Regimen(tuple(e for e in new.expanded() if now - 1e-9 <= e.time < until - 1e-9))
        statuses.append(status)
        for day in range(1, scenario.days):  # every level whose concentration is now fixed (time < until)
            _draw_day_levels(patient, history, 24.0 * day, scenario, rng, drawn, until)
    auc = daily_auc(patient, history, scenario.days)[1:]
    return VancoOutcome(
        patient=patient.id, policy=name, auc24=auc,
        days_in_target=float(np.mean((auc >= scenario.target_low) & (auc <= scenario.target_high))),
        days_above=float(np.mean(auc > scenario.target_high)), days_below=float(np.mean(auc < scenario.target_low)),
        total_g=history.total_amount() / 1000.0, violations=_violations(history, scenario), regimen=history,
        statuses=tuple(statuses))


def _draw_day_levels(patient, history, day_start, scenario, rng, drawn, until) -> None:
    """Trough 0.5 h before the dose at ``day_start`` and peak 1 h after its infusion, once the doses are known."""
    known = {round(t, 9) for t, _, _ in drawn}
    dose = next((e for e in history.expanded() if abs(e.time - day_start) < 1e-9 and e.amount > 0), None)
    times = [day_start - 0.5]
    if dose is not None:
        times.append(day_start + (dose.amount / dose.rate if dose.rate > 0 else 0.0) + 1.0)
    for t in times:
        if round(t, 9) in known or t >= until:
            continue
        c = float(true_concentrations(patient, history, [t])[0])
        value = c * (1 + scenario.proportional_error * rng.standard_normal()) \
            + scenario.additive_error * rng.standard_normal()
        drawn.append((t, max(value, 0.0), t + scenario.level_delay_h))


def label_dose(covariates: dict) -> tuple[float, float]:
    """(dose mg, interval h) of label dosing: 15 mg/kg rounded to 250 mg, ≤ 2000 mg; q12h, q24h if CrCl < 50."""
    dose = min(2000.0, max(250.0, round(15.0 * covariates["WT"] / 250.0) * 250.0))
    return dose, (12.0 if covariates["CRCL"] >= 50.0 else 24.0)


def label_policy(covariates, now, history, levels, until):
    """Standard of care: the label regimen, whatever the levels say."""
    dose, interval = label_dose(covariates)
    n = max(1, int(math.ceil((until - now) / interval - 1e-9)))
    return Regimen.every(interval, "h", dose, "mg", n=n, duration=max(1.0, dose / 1000.0), start=now), "label"


def twin_policy(scenario: VancoScenario = VancoScenario(), *, population=None, n_draws: int = 1000,
                max_toxic_probability: float = 0.1, seed: int = 0) -> Callable:
    """The twin-guided policy: personalize on the reported levels, then :func:`recommend_dose` for the next period.

    The target is AUC24 in [target_low, target_high] over the coming decision period
    (receding horizon: tomorrow is decided again with tomorrow's levels), maximising
    P(target) with P(AUC24 > target_high) ≤ ``max_toxic_probability``; a loading dose is allowed at the
    first decision only.  Hard constraints: 250 mg steps, at most ``max_single_mg`` per dose and
    ``max_daily_mg`` per day, infusion ≤ ``max_rate_mg_per_h``, intervals 8, 12 or 24 h.
    """
    from medtwin.control.dosing import DoseConstraints
    from medtwin.control.policy import DoseOptimizer
    from medtwin.control.targets import AUC24Window, Threshold
    from medtwin.core.data import PatientData
    from medtwin.infer.personalize import personalize
    from medtwin.infer.posterior import Posterior
    from medtwin.io.population_file import load_population, shipped_population_path
    from medtwin.twin import Twin

    population = population or load_population(shipped_population_path("vancomycin_goti2018"))
    common = dict(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=scenario.max_single_mg,
                  max_daily_mg=scenario.max_daily_mg, intervals_h=(8.0, 12.0, 24.0),
                  max_rate_mg_per_h=scenario.max_rate_mg_per_h)
    target = AUC24Window(scenario.target_low, scenario.target_high)
    toxic = Threshold(AUC24Window(), above=scenario.target_high)
    settings = dict(objective="pta", toxic=toxic, max_toxic_probability=max_toxic_probability, n_draws=n_draws,
                    seed=seed, sensitivity=False)
    first = DoseOptimizer(target, DoseConstraints(loading=True, max_loading_mg=scenario.max_single_mg, **common),
                          **settings)
    later = DoseOptimizer(target, DoseConstraints(**common), **settings)

    def policy(covariates, now, history, levels, until):
        if levels:
            data = PatientData(history, [t for t, _ in levels], [v for _, v in levels], covariates)
            posterior = personalize(population, data, method="laplace")
        else:
            posterior = Posterior.from_prior(population.prior_for(covariates))
        twin = Twin.from_posterior(posterior, inputs=history)
        recommendation = twin.recommend(first if now == 0 else later, start_time=now, evaluation_window=(now, until))
        return recommendation.regimen, recommendation.status

    return policy
