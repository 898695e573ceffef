"""pharmpy-core's moxonidine IOV example (moxo.mod / moxo.csv) translated into tests/data/moxo_iov.yaml.

Checks the translation (every THETA/OMEGA/SIGMA of moxo.mod in its place) and the predictions of
subject 110 — occasion VISI 3: one 100 mg dose; occasion VISI 8: reset + steady state 200 mg q12h at 40 h,
lag time on every dose — against ADVAN2's closed form written out here, with different κ on both occasions.
"""

import importlib.resources
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from medtwin.infer.objective import Problem
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.io.population_file import load_population
from medtwin.models import get_model

POPULATION = Path(__file__).resolve().parents[1] / "data" / "moxo_iov.yaml"


def _example(name: str) -> Path:
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / name))
    if not path.exists():
        pytest.skip(f"pharmpy does not ship {name} in this version")
    return path


def _records(text: str, record: str) -> list[float]:
    values = []
    for block in re.findall(rf"\${record}([^$]*)", text):
        block = re.sub(r";[^\n]*", "", block).replace("BLOCK(2)", "").replace("BLOCK(1)", "")
        if "SAME" in block:
            continue
        values += [float(v.strip("()").split(",")[-1]) for v in block.split()]
    return values


def test_translation_holds_every_moxo_estimate():
    text = _example("moxo.mod").read_text()
    pop = load_population(POPULATION)
    assert [t.value for t in pop.thetas] == _records(text, "THETA")
    omega = np.asarray(pop.omega)
    iov = np.asarray(pop.iov.omega)
    assert [omega[0, 0], omega[1, 0], omega[1, 1], omega[2, 2], iov[0, 0], iov[1, 1]] == _records(text, "OMEGA")
    assert pop.residual.proportional ** 2 == pytest.approx(_records(text, "SIGMA")[0], rel=1e-9)
    assert pop.iov.parameters == ("CL", "KA") and pop.iov.occasion == "VISI"
    assert pop.typical == {"CL": "POP_CL", "V": "POP_V", "KA": "POP_KA", "ALAG1": "LAG"}


def _advan2(t, dose, cl, v, ka, lag, ii=None):
    """ADVAN2 concentration t h after a dose record (single dose, or steady state with interval ii)."""
    k = cl / v
    a = dose * ka / (v * (ka - k))
    tau = t - lag
    if ii is None:
        return a * (math.exp(-k * tau) - math.exp(-ka * tau)) if tau > 0 else 0.0
    tau = tau if tau >= 0 else tau + ii  # before the lagged dose arrives: the previous dose's curve
    return a * (math.exp(-k * tau) / (1 - math.exp(-k * ii)) - math.exp(-ka * tau) / (1 - math.exp(-ka * ii)))


def test_moxo_predictions_follow_the_occasions():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AGE, WT, ... vary within subjects (not used by the model)
        data = read_nonmem(_example("moxo.csv"), access=OpenData("pharmpy's simulated moxonidine data"))
    pop = load_population(POPULATION)
    problem = Problem(pop, get_model("pk1_oral"), data)
    occ = problem.occasions
    assert (problem.n_random, occ.n_occasions, occ.change_times.tolist()) == (7, 2, [40.0])
    assert sorted(np.bincount(occ.count).tolist()) == [0, 4, 69]
    r = np.zeros((problem.n_subjects, problem.n_random))
    r[0] = [0.1, -0.2, 0.3, 0.15, -0.4, -0.25, 0.5]  # η_CL, η_V, η_KA, κ_CL,1, κ_KA,1, κ_CL,2, κ_KA,2
    f = problem.predict(problem.random_log_parameters(problem.log_typical(pop.theta_values()), r)[None])[0]
    theta = pop.theta_values()
    v = theta["POP_V"] * math.exp(r[0, 1])
    subject = data.subjects[0]
    times = np.asarray(subject.obs_times)[np.asarray(subject.obs_evid) == 0]
    expected = []
    for t in times:
        occasion = 0 if t < 40 else 1
        cl = theta["POP_CL"] * math.exp(r[0, 0] + r[0, 3 + 2 * occasion])
        ka = theta["POP_KA"] * math.exp(r[0, 2] + r[0, 4 + 2 * occasion])
        expected.append(_advan2(t, 100.0, cl, v, ka, theta["LAG"]) if occasion == 0
                        else _advan2(t - 40.0, 200.0, cl, v, ka, theta["LAG"], ii=12.0))
    np.testing.assert_allclose(f[problem.seg == 0], expected, rtol=1e-9)


