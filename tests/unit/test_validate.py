"""Forecast validation (k observations → the rest) and the individual forecast plot.

The calibration check is independent of the code under test: patients are
simulated from a known population (pk1_iv, allometric weight effects, combined
residual error) with residual error drawn from the same model, so the
population used to personalize is the data-generating one.  Then a held-out
observation falls inside its central 90 % posterior predictive interval with
probability 0.9 (up to the Laplace approximation), and the empirical coverage
is compared with a binomial 99 % interval around 0.9.  A misspecified cohort
(data generated with the typical CL doubled) must show clearly lower coverage.

Measured on 2026-12-01 (40 patients × 6 held-out observations, k = 1,
n_draws = 1000): coverage 0.904, MAPE 39.9 % (well-specified, data seed 0);
0.338 and MAPE 494 % (typical CL doubled).  Over data seeds 0–3 the
well-specified coverage was 0.904, 0.963, 0.904, 0.875: observations of one
patient share its posterior and are correlated, so the spread is wider than the
binomial interval (which treats the 240 observations as independent); with
k = 2 over 12 further seeds the pooled coverage was 0.895 (2400 observations),
every time point 0.885–0.904, pre-dose ones included.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from scipy import stats

from medtwin.core.events import Regimen
from medtwin.core.population import Population
from medtwin.core.simulate import simulate
from medtwin.errors import DataError, EstimationError
from medtwin.core.data import PatientData
from medtwin.infer.personalize import personalize
from medtwin.infer.plots import plot_individual
from medtwin.infer.validate import (
    CALIBRATION_LEVELS, binomial_band, plot_calibration, predictive_observations, validate)
from medtwin.models import get_model

REGIMEN = Regimen.every(12.0, "h", 500.0, "mg", n=6)  # IV bolus q12h
TIMES = np.array([1.0, 11.0, 24.0, 24.0, 35.0, 47.0, 60.0])
PRE = np.array([False, False, True, False, False, False, True])  # 24 h trough, 24 h post-dose, 60 h trough
N_PATIENTS = 40


def synthetic_population(typical_cl: float = 4.0) -> Population:
    return Population.from_dict({
        "format": "medtwin-population/1", "name": "synthetic_pk1", "model": "pk1_iv",
        "covariates": {"WT": "kg"},
        "thetas": [{"name": "TVCL", "value": typical_cl, "unit": "L/h", "lower": 0.0},
                   {"name": "TVV", "value": 50.0, "unit": "L", "lower": 0.0}],
        "typical": {"CL": "TVCL", "V": "TVV"},
        "effects": [{"parameter": "CL", "covariate": "WT", "form": "power", "theta": 0.75, "reference": 70.0},
                    {"parameter": "V", "covariate": "WT", "form": "power", "theta": 1.0, "reference": 70.0}],
        "iiv": {"parameters": ["CL", "V"], "omega": [[0.09, 0.0], [0.0, 0.04]]},
        "residual": {"model": "combined", "additive_sd": 0.3, "proportional_sd": 0.15, "output": "C",
                     "unit": "mg/L"}})


def cohort(truth: Population, n: int, seed: int) -> list[PatientData]:
    """``n`` patients simulated from ``truth``: η ~ N(0, Ω), y = f + √Var(f)·ε, NONMEM record order kept."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(50.0, 100.0, n)
    eta = rng.multivariate_normal(np.zeros(2), truth.omega, size=n)
    params = truth.individual_parameters({"WT": weights}, eta)
    f = simulate(get_model("pk1_iv"), params, REGIMEN, [TIMES] * n, keep_states=False,
                 pre_dose=[PRE] * n).output("C").reshape(n, TIMES.size)
    y = f + np.sqrt(truth.residual.variance(f)) * rng.standard_normal(f.shape)
    return [PatientData(REGIMEN, TIMES, y[i], {"WT": weights[i]}, pre_dose=PRE, patient=f"S{i + 1}")
            for i in range(n)]


@pytest.fixture(scope="module")
def population():
    return synthetic_population()


@pytest.fixture(scope="module")
def well_specified(population):
    calls = []
    start = time.perf_counter()
    result = validate(population, cohort(population, N_PATIENTS, seed=0), 1, n_draws=1000, seed=0,
                      progress=lambda done, total: calls.append((done, total)))
    print(f"\nwell-specified: {result.summary()} ({time.perf_counter() - start:.1f} s)")
    return result, calls


@pytest.fixture(scope="module")
def misspecified(population):
    result = validate(population, cohort(synthetic_population(8.0), N_PATIENTS, seed=0), 1, n_draws=1000, seed=0)
    print(f"\ntypical CL doubled: {result.summary()}")
    return result


