"""Personalization against independent references.

* Linear-Gaussian model (observations f = A z + c with additive normal error,
  Gaussian prior): the posterior is Gaussian in closed form.  The Laplace
  machinery must reproduce it, and sequential updating (posterior as the next
  prior) must equal the batch fit to 1e-6.
* One-parameter nonlinear model (pk1_iv, log-normal CL): the posterior density
  on a fine grid of CL, with predictions from the numba ``simulate`` (not the
  JAX path), is the brute-force reference for the Laplace mode and for NUTS.
* Sequential NUTS equals batch NUTS to sampling error.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError, normal_loglik
from medtwin.core.population import Population, Theta
from medtwin.core.simulate import simulate
from medtwin.core.data import PatientData
from medtwin.infer.personalize import laplace_mode, personalize
from medtwin.models import get_model


# ----------------------------------------------------------------------------- linear-Gaussian
def _gaussian_posterior(m, c, a, off, y, sigma):
    prec = np.linalg.inv(c) + a.T @ a / sigma**2
    cov = np.linalg.inv(prec)
    return cov @ (np.linalg.solve(c, m) + a.T @ (y - off) / sigma**2), cov


def _laplace_linear(m, c, a, off, y, sigma):
    """Laplace fit of prior N(m, c) × Π N(y | A z + off, σ²), with medtwin's observation log-likelihood."""
    prec = np.linalg.inv(c)

    def value_grad(z):
        r = z - m
        f = a @ z + off
        value = 0.5 * r @ prec @ r - np.sum(normal_loglik(y, f, np.full_like(f, sigma**2)))
        return value, prec @ r - a.T @ ((y - f) / sigma**2)

    res, h = laplace_mode(value_grad, lambda z: prec + a.T @ a / sigma**2, m, gtol=1e-12)
    return res.x, np.linalg.inv(h)


def test_laplace_is_exact_and_sequential_equals_batch_on_a_linear_gaussian_model():
    rng = np.random.default_rng(7)
    n, j1, j2, sigma = 3, 4, 5, 0.3
    m = rng.normal(size=n)
    root = rng.normal(size=(n, n))
    c = root @ root.T + n * np.eye(n)
    a1, a2 = rng.normal(size=(j1, n)), rng.normal(size=(j2, n))
    off1, off2 = rng.normal(size=j1), rng.normal(size=j2)
    z_true = rng.multivariate_normal(m, c)
    y1 = a1 @ z_true + off1 + sigma * rng.normal(size=j1)
    y2 = a2 @ z_true + off2 + sigma * rng.normal(size=j2)
    a, off, y = np.vstack([a1, a2]), np.r_[off1, off2], np.r_[y1, y2]

    exact_mean, exact_cov = _gaussian_posterior(m, c, a, off, y, sigma)
    batch_mean, batch_cov = _laplace_linear(m, c, a, off, y, sigma)
    np.testing.assert_allclose(batch_mean, exact_mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(batch_cov, exact_cov, rtol=0, atol=1e-9)

    day1_mean, day1_cov = _laplace_linear(m, c, a1, off1, y1, sigma)
    seq_mean, seq_cov = _laplace_linear(day1_mean, day1_cov, a2, off2, y2, sigma)
    np.testing.assert_allclose(seq_mean, batch_mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(seq_cov, batch_cov, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- 1-parameter grid
OMEGA2, PROP, V = 0.16, 0.15, 20.0


def _log_posterior(z, data):
    """log prior + log likelihood at z = log CL, predictions from the numba simulate (not the JAX path)."""
    z = np.atleast_1d(np.asarray(z, dtype=float))
    trajectory = simulate(get_model("pk1_iv"), {"CL": np.exp(z), "V": np.full(z.size, V)}, data.regimen,
                          data.times, method="exact")
    f = trajectory.output("C")
    return stats.norm.logpdf(z, np.log(2.0), np.sqrt(OMEGA2)) + \
        stats.norm.logpdf(data.values[None, :], f, PROP * f).sum(axis=1)


@pytest.fixture(scope="module")
def one_parameter():
    pop = Population(name="pk1-cl-only", model="pk1_iv",
                     thetas=(Theta("TVCL", 2.0, "L/h", lower=0.0), Theta("TVV", V, "L", lower=0.0)),
                     typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL",), omega=((OMEGA2,),),
                     residual=ResidualError("proportional", proportional=PROP))
    regimen = Regimen.every(12.0, "h", 500.0, "mg", n=3, duration=0.5)
    data = PatientData(regimen, [2.0, 11.9, 26.0], [17.0, 4.1, 13.5], {})
    grid = np.linspace(np.log(2.0) - 6 * np.sqrt(OMEGA2), np.log(2.0) + 6 * np.sqrt(OMEGA2), 4001)
    log_post = _log_posterior(grid, data)
    weights = np.exp(log_post - log_post.max())
    weights /= np.trapezoid(weights, grid)
    return pop, data, grid, weights


def _grid_quantile(grid, density, q):
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(q, cdf / cdf[-1], grid)


def test_laplace_mode_matches_the_grid_posterior(one_parameter):
    pop, data, grid, density = one_parameter
    post = personalize(pop, data, method="laplace")
    assert post.ok
    z, h = post.mean[0], 1e-4
    assert abs(z - grid[np.argmax(density)]) <= grid[1] - grid[0]
    lp = _log_posterior([z - h, z, z + h], data)
    assert abs(lp[2] - lp[0]) / (2 * h) < 1e-4  # stationary (the truncation error of the difference is ~h²·f'''/6)
    curvature = -(lp[2] - 2 * lp[1] + lp[0]) / h**2
    assert post.covariance[0, 0] == pytest.approx(1.0 / curvature, rel=1e-5)


def test_nuts_matches_the_grid_posterior(one_parameter):
    pop, data, grid, density = one_parameter
    post = personalize(pop, data, method="nuts", chains=4, draws=1000, warmup=500, seed=3)
    assert post.ok, post.message
    z = post.draws.reshape(-1)
    mean = np.trapezoid(grid * density, grid)
    sd = np.sqrt(np.trapezoid((grid - mean) ** 2 * density, grid))
    mcse = sd / np.sqrt(post.diagnostics["ess"][0])
    assert abs(z.mean() - mean) < 4 * mcse
    for q in (0.05, 0.5, 0.95):
        assert abs(np.quantile(z, q) - _grid_quantile(grid, density, q)) < 0.06 * sd + 4 * mcse


@pytest.mark.slow
def test_sequential_nuts_equals_batch_to_sampling_error(one_parameter):
    pop, data, _, _ = one_parameter
    day1, day2 = data.first(2), data.rest(2)
    # The batch fit has the settings of test_nuts_matches_the_grid_posterior (another seed): the same
    # compiled sampler, from JAX's persistent compilation cache.  The tolerance is the Monte-Carlo standard
    # error of the difference (from each fit's ESS), so fewer draws widen it exactly as much as they should.
    batch = personalize(pop, data, method="nuts", chains=4, draws=1000, warmup=500, seed=11)
    sequential = personalize(pop, day1, method="nuts", chains=4, draws=1000, warmup=500, seed=12).update(day2)
    assert batch.ok and sequential.ok
    zb, zs = batch.draws.reshape(-1), sequential.draws.reshape(-1)
    se = np.sqrt(zb.var() / batch.diagnostics["ess"][0] + zs.var() / sequential.diagnostics["ess"][0])
    assert abs(zb.mean() - zs.mean()) < 4 * se
    assert len(sequential.data) == 2
