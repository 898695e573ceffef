"""Full hierarchical Bayes (NUTS): parameter recovery on simulated data, the log density, input checks."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from scipy import stats

from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.population import CovariateEffect, InterOccasion, Population, Theta
from medtwin.core.simulate import simulate
from medtwin.errors import EstimationError
from medtwin.infer.hierarchical import (
    BayesFitResult,
    _from_free,
    _numpyro_model,
    _omega_blocks,
    _spec,
    _to_free,
    fit_nuts,
)
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.models import get_model

TRUTH = {"TVCL": 2.0, "TVV": 20.0, "omega": (0.09, 0.04), "prop": 0.1}
TIMES = (0.5, 2.0, 6.0, 12.0)


def _population(**overrides) -> Population:
    values = {"name": "synthetic", "model": "pk1_iv",
              "thetas": (Theta("TVCL", 1.5, "L/h", lower=0.0), Theta("TVV", 25.0, "L", lower=0.0)),
              "typical": {"CL": "TVCL", "V": "TVV"}, "iiv": ("CL", "V"), "omega": ((0.2, 0.0), (0.0, 0.2)),
              "residual": ResidualError("proportional", proportional=0.2)}
    values.update(overrides)
    return Population(**values)


@pytest.fixture(scope="module")
def dataset():
    """20 subjects, 100 mg IV bolus, 4 samples each, simulated with medtwin at known θ, Ω, σ."""
    rng = np.random.default_rng(2024)
    n = 20
    eta = rng.standard_normal((n, 2)) * np.sqrt(TRUTH["omega"])
    params = {"CL": TRUTH["TVCL"] * np.exp(eta[:, 0]), "V": TRUTH["TVV"] * np.exp(eta[:, 1])}
    f = simulate(get_model("pk1_iv"), params, Regimen.single(100.0), np.array(TIMES)).output("C")
    y = f * (1.0 + TRUTH["prop"] * rng.standard_normal(f.shape))
    rows = ["ID TIME AMT DV MDV GRP"]
    for i in range(n):
        rows.append(f"{i + 1} 0 100 . 1 {i % 2}")
        rows += [f"{i + 1} {t} . {v:.6g} 0 {i % 2}" for t, v in zip(TIMES, y[i])]
    return read_nonmem(io.StringIO("\n".join(rows) + "\n"), access=OpenData("simulated records"))


@pytest.fixture(scope="module")
def fit(dataset):
    return fit_nuts(_population(), dataset, chains=2, draws=200, warmup=200, seed=3)


@pytest.mark.slow
def test_posterior_medians_recover_the_truth(fit):
    assert isinstance(fit, BayesFitResult)
    assert fit.parameter_names == ("THETA:TVCL", "THETA:TVV", "OMEGA(1,1)", "OMEGA(2,2)", "SIGMA:proportional")
    truth = {"THETA:TVCL": TRUTH["TVCL"], "THETA:TVV": TRUTH["TVV"], "OMEGA(1,1)": TRUTH["omega"][0],
             "OMEGA(2,2)": TRUTH["omega"][1], "SIGMA:proportional": TRUTH["prop"] ** 2}
    for name, value in truth.items():
        s = fit.summary[name]
        assert abs(s["q50"] - value) < 3.0 * s["sd"], (name, s, value)
        assert s["q5"] < s["q50"] < s["q95"]
    assert fit.draws.shape == (2, 200, 5)
    assert fit.eta_mean.shape == (20, 2) and np.all(fit.eta_sd > 0)
    assert fit.wall_time["total"] > 0 and fit.n_gradients >= 400 and fit.n_obs == 80


@pytest.mark.slow
def test_diagnostics_and_status(fit):
    assert np.all(np.isfinite(fit.rhat)) and np.all(fit.ess_bulk > 20)
    expected = "converged" if (np.all(fit.rhat < 1.01) and fit.divergences == 0) else "check-diagnostics"
    assert fit.status == expected, fit.message
    assert "R-hat" in fit.message and "ESS" in fit.message
    frame = fit.summary_frame()
    assert list(frame.columns) == ["mean", "sd", "q5", "q50", "q95", "rhat", "ess_bulk", "ess_tail"]


@pytest.mark.slow
def test_to_population_posterior_medians(fit, tmp_path):
    from medtwin.io.population_file import load_population, save_population

    pop = fit.to_population()
    assert pop.theta("TVCL").value == fit.summary["THETA:TVCL"]["q50"]
    assert np.asarray(pop.omega)[1, 1] == pytest.approx(fit.summary["OMEGA(2,2)"]["q50"])
    assert np.asarray(pop.omega)[0, 1] == 0.0
    assert pop.residual.proportional ** 2 == pytest.approx(fit.summary["SIGMA:proportional"]["q50"])
    assert pop.estimation["method"].startswith("NUTS") and pop.estimation["chains"] == 2
    again = load_population(save_population(pop, tmp_path / "posterior.yaml"))
    assert again.theta("TVV").value == pytest.approx(pop.theta("TVV").value)


def test_log_density_equals_an_independent_computation(dataset):
    """The joint log density at a point: numpyro's trace vs scipy.stats with the numba simulate."""
    from numpyro.infer.util import log_density

    pop = _population()
    spec = _spec(pop, dataset, get_model("pk1_iv"), {})
    rng = np.random.default_rng(0)
    u = np.array([math.log(1.8), math.log(22.0)])
    omega_sd, z, sigma = np.array([0.3, 0.25]), rng.standard_normal((20, 2)), 0.12
    import jax.numpy as jnp

    batch = {k: jnp.asarray(v) for k, v in spec.batch.items()}
    value, _ = log_density(lambda b: _numpyro_model(spec, b), (batch,), {},
                           {"theta_free": u, "omega_sd": omega_sd, "z": z, "sigma_proportional": sigma})
    eta = z * omega_sd
    params = {"CL": 1.8 * np.exp(eta[:, 0]), "V": 22.0 * np.exp(eta[:, 1])}
    f = simulate(get_model("pk1_iv"), params, Regimen.single(100.0), np.array(TIMES)).output("C")
    y = np.array([s.obs_dv[(s.obs_mdv == 0)] for s in dataset.subjects])
    expected = (stats.norm.logpdf(u, np.log([1.5, 25.0]), 1.0).sum()
                + stats.halfnorm.logpdf(omega_sd, scale=1.0).sum() + stats.norm.logpdf(z).sum()
                + stats.halfnorm.logpdf(sigma, scale=1.0) + stats.norm.logpdf(y, f, sigma * f).sum())
    assert float(value) == pytest.approx(expected, rel=1e-7)  # simulate: rtol 1e-8 solver


