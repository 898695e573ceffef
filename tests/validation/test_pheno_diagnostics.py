"""Fit diagnostics on phenobarbital vs NONMEM (pharmpy-core's pheno run, $ESTIMATION METHOD=1 INTERACTION).

Reference (independent): ``pheno.tab``, NONMEM 7's $TABLE with PRED, RES, CIPREDI and CWRES at NONMEM's final
estimates (the shipped ``pheno`` population).  One FOCEI fit (≈ 30-40 s) is shared by the module.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from pheno_files import pheno_example  # noqa: E402
from scipy import stats  # noqa: E402

pytest.importorskip("pharmpy", reason="pharmpy-core (test-only dependency) ships the NONMEM pheno run")

from medtwin.infer.diagnostics import residuals, vpc  # noqa: E402
from medtwin.io.fit_report import write_fit_report  # noqa: E402
from medtwin.io.access import OpenData  # noqa: E402

PUBLIC = OpenData("pharmpy's de-identified phenobarbital teaching dataset")
from medtwin.io.nonmem import read_nonmem  # noqa: E402
from medtwin.io.population_file import load_population, shipped_population_path  # noqa: E402


_example = pheno_example


@pytest.fixture(scope="module")
def dataset():
    return read_nonmem(_example("pheno.dta"), access=PUBLIC)


@pytest.fixture(scope="module")
def nonmem_table() -> pd.DataFrame:
    """pheno.tab's observation records (DV > 0: pheno has no zero observations; dose rows have DV 0)."""
    last = re.split(r"^TABLE NO\..*$", _example("pheno.tab").read_text(), flags=re.MULTILINE)[-1]
    table = pd.read_csv(io.StringIO(last.strip() + "\n"), sep=r"\s+")
    return table[table["DV"] > 0].reset_index(drop=True)


@pytest.fixture(scope="module")
def final_population():
    return load_population(shipped_population_path("pheno"))


@pytest.fixture(scope="module")
def fit(pheno_focei_fit):
    """The FOCEI fit from pheno.mod's initial estimates (tests/validation/conftest.py: the fit that
    tests/validation/test_pheno_foce.py checks against NONMEM)."""
    return pheno_focei_fit


@pytest.fixture(scope="module")
def fit_residuals(fit, dataset):
    return residuals(fit, dataset, npde_samples=1000, seed=2024)


def test_cwres_matches_nonmem_at_nonmem_estimates(dataset, final_population, nonmem_table):
    """EBEs estimated at NONMEM's final estimates; CWRES/PRED/RES/IPRED vs NONMEM's table (printed to 5 digits)."""
    frame = residuals(final_population, dataset, npde_samples=0)
    assert len(frame) == len(nonmem_table) == 155
    np.testing.assert_array_equal(frame["ID"], nonmem_table["ID"])
    np.testing.assert_allclose(frame["TIME"], nonmem_table["TIME"])
    cwres_error = np.abs(frame["CWRES"] - nonmem_table["CWRES"]).max()
    print(f"\nmax |CWRES - NONMEM| at NONMEM's estimates: {cwres_error:.2e}")
    assert cwres_error < 2e-4
    np.testing.assert_allclose(frame["PRED"], nonmem_table["PRED"], rtol=5e-5, atol=1e-3)
    np.testing.assert_allclose(frame["RES"], nonmem_table["RES"], atol=1e-3)
    np.testing.assert_allclose(frame["IPRED"], nonmem_table["CIPREDI"], rtol=5e-5, atol=1e-3)


def test_cwres_of_our_fit_close_to_nonmem(fit_residuals, nonmem_table):
    """Our optimum is NONMEM's to ~1e-3 relative; measured max |ΔCWRES| 1.3e-4."""
    error = np.abs(fit_residuals["CWRES"] - nonmem_table["CWRES"])
    print(f"\nmax |CWRES - NONMEM| at our fit: {error.max():.2e} (mean {error.mean():.2e})")
    assert error.max() < 2e-3
    assert abs(fit_residuals["CWRES"].mean()) < 0.2 and fit_residuals["CWRES"].std() == pytest.approx(1, abs=0.2)


def test_npde_sanity(fit_residuals):
    npde = fit_residuals["NPDE"].to_numpy()
    n = npde.size
    ks = stats.kstest(npde, "norm")
    print(f"\npheno NPDE (K=1000): mean {npde.mean():.3f}, var {npde.var(ddof=1):.3f}, KS p {ks.pvalue:.3f}")
    assert np.all(np.isfinite(npde))
    assert abs(npde.mean()) < 3 / math.sqrt(n)
    assert abs(npde.var(ddof=1) - 1) < 3 * math.sqrt(2 / (n - 1))
    assert ks.pvalue > 0.01


def test_vpc_observed_median_inside_simulated_ci(fit, dataset):
    result = vpc(fit, dataset, n_sim=500, bins=8, seed=7)
    inside = result.inside()
    print(f"\npheno VPC: medians inside the 90 % CI in {inside[:, 1].sum()}/{len(inside)} bins, "
          f"all percentiles {inside.mean():.2f}")
    assert result.n_obs.sum() == 155
    assert inside[:, 1].mean() >= 0.75
    assert inside.mean() >= 0.7


def test_report_files(fit, dataset, tmp_path):
    paths = write_fit_report(fit, dataset, tmp_path, access=PUBLIC, vpc_samples=200, npde_samples=200, seed=3)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    est = pd.read_csv(paths["estimates"]).set_index("nonmem")
    assert list(est.index) == ["THETA(1)", "THETA(2)", "THETA(3)", "OMEGA(1,1)", "OMEGA(2,2)", "SIGMA(1,1)"]
    assert est.loc["THETA(1)", "estimate"] == pytest.approx(0.00469555, rel=2e-3)
    assert est.loc["THETA(1)", "SE"] == pytest.approx(2.09967e-04, rel=0.05)
    assert est.loc["THETA(1)", "unit"] == "L/h/kg"
    shrink = pd.read_csv(paths["shrinkage"])
    assert shrink["nonmem"].tolist() == ["ETA(1)", "ETA(2)", "EPS"]
    assert load_population(paths["population"]).theta("TVV").value == pytest.approx(fit.theta["TVV"])
