"""The UKF's sigma points where some states are known exactly (zero, or rounding-residue, variance)."""

import numpy as np
import pytest

from medtwin.assimilate.observers import UnscentedKalmanFilter
from medtwin.assimilate.replay import replay_stream
from medtwin.assimilate.statespace import StateSpace
from medtwin.models import get_model
from medtwin.scenarios.glucose_patients import sample_icu_patients
from medtwin.scenarios.icu import icu_twin_spec, synthetic_stream
from medtwin.twin.codec import twin_from_spec


def _ukf(n_states_estimated=("KA", "CL")):
    # pk1_oral: DEPOT, CENTRAL + log KA, log CL: a 4-dimensional state for the sigma points alone
    return UnscentedKalmanFilter(StateSpace.build(get_model("pk1_oral"), {}, estimated=n_states_estimated))


def _weighted_cov(ukf, points, mean):
    _, wc = ukf.weights()
    d = points - mean
    return (wc[:, None] * d).T @ d


@pytest.mark.parametrize("residue", [0.0, 1e-30, -1e-30, 4e-27])
def test_a_known_state_holds_its_mean_whatever_the_rounding_residue(residue):
    ukf = _ukf()
    mean = np.array([5.0, 80.0, 0.2, 1.1])
    free = np.array([[400.0, 3.0, 0.5], [3.0, 0.09, 0.01], [0.5, 0.01, 0.04]])  # CENTRAL, log KA, log CL
    cov = np.zeros((4, 4))
    cov[1:, 1:] = free
    cov[0, 0] = residue
    cov[0, 1:] = cov[1:, 0] = np.sqrt(abs(residue) * np.diag(free)) * 0.3  # residue correlations too
    points = ukf.sigma_points(mean, cov)
    assert np.all(points[:, 0] == mean[0])  # every point holds the known state's mean
    exact = cov.copy()
    exact[0, :] = exact[:, 0] = 0.0
    np.testing.assert_array_equal(points, ukf.sigma_points(mean, exact))  # the residue does not matter
    # the unscented transform reproduces the free block (the independent check of the root)
    np.testing.assert_allclose(_weighted_cov(ukf, points, mean), exact, rtol=1e-12, atol=1e-12)


def test_a_singular_free_block_gets_the_correlation_eigen_root():
    ukf = _ukf()
    mean = np.array([5.0, 80.0, 0.2, 1.1])
    sd = np.array([2.0, 30.0, 0.3, 0.01])
    corr = np.full((4, 4), 1.0)  # rank one: Cholesky fails, every state is free
    cov = corr * np.outer(sd, sd)
    points = ukf.sigma_points(mean, cov)
    assert points is not None
    np.testing.assert_allclose(_weighted_cov(ukf, points, mean) / np.outer(sd, sd), corr, atol=1e-12)


def test_a_clearly_negative_variance_is_not_a_covariance():
    ukf = _ukf()
    assert ukf.sigma_points(np.array([5.0, 80.0, 0.2, 1.1]), np.diag([1.0, -1.0, 0.1, 0.1])) is None
    assert ukf.sigma_points(np.array([5.0, 80.0, 0.2, 1.1]), np.diag([1.0, np.nan, 0.1, 0.1])) is None


def test_the_icu_twin_replay_is_the_same_on_the_numpy_and_the_jax_transition():
    """Gut glucose (P1, P2) is known exactly under the feed: before the fix this replay moved by 1e-2 between
    the numpy and JAX transitions (and between CPUs with and without FMA), from the third reading on."""
    patient = sample_icu_patients(1, model="bergman_insulin", hours=9, seed=11)[0]
    stream = synthetic_stream(patient, 8, seed=0).stream

    def run(transition):
        spec = {**icu_twin_spec(), "observer": {"kind": "ukf", "transition": transition}}
        twin = twin_from_spec(spec, inputs=stream.regimen)
        assert twin.observer.transition == transition
        rows = replay_stream(twin, stream.measurements).rows
        keys = [k for k, v in rows[0].items() if isinstance(v, float)]
        return np.array([[row[k] for k in keys] for row in rows])

    on_numpy, on_jax = run("numpy"), run("jax")
    assert on_numpy.shape[0] == 96
    np.testing.assert_allclose(on_numpy, on_jax, rtol=1e-9, atol=1e-12)
