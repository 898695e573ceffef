"""Forecast validation on phenobarbital (pharmpy-core's pheno.dta, 59 neonates, 155 concentrations).

Each neonate is personalized (MAP + Laplace) on its first k concentrations with
the shipped pheno population (NONMEM 7 FOCEI final estimates: CL and V per kg,
APGAR < 5 on V, ω²_CL = 0.029, ω²_V = 0.028, proportional error σ = 11.5 %) as
prior; its later concentrations are forecast (posterior predictive with
residual error, at their own times under the full dosing history) and scored.

Measured on 2026-12-01 (n_draws = 1000; seeds 0, 1, 2 give the same coverage):

=====  ===========  ============  ==============  ========  ==========
k      neonates     held-out obs  90 % coverage   MAPE      skipped
=====  ===========  ============  ==============  ========  ==========
1      50           96            0.854 (82/96)   13.5 %    9
2      35           46            0.935 (43/46)   12.5 %    24
=====  ===========  ============  ==============  ========  ==========

Why not exactly 0.9:

* Few observations: the binomial 95 % range of the empirical coverage around
  0.9 is [0.833, 0.958] for 96 observations and [0.804, 0.978] for 46; both
  measurements are inside.  Observations of one neonate share its posterior, so
  the effective sample is smaller still.
* Sparse, long-horizon forecasts: with k = 1 the single early concentration
  mostly informs V; the later levels (24–310 h after it) depend on CL, which
  stays near its prior (ω_CL ≈ 0.17).  The 14 misses at k = 1 cluster in a few
  neonates whose CL is far from typical (patient 48: 4 of 5 held-out levels
  above the 95th percentile; patients 2 and 18: 2 each); coverage is 0.76 for
  levels 48–96 h after the first and 0.90 beyond 96 h.  A second level (k = 2)
  pins CL and the coverage rises to 0.935.
* The prior is NONMEM's FOCEI fit to these same sparse data, and its Ω is
  uncertain: NONMEM's standard error of ω²_CL is 0.0134 on 0.0294 (46 %).  An
  ω_CL on the small side narrows exactly the long-horizon forecasts that miss.
* Not the Laplace approximation: NUTS on the same posterior density (4 chains ×
  500 draws after 500 warm-up, exact to sampling error) gave the same numbers at
  k = 1, coverage 0.854 and MAPE 13.5 % (``NUTS_K1``; 13 min, not run here).
* The residual model is proportional and normal (symmetric); real assay and
  sampling-time errors are heavier-tailed (9 misses above the interval, 5 below
  at k = 1).
"""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pharmpy", reason="pharmpy-core (test-only dependency) ships the NONMEM pheno run")

from medtwin.infer.validate import validate  # noqa: E402
from medtwin.io.access import OpenData  # noqa: E402
from medtwin.io.nonmem import read_nonmem  # noqa: E402
from medtwin.io.population_file import load_population, shipped_population_path  # noqa: E402

#: Measured 2026-12-01 (see the module docstring): k -> (coverage, MAPE %, neonates, held-out observations).
MEASURED = {1: (0.854, 13.5, 50, 96), 2: (0.935, 12.5, 35, 46)}
#: NUTS (4 chains × 500 draws after 500 warm-up) at k = 1, measured 2026-12-01: (coverage, MAPE %).
NUTS_K1 = (0.854, 13.5)


@pytest.fixture(scope="module")
def dataset():
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / "pheno.dta"))
    if not path.exists():
        pytest.skip("pharmpy does not ship pheno.dta in this version")
    return read_nonmem(path, access=OpenData("pharmpy's de-identified phenobarbital teaching dataset"))


@pytest.fixture(scope="module")
def population():
    return load_population(shipped_population_path("pheno"))


@pytest.fixture(scope="module", params=[1, 2], ids=["k1", "k2"])
def result(request, dataset, population):
    start = time.perf_counter()
    out = validate(population, dataset, request.param, n_draws=1000, seed=0)
    print(f"\npheno {out.summary()} [{time.perf_counter() - start:.1f} s]")
    print(out.calibration.round(3).to_string(index=False))
    return out


def test_pheno_forecast_coverage_and_mape(result):
    """90 % interval coverage within 0.75–0.97 and MAPE below 25 %; counts as in the dataset."""
    coverage, mape, patients, observations = MEASURED[result.k]
    print(f"pheno k={result.k}: coverage {result.coverage:.3f} (recorded {coverage}), "
          f"MAPE {result.mape:.1f} % (recorded {mape} %)")
    assert (result.n_patients, result.n_observations, result.failed) == (patients, observations, ())
    assert len(result.skipped) == 59 - patients
    assert 0.75 <= result.coverage <= 0.97
    assert result.mape < 25.0
    # the numbers recorded in the docstring are the ones this code measures
    assert result.coverage == pytest.approx(coverage, abs=0.011)
    assert result.mape == pytest.approx(mape, abs=1.0)


def test_pheno_calibration_curve_is_monotone_and_near_the_identity(result):
    table = result.calibration
    assert np.all(np.diff(table["empirical"]) >= 0)
    assert np.max(np.abs(table["empirical"] - table["nominal"])) < 0.1