# ----------------------------------------------------------------------------- calibration
def test_coverage_is_calibrated_when_the_data_come_from_the_fitted_model(well_specified):
    result, _ = well_specified
    n = result.n_observations
    assert (result.n_patients, n, result.skipped, result.failed) == (N_PATIENTS, N_PATIENTS * 6, (), ())
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 0.9) / n
    assert lo <= result.coverage <= hi, result.summary()
    table = result.calibration
    assert np.allclose(table["nominal"], CALIBRATION_LEVELS)
    assert np.array_equal(table["empirical"], [np.mean(result.columns[f"inside_{v:g}"]) for v in CALIBRATION_LEVELS])
    # the whole curve near the identity (clustered observations: a looser tolerance than the binomial band)
    assert np.max(np.abs(table["empirical"] - table["nominal"])) < 0.1
    # the level-0.9 grid point is the scored interval itself
    assert table["empirical"].iloc[-1] == pytest.approx(result.coverage)
    assert 0.3 < np.mean(result.columns["PIT"]) < 0.7


def test_misspecified_population_shows_clearly_lower_coverage(well_specified, misspecified):
    result, _ = well_specified
    assert misspecified.coverage < 0.75 < result.coverage
    assert misspecified.mape > 2 * result.mape


def test_result_table_progress_and_immutability(well_specified):
    result, calls = well_specified
    assert calls == [(i, N_PATIENTS) for i in range(1, N_PATIENTS + 1)]
    frame = result.observations
    assert list(frame.columns) == ["ID", "TIME", "DV", "median", "lo", "hi", "inside", "APE", "PIT"]
    assert np.all(frame["lo"] <= frame["median"]) and np.all(frame["median"] <= frame["hi"])
    assert np.array_equal(frame["inside"], (frame["DV"] >= frame["lo"]) & (frame["DV"] <= frame["hi"]))
    assert np.allclose(frame["APE"], 100 * np.abs(frame["median"] - frame["DV"]) / np.abs(frame["DV"]))
    assert result.mape == pytest.approx(frame["APE"].mean())
    assert np.array_equal(frame.loc[frame["ID"] == "S1", "TIME"], TIMES[1:])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.k = 2
    with pytest.raises(ValueError):
        result.columns["DV"][0] = 0.0
    with pytest.raises(TypeError):
        result.columns["DV"] = np.zeros(3)
    frame.loc[0, "DV"] = -1.0  # a copy: the result is unchanged
    assert result.observations.loc[0, "DV"] != -1.0
    assert set(result.patients["status"]) <= {"converged", "not-converged"}


def test_pre_dose_observations_see_the_pre_dose_state(population):
    """At a dose time, a pre-dose record forecasts the trough, a post-dose one the peak: same draws and noise
    as Posterior.predict just before (t − 1e-9 h) and at the dose time."""
    data = PatientData(REGIMEN, [1.0, 12.0, 12.0], [9.0, 4.0, 13.0], {"WT": 70.0}, pre_dose=[False, True, False])
    post = personalize(population, data.first(1))
    ours = predictive_observations(post, data, n_draws=500, seed=4)
    reference = post.predict(REGIMEN, [1.0, 12.0 - 1e-9, 12.0], n_draws=500, seed=4).observed["C"]
    assert np.allclose(ours, reference, rtol=1e-7)
    assert np.median(ours[:, 2] - ours[:, 1]) > 5.0  # 500 mg / ~50 L


def test_skipped_failed_blq_and_k0(population):
    good = cohort(population, 2, seed=5)
    short = PatientData(REGIMEN, [1.0], [9.0], {"WT": 70.0}, patient="short")
    no_weight = PatientData(REGIMEN, [1.0, 11.0], [9.0, 3.0], {}, patient="noWT")
    blq = PatientData(REGIMEN, [1.0, 11.0, 23.0], [9.0, 3.0, 0.0], {"WT": 70.0}, blq=[False, False, True],
                      lloq=0.5, patient="blq")
    result = validate(population, good + [short, no_weight, blq], 1, n_draws=200)
    assert result.skipped == ("short",)
    assert result.failed == ("noWT",)
    status = dict(zip(result.patient_ids, result.patient_message))
    assert "covariate" in status["noWT"]
    assert (result.observations["ID"] == "blq").sum() == 1  # the BLQ held-out record is not scored
    assert result.n_patients == 3
    prior_only = validate(population, good, 0, n_draws=200)
    assert prior_only.n_observations == 2 * TIMES.size and set(prior_only.patient_status) == {"prior"}
    with pytest.raises(EstimationError, match="nothing to score"):
        validate(population, [short, no_weight], 1, n_draws=200)


