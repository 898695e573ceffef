"""Prognosis benchmark (issue 17): hazards vs lifelines/scikit-survival, a joint model on public data,
dynamic-prediction AUC/Brier/calibration at landmarks, and a replicate study of 95 % CI coverage.

Run:  python benchmarks/prognosis.py            (200 simulated replicates; calibration plot in --out)
      python benchmarks/prognosis.py --nuts     (also NUTS on the AIDS joint model: several minutes)
      python benchmarks/prognosis.py --quick    (4 replicates; <= 30 s on the 2-core machine, warm cache)

Acceptance figures printed, each beside its reference or baseline measured in the same run:

1. Cox (Efron/Breslow, counting-process) and Weibull fits: max |difference| to lifelines and
   scikit-survival on their shipped data sets (rossi, waltons, stanford heart), target <= 1e-4.
2. Joint model on the AIDS data (467 patients, 1,405 square-root CD4 counts, ddI vs ddC; Abrams et al.
   1994 NEJM 330:657, as shipped with R's JM package and redistributed on PyPI by SurvSet, GPL-3; the
   PBC data with serial bilirubin, ``pbc2``, is not shipped by any installed or PyPI package we found):
   ``CD4 ~ obstime * drug, random = ~ obstime | patient`` and a relative-risk model with ``drug``, the
   current CD4 value as the association.  Published: JM (Rizopoulos 2010, J Stat Softw 35(9),
   doi:10.18637/jss.v035.i09) fits Assoct = −0.300 (SE 0.0385) for this model with a spline baseline
   (``jointModel(..., method = "spline-PH-GH")``); we use JM's piecewise-constant baseline (7 intervals).
   Target: |ours − published| < published SE.
3. Dynamic prediction AUC and Brier (IPCW) at landmarks 6 and 12 months (horizon 6 months) beside the
   baseline "last CD4 value carried forward in a time-varying Cox model"; calibration plot written.
4. Replicate study: simulated joint-model data (300 patients each) refitted; pooled coverage of the
   Wald 95 % intervals over all 13 parameters, target 0.93–0.97 (full run; Monte Carlo SE printed).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.prognosis.cox import fit_cox  # noqa: E402
from medtwin.prognosis.dynamic import dynamic_probabilities, score_landmark  # noqa: E402
from medtwin.prognosis.hazards import Weibull, fit_parametric  # noqa: E402
from medtwin.prognosis.joint import (JointParameters, fit_joint, fit_joint_nuts, joint_data,  # noqa: E402
                                    simulate_joint)

PUBLISHED_ALPHA, PUBLISHED_SE = -0.300, 0.0385


def reference_comparisons() -> dict:
    """Max |difference| of our Cox and Weibull fits to lifelines and scikit-survival."""
    import lifelines
    from lifelines.datasets import load_rossi, load_stanford_heart_transplants, load_waltons
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    out = {}
    r = load_rossi()
    cols = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    ours = fit_cox(r[cols].values, r.week.values, r.arrest.values)
    ref = lifelines.CoxPHFitter().fit(r, "week", "arrest")
    out["Cox Efron vs lifelines (rossi)"] = np.max(np.abs(ours.coef - ref.params_[cols].values))
    y = np.array(list(zip(r.arrest.astype(bool), r.week.astype(float))), dtype=[("e", "?"), ("t", "f8")])
    for ties in ("breslow", "efron"):
        sk = CoxPHSurvivalAnalysis(ties=ties, tol=1e-12, n_iter=200).fit(r[cols].values.astype(float), y)
        ours = fit_cox(r[cols].values, r.week.values, r.arrest.values, ties=ties)
        out[f"Cox {ties} vs scikit-survival (rossi)"] = np.max(np.abs(ours.coef - sk.coef_))
    h = load_stanford_heart_transplants()
    c2 = ["age", "year", "surgery", "transplant"]
    ours = fit_cox(h[c2].values, h.stop.values, h.event.values, start=h.start.values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctv = lifelines.CoxTimeVaryingFitter().fit(h, id_col="id", event_col="event", start_col="start",
                                                   stop_col="stop")
    out["time-varying Cox vs lifelines (stanford heart)"] = np.max(np.abs(ours.coef - ctv.params_[c2].values))
    w = load_waltons()
    ours = fit_parametric(Weibull, w["T"].values, w["E"].values)
    wf = lifelines.WeibullFitter().fit(w["T"], w["E"])
    out["Weibull (lambda, rho) vs lifelines (waltons), relative"] = max(
        abs(ours.baseline.scale / wf.lambda_ - 1), abs(ours.baseline.shape / wf.rho_ - 1))
    ours = fit_parametric(Weibull, r.week.values, r.arrest.values, covariates=r[cols].values)
    aft = lifelines.WeibullAFTFitter().fit(r, "week", "arrest")
    out["Weibull regression vs lifelines AFT (rossi)"] = np.max(np.abs(
        -ours.coef / ours.baseline.shape - aft.params_["lambda_"][cols].values))
    return out


def load_aids():
    """JM's ``aids`` data from SurvSet (counting-process rows: time = visit month, time2 = next visit/end)."""
    from SurvSet.data import SurvLoader

    df = SurvLoader().load_dataset("aids")["df"]
    pid = df["pid"].astype(int).values
    end = df.groupby("pid", observed=True)["time2"].transform("max").values
    death = df.groupby("pid", observed=True)["event"].transform("max").values
    drug = (df["fac_drug"] == "ddI").astype(float).values
    return joint_data(pid, df["time"].values, df["num_CD4"].values, end, death, w_long=drug, w_surv=drug), df


