"""Population-fit diagnostics (residuals, CWRES, NPDE, VPC, GOF plot) and the fit report, on small pk1_iv data.

Independent checks: CWRES/WRES against closed forms (one observation per subject, η on CL only, additive
error: the derivative g = ∂f/∂η is analytic and Hooker's formula is a scalar); NPDE against its sampling
distribution (data simulated with :func:`simulate_dataset` and our own η/ε draws: N(0, 1) under the true
population, rejected by a KS test under a misspecified one).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

from medtwin.core.observation import ResidualError  # noqa: E402
from medtwin.core.population import Population, Theta  # noqa: E402
from medtwin.errors import DataError, EstimationError  # noqa: E402
from medtwin.infer import fit_focei  # noqa: E402
from medtwin.infer.diagnostics import GOF_COLUMNS, VPCResult, plot_gof, plot_vpc, residuals, vpc  # noqa: E402
from medtwin.io.fit_report import estimates_table, write_fit_report  # noqa: E402
from medtwin.io.access import OpenData  # noqa: E402
from medtwin.io.dataset_simulation import simulate_dataset  # noqa: E402
from medtwin.io.nonmem import read_nonmem  # noqa: E402
from medtwin.io.population_file import load_population  # noqa: E402
from medtwin.models import get_model  # noqa: E402

SYNTHETIC = OpenData("synthetic virtual patients")
DOSE, TVCL, TVV = 100.0, 2.0, 20.0


def _population(cl=TVCL, v=TVV, omega=((0.09, 0.0), (0.0, 0.04)), iiv=("CL", "V"),
                residual=None) -> Population:
    residual = residual or ResidualError("proportional", proportional=0.1)
    return Population(name="pk1", model="pk1_iv", thetas=(Theta("TVCL", cl, "L/h", lower=0),
                      Theta("TVV", v, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=tuple(iiv),
                      omega=omega, residual=residual)


def _template(n: int, times) -> pd.DataFrame:
    rows = []
    for i in range(1, n + 1):
        rows.append({"ID": i, "TIME": 0.0, "AMT": DOSE, "DV": 0.0, "MDV": 1})
        rows += [{"ID": i, "TIME": float(t), "AMT": 0.0, "DV": 0.0, "MDV": 0} for t in times]
    return pd.DataFrame(rows)


def _simulated(population: Population, n: int, times, rng, model_name="pk1_iv", extra=None):
    """Records simulated from ``population`` (IIV + residual) with simulate_dataset and our own draws."""
    template = read_nonmem(_template(n, times), access=SYNTHETIC)
    eta = rng.multivariate_normal(np.zeros(len(population.iiv)), np.asarray(population.omega), size=n)
    params = {k: np.broadcast_to(np.asarray(v, float), (n,))
              for k, v in population.individual_parameters({}, eta).items()}
    if extra is not None:  # another model: its own parameters, CL still from the population
        params = {"CL": params["CL"], **extra}
    traj = simulate_dataset(get_model(model_name), template, params)
    f = np.asarray(traj.outputs["C"], dtype=float).ravel()
    y = f + np.sqrt(population.residual.variance(f)) * rng.standard_normal(f.shape)
    frame = _template(n, times)
    frame.loc[frame["MDV"] == 0, "DV"] = y
    return read_nonmem(frame, access=SYNTHETIC)


@pytest.fixture(scope="module")
def truth():
    return _population()


@pytest.fixture(scope="module")
def data(truth):
    return _simulated(truth, 150, (0.5, 2.0, 6.0, 12.0), np.random.default_rng(7))


@pytest.fixture(scope="module")
def small_fit():
    pop = _population()
    data = _simulated(pop, 20, (1.0, 4.0, 10.0), np.random.default_rng(11))
    return fit_focei(pop, data, covariance="sandwich"), data


# ---------------------------------------------------------------------------- residuals
def test_columns_units_and_simple_identities(truth, data):
    f = residuals(truth, data, npde_samples=100, seed=1)
    assert list(f.columns) == ["ID", "TIME", "DV", "PRED", "IPRED", "RES", "IRES", "WRES", "IWRES", "CWRES",
                               "NPDE", "ROW"]
    assert len(f) == 600 and f.attrs["dv_unit"] == "mg/L" and f.attrs["time_unit"] == "h"
    np.testing.assert_allclose(f["RES"], f["DV"] - f["PRED"])
    np.testing.assert_allclose(f["IWRES"], (f["DV"] - f["IPRED"]) / (0.1 * f["IPRED"]))
    t = f["TIME"].to_numpy()
    np.testing.assert_allclose(f["PRED"], DOSE / TVV * np.exp(-TVCL / TVV * t), rtol=1e-9)
    assert np.all(np.isfinite(f[["WRES", "CWRES", "NPDE"]].to_numpy()))


def test_cwres_and_wres_match_closed_form_single_observation():
    """One observation per subject, η on CL only, additive error: Hooker's CWRES and FO WRES are scalars.

    f(η) = D/V·exp(−CL·e^η·t/V), g = ∂f/∂η = −f·CL·e^η·t/V (analytic), and at the EBE (stationarity of the
    conditional objective) η̂/ω² = g·(y − f)/σ², so CWRES = (y − f + g·η̂)/√(g²ω² + σ²) = IRES·√(g²ω² + σ²)/σ².
    """
    omega2, sd = 0.16, 0.3
    pop = _population(omega=((omega2,),), iiv=("CL",), residual=ResidualError("additive", additive=sd))
    rng = np.random.default_rng(3)
    times = np.linspace(2.0, 14.0, 12)
    frame = pd.concat([_template(1, (t,)).assign(ID=i + 1) for i, t in enumerate(times)], ignore_index=True)
    frame.loc[frame["MDV"] == 0, "DV"] = (DOSE / TVV * np.exp(-TVCL / TVV * times) * np.exp(0.3 * rng.standard_normal(12))
                                          + sd * rng.standard_normal(12))
    data = read_nonmem(frame, access=SYNTHETIC)
    f = residuals(pop, data, npde_samples=0)
    assert f["NPDE"].isna().all()
    y, t = f["DV"].to_numpy(), f["TIME"].to_numpy()
    ipred = f["IPRED"].to_numpy()
    eta = np.log(-np.log(ipred * TVV / DOSE) * TVV / (TVCL * t))  # η̂ recovered from IPRED
    g = -ipred * TVCL * np.exp(eta) * t / TVV
    c = g * g * omega2 + sd * sd
    np.testing.assert_allclose(f["CWRES"], (y - ipred + g * eta) / np.sqrt(c), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(f["CWRES"], (y - ipred) * np.sqrt(c) / sd**2, rtol=1e-5, atol=1e-6)
    pred = f["PRED"].to_numpy()
    g0 = -pred * TVCL * t / TVV
    np.testing.assert_allclose(f["WRES"], (y - pred) / np.sqrt(g0 * g0 * omega2 + sd * sd), rtol=1e-6)


def test_fit_result_is_used_and_checked_against_the_dataset(small_fit, data):
    fit, fitted_data = small_fit
    f = residuals(fit, fitted_data, npde_samples=50, seed=0)
    np.testing.assert_allclose(f["IPRED"], fit.ipred, rtol=1e-9)
    np.testing.assert_allclose(f["IWRES"], fit.iwres, rtol=1e-9)
    with pytest.raises(EstimationError, match="^dataset: "):
        residuals(fit, data, npde_samples=0)


def test_npde_is_standard_normal_under_the_true_population(truth, data):
    npde = residuals(truth, data, npde_samples=500, seed=5)["NPDE"].to_numpy()
    n = npde.size
    assert abs(npde.mean()) < 3 / math.sqrt(n)
    assert abs(npde.var(ddof=1) - 1) < 3 * math.sqrt(2 / (n - 1))
    assert stats.kstest(npde, "norm").pvalue > 0.01


@pytest.fixture(scope="module")
def two_compartment_data(truth):
    """Data from a 2-compartment model (CL from the population, V1 8 L, Q 6 L/h, V2 20 L)."""
    return _simulated(truth, 60, (0.25, 1.0, 3.0, 8.0, 12.0), np.random.default_rng(9), model_name="pk2_iv",
                      extra={"V1": np.full(60, 8.0), "Q": np.full(60, 6.0), "V2": np.full(60, 20.0)})


def test_npde_rejects_a_misspecified_model(truth, two_compartment_data):
    """A 1-compartment population (the true CL and V1 + V2 = 28 L → V 20 L) on 2-compartment data."""
    npde = residuals(truth, two_compartment_data, npde_samples=500, seed=5)["NPDE"].to_numpy()
    assert stats.kstest(npde, "norm").pvalue < 0.01


@pytest.mark.slow
def test_npde_of_a_fitted_misspecified_model_trends_with_time(truth, two_compartment_data):
    """Fitted to 2-compartment data, a 1-compartment model absorbs the misfit into a large residual error: the
    pooled NPDE look nearly N(0, 1) (KS p ≈ 0.06 here) but their distribution at each time is far off
    (measured: means +1.3, −0.3, −1.2, −0.5, +0.7 at 0.25, 1, 3, 8, 12 h)."""
    fit = fit_focei(truth, two_compartment_data, covariance="none", max_iterations=20)
    frame = residuals(fit, two_compartment_data, npde_samples=500, seed=5)
    rejected = [stats.kstest(g["NPDE"], "norm").pvalue < 0.01 for _, g in frame.groupby("TIME")]
    assert sum(rejected) >= 2
    assert frame.loc[frame["TIME"] == 0.25, "NPDE"].mean() > 0.5


def test_npde_is_reproducible_with_a_seed(truth, data):
    a = residuals(truth, data, npde_samples=50, seed=4)["NPDE"]
    b = residuals(truth, data, npde_samples=50, seed=4)["NPDE"]
    c = residuals(truth, data, npde_samples=50, seed=5)["NPDE"]
    assert a.equals(b) and not a.equals(c)


@pytest.mark.parametrize("kwargs, field", [({"npde_samples": 5}, "npde_samples"),
                                           ({"npde_samples": 2.5}, "npde_samples")])
def test_residuals_validation_names_the_field(truth, data, kwargs, field):
    with pytest.raises(EstimationError, match=f"^{field}: "):
        residuals(truth, data, **kwargs)


def test_residuals_rejects_wrong_inputs(truth, data):
    with pytest.raises(EstimationError, match="^fit_result: "):
        residuals({"CL": 1.0}, data)
    with pytest.raises(EstimationError, match="^dataset: "):
        residuals(truth, pd.DataFrame())


# ---------------------------------------------------------------------------- VPC
def test_vpc_under_the_true_population(truth, data):
    r = vpc(truth, data, n_sim=200, bins=[0, 1, 3, 8, 13], seed=2)
    assert isinstance(r, VPCResult)
    assert r.observed.shape == r.simulated_median.shape == (4, 3)
    assert r.n_obs.tolist() == [150, 150, 150, 150]
    np.testing.assert_allclose(r.bin_time, [0.5, 2.0, 6.0, 12.0])
    assert np.all(r.simulated_lower <= r.simulated_median) and np.all(r.simulated_median <= r.simulated_upper)
    assert r.inside()[:, 1].sum() >= 3  # observed medians inside the simulated 90 % CI (each misses w.p. ~0.1)
    table = r.to_frame()
    assert len(table) == 12 and {"observed", "sim_lower", "sim_upper"} <= set(table.columns)


def test_vpc_simulated_percentiles_match_independent_replicates(truth, data):
    """The VPC's simulated percentiles vs datasets simulated independently (simulate_dataset, own draws)."""
    r = vpc(truth, data, n_sim=200, bins=[0, 1, 3, 8, 13], seed=2)
    replicate = []
    for k in range(30):
        frame = _simulated(truth, 150, (0.5, 2.0, 6.0, 12.0), np.random.default_rng(1000 + k)).to_frame()
        frame = frame[frame["MDV"] == 0]
        replicate.append(frame.groupby("TIME")["DV"].quantile([0.05, 0.5, 0.95]).unstack().to_numpy())
    independent = np.median(np.array(replicate), axis=0)
    width = r.simulated_upper - r.simulated_lower
    assert np.all(np.abs(independent - r.simulated_median) < 0.25 * width)


