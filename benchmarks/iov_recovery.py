"""Simulation-recovery of inter-occasion variability: FOCEI and NUTS on data simulated from known θ, Ω, Ω_IOV.

40 subjects × 2 occasions of a one-compartment IV bolus (closed form, numpy), IIV on CL and V, IOV on CL;
the second occasion opens with a reset-and-dose record (EVID 4).  The FOCEI estimates must lie within
3 standard errors (its own covariance step) of the truth; NUTS runs short chains.  This is a benchmark, not a
test, because of its length (FOCEI with IOV takes central-difference gradients of the numba simulation: 355 s,
and NUTS 2 chains × 400 iterations 896 s, on the shared 2-core machine at load ≈ 14).

Run:  python benchmarks/iov_recovery.py [--only focei|nuts]
Exits 1 when a check fails; prints every estimate beside its truth and its tolerance.
"""

import argparse
import io
import math
import sys
import time

import numpy as np

from medtwin.core.observation import ResidualError
from medtwin.core.population import InterOccasion, Population, Theta
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem

TRUTH = {"THETA:TVCL": 2.0, "THETA:TVV": 20.0, "OMEGA(1,1)": 0.09, "OMEGA(2,2)": 0.04, "OMEGA_IOV(1,1)": 0.0625,
         "SIGMA:proportional": 0.01}
TIMES = (0.5, 2.0, 6.0, 12.0)
START = 48.0  # second occasion (EVID 4: reset, then the dose)


def _simulated(n_subjects=40, seed=7):
    rng = np.random.default_rng(seed)
    lines = ["ID TIME AMT EVID DV OCC"]
    for i in range(1, n_subjects + 1):
        eta = rng.normal(0.0, [math.sqrt(TRUTH["OMEGA(1,1)"]), math.sqrt(TRUTH["OMEGA(2,2)"])])
        v = TRUTH["THETA:TVV"] * math.exp(eta[1])
        for occ, t0, evid in ((1, 0.0, 1), (2, START, 4)):
            cl = TRUTH["THETA:TVCL"] * math.exp(eta[0] + rng.normal(0.0, math.sqrt(TRUTH["OMEGA_IOV(1,1)"])))
            lines.append(f"{i} {t0} 100 {evid} 0 {occ}")
            for t in TIMES:
                c = 100.0 / v * math.exp(-cl / v * t)
                y = c * (1.0 + rng.normal(0.0, math.sqrt(TRUTH["SIGMA:proportional"])))
                lines.append(f"{i} {t0 + t} 0 0 {y:.6g} {occ}")
    return read_nonmem(io.StringIO("\n".join(lines) + "\n"), access=OpenData("simulated records"))


def _initial():
    return Population(name="iov_recovery", model="pk1_iv",
                      thetas=(Theta("TVCL", 1.7, "L/h", lower=0), Theta("TVV", 23.0, "L", lower=0)),
                      typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=((0.12, 0.0), (0.0, 0.06)),
                      iov=InterOccasion(("CL",), ((0.08,),), "OCC"),
                      residual=ResidualError("proportional", proportional=0.12))


def focei_recovery() -> list[str]:
    """FOCEI estimates within 3 SE (its own covariance step) of the truth; the failures (empty: all pass)."""
    from medtwin.infer import fit_focei

    failures = []
    start = time.perf_counter()
    fit = fit_focei(_initial(), _simulated(), covariance="R", gradients="differences")
    initial = fit_focei(_initial(), _simulated(), max_iterations=0, covariance="none")
    print(f"FOCEI with IOV: {time.perf_counter() - start:.1f} s, OFV {fit.ofv:.3f} (initial {initial.ofv:.3f})")
    if not fit.ofv < initial.ofv - 10.0:
        failures.append("OFV did not improve by 10 over the initial values")
    print(f"  {'parameter':<20} {'truth':>8} {'estimate':>9} {'SE':>8} {'|err|/SE':>9}")
    for name, value, se in zip(fit.parameter_names, fit.estimates, fit.se):
        z = abs(value - TRUTH[name]) / se if np.isfinite(se) and se > 0 else math.inf
        print(f"  {name:<20} {TRUTH[name]:8.4g} {value:9.4g} {se:8.3g} {z:9.2f}")
        if not z < 3.0:
            failures.append(f"FOCEI {name}: {value:.4g} vs truth {TRUTH[name]:.4g} is {z:.2f} SE away (limit 3)")
    if not (fit.omega_iov.shape == (1, 1) and fit.kappa.shape == (40, 2, 1)):
        failures.append(f"FOCEI shapes: omega_iov {fit.omega_iov.shape}, kappa {fit.kappa.shape}")
    # the κ EBEs of the two occasions are shrunk estimates of independent draws: centred, not identical
    spread = float(np.std(fit.kappa[:, 0, 0] - fit.kappa[:, 1, 0]))
    print(f"  κ EBEs: mean {fit.kappa.mean():+.3f}, SD of the occasion difference {spread:.3f}")
    if not (abs(fit.kappa.mean()) < 0.05 and spread > 0.1):
        failures.append("FOCEI κ EBEs not centred or identical across occasions")
    return failures


def nuts_recovery() -> list[str]:
    """Every truth inside NUTS's 5–95 % interval ± ½ SD; the failures (empty: all pass)."""
    from medtwin.infer.hierarchical import fit_nuts

    failures = []
    start = time.perf_counter()
    fit = fit_nuts(_initial(), _simulated(), chains=2, draws=200, warmup=200, seed=3)
    print(f"NUTS with IOV: {time.perf_counter() - start:.1f} s (2 chains x 200 draws after 200 warm-up)")
    print(f"  {'parameter':<20} {'truth':>8} {'q5':>8} {'q50':>8} {'q95':>8}")
    for name, truth in TRUTH.items():
        s = fit.summary[name]
        print(f"  {name:<20} {truth:8.4g} {s['q5']:8.4g} {s['q50']:8.4g} {s['q95']:8.4g}")
        if not s["q5"] - 0.5 * s["sd"] < truth < s["q95"] + 0.5 * s["sd"]:
            failures.append(f"NUTS {name}: truth {truth:.4g} outside [{s['q5']:.4g}, {s['q95']:.4g}] ± ½ SD")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("focei", "nuts"))
    args = parser.parse_args()
    failures = []
    if args.only != "nuts":
        failures += focei_recovery()
    if args.only != "focei":
        failures += nuts_recovery()
    print("all recovery checks pass" if not failures else "FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
