"""The phenobarbital FOCEI fit (pharmpy-core's pheno run), computed once per test process.

test_pheno_foce.py checks it against NONMEM's estimates and test_pheno_diagnostics.py reads its residuals:
one fit (≈ 40-90 s on a 2-core machine) serves both modules in one process (under pytest-xdist, each worker
that runs one of them computes it once).
"""

from __future__ import annotations

import time

import pytest
from pheno_files import pheno_example


@pytest.fixture(scope="session")
def pheno_focei_fit():
    """FOCEI from pheno.mod's initial estimates on pheno.dta (treat as read-only: modules share it)."""
    pytest.importorskip("pharmpy", reason="pharmpy-core (test-only dependency) ships the NONMEM pheno run")
    from medtwin.infer import fit_focei
    from medtwin.io.access import OpenData
    from medtwin.io.nonmem import read_nonmem
    from medtwin.io.population_file import load_population, shipped_population_path

    dataset = read_nonmem(pheno_example("pheno.dta"),
                          access=OpenData("pharmpy's de-identified phenobarbital teaching dataset"))
    start = time.perf_counter()
    result = fit_focei(load_population(shipped_population_path("pheno_initial")), dataset)
    print(f"\npheno FOCEI fit: {time.perf_counter() - start:.1f} s wall ({dict(result.wall_time)})")
    return result
