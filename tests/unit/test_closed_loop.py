"""The closed-loop harnesses: the true patients, the standard-of-care policies, delays and outcome metrics."""

import math

import numpy as np
import pytest

from medtwin.scenarios.glucose_loop import (GlucoseScenario, insulin_event, feed_regimen, jbds_vriii_rate,
                                          run_glucose_patient, sliding_scale_policy)
from medtwin.scenarios.vanco_loop import (VancoScenario, daily_auc, label_dose, label_policy, run_vanco_patient,
                                        sample_vanco_patients)
from medtwin.scenarios.glucose_patients import sample_icu_patients, simulate_truth


@pytest.mark.parametrize("glucose, rate", [(3.9, 0.0), (4.0, 0.0), (5.0, 1.0), (7.0, 1.0), (9.0, 2.0), (15.0, 4.0),
                                           (20.0, 6.0), (30.0, 8.0)])
def test_jbds_scale(glucose, rate):
    assert jbds_vriii_rate(glucose) == rate


def test_glucose_truth_in_the_loop_equals_the_independent_truth_simulator():
    patient = sample_icu_patients(1, model="bergman_insulin", hours=13, seed=4)[0]
    scenario = GlucoseScenario(hours=12)

    def constant(state, now, results, rate):
        return 2.0, state, "constant"

    outcome = run_glucose_patient(patient, constant, scenario)
    first = scenario.delay_h
    regimen = feed_regimen(scenario) + insulin_event(first, 12.0, 2.0)
    reference = simulate_truth(patient, regimen, outcome.times[1:])
    np.testing.assert_allclose(outcome.glucose[1:], reference.glucose_true, rtol=2e-5)
    assert outcome.insulin_units == pytest.approx(2.0 * (12.0 - first))


def test_glucose_results_arrive_only_after_their_delay():
    patient = sample_icu_patients(1, model="bergman_insulin", hours=7, seed=1)[0]
    seen = []

    def spy(state, now, results, rate):
        seen.append((now, max((m.time for m in results), default=None)))
        return sliding_scale_policy(state, now, results, rate)

    run_glucose_patient(patient, spy, GlucoseScenario(hours=6, delay_h=0.5))
    assert all(latest is not None and now - latest == pytest.approx(0.5) for now, latest in seen)


def test_vancomycin_daily_auc_reaches_daily_dose_over_clearance():
    patient = sample_vanco_patients(3, seed=2)[1]
    outcome = run_vanco_patient(patient, label_policy, VancoScenario(days=5))
    dose, interval = label_dose(patient.covariates)
    steady = dose * 24.0 / interval / patient.cl
    half_life = math.log(2) * patient.v / patient.cl
    assert half_life < 20  # so day 5 is at steady state within the tolerance
    assert outcome.auc24[-1] == pytest.approx(steady, rel=0.02)
    assert outcome.violations == 0 and outcome.total_g == pytest.approx(dose * 5 * 24 / interval / 1000)


def test_vancomycin_levels_are_reported_after_the_lab_delay():
    patient = sample_vanco_patients(1, seed=3)[0]
    seen = {}

    def spy(covariates, now, history, levels, until):
        seen[now] = [t for t, _ in levels]
        return label_policy(covariates, now, history, levels, until)

    run_vanco_patient(patient, spy, VancoScenario(days=4, level_delay_h=6.0))
    for now, times in seen.items():
        assert all(t + 6.0 <= now for t in times)
    assert seen[0.0] == [] and len(seen[72.0]) == 4


def test_daily_auc_of_a_single_infusion_equals_the_closed_form():
    from medtwin.core.events import Regimen

    patient = sample_vanco_patients(1, seed=5)[0]
    regimen = Regimen.single(1000.0, rate=1000.0)
    k = patient.cl / patient.v
    # AUC over [0, 24] of a 1-h infusion into one compartment, closed form.
    r, t_inf = 1000.0, 1.0
    during = r / patient.cl * (t_inf - (1 - math.exp(-k * t_inf)) / k)
    c_end = r / patient.cl * (1 - math.exp(-k * t_inf))
    after = c_end / k * (1 - math.exp(-k * (24 - t_inf)))
    assert daily_auc(patient, regimen, 1)[0] == pytest.approx(during + after, rel=1e-4)
