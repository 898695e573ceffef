"""Closed-loop ICU glucose control on patients of foreign truth models: new MPC vs previous MPC vs sliding scale.

Run:  python benchmarks/glucose_loop.py            (10 paired patients x 72 h per truth model; issue 14 item 4)
      python benchmarks/glucose_loop.py --quick    (1 Bergman patient x 12 h: a smoke run, < 30 s)
      python benchmarks/glucose_loop.py --truth hovorka_icu --patients 20

Each virtual patient is run three times with the same measurement noise
(paired): the twin (ICING, SI tracked by the UKF) with the new MPC settings
(:func:`medtwin.scenarios.evaluation.default_glucose_controller`: move
suppression, process noise over the committed hour only), the same twin with
the previous settings (:func:`~medtwin.scenarios.evaluation.previous_glucose_controller`),
and the JBDS variable-rate sliding scale.  Hourly blood glucose, 20-min lab
delay, enteral feed 3.5 g/h, insulin 0–10 U/h changed by at most 2 U/h.  The
truth is never ICING: ``bergman_insulin`` (:mod:`medtwin.scenarios.glucose_patients`),
``hovorka_icu`` and ``dalla_man_icu`` (:mod:`medtwin.scenarios.foreign_glucose`).

Printed per truth model: time in 4.4–8.0 mmol/L, time < 4.4, time < 2.2 and insulin per day for each
policy, the paired differences new − sliding scale and new − previous (mean, 95 % t interval, paired t-test
and Wilcoxon signed-rank p), and the acceptance verdict of issue 14 (time in range ≥ sliding scale + 5
points, time < 4.4 no higher, time < 2.2 zero, insulin less than double).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.scenarios.evaluation import evaluate_glucose, previous_glucose_controller  # noqa: E402
from medtwin.scenarios.glucose_loop import GlucoseScenario, twin_policy  # noqa: E402

METRICS = (("time_in_range", "TIR 4.4-8"), ("time_below_4_4", "<4.4"), ("time_below_2_2", "<2.2"),
           ("insulin_per_day", "U/day"))


def available_truths() -> list[str]:
    truths = ["bergman_insulin"]
    try:
        from medtwin.scenarios.foreign_glucose import FOREIGN_MODELS
    except ImportError:  # pragma: no cover - before the foreign truths exist
        return truths
    return truths + list(FOREIGN_MODELS)


def paired(a: np.ndarray, b: np.ndarray) -> str:
    """Mean difference a − b, 95 % t interval, paired t-test and Wilcoxon p (nan when every pair ties)."""
    from scipy.stats import t as student, ttest_rel, wilcoxon

    d = a - b
    n = len(d)
    sd = float(np.std(d, ddof=1)) if n > 1 else float("nan")
    half = float(student.ppf(0.975, n - 1)) * sd / np.sqrt(n) if n > 1 else float("nan")
    t_p = float(ttest_rel(a, b).pvalue) if n > 1 and sd > 0 else float("nan")
    w_p = float(wilcoxon(d[d != 0]).pvalue) if np.count_nonzero(d) >= 6 else float("nan")
    return f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}] t p={t_p:.3g} W p={w_p:.3g}"


def run_truth(truth: str, n: int, scenario: GlucoseScenario, seed: int) -> dict:
    t0 = time.perf_counter()
    extra = {"previous": twin_policy(scenario, previous_glucose_controller(scenario))}
    evaluation = evaluate_glucose(n, seed=seed, scenario=scenario, truth=truth, extra_policies=extra)
    frame = evaluation.frame.copy()
    frame["insulin_per_day"] = frame["insulin_units"] * 24.0 / scenario.hours
    wide = {m: frame.pivot(index="patient", columns="policy", values=m) for m, _ in METRICS}
    seconds = time.perf_counter() - t0
    print(f"\n== truth {truth}: {n} paired patients x {scenario.hours} h ({seconds:.0f} s) ==")
    print(f"{'policy':15s}" + "".join(f"{label:>11s}" for _, label in METRICS) + "   (means over patients)")
    for policy, label in (("twin", "new MPC"), ("previous", "previous MPC"), ("sliding-scale", "sliding scale")):
        print(f"{label:15s}" + "".join(f"{wide[m][policy].mean():11.4f}" for m, _ in METRICS))
    for other, label in (("sliding-scale", "new - sliding scale"), ("previous", "new - previous MPC")):
        print(f"  {label}:")
        for m, name in METRICS:
            print(f"    {name:10s} {paired(wide[m]['twin'].to_numpy(float), wide[m][other].to_numpy(float))}")
    tir, low, severe, insulin = (wide[m] for m, _ in METRICS)
    checks = {
        "TIR >= sliding scale + 0.05": tir["twin"].mean() >= tir["sliding-scale"].mean() + 0.05,
        "time <4.4 <= sliding scale": low["twin"].mean() <= low["sliding-scale"].mean(),
        "time <2.2 == 0": bool((severe["twin"] == 0).all()),
        "insulin < 2 x sliding scale": insulin["twin"].mean() < 2.0 * insulin["sliding-scale"].mean(),
    }
    hard = int(frame.loc[frame.policy == "twin", ["bound_violations", "rate_violations"]].to_numpy().sum())
    print(f"  hard-constraint violations of the new MPC: {hard}; insulin ratio new/sliding scale "
          f"{insulin['twin'].mean() / insulin['sliding-scale'].mean():.2f}")
    print("  acceptance (issue 14, closed loop): " + "; ".join(f"{k} [{'MET' if v else 'NOT MET'}]"
                                                              for k, v in checks.items()))
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 Bergman patient x 12 h (smoke run)")
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--truth", action="append", help="truth model(s); default every available foreign one")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    truths = args.truth or (["bergman_insulin"] if args.quick else available_truths())
    n, hours = (1, 12) if args.quick else (args.patients, args.hours)
    scenario = GlucoseScenario(hours=hours)
    results = {truth: run_truth(truth, n, scenario, args.seed) for truth in truths}
    if args.quick:
        print("\n(--quick is a smoke run of the machinery: 1 patient x 12 h decides nothing; the acceptance run is the "
              "full mode)")
    print("\nsummary: " + "; ".join(f"{t}: {'all MET' if all(c.values()) else 'NOT MET'}" for t, c in results.items()))


if __name__ == "__main__":
    main()
