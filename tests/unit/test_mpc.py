"""Model predictive control: rollout against closed forms and solve_ivp, exact gradients, hard and chance constraints."""

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from medtwin.assimilate.beliefs import GaussianBelief
from medtwin.scenarios.icu import icu_twin_spec
from medtwin.assimilate.statespace import StateSpace
from medtwin.twin.codec import twin_from_spec
from medtwin.control.mpc import ChanceConstraint, MPCController, icu_insulin_controller
from medtwin.control.rollout import background_inputs, rollout_functions
from medtwin.errors import DataError, ModelError, ParameterError
from medtwin.models import get_model
from medtwin.scenarios.glucose_patients import icu_regimen

CL, V = 2.0, 20.0


@pytest.fixture(scope="module")
def pk_space():
    return StateSpace.build(get_model("pk1_iv"), {"CL": CL, "V": V}, estimated=("CL",))


def point_belief(space, amount, time=0.0):
    return GaussianBelief(time, np.array([amount, math.log(CL)]), np.zeros((2, 2)), space.names)


def pk_controller(space, **kw):
    settings_ = dict(control="iv", output="C", step_h=1.0, horizon=24, bounds=(0.0, 100.0), move_weight=1e-4,
                     n_draws=4, sensitivity=False, action_name="infusion_mg_per_h", unit_label="mg/h")
    settings_.update(kw)
    return MPCController(space, **settings_)


@pytest.fixture(scope="module")
def icu():
    twin = twin_from_spec(icu_twin_spec(), inputs=icu_regimen(48, enteral_g_per_h=3.5))
    mean = twin.belief.mean  # G = 8 mmol/L, a narrowed belief as after a few hours of assimilation
    cov = np.diag([6.65**2, 20.0**2, 1e-8, 3.0**2, 1e-8, 0.2**2])
    return twin, GaussianBelief(0.0, mean, cov, twin.space.names)


# ---------------------------------------------------------------- rollout against independent references
def test_rollout_equals_the_exact_one_compartment_solution(pk_space):
    rng = np.random.default_rng(0)
    H, h = 10, 0.7
    u = rng.uniform(0, 20, H)
    z = np.column_stack([rng.uniform(0, 100, 5), np.log(rng.uniform(1.0, 4.0, 5))])
    f = rollout_functions(pk_space, control=0, output="C", n_sub=3)
    y = np.asarray(f["outputs"](u, z, np.zeros((H, 1)), np.zeros((H, 1)), np.zeros((5, H, 2)), pk_space.theta,
                                0.0, h, 1.0))
    for d in range(5):
        k, amount = math.exp(z[d, 1]) / V, z[d, 0]
        for j in range(H):  # exact: A+ = A e^{-kh} + R/k (1 - e^{-kh})
            amount = amount * math.exp(-k * h) + u[j] / k * (1 - math.exp(-k * h))
            assert y[d, j] == pytest.approx(amount / V, rel=1e-6)


def test_icing_rollout_matches_solve_ivp_of_the_same_vector_field(icu):
    twin, belief = icu
    space, H, step = twin.space, 12, 0.25
    z = belief.sample(6, np.random.default_rng(3))
    u = np.linspace(4.0, 0.0, H)
    rates, boluses = background_inputs(space, twin.inputs, 0.0, step, H, control=1)
    mpc = icu_insulin_controller(space, horizon=H)
    y = np.asarray(mpc.functions()["outputs"](u, z, rates, boluses, np.zeros((6, H, space.n)), space.theta,
                                              0.0, step, 1000.0))
    rhs = space.model.rhs()
    for d in range(6):
        theta = space.parameters_of(z[d])[0]
        x = z[d, :5].copy()
        for k in range(H):
            r = rates[k].copy()
            r[1] += 1000.0 * u[k]
            sol = solve_ivp(lambda t, x: np.array(rhs(t, x, theta), float) + r, (k * step, (k + 1) * step), x,
                            rtol=1e-10, atol=1e-10, method="LSODA")
            x = sol.y[:, -1]
            assert y[d, k] == pytest.approx(x[0] / theta[5], abs=2e-3)  # G = GLU / VG, mmol/L


