"""Bedside personalization benchmark (issue 4): MAP + Laplace and NUTS for one vancomycin patient.

Run:  python benchmarks/personalize.py            (Laplace x 20 warm runs, NUTS 4 chains x 1,000 draws)
      python benchmarks/personalize.py --quick    (Laplace only, 5 warm runs)

The patient: Goti 2018 population (shipped ``vancomycin_goti2018``), CrCl 60
mL/min, 75 kg, 1,000 mg q12h as 1-h infusions, four levels (two troughs, two
peaks).  Targets: Laplace < 0.5 s warm; NUTS (4 chains x 1,000 draws after
1,000 warm-up) < 30 s on 2 cores with every R-hat < 1.01.  The one-time JAX
compilation is reported apart.  The baseline printed next to the Laplace time is
one batched numba ``simulate`` of the same patient (the cost of a single
forward solve), measured in the same process.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.core.events import Regimen  # noqa: E402
from medtwin.core.simulate import simulate  # noqa: E402
from medtwin.core.data import PatientData  # noqa: E402
from medtwin.infer.personalize import personalize  # noqa: E402
from medtwin.io.population_file import load_population, shipped_population_path  # noqa: E402
from medtwin.models import get_model  # noqa: E402

COVARIATES = {"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}
REGIMEN = Regimen.every(12.0, "h", 1000.0, "mg", n=8, duration=1.0)
TIMES, LEVELS = [11.5, 13.0, 35.5, 37.0], [9.0, 25.0, 12.5, 30.0]


def main(quick: bool) -> None:
    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS")}, "cpus:", os.cpu_count())
    pop = load_population(shipped_population_path("vancomycin_goti2018"))
    data = PatientData(REGIMEN, TIMES, LEVELS, COVARIATES)
    model = get_model(pop.model)
    params = {k: float(v) for k, v in pop.typical_parameters(COVARIATES).items()}
    simulate(model, params, REGIMEN, np.asarray(TIMES))
    t0 = time.perf_counter()
    for _ in range(20):
        simulate(model, params, REGIMEN, np.asarray(TIMES))
    forward = (time.perf_counter() - t0) / 20

    t0 = time.perf_counter()
    post = personalize(pop, data, method="laplace")
    first = time.perf_counter() - t0
    runs = []
    for _ in range(5 if quick else 20):
        t0 = time.perf_counter()
        post = personalize(pop, data, method="laplace")
        runs.append(time.perf_counter() - t0)
    warm = float(np.median(runs))
    print(f"Laplace: first call {first:.2f} s (JAX compile + solve), warm median {warm * 1e3:.1f} ms "
          f"(max {max(runs) * 1e3:.1f} ms) = {warm / 0.5:.3f} x the 0.5 s target "
          f"[{'MET' if warm < 0.5 else 'NOT MET'}]; one forward numba simulate {forward * 1e3:.2f} ms "
          f"(ratio {warm / forward:.0f}); status {post.status}, {post.diagnostics['iterations']} iterations")
    print(post.summary().to_string(index=False))
    if quick:
        return
    t0 = time.perf_counter()
    nuts = personalize(pop, data, method="nuts", chains=4, draws=1000, warmup=1000, seed=1)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    nuts = personalize(pop, data, method="nuts", chains=4, draws=1000, warmup=1000, seed=2)
    warm = time.perf_counter() - t0
    rhat = nuts.diagnostics["rhat"]
    print(f"NUTS 4 x 1000 (+1000 warm-up): first {first:.1f} s, warm {warm:.1f} s = {warm / 30:.2f} x the 30 s "
          f"target [{'MET' if warm < 30 else 'NOT MET'}]; max R-hat {rhat.max():.4f} "
          f"[{'MET' if rhat.max() < 1.01 else 'NOT MET'}], min bulk ESS {nuts.diagnostics['ess'].min():.0f}, "
          f"{nuts.diagnostics['divergent']} divergent")
    print(nuts.summary().to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Laplace only (a smoke run)")
    main(parser.parse_args().quick)
