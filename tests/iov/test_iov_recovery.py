"""Simulation-recovery of inter-occasion variability: FOCEI and NUTS on data simulated from known θ, Ω, Ω_IOV.

40 subjects × 2 occasions of a one-compartment IV bolus (closed form, numpy), IIV on CL and V, IOV on CL;
the second occasion opens with a reset-and-dose record (EVID 4).  The FOCEI estimates must lie within
3 standard errors (its own covariance step) of the truth; NUTS runs short chains.  Both are slow tests
(FOCEI with IOV takes central-difference gradients of the numba simulation: about 30-60 s here).
"""

import io
import math

import numpy as np
import pytest

from medtwin.core.observation import ResidualError
from medtwin.core.population import InterOccasion, Population, Theta
from medtwin.infer import fit_focei
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


@pytest.mark.slow
def test_focei_recovers_iov():
    fit = fit_focei(_initial(), _simulated(), covariance="R", gradients="differences")
    assert fit.ofv < fit_focei(_initial(), _simulated(), max_iterations=0, covariance="none").ofv - 10.0
    assert fit.parameter_names == ("THETA:TVCL", "THETA:TVV", "OMEGA(1,1)", "OMEGA(2,2)", "OMEGA_IOV(1,1)",
                                   "SIGMA:proportional")
    for name, value, se in zip(fit.parameter_names, fit.estimates, fit.se):
        assert np.isfinite(se) and se > 0, name
        assert abs(value - TRUTH[name]) < 3.0 * se, (name, value, se)
    assert fit.omega_iov.shape == (1, 1) and fit.kappa.shape == (40, 2, 1)
    assert fit.population.iov.omega[0, 0] == pytest.approx(fit.estimates[4])
    # the κ EBEs of the two occasions are shrunk estimates of independent draws: centred, not identical
    assert abs(fit.kappa.mean()) < 0.05 and np.std(fit.kappa[:, 0, 0] - fit.kappa[:, 1, 0]) > 0.1


@pytest.mark.slow
def test_nuts_recovers_iov():
    from medtwin.infer.hierarchical import fit_nuts

    fit = fit_nuts(_initial(), _simulated(), chains=2, draws=200, warmup=200, seed=3)
    assert "OMEGA_IOV(1,1)" in fit.parameter_names
    for name, truth in TRUTH.items():
        s = fit.summary[name]
        assert s["q5"] - 0.5 * s["sd"] < truth < s["q95"] + 0.5 * s["sd"], (name, truth, s)
    assert fit.to_population().iov.omega[0, 0] == pytest.approx(fit.summary["OMEGA_IOV(1,1)"]["q50"])
