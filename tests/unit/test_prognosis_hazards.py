"""Hazard models against lifelines and scikit-survival on their shipped data sets, and CIF checks.

References: lifelines (Davidson-Pilon, doi:10.21105/joss.01317) CoxPHFitter / CoxTimeVaryingFitter (Efron
ties), WeibullFitter, WeibullAFTFitter, AalenJohansenFitter; scikit-survival CoxPHSurvivalAnalysis (Breslow
and Efron ties) and cumulative_incidence_competing_risks.
"""

import warnings

import numpy as np
import pytest

from medtwin.errors import DataError, EstimationError
from medtwin.prognosis.competing import aalen_johansen, cause_specific_incidence
from medtwin.prognosis.cox import fit_cox
from medtwin.prognosis.hazards import (Exponential, Gompertz, PiecewiseConstant, Weibull, cumulative_incidence,
                                       fit_parametric)

lifelines = pytest.importorskip("lifelines")
sksurv_lm = pytest.importorskip("sksurv.linear_model")
from lifelines.datasets import load_rossi, load_stanford_heart_transplants, load_waltons  # noqa: E402

TOL = 1e-4
ROSSI_COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi():
    return load_rossi()


def test_cox_efron_matches_lifelines_on_rossi(rossi):
    ours = fit_cox(rossi[ROSSI_COLS].values, rossi.week.values, rossi.arrest.values, ties="efron")
    ref = lifelines.CoxPHFitter().fit(rossi, "week", "arrest")
    assert ours.converged
    np.testing.assert_allclose(ours.coef, ref.params_[ROSSI_COLS].values, atol=TOL)
    np.testing.assert_allclose(ours.se, ref.standard_errors_[ROSSI_COLS].values, atol=TOL)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, abs=TOL)
    # Breslow's baseline cumulative hazard, lifelines reports it at the covariate means
    base = ref.baseline_cumulative_hazard_
    mean = rossi[ROSSI_COLS].values.mean(axis=0)
    np.testing.assert_allclose(ours.cumulative_hazard(base.index.values, mean), base.values[:, 0], atol=TOL)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_cox_matches_scikit_survival(rossi, ties):
    y = np.array(list(zip(rossi.arrest.astype(bool), rossi.week.astype(float))), dtype=[("e", "?"), ("t", "f8")])
    ref = sksurv_lm.CoxPHSurvivalAnalysis(ties=ties, tol=1e-12, n_iter=200).fit(
        rossi[ROSSI_COLS].values.astype(float), y)
    ours = fit_cox(rossi[ROSSI_COLS].values, rossi.week.values, rossi.arrest.values, ties=ties)
    np.testing.assert_allclose(ours.coef, ref.coef_, atol=TOL)


def test_breslow_and_efron_differ_with_ties(rossi):
    """Rossi has tied arrest weeks: the two approximations must give different estimates."""
    a = fit_cox(rossi[ROSSI_COLS].values, rossi.week.values, rossi.arrest.values, ties="breslow")
    b = fit_cox(rossi[ROSSI_COLS].values, rossi.week.values, rossi.arrest.values, ties="efron")
    assert np.max(np.abs(a.coef - b.coef)) > 1e-3


