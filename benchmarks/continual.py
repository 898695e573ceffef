"""Continual adaptation benchmark: consolidation vs rehearsal vs pure forgetting on an IV-to-oral switch.

Run:  python benchmarks/continual.py            (12 seeded patients, one update per dosing interval, then the
                                                 unmodelled-change variant on 6 patients; < 3 min)
      python benchmarks/continual.py --quick    (4 patients, one update per two intervals; < 60 s)

The scenario (:class:`medtwin.scenarios.continual.IvOralSwitch`): 48 h of IV
infusions (identify CL, V), then 96 h of oral doses (identify CL/F1, V/F1, KA
only).  Printed: the mean per strategy of the held-out regime-A error right
after regime A and at the end (log-RMS ×100 ≈ %), the backward transfer
(after − before; > 0 is forgetting), the mean log predictive density, the
adaptation speed (post-switch observations until every later one-step-ahead
prediction is within 20 %), the one-step-ahead error on regime B, and the
regime alarms; then Forgetting paired against each other strategy per patient
(mean difference, fraction of patients where Forgetting is worse, Wilcoxon
signed-rank p).  The one-time JAX compilation (two observation paddings) is
reported apart from the warm time.

The full run adds the variant with an unmodelled change at the ward transfer
(``cl_change=0.6``: CL falls by 40 %), run with and without the CUSUM
detector: the detector's alarm (delay in observations) and what it buys in
adaptation speed.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.scenarios.continual import IvOralSwitch, evaluate_continual, summarize  # noqa: E402


def main(quick: bool) -> None:
    import pandas as pd

    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                       "NUMBA_NUM_THREADS")}, "cpus:", os.cpu_count())
    scenario = IvOralSwitch(intervals_per_batch=2 if quick else 1)
    n = 4 if quick else 12
    t0 = time.perf_counter()
    evaluate_continual(n_patients=1, seed=999, scenario=scenario)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = evaluate_continual(n_patients=n, seed=0, scenario=scenario)
    warm = time.perf_counter() - t0
    print(f"{n} patients x 3 strategies: warm {warm:.1f} s ({warm / n:.2f} s per patient); first patient "
          f"(incl. JAX compilation) {compile_s:.1f} s")
    means, paired = summarize(frame)
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(means.to_string())
        print(paired.to_string(index=False))
    ok = all(paired[(paired.other == o) & (paired.metric == "rmse_A_after")].iloc[0].mean_diff > 0
             for o in paired.other.unique())
    print(f"pure forgetting forgets more than every other strategy (held-out regime A): {'YES' if ok else 'NO'}; "
          f"fits failed: {int(frame.failures.sum())}; mean per-patient spread of settle_obs "
          f"{np.mean(frame.groupby('patient').settle_obs.std()):.2f}")
    if quick:
        return
    variant = IvOralSwitch(cl_change=0.6)
    cols = ["settle_obs", "post_rmse", "rmse_A_after", "detected", "delay_obs", "false_alarms"]
    t0 = time.perf_counter()
    rows = []
    for label, options in (("CUSUM k=0.5 h=5", {}), ("no detector", {"detector": None})):
        f = evaluate_continual(n_patients=6, seed=1, scenario=variant, **options)
        rows.append(f.groupby("strategy", sort=False)[cols].mean().assign(detector=label))
    print(f"unmodelled change at the switch (CL x 0.6), 6 patients, {time.perf_counter() - t0:.1f} s:")
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(pd.concat(rows).reset_index().to_string(index=False))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 patients, coarser batches (CI)")
    main(parser.parse_args().quick)
