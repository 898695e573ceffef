"""FOCEI with inter-occasion variability (IOV) against an independent brute-force reference.

The reference evaluates NONMEM's FOCEI per-subject objective directly: a hand-written closed form of the
one-compartment IV bolus model with piecewise parameters (amount carried across the occasion boundary),
the inner optimum over (η, κ_0, κ_1) by scipy.optimize, and the Laplace term
log det(Ω_r⁻¹ + Σ g gᵀ/V + ½ v vᵀ/V²) with g = ∂f/∂r by central differences of that closed form.
"""

import io
import math

import numpy as np
import pytest
from scipy import optimize

from medtwin.core.observation import ResidualError
from medtwin.core.population import InterOccasion, Population, Theta
from medtwin.errors import EstimationError
from medtwin.infer.objective import Problem
from medtwin.infer.occasions import subject_occasions
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.models import get_model

# subject: (occasion-0 dose, occasion-1 dose or None, observations [(t, occ, DV)])
RECORDS = {
    1: (100.0, 80.0, [(2, 1, 4.1), (8, 1, 2.2), (26, 2, 4.0), (32, 2, 2.3)]),
    2: (100.0, 100.0, [(1, 1, 5.6), (6, 1, 3.9), (25, 2, 4.9), (30, 2, 2.6)]),
    3: (120.0, None, [(2, 1, 5.0), (10, 1, 2.0)]),  # one occasion only: its second κ carries no data
}
OMEGA = np.array([[0.09, 0.02], [0.02, 0.05]])  # IIV on CL, V
OMEGA_IOV = np.array([[0.04]])  # IOV on CL
THETA = {"TVCL": 2.0, "TVV": 20.0}
ADD, PROP = 0.05, 0.12  # residual SDs


def _dataset():
    lines = ["ID TIME AMT DV OCC"]
    for i, (d0, d1, obs) in RECORDS.items():
        rows = [(0.0, d0, 0.0, 1)] + [(t, 0.0, y, o) for t, o, y in obs if o == 1]
        if d1 is not None:
            rows += [(24.0, d1, 0.0, 2)] + [(t, 0.0, y, o) for t, o, y in obs if o == 2]
        lines += [f"{i} {t} {a} {y} {o}" for t, a, y, o in rows]
    return read_nonmem(io.StringIO("\n".join(lines) + "\n"), access=OpenData("synthetic records"))


def _population(iov=True):
    return Population(name="iov_demo", model="pk1_iv",
                      thetas=(Theta("TVCL", THETA["TVCL"], "L/h", lower=0), Theta("TVV", THETA["TVV"], "L", lower=0)),
                      typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=OMEGA,
                      iov=InterOccasion(("CL",), OMEGA_IOV, "OCC") if iov else None,
                      residual=ResidualError("combined", additive=ADD, proportional=PROP))


def _closed_form(subject, r):
    """C at the observations for r = (η_CL, η_V, κ_CL,0, κ_CL,1): amount decays with the occasion's k."""
    d0, d1, obs = RECORDS[subject]
    cl = [THETA["TVCL"] * math.exp(r[0] + r[2 + k]) for k in range(2)]
    v = THETA["TVV"] * math.exp(r[1])
    out = []
    for t, occ, _ in obs:
        if occ == 1:
            out.append(d0 / v * math.exp(-cl[0] / v * t))
        else:
            carried = d0 * math.exp(-cl[0] / v * 24.0)  # at the occasion change (24 h) ...
            out.append((carried + d1) / v * math.exp(-cl[1] / v * (t - 24.0)))  # ... then occasion 1's k
    return np.array(out)


def _reference_ofv(subject):
    d0, d1, obs = RECORDS[subject]
    n_r = 4 if d1 is not None else 3  # κ of occasions the subject has
    omega_r = np.zeros((n_r, n_r))
    omega_r[:2, :2] = OMEGA
    for k in range(n_r - 2):
        omega_r[2 + k, 2 + k] = OMEGA_IOV[0, 0]
    inv = np.linalg.inv(omega_r)
    y = np.array([o[2] for o in obs])

    def pred(r):
        return _closed_form(subject, np.r_[r, np.zeros(4 - n_r)])

    def conditional(r):
        f = pred(r)
        var = ADD**2 + PROP**2 * f * f
        return float(np.sum((y - f) ** 2 / var + np.log(var)) + r @ inv @ r)

    best = optimize.minimize(conditional, np.zeros(n_r), method="BFGS", options={"gtol": 1e-10})
    r = best.x
    f = pred(r)
    var = ADD**2 + PROP**2 * f * f
    h = 1e-6
    g = np.stack([(pred(r + h * e) - pred(r - h * e)) / (2 * h) for e in np.eye(n_r)], axis=1)
    v = 2 * PROP**2 * f[:, None] * g
    hess = inv + g.T @ (g / var[:, None]) + 0.5 * v.T @ (v / (var**2)[:, None])
    return best.fun + np.linalg.slogdet(omega_r)[1] + np.linalg.slogdet(hess)[1], r


def test_occasion_layout():
    occ = subject_occasions(_dataset(), "OCC")
    assert occ.n_occasions == 2
    assert occ.change_times.tolist() == [24.0]
    assert occ.active[:, 0].tolist() == [1, 1, 0]
    assert occ.count.tolist() == [2, 2, 1]


def test_focei_iov_objective_matches_brute_force():
    problem = Problem(_population(), get_model("pk1_iv"), _dataset())
    assert problem.n_random == 4
    omega_full = problem.full_omega(OMEGA, OMEGA_IOV)
    result = problem.inner(problem.log_typical(THETA)[None], omega_full[None], np.array([ADD**2]),
                           np.array([PROP**2]), np.zeros((1, 3, 4)), tol=1e-10)
    for i, subject in enumerate(RECORDS):
        ofv, r = _reference_ofv(subject)
        assert result.ofv_subject[0, i] == pytest.approx(ofv, abs=2e-6)
        np.testing.assert_allclose(result.eta[0, i, :len(r)], r, atol=1e-5)
    assert result.eta[0, 2, 3] == pytest.approx(0.0, abs=1e-12)  # κ of the occasion subject 3 does not have


def test_iov_needs_the_occasion_column():
    pop = _population()
    bad = Population.from_dict({**pop.to_dict(), "iov": {"parameters": ["CL"], "omega": [[0.04]],
                                                          "occasion": "VISIT"}})
    with pytest.raises(EstimationError, match="iov.occasion: the dataset has no column 'VISIT'"):
        Problem(bad, get_model("pk1_iv"), _dataset())


def test_nuts_refuses_occasions_that_carry_drug_over():
    from medtwin.infer.hierarchical import fit_nuts

    # occasion 2 starts 24 h after a dose that is still 9 % present: NUTS predicts occasions separately
    with pytest.raises(EstimationError, match="occasion 2 of ID 1 depends on doses of earlier occasions"):
        fit_nuts(_population(), _dataset(), chains=1, draws=5, warmup=5)


def test_fit_report_lists_iov_omega():
    from types import SimpleNamespace

    from medtwin.io.fit_report import estimates_table

    fake = SimpleNamespace(population=_population(), parameter_names=("OMEGA_IOV(1,1)",),
                           estimates=np.array([0.05]), se=np.array([0.01]))
    table = estimates_table(fake)
    row = table[table.parameter == "omega_iov_CL"].iloc[0]
    assert row.estimate == 0.05 and row.RSE_percent == pytest.approx(20.0)
    assert row.nonmem.startswith("OMEGA(3,3)")
