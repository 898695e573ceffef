"""Model averaging over the shipped vancomycin priors: weight on the true model and AUC24 prediction error.

Run:  python benchmarks/model_averaging.py            (50 virtual patients per prior model, 150 in all)
      python benchmarks/model_averaging.py --quick    (2 per prior model; CI, < 30 s warm)

Virtual patients are drawn from each shipped vancomycin population in turn (Goti 2018, Thomson 2009,
Buelga 2005: the candidates themselves, so the true model is one of them): CrCl ~ U(30, 130) mL/min,
weight ~ U(50, 110) kg, no dialysis; η ~ N(0, Ω) of that model; 1,000 mg q12h infused over 1 h; two levels
(a peak at 26 h, a trough at 35.5 h; ``--levels 4`` adds 2 h and 6 h) with that model's residual error (folded at 0.1 mg/L).  Each patient is
personalized under every candidate (MAP + Laplace: three fits), and the day-4 AUC24 (72-96 h) of the same
regimen continued is predicted as the median of 400 predictive draws by

* every single model (the baselines: what a one-model tool predicts),
* the oracle (the patient's own generating model, unknowable in practice),
* model averaging with each weighting (laplace evidence; MAP objective and its AIC variant, Uster 2021;
  likelihood at the mode),
* model selection (laplace).

Printed: mean weight on the true model and the share of patients where it has the largest weight (per
weighting), and the median and 90th percentile of |log(predicted / true AUC24)| per method, all measured in
this run.  The per-patient fit time of three fits vs one is printed as a ratio.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.core.data import PatientData  # noqa: E402
from medtwin.core.events import Regimen  # noqa: E402
from medtwin.core.simulate import simulate  # noqa: E402
from medtwin.infer.model_averaging import (WEIGHTINGS, ModelAveragedPosterior, _scores,  # noqa: E402
                                           model_weights, score)
from medtwin.infer.personalize import personalize  # noqa: E402
from medtwin.io.population_file import drug_populations  # noqa: E402
from medtwin.models import get_model  # noqa: E402

LEVELS = {2: np.array([26.0, 35.5]), 4: np.array([2.0, 6.0, 26.0, 35.5])}
WINDOW = (72.0, 96.0)
GRID = np.round(np.arange(WINDOW[0], WINDOW[1] + 1e-9, 0.25), 9)
N_DRAWS = 400


def virtual_patient(pop, rng, level_times):
    """(covariates, true parameters, regimen, PatientData) of one patient drawn from ``pop``."""
    cov = {"CRCL": float(rng.uniform(30.0, 130.0)), "WT": float(rng.uniform(50.0, 110.0)), "DIAL": 0.0}
    typical = pop.typical_parameters(cov)
    eta = rng.multivariate_normal(np.zeros(len(pop.iiv)), np.asarray(pop.omega))
    theta = {p: np.array([float(v)]) for p, v in typical.items()}
    for k, p in enumerate(pop.iiv):
        theta[p] = theta[p] * np.exp(eta[k])
    model = get_model(pop.model)
    regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=3, duration=1.0)
    f = np.asarray(simulate(model, theta, regimen, level_times).output("C"), float).ravel()
    y = np.maximum(np.abs(f + np.sqrt(pop.residual.variance(f)) * rng.standard_normal(f.size)), 0.1)
    continued = Regimen.every(12.0, "h", 1000.0, "mg", n=8, duration=1.0)
    conc = np.asarray(simulate(model, theta, continued, GRID).output("C"), float).ravel()
    true_auc = float(np.trapezoid(conc, GRID))
    return PatientData(regimen, level_times, y, cov), continued, true_auc


def predicted_auc(posterior, regimen) -> float:
    band = posterior.predict(regimen, GRID, n_draws=N_DRAWS, seed=1)
    return float(np.median(band.auc("C", *WINDOW)))


def run(per_model: int, seed: int, n_levels: int = 2) -> None:
    level_times = LEVELS[n_levels]
    pops = drug_populations("vancomycin")
    names = [p.name.replace("vancomycin_", "") for p in pops]
    rng = np.random.default_rng(seed)
    methods = [f"single {n}" for n in names] + ["oracle (true model)"] + [f"BMA {w}" for w in WEIGHTINGS] + \
        ["selection laplace"]
    errors = {m: [] for m in methods}
    truths = []
    weight_true = {w: [] for w in WEIGHTINGS}
    top_true = {w: [] for w in WEIGHTINGS}
    fit_seconds = []
    t_compile = time.perf_counter()
    data0, _, _ = virtual_patient(pops[0], np.random.default_rng(0), level_times)
    for p in pops:  # compile every potential and simulate kernel once, apart from the timed loop
        predicted_auc(personalize(p, data0), Regimen.every(12.0, "h", 1000.0, "mg", n=8, duration=1.0))
    t_compile = time.perf_counter() - t_compile
    for truth, pop in enumerate(pops):
        for _ in range(per_model):
            data, regimen, true_auc = virtual_patient(pop, rng, level_times)
            truths.append(truth)
            t0 = time.perf_counter()
            components = [personalize(p, data) for p in pops]
            fit_seconds.append(time.perf_counter() - t0)
            diags = [_scores(c, p.name) for c, p in zip(components, pops)]
            singles = [predicted_auc(c, regimen) for c in components]
            for n, value in zip(names, singles):
                errors[f"single {n}"].append(abs(np.log(value / true_auc)))
            errors["oracle (true model)"].append(abs(np.log(singles[truth] / true_auc)))
            for w in WEIGHTINGS:
                scores = np.array([score(d, w) for d in diags])
                weights = model_weights(scores)
                weight_true[w].append(weights[truth])
                top_true[w].append(int(np.argmax(weights)) == truth)
                mix = ModelAveragedPosterior(components, [p.name for p in pops], weights, w, "average", scores,
                                             tuple(diags))
                errors[f"BMA {w}"].append(abs(np.log(predicted_auc(mix, regimen) / true_auc)))
                if w == "laplace":
                    sel = ModelAveragedPosterior(components, [p.name for p in pops], model_weights(scores, "select"),
                                                 w, "select", scores, tuple(diags))
                    errors["selection laplace"].append(abs(np.log(predicted_auc(sel, regimen) / true_auc)))
    n = len(fit_seconds)
    print(f"threads: NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']} OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}; {n} virtual patients ({per_model} per prior model: "
          f"{', '.join(names)}), {n_levels} levels at {level_times.tolist()} h; compile (once) {t_compile:.1f} s")
    print(f"three MAP fits per patient: median {np.median(fit_seconds):.2f} s (the cost of averaging: 3 fits "
          "instead of 1)")
    print("\nweight on the true (generating) model")
    print(f"{'weighting':<12} {'mean weight':>12} {'true model largest':>20}")
    for w in WEIGHTINGS:
        print(f"{w:<12} {np.mean(weight_true[w]):>12.3f} {np.mean(top_true[w]):>20.2f}")
    print(f"{'(uniform)':<12} {1 / len(pops):>12.3f} {1 / len(pops):>20.2f}")
    print("\nday-4 AUC24 (72-96 h): |log(predicted median / true)|")
    print(f"{'method':<26} {'median':>8} {'p90':>8} {'mean':>8}")
    for m in methods:
        e = np.asarray(errors[m])
        print(f"{m:<26} {np.median(e):>8.3f} {np.quantile(e, 0.9):>8.3f} {np.mean(e):>8.3f}")
    truths = np.asarray(truths)
    print("\nmean |log error| by generating model (rows: method; worst = the largest of the three)")
    print(f"{'method':<26} " + " ".join(f"{nm:>12}" for nm in names) + f" {'worst':>8}")
    for m in methods:
        e = np.asarray(errors[m])
        by = [np.mean(e[truths == k]) for k in range(len(names))]
        print(f"{m:<26} " + " ".join(f"{v:>12.3f}" for v in by) + f" {max(by):>8.3f}")
    best_single = min((np.mean(errors[f"single {nm}"]), nm) for nm in names)
    for w in WEIGHTINGS:
        print(f"BMA {w}: mean error {np.mean(errors[f'BMA {w}']):.3f} vs best single model ({best_single[1]}) "
              f"{best_single[0]:.3f}: ratio {np.mean(errors[f'BMA {w}']) / best_single[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 patients per prior model (CI)")
    parser.add_argument("--per-model", type=int, default=None, help="virtual patients per prior model")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--levels", type=int, choices=sorted(LEVELS), default=2,
                        help="levels per patient: 2 (peak 26 h, trough 35.5 h) or 4 (also 2 h and 6 h)")
    args = parser.parse_args()
    per_model = args.per_model or (2 if args.quick else 50)
    run(per_model, args.seed, args.levels)


if __name__ == "__main__":
    main()