# ---------------------------------------------------------------- exact gradients
def test_objective_and_chance_gradients_equal_central_differences(icu):
    twin, belief = icu
    mpc = icu_insulin_controller(twin.space, horizon=8, n_draws=20, sensitivity=False)
    p = mpc._problem(belief, twin.inputs, None, 5.5, 2.0)
    u = np.random.default_rng(1).uniform(0.5, 5.0, 8)
    f, g = mpc.objective_and_gradient(p, u)
    c = mpc.chance[0]
    y, jac = mpc._jacobian(p, u)
    _, dp = c.smoothed(y, jac)
    eps = 1e-5
    for j in range(8):
        e = np.zeros(8)
        e[j] = eps
        fd = (mpc.objective(p, u + e) - mpc.objective(p, u - e)) / (2 * eps)
        assert g[j] == pytest.approx(fd, rel=1e-5, abs=1e-9)
        fd_c = (c.smoothed(mpc.predict(p, u + e))[0] - c.smoothed(mpc.predict(p, u - e))[0]) / (2 * eps)
        np.testing.assert_allclose(dp[:, j], fd_c, rtol=1e-4, atol=1e-9)
    assert np.all(np.triu(jac[0], 1) == 0)  # causality: no output depends on a later input


# ---------------------------------------------------------------- closed form: steady infusion rate C* CL
def test_receding_horizon_settles_to_the_steady_state_rate_c_star_times_cl(pk_space):
    target = 5.0  # mg/L -> steady rate C* CL = 10 mg/h
    mpc = pk_controller(pk_space, max_change=20.0)
    amount, rate, k, r = 0.0, 0.0, CL / V, None
    for step in range(30):
        r = mpc.recommend(point_belief(pk_space, amount, float(step)), reference=target, current_rate=rate,
                          warm_start=r)  # the previous plan, shifted by one step
        assert r.kind == "mpc" and r.status in ("optimal", "feasible")
        rate = r.action["apply_now_mg_per_h"]
        amount = amount * math.exp(-k) + rate / k * (1 - math.exp(-k))
    assert rate == pytest.approx(target * CL, rel=0.01)
    assert amount / V == pytest.approx(target, rel=0.01)
    at_steady = mpc.recommend(point_belief(pk_space, target * V), reference=target, current_rate=target * CL)
    np.testing.assert_allclose(at_steady.action["infusion_mg_per_h"], target * CL, rtol=1e-3)


# ---------------------------------------------------------------- hard constraints (property)
@settings(max_examples=25, deadline=None)
@example(lo=1.0, width=1.0, max_change=1.0, reference=0.0, current=-2.2250738585072014e-308, amount=0.0)
@given(lo=st.floats(0.0, 10.0), width=st.floats(0.5, 40.0), max_change=st.floats(0.1, 15.0),
       reference=st.floats(0.0, 20.0), current=st.floats(-5.0, 60.0), amount=st.floats(0.0, 300.0))
def test_hard_constraints_are_never_violated(pk_space, lo, width, max_change, reference, current, amount):
    hi = lo + width
    mpc = pk_controller(pk_space, horizon=6, bounds=(lo, hi), max_change=max_change, n_draws=3,
                        chance=(ChanceConstraint("C", above=8.0, max_probability=0.3),))
    r = mpc.recommend(point_belief(pk_space, amount), reference=reference, current_rate=current)
    u = np.asarray(r.action["infusion_mg_per_h"])
    tol = 1e-9 * max(1.0, hi)
    assert np.all(u >= lo - tol) and np.all(u <= hi + tol)
    assert np.all(np.abs(np.diff(u)) <= max_change + tol)
    if lo - max_change <= current <= hi + max_change:
        assert abs(u[0] - current) <= max_change + tol
    else:  # the running rate is out of bounds by more than one move: bounds win, the message says so
        assert u[0] == (lo if current < lo else hi) and "outside the bounds" in r.message