def _reference_subject_ofv(times, y, occasion, dose, theta, omega_r, sigma2):
    """NONMEM's FOCEI OFV_i for one moxo subject from the ADVAN2 closed form (independent of medtwin's solver)."""
    from scipy import optimize

    inv = np.linalg.inv(omega_r)
    n_occ = (len(omega_r) - 3) // 2

    def pred(r):
        out = []
        v = theta["POP_V"] * math.exp(r[1])
        for t, k in zip(times, occasion):
            cl = theta["POP_CL"] * math.exp(r[0] + r[3 + 2 * k])
            ka = theta["POP_KA"] * math.exp(r[2] + r[4 + 2 * k])
            out.append(_advan2(t, dose[0], cl, v, ka, theta["LAG"]) if k == 0
                       else _advan2(t - 40.0, dose[1], cl, v, ka, theta["LAG"], ii=12.0))
        return np.array(out)

    def conditional(r):
        f = pred(r)
        var = sigma2 * f * f
        return float(np.sum((y - f) ** 2 / var + np.log(var)) + r @ inv @ r)

    r = optimize.minimize(conditional, np.zeros(len(omega_r)), method="BFGS", options={"gtol": 1e-9}).x
    f = pred(r)
    var = sigma2 * f * f
    g = np.stack([(pred(r + 1e-6 * e) - pred(r - 1e-6 * e)) / 2e-6 for e in np.eye(len(r))], axis=1)
    dv = 2 * sigma2 * f[:, None] * g
    hess = inv + g.T @ (g / var[:, None]) + 0.5 * dv.T @ (dv / (var**2)[:, None])
    assert n_occ in (1, 2)
    return conditional(r) + np.linalg.slogdet(omega_r)[1] + np.linalg.slogdet(hess)[1]


def test_moxo_subject_objective_matches_closed_form_brute_force():
    """Subjects 110 (two occasions, the second at steady state) and 123 (one occasion) at moxo.mod's values."""
    import pandas as pd

    frame = pd.read_csv(_example("moxo.csv"))
    frame = frame[frame.ID.isin([110, 123])].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = read_nonmem(frame, access=OpenData("pharmpy's simulated moxonidine data"))
    pop = load_population(POPULATION)
    problem = Problem(pop, get_model("pk1_oral"), data)
    omega, iov = np.asarray(pop.omega), np.asarray(pop.iov.omega)
    sigma2 = pop.residual.proportional ** 2
    result = problem.inner(problem.log_typical(pop.theta_values())[None], problem.full_omega(omega, iov)[None],
                           np.zeros(1), np.array([sigma2]), np.zeros((1, 2, problem.n_random)), tol=1e-10)
    for i, (subject, doses) in enumerate(((110, (100.0, 200.0)), (123, (100.0, None)))):
        rows = frame[(frame.ID == subject) & (frame.EVID == 0)]
        occasion = (rows.VISI.to_numpy() == 8).astype(int)
        n_r = 3 + 2 * (1 + occasion.max())
        omega_r = np.zeros((n_r, n_r))
        omega_r[:3, :3] = omega
        for k in range(3, n_r, 2):
            omega_r[k:k + 2, k:k + 2] = iov
        ref = _reference_subject_ofv(rows.TIME.to_numpy(), rows.DV.to_numpy(), occasion, doses,
                                     pop.theta_values(), omega_r, sigma2)
        assert result.ofv_subject[0, i] == pytest.approx(ref, abs=1e-4)
