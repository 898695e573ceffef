"""FOCEI population fit vs NONMEM on phenobarbital (pharmpy-core's pheno run, $ESTIMATION METHOD=1 INTERACTION).

References (independent: NONMEM 7 output files shipped by pharmpy-core):
``pheno.ext`` final estimates and OFV, standard errors (ITERATION -1000000001),
``pheno.phi`` EBEs and per-subject objective.  The fit starts from the
initial estimates of ``pheno.mod``.  OFV convention: NONMEM's (−2LL without n·log 2π).
"""

from __future__ import annotations

import inspect
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pheno_files import pheno_example  # noqa: E402

pytest.importorskip("pharmpy", reason="pharmpy-core (test-only dependency) ships the NONMEM pheno run")

from medtwin.core.population import Population  # noqa: E402
from medtwin.infer import fit_focei  # noqa: E402
from medtwin.infer.objective import Problem  # noqa: E402
from medtwin.io.nonmem import read_nonmem  # noqa: E402
from medtwin.io.population_file import load_population, shipped_population_path  # noqa: E402
from medtwin.models import get_model  # noqa: E402

NONMEM = {"TVCL": 0.00469555, "TVV": 0.984258, "APGR_V": 0.15892, "omega": (0.0293508, 0.027906),
          "sigma2": 0.013241, "ofv": 586.27605628520962}
NONMEM_SE = {"THETA:TVCL": 2.09967e-04, "THETA:TVV": 2.68946e-02, "THETA:APGR_V": 8.37555e-02,
             "OMEGA(1,1)": 1.34156e-02, "OMEGA(2,2)": 7.47591e-03, "SIGMA:proportional": 2.27991e-03}


_example = pheno_example


def _read(path):
    if "access" in inspect.signature(read_nonmem).parameters:
        from medtwin.io.access import OpenData

        return read_nonmem(path, access=OpenData("pharmpy's de-identified phenobarbital teaching dataset"))
    return read_nonmem(path)


def _nonmem_table(path: Path) -> pd.DataFrame:
    last = re.split(r"^TABLE NO\..*$", path.read_text(), flags=re.MULTILINE)[-1]
    return pd.read_csv(io.StringIO(last.strip() + "\n"), sep=r"\s+")


@pytest.fixture(scope="module")
def dataset():
    return _read(_example("pheno.dta"))


@pytest.fixture(scope="module")
def final_population():
    return load_population(shipped_population_path("pheno"))


@pytest.fixture(scope="module")
def fit(pheno_focei_fit):
    """The FOCEI fit from pheno.mod's initial estimates (tests/validation/conftest.py: shared with the
    diagnostics module)."""
    return pheno_focei_fit


def test_ofv_at_nonmem_estimates_and_ebes(dataset, final_population):
    pop = final_population
    problem = Problem(pop, get_model("pk1_iv"), dataset)
    inner = problem.inner(problem.log_typical(pop.theta_values())[None], np.asarray(pop.omega)[None],
                          np.zeros(1), np.array([NONMEM["sigma2"]]), np.zeros((1, len(dataset), 2)))
    phi = _nonmem_table(_example("pheno.phi"))
    assert inner.converged.all()
    assert abs(inner.ofv_subject.sum() - NONMEM["ofv"]) < 1e-3
    np.testing.assert_allclose(inner.ofv_subject[0], phi["OBJ"], atol=2e-4)
    np.testing.assert_allclose(inner.eta[0], phi[["ETA(1)", "ETA(2)"]].to_numpy(), atol=2e-5)


def test_fit_lands_on_nonmem_focei(fit):
    assert fit.converged, fit.message
    for name in ("TVCL", "TVV", "APGR_V"):
        assert fit.theta[name] == pytest.approx(NONMEM[name], rel=0.02)
    np.testing.assert_allclose(np.diag(fit.omega), NONMEM["omega"], rtol=0.10)
    assert fit.omega[0, 1] == 0.0  # diagonal Ω as in pheno.mod
    assert fit.sigma2["proportional"] == pytest.approx(NONMEM["sigma2"], rel=0.05)
    assert abs(fit.ofv - NONMEM["ofv"]) < 0.5
    print(f"\ntheta {fit.theta}\nomega {np.diag(fit.omega)}\nsigma2 {fit.sigma2}\nOFV {fit.ofv:.5f}")


def test_fit_is_tight_on_nonmem(fit):
    """Tighter than the acceptance bounds: the same optimum to ~1e-3 relative."""
    for name in ("TVCL", "TVV"):
        assert fit.theta[name] == pytest.approx(NONMEM[name], rel=1e-3)
    assert fit.theta["APGR_V"] == pytest.approx(NONMEM["APGR_V"], rel=5e-3)
    np.testing.assert_allclose(np.diag(fit.omega), NONMEM["omega"], rtol=5e-3)
    assert abs(fit.ofv - NONMEM["ofv"]) < 1e-3


def test_covariance_step_matches_nonmem_standard_errors(fit):
    assert fit.covariance_status == "ok", fit.covariance_message
    assert fit.covariance_method == "R-1 S R-1"
    se = fit.standard_errors()
    for name, reference in NONMEM_SE.items():
        assert se[name] == pytest.approx(reference, rel=0.05), name
    assert np.all(fit.rse > 0)


def test_shrinkage_and_population_record(fit):
    assert fit.eta.shape == (59, 2) and len(fit.ids) == 59
    assert np.all((fit.eta_shrinkage > 0) & (fit.eta_shrinkage < 1))
    assert fit.population.estimation["method"] == "FOCEI"
    assert fit.population.theta("TVCL").value == fit.theta["TVCL"]
    assert fit.minus2ll == pytest.approx(fit.ofv + 155 * np.log(2 * np.pi))


def test_covariance_step_failure_is_reported_not_raised(dataset, final_population):
    """A coefficient with no effect on the data (condition never true) makes R singular."""
    d = final_population.to_dict()
    d["thetas"].append({"name": "NEVER", "value": 0.1, "unit": "1", "lower": -0.99})
    d["effects"].append({"parameter": "CL", "covariate": "APGR", "form": "categorical", "theta": "NEVER",
                         "condition": [">", 100.0]})
    fit = fit_focei(Population.from_dict(d), dataset, max_iterations=5)
    assert fit.covariance_status == "failed"
    assert "not positive definite" in fit.covariance_message
    assert np.all(np.isnan(fit.se)) and fit.covariance is None
    assert abs(fit.ofv - NONMEM["ofv"]) < 0.01