def test_vpc_detects_a_wrong_clearance(truth, data):
    r = vpc(_population(cl=2 * TVCL), data, n_sim=100, bins=[0, 1, 3, 8, 13], seed=2)
    assert not r.inside()[2:, 1].any()  # late medians far above the simulated ones


def test_vpc_default_bins_are_equal_count(truth, data):
    r = vpc(truth, data, n_sim=20, bins=3, seed=0)
    assert r.n_obs.sum() == 600 and len(r.bin_time) == len(r.bin_edges) - 1


@pytest.mark.parametrize("kwargs, field", [
    ({"n_sim": 5}, "n_sim"), ({"bins": 0}, "bins"), ({"bins": [5, 1]}, "bins"), ({"bins": [1, 5]}, "bins"),
    ({"bins": "many"}, "bins"), ({"quantiles": (0.5, 0.1)}, "quantiles"), ({"quantiles": (0.0, 0.5)}, "quantiles"),
    ({"ci": 1.5}, "ci")])
def test_vpc_validation_names_the_field(truth, data, kwargs, field):
    with pytest.raises(EstimationError, match=f"^{field}: "):
        vpc(truth, data, **kwargs)


def test_plot_vpc(truth, data):
    r = vpc(truth, data, n_sim=20, bins=4, seed=0)
    fig = Figure()
    ax = plot_vpc(r, fig.subplots())
    assert ax.get_xlabel() == "time (h)" and ax.get_ylabel() == "C (mg/L)"
    with pytest.raises(EstimationError, match="^vpc_result: "):
        plot_vpc({"bins": 1})


