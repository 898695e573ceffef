"""The JAX ODE path (scan over padded steps, diffrax per step) against the numba dopri5 at tight tolerance."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffrax", reason="the JAX ODE path needs jax and diffrax")

from medtwin.core.events import DoseEvent, Regimen  # noqa: E402
from medtwin.core.jax_ode import ode_predictor  # noqa: E402
from medtwin.core.simulate import simulate  # noqa: E402
from medtwin.errors import ModelError, SimulationError  # noqa: E402
from medtwin.models import get_model  # noqa: E402

TIMES = np.array([0.5, 1.0, 5.0, 11.99, 12.0, 12.0, 13.0, 30.0, 47.5])
PRE = np.array([False, False, False, False, True, False, False, False, False])

CASES = [
    # Michaelis-Menten, oral with lag and F, an extra IV infusion into the central compartment
    ("pk1_oral_mm", Regimen((DoseEvent(0.0, 300.0, ii=12.0, addl=3), DoseEvent(6.0, 100.0, cmt=2, rate=50.0))),
     {"ALAG1": 0.5, "F1": 0.7, "VMAX": 30.0, "KM": 3.0}),
    ("pk2_iv_mm", Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0), {}),
    # glucose-insulin: an insulin infusion, an insulin bolus and enteral feed
    ("bergman_insulin", Regimen((DoseEvent(0.0, 2000.0, cmt=2, rate=1000.0), DoseEvent(12.0, 1500.0, cmt=2),
                                 DoseEvent(1.0, 300.0, cmt=3, ii=8.0, addl=4))), {"SI": 0.02}),
    ("icing", Regimen((DoseEvent(0.0, 3000.0, cmt=2, rate=1500.0), DoseEvent(2.0, 400.0, cmt=3, ii=8.0, addl=4))),
     {"G0": 9.0}),
]


@pytest.mark.parametrize("name, regimen, params", CASES, ids=[c[0] for c in CASES])
def test_outputs_equal_a_tight_numba_dopri5_solve(name, regimen, params):
    model = get_model(name)
    pred = ode_predictor(model, regimen, TIMES, params, pre_dose=PRE, rtol=1e-10, atol=1e-12)
    theta = pred.theta(params)
    reference = simulate(model, theta[None], regimen, TIMES, pre_dose=[PRE], method="dopri5", rtol=1e-12,
                         atol=1e-14)
    assert reference.ok
    out = np.asarray(pred.outputs(theta))
    for j, o in enumerate(model.output_names):
        np.testing.assert_allclose(out[:, j], np.asarray(reference.outputs[o]).ravel(), rtol=1e-8, atol=1e-10,
                                   err_msg=f"{name}.{o}")


def test_reverse_mode_gradient_equals_finite_differences_of_the_numba_path():
    import jax

    model = get_model("pk1_oral_mm")
    regimen = Regimen.every(8.0, "h", 250.0, "mg", n=3)
    times = TIMES[:4]
    pred = ode_predictor(model, regimen, times, {"F1": 0.8}, rtol=1e-11, atol=1e-13)
    theta = pred.theta({"F1": 0.8})
    with jax.enable_x64(True):
        grad = np.asarray(jax.jacrev(lambda th: pred.function(th, pred.data)[:, 0])(theta))
    for k, name in enumerate(model.parameter_names):
        if name == "ALAG1":
            continue  # dose times are fixed at the reference θ by design
        h = 1e-6 * max(abs(theta[k]), 1.0)
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        fd = (simulate(model, up, regimen, times, rtol=1e-13, atol=1e-15).output("C")[0]
              - simulate(model, down, regimen, times, rtol=1e-13, atol=1e-15).output("C")[0]) / (2 * h)
        np.testing.assert_allclose(grad[:, k], fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max(), err_msg=name)


def test_patients_with_different_schedules_share_one_compilation():
    import jax

    model = get_model("pk1_iv_mm")
    traces = []
    fn = ode_predictor(model, Regimen.single(100.0), [1.0, 2.0]).function

    def counted(theta, data):
        traces.append(1)
        return fn(theta, data)

    jitted = jax.jit(counted)
    with jax.enable_x64(True):
        for n_doses, times in ((1, [1.0, 5.0]), (2, [3.0, 20.0]), (4, [2.0, 40.0])):
            regimen = Regimen.every(12.0, "h", 100.0, "mg", n=n_doses, duration=0.5)
            pred = ode_predictor(model, regimen, times)
            assert pred.data["dt"].shape == (16,)  # padded: the schedules differ, the shapes do not
            ref = simulate(model, pred.reference[None], regimen, times, rtol=1e-12, atol=1e-14).output("C")[0]
            np.testing.assert_allclose(np.asarray(jitted(pred.reference, pred.data))[:, 0], ref, rtol=1e-7)
    assert len(traces) == 1


def test_a_failed_integration_gives_nan_not_a_wrong_number():
    model = get_model("pk1_iv_mm")
    pred = ode_predictor(model, Regimen.single(100.0), [1.0, 50.0], max_steps=2)
    out = np.asarray(pred.outputs(pred.reference))
    assert np.all(np.isnan(out))


def test_steady_state_records_and_unknown_solvers_are_refused():
    model = get_model("pk1_iv_mm")
    with pytest.raises(SimulationError, match="steady-state"):
        ode_predictor(model, Regimen((DoseEvent(0.0, 100.0, ii=12.0, ss=1),)), [1.0])
    with pytest.raises(ModelError, match="solver"):
        ode_predictor(model, Regimen.single(100.0), [1.0], solver="euler")


def test_forward_mode_adjoint_gives_the_reverse_mode_jacobian():
    import jax

    from medtwin.core.jax_ode import ode_outputs_function

    model = get_model("bergman_insulin")
    regimen = Regimen((DoseEvent(0.0, 2000.0, cmt=2, rate=1000.0), DoseEvent(1.0, 300.0, cmt=3)))
    pred = ode_predictor(model, regimen, [1.0, 3.0, 6.0], rtol=1e-10, atol=1e-12)
    forward = ode_outputs_function(model, rtol=1e-10, atol=1e-12, adjoint="forward")
    with jax.enable_x64(True):
        rev = np.asarray(jax.jacrev(lambda th: pred.function(th, pred.data)[:, 0])(pred.reference))
        fwd = np.asarray(jax.jacfwd(lambda th: forward(th, pred.data)[:, 0])(pred.reference))
    np.testing.assert_allclose(fwd, rev, rtol=1e-7, atol=1e-9 * np.abs(rev).max())
    with pytest.raises(ModelError, match="adjoint"):
        ode_outputs_function(model, adjoint="backward")


def test_the_stiff_solver_option_gives_the_same_outputs():
    model = get_model("pk1_iv_mm")
    regimen = Regimen.every(12.0, "h", 500.0, "mg", n=3, duration=0.5)
    pred = ode_predictor(model, regimen, TIMES, pre_dose=PRE, rtol=1e-10, atol=1e-12, solver="kvaerno5")
    reference = simulate(model, pred.reference[None], regimen, TIMES, pre_dose=[PRE], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(pred.outputs(pred.reference))[:, 0], np.asarray(reference.outputs["C"]).ravel(),
                               rtol=1e-7)
