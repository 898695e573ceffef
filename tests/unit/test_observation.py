"""Residual error log-likelihoods against scipy.stats (independent reference)."""

import math

import numpy as np
import pytest
from scipy import stats

from medtwin.core.observation import ResidualError, loglik, m3_loglik, minus2ll
from medtwin.errors import ParameterError

RNG = np.random.default_rng(7)
F = RNG.uniform(0.1, 50.0, 40)
Y = F * (1 + 0.2 * RNG.standard_normal(40)) + RNG.standard_normal(40)


@pytest.mark.parametrize("error, sd", [
    (ResidualError("additive", additive=1.5), lambda f: np.full_like(f, 1.5)),
    (ResidualError("proportional", proportional=0.2), lambda f: 0.2 * f),
    (ResidualError("combined", additive=1.5, proportional=0.2), lambda f: np.sqrt(1.5**2 + (0.2 * f) ** 2)),
])
def test_normal_loglik_matches_scipy(error, sd):
    np.testing.assert_allclose(loglik(Y, F, error), stats.norm.logpdf(Y, loc=F, scale=sd(F)), rtol=1e-12)
    expected = -2 * stats.norm.logpdf(Y, loc=F, scale=sd(F)).sum()
    assert minus2ll(Y, F, error) == pytest.approx(expected, rel=1e-12)
    assert minus2ll(Y, F, error, nonmem_constant=True) == pytest.approx(expected - len(Y) * math.log(2 * math.pi))


def test_m3_matches_scipy_logcdf_including_far_tail():
    error = ResidualError("combined", additive=0.5, proportional=0.1)
    lloq = 2.0
    f = np.array([0.5, 2.0, 5.0, 40.0])  # the last: P(BLQ) ~ 1e-40, log must stay finite and exact
    expected = stats.norm.logcdf(lloq, loc=f, scale=np.sqrt(error.variance(f)))
    np.testing.assert_allclose(m3_loglik(lloq, f, error.variance(f)), expected, rtol=1e-10)
    blq = np.array([True, False, True, True])
    y = np.array([0.0, 2.3, 0.0, 0.0])
    got = loglik(y, f, error, blq=blq, lloq=lloq)
    np.testing.assert_allclose(got[blq], expected[blq], rtol=1e-10)
    assert got[1] == pytest.approx(stats.norm.logpdf(2.3, 2.0, math.sqrt(error.variance(2.0))))
    # NONMEM's constant is dropped for the one non-BLQ record only
    assert minus2ll(y, f, error, blq=blq, lloq=lloq, nonmem_constant=True) == pytest.approx(
        -2 * got.sum() - math.log(2 * math.pi))


def test_jax_arrays_give_the_same_values():
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    error = ResidualError("proportional", proportional=0.2)
    got = loglik(jnp.asarray(Y), jnp.asarray(F), error, blq=Y < 3, lloq=3.0)
    np.testing.assert_allclose(np.asarray(got), loglik(Y, F, error, blq=Y < 3, lloq=3.0), rtol=1e-10)


@pytest.mark.parametrize("kwargs, field", [
    ({"model": "exponential"}, "model"),
    ({"model": "additive", "additive": 0.0}, "additive"),
    ({"model": "proportional", "proportional": 0.1, "additive": 1.0}, "additive"),
    ({"model": "combined", "additive": 1.0, "proportional": float("nan")}, "proportional"),
])
def test_invalid_error_models_name_the_field(kwargs, field):
    with pytest.raises(ParameterError, match=field):
        ResidualError(**kwargs)


def test_blq_without_lloq_is_an_error():
    with pytest.raises(ParameterError, match="LLOQ"):
        loglik(Y, F, ResidualError("additive", additive=1.0), blq=Y < 1)