def test_theta_transforms_and_omega_blocks():
    for lo, hi, v in ((0.0, math.inf, 0.005), (-0.99, math.inf, 0.15), (-math.inf, 2.0, -3.0), (0.0, 1.0, 0.3),
                      (-math.inf, math.inf, -4.0)):
        assert float(_from_free(np, _to_free(v, lo, hi), lo, hi)) == pytest.approx(v, rel=1e-12)
    omega = np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 0.0], [0.2, 0.0, 1.0]])
    assert _omega_blocks(omega) == [[0, 2], [1]]


@pytest.mark.slow
def test_full_omega_block_and_categorical_effect_compile(dataset):
    """A correlated Ω block (LKJ) and a bounded categorical coefficient: the model runs and reports Ω(2,1)."""
    pop = _population(thetas=(Theta("TVCL", 1.5, "L/h", lower=0.0), Theta("TVV", 25.0, "L", lower=0.0),
                              Theta("EFF", 0.1, "1", lower=-0.99)),
                      effects=(CovariateEffect("V", "GRP", "categorical", "EFF", condition=("==", 1.0)),),
                      omega=((0.2, 0.05), (0.05, 0.2)))
    fit = fit_nuts(pop, dataset, chains=1, draws=5, warmup=5, seed=0)
    assert fit.parameter_names == ("THETA:TVCL", "THETA:TVV", "THETA:EFF", "OMEGA(1,1)", "OMEGA(2,1)",
                                   "OMEGA(2,2)", "SIGMA:proportional")
    assert np.all(fit.draws[..., 2] > -0.99)
    assert fit.settings["priors"]["EFF"]["scale"] == "log(theta - -0.99)"
    assert fit.settings["priors"]["lkj"] == 2.0


@pytest.mark.parametrize("kwargs, field", [
    ({"chains": 0}, "chains"), ({"draws": 1.5}, "draws"), ({"warmup": -1}, "warmup"), ({"seed": "x"}, "seed"),
    ({"target_accept": 1.5}, "target_accept"), ({"priors": {"NOPE": (0, 1)}}, "priors.NOPE"),
    ({"priors": {"TVCL": (0.0, -1.0)}}, "priors.TVCL"), ({"priors": {"TVCL": "wide"}}, "priors.TVCL"),
    ({"priors": {"omega_sd": 0}}, "priors.omega_sd"), ({"priors": [1]}, "priors"),
    ({"init": 3}, "init"), ({"model": get_model("pk1_oral")}, "model"),
])
def test_input_errors_name_the_field(dataset, kwargs, field):
    with pytest.raises(EstimationError, match=f"^{field.replace('.', '[.]')}"):
        fit_nuts(_population(), dataset, **kwargs)


def test_population_errors_name_the_field(dataset):
    with pytest.raises(EstimationError, match="^population: expected a Population"):
        fit_nuts("pop", dataset)
    with pytest.raises(EstimationError, match="^population.iov.omega: fit_nuts samples a diagonal IOV"):
        fit_nuts(_population(iov=InterOccasion(("CL", "V"), ((0.1, 0.02), (0.02, 0.1)))), dataset)
    with pytest.raises(EstimationError, match="^population.iiv"):
        fit_nuts(_population(iiv=(), omega=()), dataset)
    pop = _population(effects=(CovariateEffect("CL", "WT", "power", 0.75, reference=70.0),))
    with pytest.raises(EstimationError, match=r"^dataset: covariate\(s\) \['WT'\]"):
        fit_nuts(pop, dataset)
    with pytest.raises(EstimationError, match="^dataset: expected"):
        fit_nuts(_population(), object())
