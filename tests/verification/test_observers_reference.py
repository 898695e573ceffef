"""Observers against independent references.

* Linear-Gaussian: on ``pk2_iv`` with fixed parameters, process noise and an
  additive error, the EKF and UKF must reproduce the exact discrete Kalman
  filter (transition by the matrix exponential, inputs by the closed-form
  integral A⁻¹(Φ − I)r) to 1e-8 in means and covariances; the particle filter
  agrees within its Monte-Carlo error.
* Nonlinear, one parameter: ``pk1_iv`` with unknown clearance and a
  proportional error; the posterior of log CL on a fine grid (prior × likelihood,
  brute force) is the reference for the particle filter (Monte-Carlo error)
  and the UKF/EKF (approximations, looser).
"""

import math

import numpy as np
import pytest
from scipy.linalg import expm

from medtwin.core.inputs import input_schedule
from medtwin.assimilate.observers import ExtendedKalmanFilter, ParticleFilter, UnscentedKalmanFilter
from medtwin.assimilate.statespace import StateSpace
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.observation import ResidualError
from medtwin.models import get_model

PARAMS = {"CL": 3.0, "V1": 20.0, "Q": 4.0, "V2": 40.0}
REGIMEN = Regimen((DoseEvent(time=0.0, amount=500.0, rate=500.0), DoseEvent(time=6.3, amount=300.0),
                   DoseEvent(time=12.0, amount=800.0, rate=400.0)))
TIMES = np.array([0.5, 1.0, 2.7, 6.3, 7.0, 9.9, 12.0, 13.5, 17.2, 24.0])
VALUES = np.array([20.0, 18.0, 13.0, 8.0, 17.0, 11.0, 7.0, 26.0, 14.0, 6.0])
Q_STATES = {"CENTRAL": 4.0, "PERIPHERAL": 1.0}
ERROR = ResidualError("additive", additive=1.5, output="C")


def _exact_kalman(model, theta, error_var):
    """Reference discrete KF: x' = Φx + A⁻¹(Φ−I)r per stretch, P' = ΦPΦᵀ, Q·Δt added per predict."""
    a = np.array(model.linear_matrix(tuple(theta)), dtype=float)
    schedule = input_schedule(model, REGIMEN, theta)
    v1 = theta[model.parameter_names.index("V1")]
    h = np.array([1.0 / v1, 0.0])
    q = np.array([Q_STATES["CENTRAL"], Q_STATES["PERIPHERAL"]])
    m, p, t = np.zeros(2), np.zeros((2, 2)), 0.0
    means, covs = [], []
    for time, y in zip(TIMES, VALUES):
        for piece in schedule.pieces(t, time):
            m = m + piece.bolus
            phi = expm(a * (piece.end - piece.start))
            m = phi @ m + np.linalg.solve(a, (phi - np.eye(2)) @ piece.rates)
            p = phi @ p @ phi.T
        p = p + np.diag(q * (time - t))
        t = time
        s = h @ p @ h + error_var
        k = p @ h / s
        m = m + k * (y - h @ m)
        p = p - np.outer(k, k) * s
        means.append(m.copy())
        covs.append(p.copy())
    return np.array(means), np.array(covs)


def _run(observer, belief, schedule, error, values=VALUES, times=TIMES):
    means, covs, innovations = [], [], []
    for time, y in zip(times, values):
        belief = observer.predict(belief, time, schedule)
        belief, status, innovation = observer.update(belief, time, y, "C", error)
        assert status == "ok"
        means.append(belief.mean)
        covs.append(belief.cov)
        innovations.append(innovation)
    return np.array(means), np.array(covs), innovations


@pytest.fixture(scope="module")
def linear_case():
    model = get_model("pk2_iv")
    space = StateSpace.build(model, PARAMS, state_noise=Q_STATES, max_step=0.005)
    theta = space.theta
    ref_means, ref_covs = _exact_kalman(model, theta, ERROR.additive**2)
    return model, space, ref_means, ref_covs


@pytest.mark.parametrize("observer_class", [UnscentedKalmanFilter, ExtendedKalmanFilter])
def test_kalman_filters_equal_the_exact_filter_on_a_linear_gaussian_model(linear_case, observer_class):
    model, space, ref_means, ref_covs = linear_case
    observer = observer_class(space)
    schedule = input_schedule(model, REGIMEN, space.theta)
    means, covs, _ = _run(observer, observer.init(np.zeros(2), np.zeros((2, 2))), schedule, ERROR)
    np.testing.assert_allclose(means, ref_means, rtol=1e-8, atol=1e-8 * np.abs(ref_means).max())
    np.testing.assert_allclose(covs, ref_covs, rtol=1e-8, atol=1e-8 * np.abs(ref_covs).max())


