"""Issue 14 acceptance point 1: the day-1 sampling design, the harness's sampling option and the ceiling policy."""

import math

import numpy as np
import pytest

from medtwin.control.sampling import design_variance, sampling_design
from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.io.population_file import load_population, shipped_population_path
from medtwin.models import get_model
from medtwin.scenarios.ceiling import infusion_concentration, oracle_policy
from medtwin.scenarios.robustness import EvaluationScenario, evaluate, label_day1, label_policy, level_times
from medtwin.scenarios.truth import RobertsICU2011, truth_model
from medtwin.scenarios.truth.vancomycin import dubois_bsa, omega2


def test_infusion_concentration_matches_the_library_simulator():
    history = Regimen.every(12.0, "h", 1250.0, "mg", n=2, duration=1.25)
    times = np.array([0.5, 1.25, 2.25, 11.5, 14.25, 23.5])
    reference = np.asarray(simulate(get_model("pk1_iv"), {"CL": 3.1, "V": 140.0}, history, times,
                                    keep_states=False).output("C"), float).reshape(-1)
    doses = [(e.time, e.amount, e.amount / e.rate) for e in history.expanded()]
    ours = np.array([float(infusion_concentration(3.1, 140.0, doses, t)) for t in times])
    np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_truth_log_prior_is_the_published_typical_value_and_cv():
    covariates = {"CRCL": 90.0, "WT": 80.0, "HT": 175.0, "AGE": 60.0, "SCR": 1.0}
    log_mean, sd = RobertsICU2011().log_prior(covariates)
    crcl_bsa = 90.0 * 1.73 / float(dubois_bsa(80.0, 175.0))
    # Roberts 2011: CL = 4.58 L/h per 100 mL/min/1.73 m^2, V = 1.53 L/kg; CV 38.9 % and 37.4 %
    np.testing.assert_allclose(np.exp(log_mean), [4.58 * crcl_bsa / 100.0, 1.53 * 80.0])
    np.testing.assert_allclose(sd ** 2, [math.log(1 + 0.389 ** 2), math.log(1 + 0.374 ** 2)])
    np.testing.assert_allclose(sd[0] ** 2, omega2(0.389))


def test_harness_sampling_designs_and_validation():
    history = label_day1({"CRCL": 90.0, "WT": 75.0}, 24.0)          # 1000 mg q12h over 1 h
    assert level_times(history, EvaluationScenario()) == [14.0, 23.5]
    assert level_times(history, EvaluationScenario(sampling="first-peak")) == [2.0, 23.5]
    assert level_times(history, EvaluationScenario(sampling=(3.0, 20.0))) == [3.0, 20.0]
    with pytest.raises(DataError, match="sampling"):
        EvaluationScenario(sampling="mid")
    with pytest.raises(DataError, match="sampling"):
        EvaluationScenario(sampling=(3.0, 30.0))
    with pytest.raises(DataError, match="sampling"):
        EvaluationScenario(sampling=5.0)


def test_design_variance_is_the_inverse_posterior_precision():
    rows = np.array([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])          # one draw, three times, two parameters
    omega_inv = np.diag([4.0, 1.0])
    precision = rows[0, [0, 2]].T @ rows[0, [0, 2]] + omega_inv
    expected = np.linalg.inv(precision)[0, 0]
    np.testing.assert_allclose(design_variance(rows, omega_inv, 0, [0, 2]), [expected])


def test_sampling_design_prefers_a_late_trough_and_reduces_prior_uncertainty():
    population = load_population(shipped_population_path("vancomycin_buelga2005"))   # 1 compartment, CL and V
    covariates = {"CRCL": 80.0, "WT": 70.0}
    history = Regimen.every(12.0, "h", 1000.0, "mg", n=2, duration=1.0)
    times = [2.0, 6.0, 11.5, 14.0, 18.0, 23.5]
    design = sampling_design([population], covariates, history, times, ResidualError("combined", 0.5, 0.1),
                             n_draws=60)
    prior_sd = math.sqrt(population.omega[0][0])
    assert design.times[-1] == 23.5                     # elimination is read best over the longest span
    assert design.sd_log_cl < prior_sd
    assert design.sd_of(design.times) == design.sd_log_cl
    assert design.table[-1][1] >= design.sd_log_cl
    with pytest.raises(DataError, match="n_levels"):
        sampling_design([population], covariates, history, [2.0], ResidualError("combined", 0.5, 0.1))


def test_oracle_policy_runs_in_the_harness_and_is_calibrated_in_expectation():
    policies = {"label": label_policy, "ceiling": oracle_policy(["roberts2011", "revilla2010"], n_draws=500)}
    result = evaluate(["roberts2011", "revilla2010"], policies, n_patients=8, seed=3)
    part = result.frame[result.frame.policy == "ceiling"]
    assert len(part) == 8 and part.violations.sum() == 0
    assert np.all((part.pit >= 0) & (part.pit <= 1)) and part.abs_log_error.median() < 0.4
    with pytest.raises(DataError, match="log_prior"):
        oracle_policy([truth_model("roberts2011"), object()])
