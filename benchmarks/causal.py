"""Causal benchmark (issue 15): adjustment estimators on SCMs with known truth — bias, MC SE, CI coverage.

Run:  python benchmarks/causal.py            (1,000 replicates of n = 2,000 per scenario; a few minutes)
      python benchmarks/causal.py --quick    (100 replicates of n = 1,000; <= 30 s; CI smoke run, loose bounds)

Two SCMs (:mod:`medtwin.causal.scm`), each with a confounder C, a pre-treatment binary stratum S, a mediator
M on the causal path, and a collider K (a common effect of A and Y):

* linear:    A ~ Bern(logit⁻¹(0.8 C − 0.5 S)), M = A + ε, Y = M + A + A·S + 1.5 C + S + ε, K = A + Y + ε.
             True ATE 2 + P(S = 1) = 2.4; true effects by stratum 2 (S = 0) and 3 (S = 1).
* nonlinear: A ~ Bern(logit⁻¹(0.5 + 0.7 C − 0.4 S)), M = exp(0.5 A) + 0.3 ε, Y = 2 M + C² + A·C + S + ε,
             K = A + Y + ε.  True ATE 2 (e^0.5 − 1) = 1.2974 in both strata.  The estimators get the
             features C, C², S (correct outcome and propensity models), never M or K.

The truth is also recomputed by do() on 400,000 units with common random numbers.  For every replicate
(n = 2,000 units; at n = 1,000 the Hajek IPW's finite-sample bias, ~0.007, is 2.0-2.5 MC SE — see
docs/decisions.md) the g-formula, IPW and AIPW (influence-function 95 % CIs) are fitted with the optimal
adjustment set, and the g-formula within each stratum of S.  Printed per estimator: bias, Monte Carlo SE
of the bias, mean SE / empirical SD, and coverage.  Acceptance (full run): |bias| <= 2 MC SE, coverage in
0.93-0.97, subgroup coverage >= 0.93; adjusting for M or K must be refused (AdjustmentError).
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.causal import (  # noqa: E402
    SCM, Additive, AdjustmentError, Bernoulli, Linear, Noise, Variable, aipw, check_adjustment, g_formula, ipw,
    optimal_adjustment_set, stratum_effects,
)


def linear_scm() -> SCM:
    return SCM([
        Variable("S", Bernoulli({}, intercept=math.log(0.4 / 0.6)), Noise.uniform()),
        Variable("C", Linear({}), Noise.normal(1.0)),
        Variable("A", Bernoulli({"C": 0.8, "S": -0.5}), Noise.uniform()),
        Variable("M", Linear({"A": 1.0}), Noise.normal(1.0)),
        Variable("Y", Additive(("M", "A", "S", "C"), lambda v: v["M"] + v["A"] + v["A"] * v["S"] + 1.5 * v["C"]
                               + v["S"]), Noise.normal(1.0)),
        Variable("K", Linear({"A": 1.0, "Y": 1.0}), Noise.normal(1.0)),
    ])


def nonlinear_scm() -> SCM:
    return SCM([
        Variable("S", Bernoulli({}, intercept=math.log(0.4 / 0.6)), Noise.uniform()),
        Variable("C", Linear({}), Noise.normal(1.0)),
        Variable("A", Bernoulli({"C": 0.7, "S": -0.4}, intercept=0.5), Noise.uniform()),
        Variable("M", Additive(("A",), lambda v: np.exp(0.5 * v["A"])), Noise.normal(0.3)),
        Variable("Y", Additive(("M", "C", "A", "S"),
                               lambda v: 2 * v["M"] + v["C"] ** 2 + v["A"] * v["C"] + v["S"]), Noise.normal(1.0)),
        Variable("K", Linear({"A": 1.0, "Y": 1.0}), Noise.normal(1.0)),
    ])


SCENARIOS = {
    "linear": (linear_scm, 2.4, {0.0: 2.0, 1.0: 3.0}),
    "nonlinear": (nonlinear_scm, 2 * (math.exp(0.5) - 1), {0.0: 2 * (math.exp(0.5) - 1),
                                                          1.0: 2 * (math.exp(0.5) - 1)}),
}


def truth_by_do(scm: SCM, n: int = 400_000) -> tuple[float, dict]:
    treated = scm.do(A=1.0).sample(n, seed=99)
    control = scm.do(A=0.0).sample(n, seed=99)     # same units: common random numbers
    diff = treated["Y"] - control["Y"]
    return float(diff.mean()), {s: float(diff[treated["S"] == s].mean()) for s in (0.0, 1.0)}


def replicate(scm: SCM, r: int, n: int) -> dict:
    frame = scm.sample(n, seed=10_000 + r)
    frame["C2"] = frame["C"] ** 2
    z = sorted(optimal_adjustment_set(scm, "A", "Y"))            # {C, S}
    features = z + ["C2"]
    out = {
        "g-formula": g_formula(frame, "A", "Y", features, interactions="all"),
        "ipw": ipw(frame, "A", "Y", features),
        "aipw": aipw(frame, "A", "Y", features),
    }
    for s, est in stratum_effects(scm, frame, "A", "Y", "S", features=["C2"], interactions="all").items():
        out[f"g-formula S={int(s)}"] = est
    return out


def check_refusals(scm: SCM) -> list[str]:
    messages = []
    for bad in (["C", "S", "M"], ["C", "S", "K"]):
        try:
            check_adjustment(scm, "A", "Y", bad)
        except AdjustmentError as exc:
            messages.append(str(exc))
        else:
            raise SystemExit(f"FAIL: adjusting for {bad} was not refused")
    return messages


def run(replicates: int, n: int, quick: bool) -> bool:
    from rich.progress import Progress

    ok = True
    for name, (factory, true_ate, true_strata) in SCENARIOS.items():
        scm = factory()
        do_ate, do_strata = truth_by_do(scm)
        print(f"\n== {name} SCM: true ATE {true_ate:.4f} (by do() on 400,000 units: {do_ate:.4f}); "
              f"by stratum {', '.join(f'S={int(s)}: {v:.4f}' for s, v in true_strata.items())} "
              f"(do(): {', '.join(f'{v:.4f}' for v in do_strata.values())})")
        for message in check_refusals(scm):
            print(f"   refused: {message[:110]}...")
        results: dict[str, list] = {}
        start = time.perf_counter()
        with Progress(transient=True) as progress:
            task = progress.add_task(f"{name}: {replicates} replicates", total=replicates)
            for r in range(replicates):
                for key, est in replicate(scm, r, n).items():
                    results.setdefault(key, []).append((est.estimate, est.se, est.ci[0], est.ci[1]))
                progress.advance(task)
        elapsed = time.perf_counter() - start
        print(f"   {replicates} replicates of n = {n} in {elapsed:.1f} s")
        print(f"   {'estimator':16s} {'truth':>8s} {'mean':>8s} {'bias':>8s} {'MC SE':>7s} {'|bias|/MCSE':>11s} "
              f"{'SE/SD':>6s} {'coverage':>8s}")
        for key, rows in results.items():
            arr = np.array(rows)
            truth = true_strata[float(key[-1])] if "S=" in key else true_ate
            bias = arr[:, 0].mean() - truth
            sd = arr[:, 0].std(ddof=1)
            mcse = sd / math.sqrt(len(arr))
            coverage = float(np.mean((arr[:, 2] < truth) & (truth < arr[:, 3])))
            if quick:   # 100 replicates: binomial SD of coverage ~0.022
                good = abs(bias) <= 3 * mcse and 0.88 <= coverage <= 1.0
            elif "S=" in key:
                good = abs(bias) <= 2 * mcse and coverage >= 0.93
            else:
                good = abs(bias) <= 2 * mcse and 0.93 <= coverage <= 0.97
            ok &= good
            print(f"   {key:16s} {truth:8.4f} {arr[:, 0].mean():8.4f} {bias:8.4f} {mcse:7.4f} {abs(bias) / mcse:11.2f} "
                  f"{arr[:, 1].mean() / sd:6.3f} {coverage:8.3f}  {'ok' if good else 'FAIL'}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 replicates (CI smoke run, loose bounds)")
    parser.add_argument("--replicates", type=int, default=None)
    parser.add_argument("--n", type=int, default=None, help="units per replicate (default 2,000; quick 1,000)")
    args = parser.parse_args(argv)
    replicates = args.replicates or (100 if args.quick else 1000)
    n = args.n or (1000 if args.quick else 2000)
    print(f"threads: OMP={os.environ['OMP_NUM_THREADS']} OPENBLAS={os.environ['OPENBLAS_NUM_THREADS']}; "
          f"replicates {replicates}, n = {n}{' (quick)' if args.quick else ''}")
    ok = run(replicates, n, args.quick)
    print("\nall acceptance checks met" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
