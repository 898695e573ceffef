"""Calibration of the ICU glycaemic twin's 1-h-ahead forecasts on patients of models it does not share.

Truths: the Hovorka 2004 and Dalla Man 2007 models in ICU form
(:mod:`medtwin.scenarios.foreign_glucose`), hour-to-hour insulin-sensitivity
changes, IV insulin by the JBDS-IP scale on the latest reading, enteral feed
3.5 g/h, 5-minute readings with 5 % CV.  The twin runs ICING.  For each model
and variant (baseline = the shipped twin; ``scale`` / ``additive`` = the
calibrated twin, :mod:`medtwin.twin.calibrated`; ``disturbance`` = ``scale`` on the
twin that also estimates EGP as a disturbance state, the one ``calibrated_icu_twin()``
ships; ``ensemble`` = the model ensemble of :mod:`medtwin.twin.ensemble` (ICING with EGP, Bergman with Gb at
the shipped and at twice the hourly SI variability, weighted online by their calibrated 1-h predictive
likelihood, forecast = mixture), judged by default; ``--calibrated disturbance`` judges the previous one) it prints, in one run, for each cohort seed (``--seeds``):

- coverage of the 90 % band of the reading 1 h ahead (pooled, and per-patient range),
- PIT summary (mean, sd — 0.5 and 0.289 when calibrated — KS distance, 10 % tails),
- RMSE of the forecast median against the true glucose (median and range over patients; the acceptance
  figure) and, beside it, against the reading (5 % CV measurement error included),
- regime alarms per 72 h; and on *stationary* patients (no hour-to-hour change,
  the foreign models and ICING itself) the false alarms per 72 h.

Acceptance (issue 14, item 3): coverage 0.85–0.95 on both foreign models, median
RMSE <= 0.8 mmol/L, false alarms <= 1 per 72 h on stationary patients.

Usage::

    python benchmarks/glucose_calibration.py --quick   # 1 patient per model, 12 h, baseline/disturbance/ensemble
    python benchmarks/glucose_calibration.py           # 10 patients per model, 72 h, seeds 2026, 99, 5, all
                                                       # variants + stationary + regime changes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from medtwin.assimilate.calibration import pit_summary  # noqa: E402
from medtwin.scenarios.foreign_glucose import FOREIGN_MODELS, foreign_stream, sample_foreign_patients  # noqa: E402
from medtwin.scenarios.glucose_calibration import evaluate_stream  # noqa: E402


def _row(label, variant, results):
    pit = pit_summary(np.concatenate([r.pit for r in results]))
    cov = np.array([r.coverage_90 for r in results])
    n = np.array([len(r.pit) for r in results])
    rmse = np.array([r.rmse_1h for r in results])
    alarms = np.array([r.alarms_per_72h for r in results])
    print(f"{label:<15} {variant:<11} {np.sum(cov * n) / n.sum():6.3f} [{cov.min():.2f}-{cov.max():.2f}]  "
          f"{pit['mean']:.3f} {pit['sd']:.3f} {pit['ks']:.3f} {pit['low_tail']:.2f}/{pit['high_tail']:.2f}  "
          f"{np.median(rmse):5.2f} [{rmse.min():.2f}-{rmse.max():.2f}] "
          f"{np.median([r.rmse_reading for r in results]):5.2f}  "
          f"{np.median([r.band_sd for r in results]):5.2f}  {alarms.mean():5.2f} (max {alarms.max():.1f})", flush=True)
    return np.sum(cov * n) / n.sum(), float(np.median(rmse)), float(alarms.mean()), rmse


def _header(title):
    print(f"\n{title}")
    print(f"{'truth':<15} {'variant':<11} {'cov90':>6} {'[range]':<11}  PIT mean/sd/KS tails     "
          f"{'RMSE':>5} {'[range]':<11} {'vs y':>5}  {'bandSD':>6}  alarms/72h")


def _stationary_icing(n, hours, seed):
    from medtwin.scenarios.glucose_patients import sample_icu_patients
    from medtwin.scenarios.icu import synthetic_stream

    return [synthetic_stream(p, hours, seed=p.id) for p in
            sample_icu_patients(n, model="icing", hours=hours + 1, seed=seed, si_step_sd=0.0)]


def _regime_changes(n, hours=48, change_at=24, variants=("baseline", "scale", "disturbance", "ensemble")):
    """Stationary patients whose SIscale halves at ``change_at`` h: alarms before, and detection delay after."""
    from medtwin.scenarios.foreign_glucose import ForeignICUPatient
    from medtwin.scenarios.glucose_calibration import variant_twin

    print(f"\nregime change: SIscale halves at {change_at} h ({n} stationary patients per model, {hours} h); "
          "alarms before the change, delay (h) of the first alarm after it")
    for model in FOREIGN_MODELS:
        for variant in variants:
            before, delays = 0, []
            for p in sample_foreign_patients(n, model=model, hours=hours, seed=11, si_step_sd=0.0):
                path = np.where(np.arange(hours) >= change_at, 0.5, 1.0)
                q = ForeignICUPatient(p.id, p.model, p.parameters, path, p.measurement_cv, p.seed)
                synthetic = foreign_stream(q, hours)
                twin = variant_twin(variant, synthetic.stream.regimen)
                for m in synthetic.stream.measurements:
                    twin = twin.assimilate([m])
                times = ([e.measurement.time for e in twin.history if e.regime_change is not None]
                         if variant == "baseline" else list(twin.alarms))
                before += sum(t < change_at for t in times)
                after = [t - change_at for t in times if t >= change_at]
                delays.append(f"{after[0]:.1f}" if after else "-")
            print(f"  {model:<14} {variant:<11} alarms before {before:2d}   first-alarm delays {' '.join(delays)}",
                  flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 patient per model, 12 h, baseline/disturbance/ensemble")
    parser.add_argument("--calibrated", choices=("ensemble", "disturbance", "scale", "additive", "bergman"),
                        default="ensemble", help="the variant judged (default: the model ensemble; 'disturbance' is "
                                                 "the previous twin, 'scale' the one before)")
    parser.add_argument("--seeds", default="2026,99,5", help="cohort seeds (comma-separated)")
    parser.add_argument("--variants", default=None, help="variants of the cohort tables (comma-separated; default: "
                        "baseline, scale, additive, disturbance, ensemble)")
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--changes", type=int, default=3, help="patients per model with a regime change")
    parser.add_argument("--stationary", type=int, default=4, help="stationary patients per model")
    args = parser.parse_args(argv)
    n, hours, variants = args.patients, args.hours, ("baseline", "scale", "additive", "disturbance", "ensemble")
    n_stat, judged, seeds = args.stationary, args.calibrated, [int(x) for x in args.seeds.split(",")]
    if args.variants:
        variants = tuple(args.variants.split(","))
    if args.quick:
        n, hours, variants, n_stat, args.changes, seeds = 1, 12, ("baseline", "disturbance", "ensemble"), 0, 0, [2026]
    if judged not in variants:
        variants = variants + (judged,)
    start = time.perf_counter()
    summary = {}
    for seed in seeds:
        _header(f"1-h-ahead forecasts, {n} patients per model, {hours} h, hour-to-hour SI changes (JBDS insulin, "
                f"feed), cohort seed {seed}")
        for model in FOREIGN_MODELS:
            streams = [foreign_stream(p, hours) for p in sample_foreign_patients(n, model=model, hours=hours,
                                                                                 seed=seed)]
            for variant in variants:
                summary[(model, seed, variant)] = _row(model, variant, [evaluate_stream(s, variant) for s in streams])
    if n_stat:
        _header(f"stationary patients (no hour-to-hour SI change), {n_stat} per model, {hours} h: false alarms")
        groups = {m: [foreign_stream(p, hours) for p in sample_foreign_patients(
            n_stat, model=m, hours=hours, seed=7, si_step_sd=0.0)] for m in FOREIGN_MODELS}
        groups["icing (own)"] = _stationary_icing(n_stat, hours, 7)
        for label, streams in groups.items():
            for variant in dict.fromkeys(("baseline", "scale", "disturbance", judged)):
                summary[("stationary", label, variant)] = _row(label, variant,
                                                               [evaluate_stream(s, variant) for s in streams])
    if args.changes:
        _regime_changes(args.changes, variants=tuple(dict.fromkeys(("baseline", "disturbance", judged))))
    if args.quick:
        print("\n(--quick: a smoke run of the whole pipeline; 11 forecasts per model are no acceptance figure)")
    print(f"\nacceptance (calibrated = {judged}): coverage in 0.85-0.95 and median RMSE <= 0.8 (vs the true "
          "glucose) per foreign model; stationary false alarms <= 1 per 72 h")
    previous = "disturbance" if judged != "disturbance" else "scale"
    for seed in seeds:
        for model in FOREIGN_MODELS:
            cov, rmse, _, _ = summary[(model, seed, judged)]
            base_cov, base_rmse, _, _ = summary[(model, seed, "baseline")]
            prev_cov, prev_rmse, _, _ = summary.get((model, seed, previous), (np.nan, np.nan, 0, 0))
            print(f"  seed {seed:<5} {model:<14} coverage {cov:.3f} (previous {prev_cov:.3f}, baseline {base_cov:.3f})"
                  f"  median RMSE {rmse:.3f} (previous {prev_rmse:.3f}, baseline {base_rmse:.3f})  "
                  f"{'MET' if 0.85 <= cov <= 0.95 and rmse <= 0.8 else 'NOT MET'}")
    pooled = np.concatenate([summary[(m, s, judged)][3] for m in FOREIGN_MODELS for s in seeds])
    print(f"  median RMSE over the patients of both foreign models: {np.median(pooled):.2f} mmol/L")
    for key, (_, _, alarms, _) in summary.items():
        if key[0] == "stationary":
            print(f"  stationary {key[1]:<14} {key[2]:<11} false alarms {alarms:.2f} per 72 h"
                  f"{'' if key[2] == 'baseline' else ('  MET' if alarms <= 1 else '  NOT MET')}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
