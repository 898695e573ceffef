"""Full hierarchical Bayes (NUTS) of phenobarbital vs NONMEM's FOCEI estimates (pharmpy-core's pheno run).

The posterior of a weakly-informative-prior hierarchical model is not the ML
estimate, but with 59 subjects and 155 observations the typical values must
land near it: posterior medians of θ1 (CL/kg) and θ2 (V/kg) within 5 % of
NONMEM's FOCEI estimates, θ3 (APGAR < 5 on V), Ω and σ² with NONMEM's values
inside their central 90 % posterior intervals, every R-hat < 1.01.

Chains start from pheno.mod's initial estimates.  Measured on the 2-core
development machine (4 chains × 500 warmup × 500 draws, sequential chains,
seed 0; partly sharing the CPUs with other tests): 645 s wall, 60,208
gradient evaluations in the kept draws (~30 per draw), 0 divergent::

    quantity            median     5 %       95 %      R-hat   bulk ESS  NONMEM FOCEI
    THETA:TVCL          0.004603  0.004185  0.004943  1.0010   1457      0.00469555  (−2.0 %)
    THETA:TVV           0.97541   0.92767   1.02674   1.0078    852      0.984258    (−0.9 %)
    THETA:APGR_V        0.1585    0.0301    0.3042    1.0034   1025      0.15892
    OMEGA(1,1)          0.0346    0.0148    0.0788    1.0004    791      0.0293508
    OMEGA(2,2)          0.0296    0.0188    0.0459    1.0071    686      0.027906
    SIGMA:proportional  0.01360   0.01043   0.01780   1.0037   1170      0.013241

With 4 × 300 + 300 the largest R-hat was 1.0109 (Ω(2,2)): too short for the 1.01 bar.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from pheno_files import pheno_example  # noqa: E402

pytest.importorskip("pharmpy", reason="pharmpy-core (test-only dependency) ships the NONMEM pheno run")

from medtwin.infer.hierarchical import fit_nuts
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.io.population_file import load_population, shipped_population_path

#: NONMEM 7 FOCEI final estimates (pheno.ext), as in test_pheno_foce.py.
NONMEM = {"TVCL": 0.00469555, "TVV": 0.984258, "APGR_V": 0.15892, "omega": (0.0293508, 0.027906),
          "sigma2": 0.013241}


_example = pheno_example


def _read(path):
    return read_nonmem(path, access=OpenData("pharmpy's de-identified phenobarbital teaching dataset"))

CHAINS, WARMUP, DRAWS = 4, 500, 500


@pytest.fixture(scope="module")
def fit():
    initial = load_population(shipped_population_path("pheno_initial"))  # pheno.mod's initial estimates
    dataset = _read(_example("pheno.dta"))
    start = time.perf_counter()
    result = fit_nuts(initial, dataset, chains=CHAINS, draws=DRAWS, warmup=WARMUP, seed=0,
                      chain_method="sequential")
    print(f"\npheno NUTS: {time.perf_counter() - start:.1f} s wall, {result.n_gradients} gradient evaluations "
          f"(kept draws), {result.divergences} divergent; {result.message}")
    print(result.summary_frame().to_string())
    return result


@pytest.mark.slow
def test_pheno_posterior_near_nonmem_focei(fit):
    s = fit.summary
    assert s["THETA:TVCL"]["q50"] == pytest.approx(NONMEM["TVCL"], rel=0.05)
    assert s["THETA:TVV"]["q50"] == pytest.approx(NONMEM["TVV"], rel=0.05)
    references = {"THETA:APGR_V": NONMEM["APGR_V"], "OMEGA(1,1)": NONMEM["omega"][0],
                  "OMEGA(2,2)": NONMEM["omega"][1], "SIGMA:proportional": NONMEM["sigma2"]}
    for name, value in references.items():
        assert s[name]["q5"] < value < s[name]["q95"], (name, s[name], value)


@pytest.mark.slow
def test_pheno_chains_converged(fit):
    assert np.all(fit.rhat < 1.01), fit.message
    assert np.all(fit.ess_bulk > 100), fit.message
    assert fit.divergences == 0, fit.message
    assert fit.status == "converged"
    assert fit.eta_mean.shape == (59, 2)
