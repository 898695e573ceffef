"""personalize on nonlinear models against a brute-force posterior that shares none of medtwin's numerics.

The reference writes the ODEs out again from their published equations
(Michaelis–Menten elimination; the Bergman minimal model with insulin
kinetics and the ICING gut), walks the doses by hand, and integrates with
scipy's LSODA at rtol 1e-10 — all grid points stacked in one banded system.
The unnormalised log posterior (Gaussian prior on z = log P, Gaussian residual
error) is evaluated on a fine grid (posterior SD) and the mode is found by
Newton steps on central differences of the same reference.

Acceptance (issue 13): mode to 1e-3 relative in the estimated parameters, the
Laplace SD within 5 % of the grid SD; additionally the Laplace curvature
equals the reference's curvature at its mode to 1e-3.  NUTS against the grid
moments is in a ``slow`` test.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import solve_ivp

pytest.importorskip("diffrax", reason="nonlinear personalize needs jax and diffrax")

from medtwin.core.events import DoseEvent, Regimen  # noqa: E402
from medtwin.core.observation import ResidualError  # noqa: E402
from medtwin.core.population import Population, Theta  # noqa: E402
from medtwin.infer.personalize import PatientData, personalize  # noqa: E402
from medtwin.models import get_model  # noqa: E402


# ----------------------------------------------------------------------------- the independent reference
def _reference_states(field, x0, doses, times, n_states):
    """States at ``times`` for K stacked parameter points: (K, J, n_states).

    ``field(x, rate) -> dx`` on (K, n_states) arrays; ``doses`` are (time, state, amount, duration) with
    duration 0 for a bolus (given before an observation at the same time is never needed here).
    """
    k = x0.shape[0]
    ends = [t + d for t, _, _, d in doses if d > 0]
    edges = sorted(set([0.0] + [t for t, _, _, _ in doses] + ends + list(times)))
    x = x0.copy()
    out = np.empty((k, len(times), n_states))
    for a, b in zip(edges[:-1], edges[1:]):
        for t, c, amount, duration in doses:
            if duration == 0 and t == a:
                x[:, c] += amount
        rate = np.zeros(n_states)
        for t, c, amount, duration in doses:
            if duration > 0 and t <= a < t + duration:
                rate[c] += amount / duration
        sol = solve_ivp(lambda _t, y: field(y.reshape(k, n_states), rate).ravel(), (a, b), x.ravel(),
                        method="LSODA", rtol=1e-10, atol=1e-12, lband=n_states - 1, uband=n_states - 1)
        assert sol.success, sol.message
        x = sol.y[:, -1].reshape(k, n_states)
        for j in np.flatnonzero(np.asarray(times) == b):
            out[:, j] = x
    return out


def _log_posterior(z, case):
    """Unnormalised log posterior at log-parameter points z (K, n_free), one stacked reference solve."""
    z = np.atleast_2d(z)
    params = case["params"](np.exp(z))
    states = _reference_states(lambda x, r: case["field"](x, r, params), case["init"](params), case["doses"],
                               case["times"], case["n_states"])
    f = case["output"](states, params)
    sd = case["sd"](f)
    prior = stats.multivariate_normal(case["mean"], case["cov"]).logpdf(z)
    return np.atleast_1d(prior) + stats.norm.logpdf(case["y"][None, :], f, sd).sum(axis=1)


def _reference_mode(case, start, h=1e-4, iterations=8):
    """Newton steps on central differences of the reference log posterior; returns the mode and −Hessian."""
    z = np.asarray(start, dtype=float)
    n = z.size
    eye = np.eye(n) * h
    for _ in range(iterations):
        stencil = [z] + [z + s * eye[i] for i in range(n) for s in (1, -1)] + \
                  [z + si * eye[i] + sj * eye[j] for i in range(n) for j in range(i + 1, n)
                   for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
        lp = _log_posterior(np.array(stencil), case)
        grad = np.array([(lp[1 + 2 * i] - lp[2 + 2 * i]) / (2 * h) for i in range(n)])
        hess = np.empty((n, n))
        for i in range(n):
            hess[i, i] = (lp[1 + 2 * i] - 2 * lp[0] + lp[2 + 2 * i]) / h**2
        k = 1 + 2 * n
        for i in range(n):
            for j in range(i + 1, n):
                pp, pm, mp, mm = lp[k:k + 4]
                hess[i, j] = hess[j, i] = (pp - pm - mp + mm) / (4 * h * h)
                k += 4
        step = -np.linalg.solve(hess, grad)
        z = z + step
        if np.max(np.abs(step)) < 1e-9:
            break
    return z, -hess


def _grid_moments(case, center, spread, points):
    """Posterior mean and SD of every free log-parameter on a uniform product grid of ±``spread`` around center."""
    axes = [np.linspace(c - s, c + s, points) for c, s in zip(center, spread)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    lp = _log_posterior(mesh, case)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = w @ mesh
    sd = np.sqrt(w @ (mesh - mean) ** 2)
    edge = np.zeros(len(w), bool)
    for i, a in enumerate(axes):
        edge |= (mesh[:, i] == a[0]) | (mesh[:, i] == a[-1])
    return mean, sd, mesh[np.argmax(w)], w[edge].max()


def _reference(case):
    """Mode, its −Hessian and grid mean/SD: a coarse grid over the prior, then a fine one over the posterior."""
    prior_sd = np.sqrt(np.diag(case["cov"]))
    mean, sd, _, _ = _grid_moments(case, case["mean"], 5 * prior_sd, case["coarse"])
    for _ in range(2):  # the second fine grid is placed by the first one's (accurate) moments
        mean, sd, best, edge_weight = _grid_moments(case, mean, 10 * sd, case["fine"])
    assert edge_weight < 1e-10  # the fine grid holds the whole posterior
    mode, precision = _reference_mode(case, best)
    return mode, precision, mean, sd


# ----------------------------------------------------------------------------- Michaelis–Menten, two parameters
MM_KM, MM_OMEGA = 5.0, ((0.09, 0.02), (0.02, 0.09))
MM_DOSES = [(0.0, 0, 600.0, 0.5), (12.0, 0, 600.0, 0.5), (24.0, 0, 600.0, 0.5)]
MM_TIMES = np.array([1.0, 4.0, 8.0, 11.5, 13.0, 20.0, 30.0])
MM_Y = np.array([10.591, 8.813, 7.1, 5.101, 17.443, 12.949, 17.41])  # simulated at VMAX 40, V 55, 5 % noise
MM_PROP = 0.05


def _mm_case():
    pop = Population(name="mm-2", model="pk1_iv_mm",
                     thetas=(Theta("TVVMAX", 50.0, "mg/h", lower=0.0), Theta("TVKM", MM_KM, "mg/L", lower=0.0),
                             Theta("TVV", 50.0, "L", lower=0.0)),
                     typical={"VMAX": "TVVMAX", "KM": "TVKM", "V": "TVV"}, iiv=("VMAX", "V"), omega=MM_OMEGA,
                     residual=ResidualError("proportional", proportional=MM_PROP, output="C"))
    data = PatientData(Regimen.every(12.0, "h", 600.0, "mg", n=3, duration=0.5), MM_TIMES, MM_Y, {})

    def field(x, rate, p):
        c = x / p["V"][:, None]
        return -p["VMAX"][:, None] * c / (MM_KM + c) + rate

    case = {"params": lambda e: {"VMAX": e[:, 0], "V": e[:, 1]},
            "init": lambda p: np.zeros((p["V"].size, 1)), "field": field, "doses": MM_DOSES, "times": MM_TIMES,
            "n_states": 1, "output": lambda s, p: s[..., 0] / p["V"][:, None], "sd": lambda f: MM_PROP * f,
            "y": MM_Y, "mean": np.log([50.0, 50.0]), "cov": np.array(MM_OMEGA), "coarse": 31, "fine": 81}
    return pop, data, case


# ----------------------------------------------------------------------------- Bergman minimal model, SI
B_TIMES = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
B_Y = np.array([6.2, 4.729, 4.511, 4.232, 4.835, 6.132])  # simulated at SI 0.01 L/(mU h), additive SD 0.3
B_DOSES = [(0.0, 1, 12000.0, 4.0), (5.0, 1, 2000.0, 0.0)]  # insulin: 3 U/h for 4 h, then a 2 U bolus (mU)
B_SI, B_OMEGA2, B_SD = 60.0 * 1.05e-4, 0.25, 0.3


def _bergman_case():
    model = get_model("bergman_insulin")
    v = {p.name: p.value for p in model.parameters}
    pop = Population(name="bergman-si", model="bergman_insulin",
                     thetas=(Theta("TVSI", B_SI, "L/(mU*h)", lower=0.0),), typical={"SI": "TVSI"},
                     iiv=("SI",), omega=((B_OMEGA2,),),
                     residual=ResidualError("additive", additive=B_SD, output="G", unit="mmol/L"))
    data = PatientData(Regimen((DoseEvent(0.0, 12000.0, cmt=2, rate=3000.0), DoseEvent(5.0, 2000.0, cmt=2))),
                       B_TIMES, B_Y, {})

    def field(x, rate, p):
        # Bergman 1979/Fisher 1991 with insulin kinetics and the ICING gut, per hour (medtwin.models.glucose doc)
        glu, ins, p1_, action, p2_ = x.T
        gut = v["d2"] * p2_
        appearance = np.minimum(gut, v["PMAX"])
        dx = np.stack([-v["p1"] * (glu - v["VG"] * v["Gb"]) - action * glu + appearance,
                       -v["n"] * (ins - v["VI"] * v["Ib"]),
                       -v["d1"] * p1_,
                       -v["p2"] * action + v["p2"] * p["SI"] * (ins / v["VI"] - v["Ib"]),
                       v["d1"] * p1_ - appearance], axis=1)
        return dx + rate

    def init(p):
        x = np.zeros((p["SI"].size, 5))
        x[:, 0], x[:, 1] = v["VG"] * v["Gb"], v["VI"] * v["Ib"]
        return x

    case = {"params": lambda e: {"SI": e[:, 0]}, "init": init, "field": field, "doses": B_DOSES,
            "times": B_TIMES, "n_states": 5, "output": lambda s, p: s[..., 0] / v["VG"],
            "sd": lambda f: np.full_like(f, B_SD), "y": B_Y, "mean": np.log([B_SI]),
            "cov": np.array([[B_OMEGA2]]), "coarse": 81, "fine": 801}
    return pop, data, case


CASES = {"michaelis_menten": _mm_case, "bergman_insulin": _bergman_case}


@pytest.fixture(scope="module", params=list(CASES))
def nonlinear_case(request):
    pop, data, case = CASES[request.param]()
    return request.param, pop, data, case, _reference(case)


def test_laplace_mode_and_sd_match_the_brute_force_posterior(nonlinear_case):
    name, pop, data, case, (mode, precision, grid_mean, grid_sd) = nonlinear_case
    post = personalize(pop, data, method="laplace")
    assert post.ok, post.message
    mode_error = np.abs(np.exp(post.mean - mode) - 1.0)            # relative, in the parameters themselves
    sd = np.sqrt(np.diag(post.covariance))
    sd_error = np.abs(sd / grid_sd - 1.0)
    curvature_error = np.abs(post.covariance / np.linalg.inv(precision) - 1.0)
    print(f"\n{name}: mode rel. error {mode_error}, Laplace SD {sd} vs grid SD {grid_sd} "
          f"(rel. {sd_error}), Laplace cov vs reference curvature rel. {curvature_error.max():.2e}")
    assert np.all(mode_error < 1e-3)
    assert np.all(sd_error < 0.05)
    assert np.all(curvature_error < 1e-3)


@pytest.mark.slow
def test_nuts_matches_the_brute_force_posterior(nonlinear_case):
    name, pop, data, case, (_, _, grid_mean, grid_sd) = nonlinear_case
    post = personalize(pop, data, method="nuts", chains=4, draws=1000, warmup=500, seed=5)
    assert post.ok, post.message
    z = post.draws.reshape(-1, len(grid_mean))
    ess = np.asarray(post.diagnostics["ess"])
    mcse = grid_sd / np.sqrt(ess)
    print(f"\n{name}: NUTS mean {z.mean(axis=0)} vs grid {grid_mean}; SD {z.std(axis=0)} vs {grid_sd}; ESS {ess}")
    assert np.all(np.abs(z.mean(axis=0) - grid_mean) < 4 * mcse)
    # the SD of a sample of ESS effective draws has relative standard error ~ 1/sqrt(2 ESS)
    assert np.all(np.abs(z.std(axis=0) / grid_sd - 1.0) < 4 / np.sqrt(2 * ess))