# ---------------------------------------------------------------------------- GOF plot
def test_plot_gof_writes_a_png_with_unit_labels(truth, data, tmp_path):
    f = residuals(truth, data, npde_samples=20, seed=0)
    path = plot_gof(f, tmp_path / "gof.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = plot_gof(f, Figure())
    labels = [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes]
    assert ("PRED (mg/L)", "DV (mg/L)") in labels and ("IPRED (mg/L)", "DV (mg/L)") in labels
    assert ("time (h)", "CWRES (dimensionless)") in labels and ("time (h)", "NPDE (dimensionless)") in labels
    assert ("PRED (mg/L)", "CWRES (dimensionless)") in labels


def test_plot_gof_validation_names_the_field():
    with pytest.raises(DataError, match="^residual_frame: missing column"):
        plot_gof(pd.DataFrame({"TIME": [1.0]}), Figure())
    with pytest.raises(DataError, match="^residual_frame: "):
        plot_gof([1, 2], Figure())
    with pytest.raises(DataError, match="^path_or_fig: "):
        plot_gof(pd.DataFrame({c: [1.0] for c in GOF_COLUMNS}), 3)


# ---------------------------------------------------------------------------- report
def test_write_fit_report(small_fit, tmp_path):
    fit, data = small_fit
    paths = write_fit_report(fit, data, tmp_path / "report", access=SYNTHETIC, vpc_samples=50, npde_samples=50,
                             vpc_bins=3, seed=1)
    expected = {"estimates.csv", "omega.csv", "shrinkage.csv", "residuals.csv", "gof.png", "vpc.png", "vpc.csv",
                "summary.json", "fitted_population.yaml"}
    assert {p.name for p in paths.values()} == expected and all(p.exists() for p in paths.values())
    est = pd.read_csv(paths["estimates"])
    assert est["nonmem"].tolist() == ["THETA(1)", "THETA(2)", "OMEGA(1,1)", "OMEGA(2,2)", "SIGMA(1,1)"]
    assert est["unit"].tolist() == ["L/h", "L", "1", "1", "1"]
    np.testing.assert_allclose(est["estimate"], fit.estimates)
    np.testing.assert_allclose(est["SE"], fit.se)
    np.testing.assert_allclose(est["RSE_percent"], 100 * fit.rse)
    shrink = pd.read_csv(paths["shrinkage"])
    np.testing.assert_allclose(shrink["shrinkage_percent"][:2], 100 * fit.eta_shrinkage)
    omega = pd.read_csv(paths["omega"], index_col=0)
    np.testing.assert_allclose(omega.to_numpy(), fit.omega)
    assert len(pd.read_csv(paths["residuals"])) == fit.n_obs
    assert load_population(paths["population"]).theta("TVCL").value == pytest.approx(fit.theta["TVCL"])


def test_write_fit_report_validation(small_fit, tmp_path):
    fit, data = small_fit
    with pytest.raises(EstimationError, match="^fit_result: "):
        write_fit_report(fit.population, data, tmp_path, access=SYNTHETIC)
    with pytest.raises(EstimationError, match="^out_dir: "):
        write_fit_report(fit, data, 42, access=SYNTHETIC)
    with pytest.raises(EstimationError, match="^n_sim: "):
        write_fit_report(fit, data, tmp_path, access=SYNTHETIC, vpc_samples=1)


def test_estimates_table_combined_error_names():
    pop = Population(name="c", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
                     Theta("TVV", 20.0, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"),
                     omega=((0.1, 0.01), (0.01, 0.1)),
                     residual=ResidualError("combined", additive=0.2, proportional=0.1))
    fake = type("F", (), {"population": pop, "parameter_names": (), "estimates": np.zeros(0), "se": np.zeros(0)})
    table = estimates_table(fake)
    assert table["nonmem"].tolist() == ["THETA(1)", "THETA(2)", "OMEGA(1,1)", "OMEGA(2,1)", "OMEGA(2,2)",
                                        "SIGMA(1,1)", "SIGMA(2,2)"]
    assert table.set_index("nonmem").loc["SIGMA(2,2)", "unit"] == "(mg/L)^2"