def test_particle_filter_agrees_with_the_exact_filter_within_monte_carlo_error(linear_case):
    model, space, ref_means, ref_covs = linear_case
    space = StateSpace.build(model, PARAMS, state_noise=Q_STATES)  # default step: accurate to ~1e-4 here
    observer = ParticleFilter(space, n_particles=20_000, nonnegative=False)
    schedule = input_schedule(model, REGIMEN, space.theta)
    means, covs, _ = _run(observer, observer.init(np.zeros(2), np.zeros((2, 2)), seed=3), schedule, ERROR)
    sd = np.sqrt(np.diagonal(ref_covs, axis1=1, axis2=2))
    # Standard error of a weighted mean with ESS >= N/2: sd * sqrt(2/N); allow 5 of them.
    assert np.all(np.abs(means - ref_means) <= 5 * sd * math.sqrt(2 / 20_000) + 1e-3)
    np.testing.assert_allclose(np.sqrt(np.diagonal(covs, axis1=1, axis2=2)), sd, rtol=0.06)


# ------------------------------------------------------------------ nonlinear, one parameter
DOSE, V, CL_TRUE = 1000.0, 25.0, 4.0
PRIOR_MEAN, PRIOR_SD = math.log(2.5), 0.5
OBS_T = np.array([1.0, 3.0, 6.0, 10.0, 16.0])
PROP = 0.15


def _observations():
    rng = np.random.default_rng(11)
    c = DOSE / V * np.exp(-CL_TRUE / V * OBS_T)
    return c * (1 + PROP * rng.standard_normal(len(c)))


def _grid_posterior(values):
    z = np.linspace(PRIOR_MEAN - 6 * PRIOR_SD, PRIOR_MEAN + 6 * PRIOR_SD, 200_001)
    cl = np.exp(z)[:, None]
    c = DOSE / V * np.exp(-cl / V * OBS_T[None, :])
    var = (PROP * c) ** 2
    logp = -0.5 * ((z - PRIOR_MEAN) / PRIOR_SD) ** 2 - 0.5 * np.sum(np.log(var) + (values - c) ** 2 / var, axis=1)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = float(w @ z)
    return mean, float(np.sqrt(w @ (z - mean) ** 2))


@pytest.fixture(scope="module")
def nonlinear_case():
    model = get_model("pk1_iv")
    space = StateSpace.build(model, {"V": V, "CL": 2.5}, estimated=("CL",))
    values = _observations()
    return model, space, values, _grid_posterior(values)


def _posterior_log_cl(observer, belief, model, values):
    schedule = input_schedule(model, Regimen.single(DOSE))
    error = ResidualError("proportional", proportional=PROP, output="C")
    for time, y in zip(OBS_T, values):
        belief = observer.predict(belief, time, schedule)
        belief, status, _ = observer.update(belief, time, y, "C", error)
        assert status == "ok"
    return float(belief.mean[1]), float(belief.sd[1])


def test_particle_filter_matches_the_grid_posterior(nonlinear_case):
    model, space, values, (grid_mean, grid_sd) = nonlinear_case
    pf = ParticleFilter(space, n_particles=20_000)
    start = pf.init(np.array([0.0, PRIOR_MEAN]), np.diag([0.0, PRIOR_SD**2]), seed=5)
    mean, sd = _posterior_log_cl(pf, start, model, values)
    assert abs(mean - grid_mean) < 0.05 * grid_sd + 4 * grid_sd / math.sqrt(2_000)
    assert abs(sd - grid_sd) < 0.1 * grid_sd
    assert grid_sd < 0.5 * PRIOR_SD  # the data are informative: the test can tell a good filter from the prior


@pytest.mark.parametrize("observer_class", [UnscentedKalmanFilter, ExtendedKalmanFilter])
def test_gaussian_filters_approximate_the_grid_posterior(nonlinear_case, observer_class):
    model, space, values, (grid_mean, grid_sd) = nonlinear_case
    observer = observer_class(space)
    start = observer.init(np.array([0.0, PRIOR_MEAN]), np.diag([0.0, PRIOR_SD**2]))
    mean, sd = _posterior_log_cl(observer, start, model, values)
    assert abs(mean - grid_mean) < 0.5 * grid_sd
    assert 0.6 * grid_sd < sd < 1.6 * grid_sd