def locf_cox_predictions(data, landmark, horizon):
    """Baseline: time-varying Cox with the last observed CD4 (carried forward) and drug; risk over the horizon
    with the value at the landmark held fixed."""
    start, stop, event, x = [], [], [], []
    for i in range(data.n_subjects):
        ts = data.t_obs[i][data.mask[i]]
        ys = data.y[i][data.mask[i]]
        for j, (t0, yv) in enumerate(zip(ts, ys)):
            t1 = ts[j + 1] if j + 1 < len(ts) else data.time[i]
            if t1 <= t0:
                continue
            start.append(t0)
            stop.append(t1)
            event.append(data.event[i] if j + 1 == len(ts) else 0)
            x.append([yv, data.w_surv[i, 0]])
    fit = fit_cox(np.array(x), np.array(stop), np.array(event, int), start=np.array(start))
    p = np.zeros(data.n_subjects)
    for i in range(data.n_subjects):
        seen = data.mask[i] & (data.t_obs[i] <= landmark)
        last = data.y[i][seen][-1] if seen.any() else np.nan
        xi = [last, data.w_surv[i, 0]]
        h = fit.cumulative_hazard(landmark + horizon, xi) - fit.cumulative_hazard(landmark, xi)
        p[i] = 1 - np.exp(-h) if np.isfinite(last) else np.nan
    return p


