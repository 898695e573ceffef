"""The JAX exact linear path (gradient path for estimation) against the numba kernels and finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.jax_linear import linear_predictor
from medtwin.core.simulate import simulate
from medtwin.errors import ModelError, SimulationError
from medtwin.models import get_model

TIMES = np.array([0.5, 1.0, 5.0, 11.99, 12.0, 12.0, 13.0, 30.0, 47.5, 60.0])
PRE = np.array([False, False, False, False, True, False, False, False, False, False])

CASES = [
    ("vancomycin_goti2018", Regimen.every(12.0, "h", 1000.0, "mg", n=6, duration=1.0), {}),
    ("pk1_iv", Regimen.every(12.0, "h", 100.0, "mg", n=4), {"CL": 3.0, "V": 25.0}),
    ("pk2_oral", Regimen.every(8.0, "h", 250.0, "mg", n=5), {"ALAG1": 0.5, "F1": 0.8}),
    ("pk3_iv", Regimen.every(6.0, "h", 100.0, "mg", n=4, duration=0.5), {}),
    ("pk3_oral", Regimen((DoseEvent(0.0, 200.0), DoseEvent(10.0, 50.0, cmt=2, rate=25.0))), {}),
]


@pytest.mark.parametrize("name, regimen, params", CASES, ids=[c[0] for c in CASES])
def test_outputs_equal_the_numba_exact_solution(name, regimen, params):
    model = get_model(name)
    pred = linear_predictor(model, regimen, TIMES, params, pre_dose=PRE)
    theta = pred.theta(params)
    reference = simulate(model, theta[None], regimen, TIMES, pre_dose=[PRE], method="exact")
    out = np.asarray(pred.outputs(theta))
    for j, o in enumerate(model.output_names):
        np.testing.assert_allclose(out[:, j], np.asarray(reference.outputs[o]).ravel(), rtol=1e-11, atol=1e-12)


def test_gradient_equals_finite_differences_of_the_numba_path():
    import jax

    model = get_model("pk2_oral")
    regimen = Regimen.every(8.0, "h", 250.0, "mg", n=3)
    pred = linear_predictor(model, regimen, TIMES[:4], {"F1": 0.8})
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
        fd = (simulate(model, up[None], regimen, TIMES[:4]).output("C")[0] -
              simulate(model, down[None], regimen, TIMES[:4]).output("C")[0]) / (2 * h)
        np.testing.assert_allclose(grad[:, k], fd, rtol=1e-5, atol=1e-9, err_msg=name)


def test_refuses_nonlinear_models_and_steady_state():
    with pytest.raises(ModelError, match="not linear"):
        linear_predictor(get_model("pk1_iv_mm"), Regimen.single(100.0), [1.0])
    with pytest.raises(SimulationError, match="steady-state"):
        linear_predictor(get_model("pk1_iv"), Regimen((DoseEvent(0.0, 100.0, ii=12.0, ss=1),)), [1.0])
