"""MPC mechanics behind the closed-loop glucose controller: move suppression, offset-free disturbance state,
process noise only over the committed steps, and finer decisions than measurements in the loop."""

import math

import numpy as np
import pytest

from medtwin.assimilate.beliefs import GaussianBelief
from medtwin.assimilate.statespace import StateSpace
from medtwin.control.mpc import ChanceConstraint, MPCController
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.model import DoseTarget, Model, Output, Parameter, State
from medtwin.core.stream import Measurement
from medtwin.errors import DataError, ParameterError
from medtwin.models import get_model
from medtwin.scenarios.glucose_loop import GlucoseScenario, run_glucose_patient
from medtwin.scenarios.glucose_patients import sample_icu_patients
from medtwin.twin.codec import twin_from_spec

CL, V = 2.0, 20.0


@pytest.fixture(scope="module")
def pk_space():
    return StateSpace.build(get_model("pk1_iv"), {"CL": CL, "V": V}, estimated=("CL",))


def pk_controller(space, **kw):
    settings = dict(control="iv", output="C", step_h=1.0, horizon=12, bounds=(0.0, 1000.0), n_draws=2,
                    sensitivity=False, action_name="infusion_mg_per_h", unit_label="mg/h", ftol=1e-10, maxiter=300)
    settings.update(kw)
    return MPCController(space, **settings)


def regularised_least_squares(amount, current, reference, H, w_track, w_move):
    """The unconstrained minimiser of w_t/H |G u + y0 - r|^2 + w_m/H |D u - c e1|^2 for the exact 1-compartment plant."""
    a = CL / V
    decay, gain = math.exp(-a), (1.0 - math.exp(-a)) / a / V  # per 1-h step: A e^{-a} + u (1 - e^{-a}) / a
    k = np.arange(H)
    G = np.where(k[:, None] >= k[None, :], gain * decay ** np.clip(k[:, None] - k[None, :], 0, None), 0.0)
    y0 = amount / V * decay ** (k + 1)
    D = np.eye(H) - np.eye(H, k=-1)
    e1 = np.zeros(H)
    e1[0] = current
    lhs = w_track * G.T @ G + w_move * D.T @ D
    return np.linalg.solve(lhs, w_track * G.T @ (reference - y0) + w_move * D.T @ e1)


def test_move_suppression_is_the_regularised_least_squares_answer_and_shrinks_the_moves(pk_space):
    H, amount, current, reference = 8, 20.0, 3.0, 5.0
    belief = GaussianBelief(0.0, np.array([amount, math.log(CL)]), np.zeros((2, 2)), pk_space.names)
    squared_moves = []
    for w_move in (1e-2, 1e-1, 1.0):
        r = pk_controller(pk_space, horizon=H, move_weight=w_move).recommend(belief, reference=reference,
                                                                            current_rate=current)
        u = np.asarray(r.action["infusion_mg_per_h"])
        expected = regularised_least_squares(amount, current, reference, H, 1.0, w_move)
        assert np.all(expected > 0)  # the bounds are inactive: the closed form is the answer
        np.testing.assert_allclose(u, expected, rtol=5e-3, atol=5e-3)  # SLSQP on an ill-conditioned QP
        squared_moves.append(float(np.sum(np.diff(np.concatenate([[current], u])) ** 2)))
    assert all(b < 0.8 * a for a, b in zip(squared_moves, squared_moves[1:]))  # heavier weight, smaller moves


def test_a_saturated_infeasible_problem_falls_back_towards_meeting_the_constraint(pk_space):
    # every candidate has every draw below 1000 mg/L at every step: the shares tie and the depth decides
    mpc = pk_controller(pk_space, horizon=4, max_change=30.0, bounds=(0.0, 100.0),
                        chance=(ChanceConstraint("C", below=1000.0, max_probability=0.05),))
    belief = GaussianBelief(0.0, np.array([0.0, math.log(CL)]), np.zeros((2, 2)), pk_space.names)
    r = mpc.recommend(belief, reference=5.0, current_rate=10.0)
    assert r.status == "infeasible-fallback" and "ramp to the upper bound" in r.message
    np.testing.assert_allclose(r.action["infusion_mg_per_h"], [40.0, 70.0, 100.0, 100.0])


# ------------------------------------------------------------------ offset-free: a disturbance state
def tank_model():
    """dA/dt = -CL/V A + D + u: a 1-compartment plant with a constant unknown input D (mg/h)."""
    def field(t, x, p):
        return (-p[0] / p[1] * x[0] + p[2],)

    return Model("tank_disturbed", "one compartment with a constant input disturbance",
                 (State("A", "mg"),), (Parameter("CL", "L/h", CL), Parameter("V", "L", V),
                                       Parameter("D", "mg/h", 1.0)),
                 (Output("C", "mg/L", lambda x, p: x[0] / p[1], linear=True),), (DoseTarget(1, "iv"),),
                 vector_field=field)