def calibration_plot(rows, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for (lm, name), table in rows.items():
        ax.plot(table[:, 0], table[:, 1], "o-", label=f"{name}, landmark {lm:g} mo")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("predicted P(death within 6 months)")
    ax.set_ylabel("observed (IPCW)")
    ax.set_xlim(0, 0.8)
    ax.set_ylim(0, 0.8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def replicate_study(n_rep: int, n_subjects: int = 300, seed0: int = 1000) -> dict:
    truth = JointParameters.example()
    vec = truth.to_vector()
    hits, z_all, times, failed = [], [], [], 0
    for r in range(n_rep):
        data = simulate_joint(truth, n_subjects, seed=seed0 + r, pad_to=24)
        t0 = time.perf_counter()
        fit = fit_joint(data, breaks=truth.breaks)
        times.append(time.perf_counter() - t0)
        if not fit.converged:
            failed += 1
            continue
        z = (fit.theta - vec) / fit.se
        z_all.append(z)
        hits.append(np.abs(z) < 1.959964)
    hits = np.array(hits)
    names = fit.names
    pooled = float(hits.mean()) if hits.size else float("nan")
    return {"pooled": pooled, "mc_se": float(np.sqrt(pooled * (1 - pooled) / max(hits.size, 1))),
            "per_param": dict(zip(names, hits.mean(axis=0))) if hits.size else {}, "n_ok": len(hits),
            "failed": failed, "fit_s": (float(times[0]), float(np.median(times[1:])) if len(times) > 1 else None),
            "mean_z": dict(zip(names, np.mean(z_all, axis=0))) if z_all else {}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--replicates", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmark-prognosis"))
    parser.add_argument("--nuts", action="store_true", help="also sample the AIDS joint model with NUTS (minutes)")
    args = parser.parse_args(argv)
    n_rep = args.replicates or (4 if args.quick else 200)
    print(f"threads: OMP={os.environ.get('OMP_NUM_THREADS')} OPENBLAS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    start = time.perf_counter()

    print("\n1. hazard fits vs lifelines / scikit-survival (max |difference|, target <= 1e-4)")
    for name, diff in reference_comparisons().items():
        print(f"   {name:55s} {diff:.2e}  {'OK' if diff <= 1e-4 else 'FAIL'}")

    print("\n2. joint model on the AIDS data (JM's aids; current-value association)")
    data, _ = load_aids()
    t0 = time.perf_counter()
    fit = fit_joint(data)
    t_fit = time.perf_counter() - t0
    tab = fit.table()
    a, se = tab["alpha"]
    print(f"   {data.n_subjects} patients, {int(data.mask.sum())} CD4 values, {int(data.event.sum())} deaths; "
          f"fit {t_fit:.1f} s (compile included), converged={fit.converged}")
    verdict = "< SE: OK" if abs(a - PUBLISHED_ALPHA) < PUBLISHED_SE else ">= SE: FAIL"
    print(f"   alpha = {a:.4f} (SE {se:.4f})   published JM: {PUBLISHED_ALPHA:.3f} (SE {PUBLISHED_SE})   "
          f"|diff| = {abs(a - PUBLISHED_ALPHA):.4f} {verdict}")
    print(f"   gamma(ddI) = {tab['gamma0'][0]:.3f} (SE {tab['gamma0'][1]:.3f})   published JM: 0.356 (SE 0.158)")
    print(f"   sigma = {fit.params.sigma:.3f}, SD(b0) = {np.sqrt(fit.params.D[0, 0]):.3f}, "
          f"SD(b1) = {np.sqrt(fit.params.D[1, 1]):.3f}")
    if not args.quick:
        finer = fit_joint(data, n_gh=15, init=fit.params)
        print(f"   Gauss-Hermite 9x9 vs 15x15 nodes: alpha {a:.5f} vs {finer.table()['alpha'][0]:.5f}, "
              f"loglik {fit.loglik:.4f} vs {finer.loglik:.4f}")

    if args.nuts:
        t0 = time.perf_counter()
        post = fit_joint_nuts(data, init=fit, num_warmup=300, num_samples=300)
        m, sd = post.summary()["alpha"]
        print(f"   NUTS (2 chains x 300 after 300 warm-up, {time.perf_counter() - t0:.0f} s): alpha posterior mean "
              f"{m:.4f} (SD {sd:.4f}) vs ML {a:.4f} (SE {se:.4f}); max R-hat {np.max(post.r_hat):.3f}, "
              f"min ESS {np.min(post.ess):.0f}, divergences {post.divergences}")

    print("\n3. dynamic prediction on the AIDS data (apparent, IPCW), horizon 6 months")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for landmark in (6.0, 12.0):
        t0 = time.perf_counter()
        p_joint = dynamic_probabilities(fit, data, landmark, 6.0)
        t_pred = time.perf_counter() - t0
        jm = score_landmark(p_joint, data.time, data.event, landmark, 6.0)
        base = score_landmark(locf_cox_predictions(data, landmark, 6.0), data.time, data.event, landmark, 6.0)
        rows[(landmark, "joint")] = jm.calibration
        rows[(landmark, "LOCF Cox")] = base.calibration
        print(f"   landmark {landmark:4.0f} mo: at risk {jm.n_at_risk}, deaths in window {jm.n_events}; "
              f"AUC joint {jm.auc:.3f} vs LOCF Cox {base.auc:.3f}; Brier joint {jm.brier:.4f} vs LOCF Cox "
              f"{base.brier:.4f}; {jm.n_at_risk} predictions in {1e3 * t_pred:.0f} ms")
        for mean_p, obs, n in jm.calibration:
            print(f"      calibration group n={int(n):3d}: predicted {mean_p:.3f} observed {obs:.3f}")
    calibration_plot(rows, args.out / "calibration.png")
    print(f"   calibration plot: {args.out / 'calibration.png'}")

    print(f"\n4. replicate study: {n_rep} simulated data sets x 300 patients, Wald 95 % intervals")
    rep = replicate_study(n_rep)
    print(f"   fits converged {rep['n_ok']}/{n_rep}; first fit {rep['fit_s'][0]:.1f} s (compile), "
          f"then median {rep['fit_s'][1] if rep['fit_s'][1] is None else round(rep['fit_s'][1], 2)} s")
    verdict = "OK" if 0.93 <= rep["pooled"] <= 0.97 else "(outside)"
    note = " [quick: too few replicates to judge]" if args.quick else ""
    print(f"   pooled coverage {rep['pooled']:.3f} (Monte Carlo SE {rep['mc_se']:.3f}); target 0.93-0.97 "
          f"{verdict}{note}")
    for name, cov in rep["per_param"].items():
        print(f"      {name:13s} coverage {cov:.3f}  mean z {rep['mean_z'][name]:+.2f}")
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
