"""The UKF's numpy transition and measurement (StateSpace.numpy_functions) against the JAX programs."""

import numpy as np
import pytest

from medtwin.assimilate.observers import UnscentedKalmanFilter
from medtwin.assimilate.statespace import StateSpace
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.inputs import input_schedule
from medtwin.core.observation import ResidualError
from medtwin.models import get_model

CASES = [("pk1_iv", {"CL": 2.0, "V": 20.0}, ("CL",)), ("pk1_oral", {}, ("KA", "CL")), ("icing", {}, ("SI",)),
         ("bergman_insulin", {}, ("SI",))]


@pytest.mark.parametrize("name,parameters,estimated", CASES)
def test_numpy_functions_equal_the_jax_programs_to_rounding(name, parameters, estimated):
    model = get_model(name)
    space = StateSpace.build(model, parameters, estimated=estimated)
    rng = np.random.default_rng(1)
    z0 = space.initial_mean()
    z = z0 + rng.normal(size=(2 * space.n + 1, space.n)) * np.maximum(np.abs(z0), 1.0) * 0.1
    z[:, : space.n_states] = np.abs(z[:, : space.n_states])
    rates = rng.uniform(0.0, 5.0, space.n_states)
    jax_f, np_f = space.functions(), space.numpy_functions()
    for n_sub in (1, 3, 11):
        a = np.asarray(jax_f["advance"](z, 0.5, 1.25, rates, space.theta, n_sub))
        b = np_f["advance"](z, 0.5, 1.25, rates, space.theta, n_sub)
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(np_f["reset"](z, space.theta), np.asarray(jax_f["reset"](z, space.theta)),
                               rtol=1e-13, atol=1e-300)
    for k in range(len(model.output_names)):
        np.testing.assert_allclose(np_f["measure"][k](z, space.theta),
                                   np.asarray(jax_f["measure"][k](z, space.theta)), rtol=1e-13, atol=1e-300)


def test_ukf_on_numpy_equals_the_ukf_on_jax_on_a_well_conditioned_replay():
    model = get_model("pk1_iv")
    space = StateSpace.build(model, {"CL": 2.0, "V": 20.0}, estimated=("CL",), parameter_drift={"CL": 0.01},
                             state_noise={"CENTRAL": 0.5})
    regimen = Regimen(tuple(DoseEvent(time=12.0 * k, amount=500.0, cmt=1, rate=1000.0) for k in range(3))
                      + (DoseEvent(time=30.0, amount=0.0, cmt=1, evid=3),))
    schedule = input_schedule(model, regimen)
    error = ResidualError("proportional", proportional=0.1, output="C")
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0.2, 40.0, 25))
    values = 20.0 * np.exp(rng.normal(0.0, 0.3, len(times)))

    def run(transition):
        ukf = UnscentedKalmanFilter(space, transition=transition)
        belief = ukf.init(space.initial_mean(), np.diag([1.0, 0.3**2]), time=0.0)
        out = []
        for t, y in zip(times, values):
            belief = ukf.predict(belief, t, schedule)
            belief, status, innovation = ukf.update(belief, t, y, "C", error)
            out.append([*belief.mean, *belief.cov.ravel(), innovation.predicted, innovation.variance])
        return np.array(out)

    np.testing.assert_allclose(run("numpy"), run("jax"), rtol=1e-10, atol=1e-12)


def test_the_transition_is_a_saved_setting_and_a_replay_defaults_to_numpy():
    """The library's UKF steps on the JAX programs; a replay request on NumPy unless its spec names one;
    the choice is saved with the twin (the two agree to ~1e-9, not bit for bit) and unknown values are refused."""
    from medtwin.errors import ParameterError
    from medtwin.twin.codec import twin_from_dict, twin_from_spec, twin_to_dict
    from medtwin.workflows.engine import _one_shot

    spec = {"model": "pk1_iv", "parameters": {"CL": 2.0, "V": 20.0}, "estimated": ["CL"],
            "initial_sd": {"CL": 0.3}, "errors": {"C": {"model": "additive", "additive": 0.5}}}
    assert twin_from_spec(spec).observer.transition == "jax"
    assert twin_from_spec(_one_shot(spec)).observer.transition == "numpy"
    named = {**spec, "observer": {"kind": "ukf", "transition": "jax"}}
    assert twin_from_spec(_one_shot(named)).observer.transition == "jax"
    assert _one_shot({**spec, "observer": {"kind": "ekf"}})["observer"] == {"kind": "ekf"}
    twin = twin_from_spec(_one_shot(spec))
    assert twin_from_dict(twin_to_dict(twin)).observer.transition == "numpy"
    with pytest.raises(ParameterError, match="transition"):
        UnscentedKalmanFilter(twin.space, transition="torch")