def test_time_varying_cox_matches_lifelines_on_stanford_heart():
    h = load_stanford_heart_transplants()
    cols = ["age", "year", "surgery", "transplant"]
    ours = fit_cox(h[cols].values, h.stop.values, h.event.values, start=h.start.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lifelines.CoxTimeVaryingFitter().fit(h, id_col="id", event_col="event", start_col="start",
                                                   stop_col="stop")
    np.testing.assert_allclose(ours.coef, ref.params_[cols].values, atol=TOL)
    np.testing.assert_allclose(ours.se, ref.standard_errors_[cols].values, atol=TOL)
    assert ours.loglik == pytest.approx(ref.log_likelihood_, abs=TOL)


def test_weibull_matches_lifelines_on_waltons():
    w = load_waltons()
    ours = fit_parametric(Weibull, w["T"].values, w["E"].values)
    ref = lifelines.WeibullFitter().fit(w["T"], w["E"])
    assert ours.converged
    assert ours.baseline.scale == pytest.approx(ref.lambda_, abs=TOL * 10, rel=TOL)
    assert ours.baseline.shape == pytest.approx(ref.rho_, abs=TOL)
    assert ours.loglik >= ref.log_likelihood_ - 1e-8


def test_weibull_regression_matches_lifelines_aft_on_rossi(rossi):
    """PH coefficients γ and AFT coefficients β of one Weibull model: β = −γ/ρ, intercept ln λ."""
    ours = fit_parametric(Weibull, rossi.week.values, rossi.arrest.values, covariates=rossi[ROSSI_COLS].values)
    ref = lifelines.WeibullAFTFitter().fit(rossi, "week", "arrest")
    rho = ours.baseline.shape
    np.testing.assert_allclose(-ours.coef / rho, ref.params_["lambda_"][ROSSI_COLS].values, atol=TOL)
    assert np.log(ours.baseline.scale) == pytest.approx(ref.params_["lambda_"]["Intercept"], abs=TOL)
    assert np.log(rho) == pytest.approx(ref.params_["rho_"]["Intercept"], abs=TOL)


@pytest.mark.parametrize("family", [Exponential(0.3), Weibull(2.0, 1.7), Gompertz(0.05, 0.4), Gompertz(0.5, -0.3),
                                    PiecewiseConstant((1.0, 2.5), (0.1, 0.6, 0.2))])
def test_exact_cif_equals_adaptive_quadrature_within_stated_error(family):
    t = np.array([0.0, 0.3, 1.0, 2.7, 6.0])
    exact = cumulative_incidence(family, t, x=[1.0], coef=[0.4])
    quad = cumulative_incidence(family, t, x=[1.0], coef=[0.4], method="quad")
    assert np.all(quad.error < 1e-9)
    assert np.all(np.abs(exact.value - quad.value) <= quad.error + 1e-13)


def test_parametric_recovery_gompertz_and_piecewise():
    rng = np.random.default_rng(7)
    n = 4000
    # Gompertz by inversion: H(t) = a/b (e^{bt} − 1) = E
    a, b = 0.1, 0.5
    t = np.log1p(b * rng.exponential(1.0, n) / a) / b
    c = rng.uniform(0, 6, n)
    fit = fit_parametric(Gompertz, np.minimum(t, c), (t <= c).astype(float))
    est = np.array([np.log(fit.baseline.a), fit.baseline.b])
    assert np.all(np.abs(est - [np.log(a), b]) < 4 * fit.se)
    pw = fit_parametric(PiecewiseConstant, np.minimum(t, c), (t <= c).astype(float), breaks=[1.0, 2.0])
    # piecewise rates are occurrence/exposure per interval (closed-form MLE)
    tt, dd = np.minimum(t, c), (t <= c)
    for k, (lo, hi) in enumerate([(0, 1.0), (1.0, 2.0), (2.0, np.inf)]):
        exposure = np.clip(np.minimum(tt, hi) - lo, 0, None).sum()
        events = np.count_nonzero(dd & (tt > lo) & (tt <= hi))
        assert pw.baseline.rates[k] == pytest.approx(events / exposure, rel=1e-7)


def test_aalen_johansen_matches_lifelines_and_scikit_survival():
    from lifelines import AalenJohansenFitter
    from sksurv.datasets import load_bmt
    from sksurv.nonparametric import cumulative_incidence_competing_risks

    _, y = load_bmt()
    t, e = y["ftime"].astype(float), y["status"]
    ours = aalen_johansen(t, e)
    times, ref = cumulative_incidence_competing_risks(e, t)  # ties kept
    for cause in (1, 2):
        np.testing.assert_allclose(ours.at(times, cause), ref[cause], atol=1e-12)
    # lifelines jitters tied times; break the ties deterministically so that both see the same data
    tb = t + np.arange(t.size) * 1e-4
    ours = aalen_johansen(tb, e)
    for cause in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            aj = AalenJohansenFitter(calculate_variance=False).fit(tb, e, event_of_interest=cause)
        cif = aj.cumulative_density_
        np.testing.assert_allclose(ours.at(cif.index.values, cause), cif.values[:, 0], atol=1e-12)


def test_cause_specific_cif_agrees_with_aalen_johansen_on_simulated_competing_risks():
    rng = np.random.default_rng(3)
    n = 20000
    h1, h2 = Weibull(4.0, 1.5), Exponential(0.1)
    t1 = h1.scale * rng.exponential(1.0, n) ** (1 / h1.shape)
    t2 = rng.exponential(1 / h2.rate, n)
    c = rng.uniform(0, 8, n)
    t = np.minimum.reduce([t1, t2, c])
    e = np.where(t == c, 0, np.where(t1 < t2, 1, 2))
    aj = aalen_johansen(t, e)
    grid = np.array([1.0, 2.0, 4.0, 6.0])
    for cause, k in ((1, 0), (2, 1)):
        model = cause_specific_incidence([h1, h2], grid, k)
        assert np.all(model.error < 1e-8)
        np.testing.assert_allclose(aj.at(grid, cause), model.value, atol=0.012)  # ~3 SE at n = 20000
    # competing risks: F_1 is below the naive 1 − exp(−H_1)
    assert np.all(cause_specific_incidence([h1, h2], grid, 0).value < cumulative_incidence(h1, grid).value)


def test_input_errors():
    with pytest.raises(DataError):
        fit_cox([[1.0]], [1.0], [2])
    with pytest.raises(EstimationError):
        fit_cox([[1.0], [0.0]], [1.0, 2.0], [0, 0])
    with pytest.raises(DataError):
        fit_parametric(Weibull, [1.0, -1.0], [1, 1])
    with pytest.raises(DataError):
        cumulative_incidence(Weibull(1.0, 1.0), 1.0, method="simpson")
    with pytest.raises(DataError):
        PiecewiseConstant((2.0, 1.0), (1.0, 1.0, 1.0))
