"""Dose recommendation benchmark: discrete search with 1,000 posterior draws (target < 2 s warm).

Run:  python benchmarks/recommend.py            (5 warm runs, also with a loading dose allowed)
      python benchmarks/recommend.py --quick    (2 warm runs; CI, < 60 s)

Scenario: the vancomycin demo patient (:func:`medtwin.scenarios.demo.run_twin_demo`:
Goti 2018 population, CrCl 45 mL/min, 82 kg, 1,000 mg q12h x 4, a trough and a
peak), personalized with MAP + Laplace; target AUC24 400-600 mg·h/L on day 3 of
the new regimen, toxic AUC24 > 600 mg·h/L (nephrotoxicity rises above it) with
P(toxic) <= 0.1; doses in 250 mg steps up to 2,000 mg, at most 4,000 mg/day,
intervals 6/8/12/24 h, infusions at most 1,000 mg/h.  The one-time compilation
(JAX for the fit, numba for simulate) is reported apart.  Baseline, measured in
the same process: a naive loop over the same candidates, one
``Posterior.predict`` per candidate (1,000 draws) and the AUC from its band.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.control.dosing import DoseConstraints, _candidates, candidate_regimen, recommend_dose  # noqa: E402
from medtwin.control.targets import AUC24Window, Threshold  # noqa: E402
from medtwin.scenarios.demo import run_twin_demo  # noqa: E402
from medtwin.infer.posterior import probability  # noqa: E402

N_DRAWS = 1000
TARGET = AUC24Window(400.0, 600.0)
TOXIC = Threshold(AUC24Window(), above=600.0)
CONSTRAINTS = DoseConstraints(dose_step_mg=250.0, max_dose_mg=2000.0, max_daily_mg=4000.0,
                              intervals_h=(6.0, 8.0, 12.0, 24.0), max_rate_mg_per_h=1000.0)


def naive(posterior, history, constraints, window) -> float:
    """P(target) of every candidate by one Posterior.predict each; returns the best P (for a sanity check)."""
    start = window[0] - 48.0
    grid = np.round(np.arange(window[0], window[1] + 1e-9, 0.25), 9)
    best = 0.0
    for c in _candidates(constraints):
        band = posterior.predict(history + candidate_regimen(c, start, window[1]), grid, n_draws=N_DRAWS, seed=0)
        auc = band.auc("C", *window)
        if probability(auc, high=600.0) >= 0.9:
            best = max(best, probability(auc, 400.0, 600.0))
    return best


def timed(fn, runs: int):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times)), max(times)


def main(quick: bool) -> None:
    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS")}, "cpus:", os.cpu_count())
    t0 = time.perf_counter()
    demo = run_twin_demo(n_draws=200)
    posterior, history = demo.posterior, demo.data.regimen
    print(f"demo patient personalized (Laplace, incl. JAX compile): {time.perf_counter() - t0:.1f} s; "
          f"covariates {demo.covariates}")

    def call(constraints=CONSTRAINTS, sensitivity=True):
        return recommend_dose(posterior, TARGET, constraints=constraints, toxic=TOXIC, max_toxic_probability=0.1,
                              history=history, n_draws=N_DRAWS, seed=0, sensitivity=sensitivity)

    t0 = time.perf_counter()
    rec = call()
    first = time.perf_counter() - t0
    runs = 2 if quick else 5
    rec, warm, worst = timed(call, runs)
    _, warm_search, _ = timed(lambda: call(sensitivity=False), runs)
    window = rec.target["window_h"]
    best_naive, naive_time, _ = timed(lambda: naive(posterior, history, CONSTRAINTS, window), 1 if quick else 2)
    n = len(_candidates(CONSTRAINTS))
    print(f"recommend_dose ({n} candidates x {N_DRAWS} draws, with sensitivity = 3 searches + 2 bands): first call "
          f"{first:.2f} s (numba compile), warm median {warm:.3f} s (max {worst:.3f} s) = {warm / 2.0:.2f} x the "
          f"2 s target [{'MET' if warm < 2.0 else 'NOT MET'}]")
    print(f"search alone (no sensitivity): warm {warm_search:.3f} s; naive per-candidate Posterior.predict loop "
          f"{naive_time:.3f} s (ratio {naive_time / warm_search:.1f}x); best P(target) naive {best_naive:.3f} vs "
          f"{rec.probabilities['target']:.3f}")
    print(rec.summary())
    if quick:
        return
    loading = DoseConstraints(dose_step_mg=250.0, max_dose_mg=2000.0, max_daily_mg=4000.0, max_rate_mg_per_h=1000.0,
                              loading=True, max_loading_mg=3000.0)
    rec2, warm2, _ = timed(lambda: call(loading), runs)
    print(f"with a loading dose allowed ({len(_candidates(loading))} candidates): warm median {warm2:.3f} s "
          f"[{'MET' if warm2 < 2.0 else 'NOT MET'}]")
    print(rec2.summary().splitlines()[0], rec2.probabilities)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI)")
    main(parser.parse_args().quick)