def test_settings_are_checked(population):
    data = cohort(population, 1, seed=6)
    for kwargs, match in [({"level": 1.0}, "level"), ({"levels": (0.5, 0.2)}, "levels"), ({"n_draws": 1}, "n_draws"),
                          ({"method": "mcmc"}, "method"), ({"personalize_options": {"seed": 3}}, "may not set")]:
        with pytest.raises(DataError, match=match):
            validate(population, data, 1, **kwargs)
    with pytest.raises(DataError, match="k must be"):
        validate(population, data, -1)
    with pytest.raises(DataError, match="PatientData"):
        validate(population, [object()], 1)


def test_binomial_band_matches_scipy():
    lo, hi = binomial_band(240, np.array([0.5, 0.9]))
    assert np.allclose(lo, stats.binom.ppf(0.025, 240, [0.5, 0.9]) / 240)
    assert np.allclose(hi, stats.binom.ppf(0.975, 240, [0.5, 0.9]) / 240)
    with pytest.raises(DataError):
        binomial_band(0, 0.5)


# ----------------------------------------------------------------------------- plots
def test_plot_calibration_draws_the_table(well_specified):
    result, _ = well_specified
    ax = plot_calibration(result)
    identity, empirical = ax.lines
    assert np.array_equal(identity.get_xdata(), [0, 1]) and np.array_equal(identity.get_ydata(), [0, 1])
    assert np.allclose(empirical.get_xdata(), CALIBRATION_LEVELS)
    assert np.allclose(empirical.get_ydata(), result.calibration["empirical"])
    assert len(ax.collections) == 1  # the binomial band
    assert ax.get_xlabel() == "nominal coverage"
    with pytest.raises(DataError):
        plot_calibration("not a result")


@pytest.fixture(scope="module")
def individual_fit(population):
    data = PatientData(REGIMEN, [1.0, 11.0, 35.0, 47.0, 49.0], [9.0, 3.5, 5.0, 5.5, 14.0], {"WT": 70.0})
    post = personalize(population, data.first(3))
    band = post.predict(REGIMEN, np.arange(0.0, 96.01, 0.5), n_draws=400, seed=2)
    return post, band, data


def test_plot_individual_artists_carry_the_band_and_the_data(individual_fit):
    from matplotlib.figure import Figure

    post, band, data = individual_fit
    ax = Figure().add_subplot()
    out = plot_individual(post, band, held_out=data.rest(3), ax=ax, target=(10.0, 20.0), title="patient 1")
    assert out is ax
    median, lower, upper, fitted, held, doses = ax.lines
    assert np.allclose(median.get_xdata(), band.times) and np.allclose(median.get_ydata(), band.median("C"))
    lo, hi = band.interval("C", 0.9, residual=True)
    assert np.allclose(lower.get_ydata(), lo) and np.allclose(upper.get_ydata(), hi)
    assert lower.get_linestyle() == "--"
    assert np.allclose(fitted.get_xdata(), data.times[:3]) and np.allclose(fitted.get_ydata(), data.values[:3])
    assert np.allclose(held.get_xdata(), data.times[3:]) and held.get_markerfacecolor() != fitted.get_markerfacecolor()
    assert np.allclose(doses.get_xdata(), np.arange(0.0, 61.0, 12.0))
    band90, _ = ax.collections
    q = band.quantiles("C")
    path = band90.get_paths()[0].vertices
    assert np.isclose(path[:, 1].max(), q[4].max()) and np.isclose(path[:, 1].min(), q[0].min())
    assert len(ax.patches) == 1 and ax.patches[0].get_y() == 10.0 and ax.patches[0].get_height() == 10.0
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("time (h)", "C (mg/L)")
    labels = ax.get_legend_handles_labels()[1]
    assert "target 10–20 mg/L" in labels and "observed (held out)" in labels


def test_plot_individual_defaults_and_errors(individual_fit):
    post, band, _ = individual_fit
    ax = plot_individual(post, band)  # new Figure, the posterior's own data
    assert ax.figure is not None and len(ax.lines) == 5  # median, two dashed bounds, fitted points, doses
    with pytest.raises(DataError, match="no output"):
        plot_individual(post, band, output="AUC")
    with pytest.raises(DataError, match="target"):
        plot_individual(post, band, target=(20.0, 10.0))
    with pytest.raises(DataError, match="PatientData"):
        plot_individual(post, band, data=[1.0])
