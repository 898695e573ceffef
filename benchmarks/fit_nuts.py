"""Benchmark: full hierarchical Bayes (NUTS) of phenobarbital (pharmpy-core's NONMEM run): wall time, draws/s, R-hat, ESS.

Threads are pinned (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS, default 1) and printed.
Compilation is measured apart: a first fit with 2 warmup and 2 kept draws
per chain is (almost) all JIT compilation; the full fit compiles again (a new
closure) and samples, so its sampling time is estimated as full − first.
The baseline ratio is against one FOCEI fit of the same data measured in the
same run.

    python benchmarks/fit_nuts.py [--threads N] [--chains 4] [--draws 500] [--warmup 500]
                                  [--chain-method sequential|vectorized]
"""

from __future__ import annotations

import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--chains", type=int, default=4)
parser.add_argument("--draws", type=int, default=500)
parser.add_argument("--warmup", type=int, default=500)
parser.add_argument("--chain-method", default="sequential", choices=("sequential", "vectorized"))
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = str(args.threads)
os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'}")

import importlib.resources
import time
from pathlib import Path

from medtwin.infer import fit_focei
from medtwin.infer.hierarchical import fit_nuts
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.io.population_file import load_population, shipped_population_path


def main() -> int:
    print("threads: " + ", ".join(f"{v}={os.environ[v]}" for v in
                                  ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"))
          + f"; XLA_FLAGS={os.environ['XLA_FLAGS']}")
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / "pheno.dta"))
    dataset = read_nonmem(path, access=OpenData("pharmpy's de-identified phenobarbital teaching dataset"))
    initial = load_population(shipped_population_path("pheno_initial"))  # pheno.mod's initial estimates

    t0 = time.perf_counter()
    fit_focei(initial, dataset, covariance="none")
    focei = time.perf_counter() - t0
    print(f"baseline: FOCEI fit (no covariance step) {focei:.1f} s")

    t0 = time.perf_counter()
    fit_nuts(initial, dataset, chains=args.chains, draws=2, warmup=2, chain_method=args.chain_method)
    compile_s = time.perf_counter() - t0
    print(f"compile (fit with 2 warmup + 2 draws per chain): {compile_s:.1f} s")

    t0 = time.perf_counter()
    fit = fit_nuts(initial, dataset, chains=args.chains, draws=args.draws, warmup=args.warmup,
                   chain_method=args.chain_method)
    wall = time.perf_counter() - t0
    sampling = max(wall - compile_s, 1e-9)
    kept = args.chains * args.draws
    print(f"NUTS {args.chains} chains ({args.chain_method}) x ({args.warmup} warmup + {args.draws} draws): "
          f"{wall:.1f} s wall, ~{sampling:.1f} s after compilation; {kept / sampling:.1f} kept draws/s, "
          f"{(kept + args.chains * args.warmup) / sampling:.1f} iterations/s; {fit.n_gradients} gradient "
          f"evaluations in the kept draws ({fit.n_gradients / kept:.1f} per draw); ratio to one FOCEI fit "
          f"{wall / focei:.0f}x")
    print(f"status {fit.status}: {fit.message}")
    print(fit.summary_frame().to_string(float_format=lambda v: f"{v:.5g}"))
    print(f"min bulk ESS/s {min(fit.ess_bulk) / sampling:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
