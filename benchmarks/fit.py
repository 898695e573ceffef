"""Benchmark: FOCEI population fit of phenobarbital (pharmpy-core's NONMEM run), compile vs warm wall time.

Threads are pinned (OMP/OPENBLAS/NUMBA_NUM_THREADS, default 1) and printed.  The
first fit includes numba's compilation of the model callbacks (or loading them
from numba's cache); the second is warm.  The baseline ratio is against one
FOCEI objective evaluation at the initial estimates measured in the same run.

    python benchmarks/fit.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import importlib.resources  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.infer import fit_focei  # noqa: E402
from medtwin.infer.objective import Problem  # noqa: E402
from medtwin.io.access import OpenData  # noqa: E402
from medtwin.io.nonmem import read_nonmem  # noqa: E402
from medtwin.io.population_file import load_population, shipped_population_path  # noqa: E402
from medtwin.models import get_model  # noqa: E402


def main() -> int:
    print("threads: " + ", ".join(f"{v}={os.environ[v]}" for v in
                                  ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")))
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / "pheno.dta"))
    dataset = read_nonmem(path, access=OpenData("pharmpy's de-identified phenobarbital teaching dataset"))
    initial = load_population(shipped_population_path("pheno_initial"))  # pheno.mod's initial estimates

    t0 = time.perf_counter()
    problem = Problem(initial, get_model("pk1_iv"), dataset)
    problem.inner(problem.log_typical(initial.theta_values())[None], np.asarray(initial.omega)[None], np.zeros(1),
                  np.array([0.0130865]), np.zeros((1, len(dataset), 2)))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    problem.inner(problem.log_typical(initial.theta_values())[None], np.asarray(initial.omega)[None], np.zeros(1),
                  np.array([0.0130865]), np.zeros((1, len(dataset), 2)))
    one_objective = time.perf_counter() - t0
    print(f"first objective evaluation (includes compile/cache load): {compile_s:.2f} s; warm: {one_objective:.3f} s")

    for label in ("fit #1", "fit #2 (warm)"):
        t0 = time.perf_counter()
        fit = fit_focei(initial, dataset)
        wall = time.perf_counter() - t0
        print(f"{label}: {wall:.1f} s wall (estimation {fit.wall_time['estimation']:.1f} s, covariance step "
              f"{fit.wall_time['covariance']:.1f} s); {fit.n_iterations} BFGS iterations, {fit.n_evaluations} "
              f"batched objective evaluations; ratio to one objective evaluation {wall / one_objective:.0f}x")
    print(f"OFV {fit.ofv:.4f} (NONMEM 586.2761); theta {fit.theta}; omega {np.diag(fit.omega)}; sigma2 {fit.sigma2}")
    nonmem = _nonmem_times(path.with_name("pheno.lst"))
    if nonmem:
        total = sum(nonmem.values())
        print("NONMEM's own run (pheno.lst, another machine): " + ", ".join(f"{k} {v:.2f} s" for k, v in
              nonmem.items()) + f"; medtwin's last fit is {wall / total:.0f}x that (target < 60 s: "
              f"{'MET' if wall < 60 else 'NOT MET'})")
    return 0


def _nonmem_times(lst: Path) -> dict:
    """NONMEM's 'Elapsed estimation/covariance time in seconds' lines of its output file."""
    import re

    if not lst.exists():
        return {}
    found = re.findall(r"Elapsed (estimation|covariance)\s+time in seconds:\s+([0-9.]+)", lst.read_text())
    return {name: float(value) for name, value in found}


if __name__ == "__main__":
    sys.exit(main())
