"""MPC as a policy of the one Twin: twin.recommend(controller) against the closed-form steady-state rate."""

import math

import numpy as np
import pytest

from medtwin.assimilate.observers import UnscentedKalmanFilter
from medtwin.assimilate.statespace import StateSpace
from medtwin.control.mpc import MPCController
from medtwin.control.policy import Policy
from medtwin.control.recommendation import RateConstraints
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.observation import ResidualError
from medtwin.errors import DataError
from medtwin.models import get_model
from medtwin.twin import Twin

CL, V, TARGET = 2.0, 20.0, 5.0   # steady state: rate C* CL = 10 mg/h keeps C at 5 mg/L


@pytest.fixture(scope="module")
def setup():
    space = StateSpace.build(get_model("pk1_iv"), {"CL": CL, "V": V}, estimated=("CL",))
    mpc = MPCController(space, control="iv", output="C", step_h=1.0, horizon=12, bounds=(0.0, 100.0),
                        max_change=20.0, move_weight=1e-4, n_draws=4, sensitivity=False, process_noise=False,
                        action_name="infusion_mg_per_h", unit_label="mg/h", reference=TARGET)
    running = Regimen((DoseEvent(time=0.0, amount=10.0 * TARGET * CL, cmt=1, rate=TARGET * CL),))  # 0-10 h
    twin = Twin.create(UnscentedKalmanFilter(space), {"C": ResidualError("additive", additive=0.1, output="C")},
                       mean=np.array([TARGET * V, math.log(CL)]), cov=np.diag([1e-12, 1e-12]), time=10.0,
                       inputs=running)
    return space, mpc, twin


def test_mpc_through_the_twin_holds_the_steady_state_rate(setup):
    _, mpc, twin = setup
    assert isinstance(mpc, Policy) and mpc.running_rate(twin.inputs, twin.time) == pytest.approx(TARGET * CL)
    r = twin.recommend(mpc)                       # reference, running rate and decision time from the twin
    assert r.kind == "mpc" and r.status in ("optimal", "feasible")
    np.testing.assert_allclose(r.action["infusion_mg_per_h"], TARGET * CL, rtol=1e-3)
    assert not mpc.constraints.violations(r.action)


def test_mpc_predicts_the_belief_to_the_decision_time(setup):
    _, mpc, twin = setup
    # At 13 h, after 3 h without infusion, C = 5 e^{-0.1·3} mg/L: the first move must exceed the steady rate,
    # and the plan must equal the controller's solve on the belief predicted independently (closed form).
    r = twin.recommend(mpc, time=13.0, current_rate=0.0)
    amount = TARGET * V * math.exp(-CL / V * 3.0)
    from medtwin.assimilate.beliefs import GaussianBelief

    direct = mpc.recommend(GaussianBelief(13.0, np.array([amount, math.log(CL)]), np.zeros((2, 2)), twin.space.names),
                           twin.inputs, reference=TARGET, current_rate=0.0)
    assert r.action["apply_now_mg_per_h"] > TARGET * CL
    np.testing.assert_allclose(r.action["infusion_mg_per_h"], direct.action["infusion_mg_per_h"], rtol=1e-4,
                               atol=1e-4)


def test_rate_constraints_and_refusals(setup):
    _, mpc, twin = setup
    assert mpc.constraints == RateConstraints("infusion_mg_per_h", (0.0, 100.0), 20.0, "mg/h")
    assert mpc.constraints.violations({"infusion_mg_per_h": [0.0, 30.0, -1.0]}) == [
        "rate -1 mg/h at step 3 outside [0, 100] mg/h", "change 30 mg/h between steps 1 and 2 above 20 mg/h",
        "change 31 mg/h between steps 2 and 3 above 20 mg/h"]
    from medtwin.io.population_file import load_population, shipped_population_path
    from medtwin.infer.posterior import Posterior

    pop = load_population(shipped_population_path("vancomycin_goti2018"))
    treatment = Twin.from_posterior(Posterior.from_prior(pop.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})))
    with pytest.raises(DataError, match="no live belief"):
        treatment.recommend(mpc)
    with pytest.raises(DataError, match="not a policy"):
        twin.recommend(object())
