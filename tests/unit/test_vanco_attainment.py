"""Harness pieces of the vancomycin attainment pass (issue 14): miss causes, reachability, twin settings."""

import math

import numpy as np
import pytest

from medtwin.errors import DataError
from medtwin.io.population_file import load_population, shipped_population_path
from medtwin.scenarios.robustness import EvaluationScenario, _with_residual, miss_cause, reachable, twin_policy
from medtwin.scenarios.truth import TruePatient


def _patient(cl: float) -> TruePatient:
    return TruePatient(0, "test", {"CRCL": 100.0, "WT": 70.0, "AGE": 50.0}, "pk1_iv", {"CL": cl, "V": 70.0})


def test_reachable_is_the_daily_dose_limit_over_clearance():
    constraints = EvaluationScenario().constraints()           # at most 4500 mg/day
    # steady-state AUC24 = daily dose / CL: 4500 / 11 = 409 can be reached, 4500 / 11.5 = 391 cannot;
    # 250 mg q24h / 0.6 L/h = 417 can, 250 / 0.4 = 625 cannot (the smallest allowed daily dose)
    assert reachable(_patient(11.0), constraints) and not reachable(_patient(11.5), constraints)
    assert reachable(_patient(0.6), constraints) and not reachable(_patient(0.4), constraints)


def test_miss_cause_separates_aim_prediction_and_limits():
    base = {"in_target": 0.0, "reachable": True}
    assert miss_cause({**base, "in_target": 1.0, "pred_median": 300.0}) == ""
    assert miss_cause({**base, "reachable": False, "pred_median": 500.0}) == "unreachable"
    assert miss_cause({**base, "pred_median": 390.0}) == "aim"            # the twin itself aimed below 420
    assert miss_cause({**base, "pred_median": 500.0}) == "prediction"     # aimed well, predicted badly
    assert miss_cause({**base, "pred_median": math.nan}) == "no prediction"


def test_twin_settings_residual_and_flattened_prior():
    population = load_population(shipped_population_path("vancomycin_buelga2005"))
    scenario = EvaluationScenario(proportional=0.1, additive=0.5)
    changed = _with_residual(population, "assay", scenario, omega_scale=2.0)
    assert (changed.residual.model, changed.residual.additive, changed.residual.proportional) == ("combined", 0.5, 0.1)
    assert changed.residual.output == population.residual.output
    np.testing.assert_allclose(changed.omega, 2.0 * np.asarray(population.omega))
    assert _with_residual(population, "population", scenario) is population
    with pytest.raises(DataError, match="residual"):
        _with_residual(population, "lab", scenario)
    with pytest.raises(DataError, match="omega_scale"):
        twin_policy(population, omega_scale=0.5)