# ---------------------------------------------------------------- chance constraints on the ICU twin
def test_the_hypoglycaemia_chance_constraint_holds_on_the_draws(icu):
    twin, belief = icu
    unconstrained = icu_insulin_controller(twin.space, chance=(), sensitivity=False, max_change_u_per_h=6.0)
    free = unconstrained.recommend(belief, twin.inputs, reference=4.6, current_rate=2.0)
    mpc = icu_insulin_controller(twin.space, max_change_u_per_h=6.0)
    r = mpc.recommend(belief, twin.inputs, reference=4.6, current_rate=2.0)
    p_free = np.mean(free.predicted.draws["G"] < 4.4, axis=0).max()
    p = np.mean(r.predicted.draws["G"] < 4.4, axis=0).max()
    assert p_free > 0.15  # the low reference alone would cause hypoglycaemia
    assert r.status in ("optimal", "feasible") and p <= 0.05 + 1e-12
    assert r.probabilities["below_4.4"] == p
    assert sum(r.action["insulin_u_per_h"]) < sum(free.action["insulin_u_per_h"])
    # explanations
    assert r.target["reference"] == 4.6 and r.target["unit"] == "mmol/L"
    assert {"bounds", "rate_of_change", "below_4.4"} <= set(r.constraints)
    assert any(a.startswith("below_4.4") for a in r.active_constraints)
    assert r.predicted.draws["G"].shape == r.current.draws["G"].shape == (200, 24)
    assert r.sensitivity["most_influential"] == "SI"
    assert r.sensitivity["at_p05"] < math.exp(belief.mean[-1]) < r.sensitivity["at_p95"]
    assert r.sensitivity["first_move_at_p05"] >= r.sensitivity["first_move_at_p95"]  # more sensitive: less insulin
    assert r.summary().startswith("recommended (")


def test_infeasible_hypoglycaemia_returns_the_safest_fallback_not_an_unconstrained_answer(icu):
    twin, belief = icu
    mean = belief.mean.copy()
    mean[0] = 2.5 * 13.3  # G = 2.5 mmol/L
    deep = GaussianBelief(0.0, mean, belief.cov, belief.names)
    mpc = icu_insulin_controller(twin.space, max_change_u_per_h=1.0, sensitivity=False)
    r = mpc.recommend(deep, None, reference=6.0, current_rate=3.0)  # no nutrition
    assert r.status == "infeasible-fallback" and not r.feasible
    u = np.asarray(r.action["insulin_u_per_h"])
    np.testing.assert_allclose(u[:3], [2.0, 1.0, 0.0])  # down to 0 U/h as fast as the rate limit allows
    assert np.all(u[3:] == 0.0)
    assert "below_4.4" in r.message and "INFEASIBLE" in r.message


# ---------------------------------------------------------------- input checks
def test_settings_and_inputs_are_checked(pk_space):
    with pytest.raises(ModelError, match="dose target"):
        pk_controller(pk_space, control="oral")
    with pytest.raises(DataError, match="only the controlled"):
        pk_controller(pk_space, chance=(ChanceConstraint("X", below=1.0),))
    with pytest.raises(DataError, match="exactly one"):
        ChanceConstraint("C", below=1.0, above=2.0)
    with pytest.raises(ParameterError, match="bounds"):
        pk_controller(pk_space, bounds=(5.0, 1.0))
    mpc = pk_controller(pk_space, horizon=4)
    with pytest.raises(DataError, match="reference"):
        mpc.recommend(point_belief(pk_space, 0.0), reference=[1.0, 2.0], current_rate=0.0)
    with pytest.raises(DataError, match="decision time"):
        mpc.recommend(point_belief(pk_space, 0.0), time=3.0, reference=1.0, current_rate=0.0)
    with pytest.raises(DataError, match="warm_start"):
        mpc.recommend(point_belief(pk_space, 0.0), reference=1.0, current_rate=0.0, warm_start=[1.0])
    wrong = GaussianBelief(0.0, np.zeros(1), np.eye(1), ("A",))
    with pytest.raises(DataError, match="does not match"):
        mpc.recommend(wrong, reference=1.0, current_rate=0.0)
