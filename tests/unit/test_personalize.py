"""Personalize one patient: input checks, M3, posterior predictive bands and probability queries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medtwin.core.events import Regimen
from medtwin.errors import DataError
from medtwin.core.data import PatientData
from medtwin.infer.personalize import _args, _batch, _potential, personalize
from medtwin.infer.posterior import probability
from medtwin.io.population_file import load_population, shipped_population_path
from medtwin.models import get_model

COV = {"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}
REGIMEN = Regimen.every(12.0, "h", 1000.0, "mg", n=8, duration=1.0)


@pytest.fixture(scope="module")
def pop():
    return load_population(shipped_population_path("vancomycin_goti2018"))


@pytest.fixture(scope="module")
def posterior(pop):
    data = PatientData(REGIMEN, [11.5, 13.0, 35.5, 37.0], [9.0, 25.0, 12.5, 30.0], COV)
    return personalize(pop, data, method="laplace")


def test_patient_data_errors_name_the_observation():
    with pytest.raises(DataError, match="observation 2 .* not finite"):
        PatientData(REGIMEN, [1.0, 2.0], [1.0, np.nan], COV)
    with pytest.raises(DataError, match="differ in length"):
        PatientData(REGIMEN, [1.0, 2.0], [1.0], COV)
    with pytest.raises(DataError, match="need an lloq"):
        PatientData(REGIMEN, [1.0], [0.0], COV, blq=[True])
    with pytest.raises(DataError, match="observation 1: time -1.0 h"):
        PatientData(REGIMEN, [-1.0], [3.0], COV)


def test_missing_covariate_and_bad_method(pop):
    data = PatientData(REGIMEN, [11.5], [9.0], {"CRCL": 60.0})
    with pytest.raises(DataError, match=r"covariate\(s\) \['DIAL', 'WT'\]"):
        personalize(pop, data)
    with pytest.raises(DataError, match="method must be one of"):
        personalize(pop, PatientData(REGIMEN, [11.5], [9.0], COV), method="mcmc")


def test_potential_equals_a_scipy_computation_including_m3(pop):
    """−log posterior at a point, recomputed with scipy.stats and the numba simulate."""
    from medtwin.core.simulate import simulate

    model = get_model(pop.model)
    data = PatientData(REGIMEN, [11.5, 23.5, 35.5], [9.0, 0.0, 12.5], COV, blq=[False, True, False], lloq=5.0)
    prior = pop.prior_for(COV)
    args = _args(model, prior, prior.log_mean, prior.covariance, [_batch(model, prior, data)])
    z = prior.log_mean + np.array([0.1, -0.2, 0.3])
    value = float(_potential(model)[0](z, args))  # (value, value_and_grad)
    params = {**prior.fixed, **{p: np.exp(z[k]) for k, p in enumerate(prior.parameters)}}
    f = simulate(model, params, REGIMEN, data.times).output("C")[0]
    sd = np.sqrt(3.4**2 + (0.227 * f) ** 2)
    loglik = stats.norm.logpdf(9.0, f[0], sd[0]) + stats.norm.logcdf((5.0 - f[1]) / sd[1]) + \
        stats.norm.logpdf(12.5, f[2], sd[2])
    logprior = stats.multivariate_normal.logpdf(z, prior.log_mean, prior.covariance)
    const = 0.5 * len(z) * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(prior.covariance)[1]
    assert value == pytest.approx(-(loglik + logprior + const), rel=1e-10)


def test_band_quantiles_probabilities_and_residual_error(posterior):
    times = np.arange(0.0, 96.01, 0.25)
    band = posterior.predict(REGIMEN, times, n_draws=2000, seed=3)
    q = band.quantiles("C")
    assert q.shape == (5, times.size) and np.all(np.diff(q, axis=0) >= -1e-12)
    lo, hi = band.interval("C", 0.9)
    lo_r, hi_r = band.interval("C", 0.9, residual=True)
    assert np.all(hi_r - lo_r >= hi - lo - 1e-9)  # residual error only widens the band
    auc = band.auc("C", 72.0, 96.0)
    assert auc.shape == (2000,)
    p = probability(auc, 400.0, 600.0)
    assert p == pytest.approx(np.mean((auc >= 400) & (auc <= 600)))
    trough = band.at("C", 95.75)
    assert probability(trough, high=10.0) + probability(trough, low=10.0) == pytest.approx(1.0, abs=1e-3)
    frame = band.to_frame()
    assert {"TIME", "median", "p05", "p95", "obs_p05", "obs_p95"} <= set(frame.columns)
    with pytest.raises(DataError, match="not one of the forecast times"):
        band.at("C", 95.7)


def test_auc_at_steady_state_equals_dose_over_clearance(posterior):
    from medtwin.core.events import DoseEvent

    steady = Regimen((DoseEvent(0.0, 1000.0, rate=1000.0, ii=12.0, addl=3, ss=1),))
    band = posterior.predict(steady, np.arange(0.0, 24.001, 0.01), n_draws=500, seed=4)
    cl = posterior.parameter_table(posterior.sample(500, seed=4))["CL"]  # the same draws (same seed)
    np.testing.assert_allclose(band.auc("C", 0.0, 24.0), 2000.0 / cl, rtol=2e-4)


def test_summary_and_laplace_update(pop, posterior):
    summary = posterior.summary()
    assert list(summary.parameter) == ["CL", "V1", "V2"] and summary.unit[0] == "L/h"
    more = PatientData(REGIMEN, [59.5], [14.0], COV)
    updated = posterior.update(more)
    assert updated.ok and len(updated.data) == 2
    batch = personalize(pop, [posterior.data[0], more])
    # nonlinear in z: sequential Laplace is an approximation of the batch fit (exact only when linear-Gaussian)
    np.testing.assert_allclose(updated.mean, batch.mean, atol=0.05)


# ------------------------------------------------------------------ clinical sanity (issue 12, point 8)

def test_negative_level_is_refused_naming_the_row_and_blq(pop):
    data = PatientData(REGIMEN, [11.5, 35.5], [9.0, -4.2], COV, rows=[7, 12], patient="p1")
    with pytest.raises(DataError, match=r"patient p1, data row 12 \(t = 35.5 h\): C = -4.2 mg/L is negative.*BLQ"):
        personalize(pop, data)
    with pytest.raises(DataError, match=r"observation 2 \(t = 35.5 h\): C = -4.2 mg/L"):
        personalize(pop, PatientData(REGIMEN, [11.5, 35.5], [9.0, -4.2], COV))


def test_level_before_the_first_dose_of_a_model_without_baseline_is_refused(pop):
    from medtwin.core.events import DoseEvent

    late = Regimen((DoseEvent(time=2.0, amount=1000.0, rate=1000.0, ii=12.0, addl=3),))
    with pytest.raises(DataError, match=r"observation 1 \(t = 1 h\): C = 7 mg/L before the first dose \(t = 2 h\)"
                                        r".*no baseline.*earlier doses"):
        personalize(pop, PatientData(late, [1.0, 35.5], [7.0, 12.0], COV))
    # at the dose time, recorded before the dose (a trough drawn before the first bag): the same
    with pytest.raises(DataError, match="observation 1 .* before the first dose"):
        personalize(pop, PatientData(REGIMEN, [0.0, 35.5], [5.0, 12.0], COV, pre_dose=[True, False]))
    # zero and BLQ before the first dose are what the model predicts: fitted
    ok = personalize(pop, PatientData(REGIMEN, [0.0, 0.0, 35.5], [0.0, np.nan, 12.0], COV, blq=[False, True, False],
                                      lloq=2.0, pre_dose=[True, True, False]))
    assert ok.ok


def test_posterior_far_outside_the_population_is_warned(pop, posterior):
    assert posterior.warnings() == [] and set(posterior.eta_z) == {"CL", "V1", "V2"}
    far = personalize(pop, PatientData(REGIMEN, [35.5, 38.0], [150.0, 170.0], COV))
    z = far.eta_z
    assert z["CL"] < -3.0
    warnings = far.warnings()
    assert any(w.startswith("CL = ") and "SD from the population" in w for w in warnings)
    assert all(abs(z[w.split(" ")[0]]) > 3.0 for w in warnings)