def closed_loop_concentration(model, estimated, d_true, reference, hours):
    """Hourly measurement, assimilation and MPC move on the exact plant; the last concentration and rate."""
    spec = {"model": model.name, "parameters": {"CL": CL, "V": V, "D": 1.0}, "estimated": list(estimated),
            "state_noise": {"A": 4.0}, "initial_sd": {"A": 5.0}, "errors": {"C": {"model": "additive", "additive": 0.02}},
            "settings": {"plausible": {"C": [0.0, 1e3]}}}
    if estimated:
        spec.update(parameter_drift={"D": 0.01}, initial_sd={"A": 5.0, "D": 1.0})
    twin = twin_from_spec(spec, model=model)
    mpc = MPCController(twin.space, control="iv", output="C", step_h=1.0, horizon=8, bounds=(0.0, 100.0),
                        n_draws=1, move_weight=1e-3, process_noise=False, sensitivity=False,
                        action_name="infusion_mg_per_h")
    a, amount, rate = CL / V, 0.0, 0.0
    for hour in range(hours):
        given = Regimen((DoseEvent(hour - 1.0, rate, cmt=1, rate=rate),)) if hour and rate > 0 else None
        twin = twin.assimilate([Measurement(float(hour), "C", amount / V, "mg/L", source_id=f"c{hour}")], inputs=given)
        rate = mpc.recommend(twin.belief, reference=reference, current_rate=rate).action["apply_now_mg_per_h"]
        amount = amount * math.exp(-a) + (rate + d_true) * (1 - math.exp(-a)) / a  # the exact plant
    return amount / V, rate


def test_a_disturbance_state_removes_the_offset_of_a_constant_unknown_input():
    model, d_true, reference = tank_model(), 8.0, 5.0
    c_free, rate_free = closed_loop_concentration(model, ("D",), d_true, reference, 30)
    c_fixed, _ = closed_loop_concentration(model, (), d_true, reference, 30)
    assert c_free == pytest.approx(reference, abs=0.05)  # offset-free
    assert rate_free == pytest.approx(CL * reference - d_true, abs=0.15)  # the known answer u* = CL r - D
    # with D fixed at 1 mg/h the twin's model leaves a steady offset, at least the one-step error of its
    # deadbeat moves (D - 1)(1 - e^{-a})/(a V) = 0.33 mg/L if the state were known exactly
    assert c_fixed - reference > 0.25


# ------------------------------------------------------------------ process noise over the committed steps only
def test_noise_steps_limit_the_process_noise_to_the_first_steps(pk_space):
    drift = StateSpace.build(get_model("pk1_iv"), {"CL": CL, "V": V}, estimated=("CL",), parameter_drift={"CL": 0.05})
    belief = GaussianBelief(0.0, np.array([50.0, math.log(CL)]), np.zeros((2, 2)), drift.names)
    spreads = {}
    for steps in (None, 0, 2):
        mpc = pk_controller(drift, n_draws=50, noise_steps=steps, horizon=6)
        p = mpc._problem(belief, None, None, 5.0, 10.0)
        spreads[steps] = mpc.predict(p, np.full(6, 10.0)).std(axis=0)
    assert np.all(spreads[0] < 1e-12)  # no drift at all: every draw is the point belief
    assert np.all(spreads[2][:2] == spreads[None][:2]) and spreads[2][-1] < spreads[None][-1]
    with pytest.raises(ParameterError, match="noise_steps"):
        pk_controller(drift, noise_steps=-1)


# ------------------------------------------------------------------ decisions between measurements
def test_decisions_between_measurements_keep_measurement_times_and_arrivals():
    scenario = GlucoseScenario(hours=3, decide_every_h=0.25)
    times = scenario.decision_times()
    assert np.allclose(np.diff(times), 0.25) and times[0] == pytest.approx(scenario.delay_h)
    patient = sample_icu_patients(1, hours=4, seed=2)[0]
    seen = []

    def spy(state, now, results, rate):
        seen.append((now, len(results)))
        return 1.0, state, "constant"

    outcome = run_glucose_patient(patient, spy, scenario)
    assert len(seen) == len(times) and [n for _, n in seen[:5]] == [1, 1, 1, 1, 2]  # a result per hour
    assert outcome.insulin_units == pytest.approx(3.0 - scenario.delay_h)
    with pytest.raises(DataError, match="decide_every_h"):
        GlucoseScenario(decide_every_h=2.0)


def test_a_foreign_truth_in_the_loop_equals_its_independent_simulator():
    from medtwin.scenarios.foreign_glucose import sample_foreign_patients, simulate_foreign
    from medtwin.scenarios.glucose_loop import feed_regimen, insulin_event

    patient = sample_foreign_patients(1, model="hovorka_icu", hours=7, seed=3)[0]
    scenario = GlucoseScenario(hours=6)

    def constant(state, now, results, rate):
        return 1.5, state, "constant"

    outcome = run_glucose_patient(patient, constant, scenario)
    regimen = feed_regimen(scenario) + insulin_event(scenario.delay_h, 6.0, 1.5)
    reference = simulate_foreign(patient, regimen, outcome.times[1:])
    np.testing.assert_allclose(outcome.glucose[1:], reference.glucose_true, rtol=2e-5)
