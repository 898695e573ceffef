"""The JAX + diffrax path: same model definition, same events, differentiable in θ."""

import numpy as np
import pytest

pytest.importorskip("diffrax", reason="the diffrax path needs the optional 'jax' extra (pip install medtwin[jax])")

from medtwin import DoseEvent, Regimen, SimulationError, get_model, simulate  # noqa: E402
from medtwin.core.jax_solve import diffrax_solver  # noqa: E402

TIMES = np.linspace(0.0, 36.0, 19)


def max_rel(a, b):
    mask = np.abs(b) > 1e-8 * np.abs(b).max()
    return float(np.max(np.abs(a[mask] - b[mask]) / np.abs(b[mask])))


def test_diffrax_matches_numba_on_the_w2_model_with_events():
    model = get_model("pk2_oral_mm_effect_idr3")
    regimen = Regimen((DoseEvent(time=0.0, amount=100.0, ii=12.0, addl=2),
                       DoseEvent(time=6.0, amount=50.0, cmt=2, rate=25.0)))
    params = {"VMAX": [40.0, 60.0], "ALAG1": [0.5, 0.5]}
    jx = simulate(model, params, regimen, TIMES, method="diffrax", rtol=1e-10, atol=1e-12)
    nb = simulate(model, params, regimen, TIMES, method="dopri5", rtol=1e-11, atol=1e-13)
    assert jx.ok and jx.solver.backend == "jax"
    for name in model.output_names:
        assert max_rel(jx.output(name), nb.output(name)) < 1e-7, name


def test_gradient_matches_finite_differences():
    model = get_model("pk1_oral_mm")
    regimen = Regimen.every(12, "h", 200, n=3)
    solver = diffrax_solver(model, regimen, TIMES, {"F1": 0.8}, rtol=1e-11, atol=1e-13)
    jac = solver.jacobian()  # (times, outputs, parameters)
    theta = solver.reference
    for name in ("KA", "VMAX", "KM", "V", "F1"):
        i = model.parameter_names.index(name)
        h = 1e-6 * theta[i]
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        fd = (simulate(model, up, regimen, TIMES, rtol=1e-12, atol=1e-14).output("C")[0]
              - simulate(model, down, regimen, TIMES, rtol=1e-12, atol=1e-14).output("C")[0]) / (2 * h)
        scale = np.abs(fd).max()
        assert np.max(np.abs(jac[:, 0, i] - fd)) < 1e-5 * scale, name


def test_steady_state_records_are_refused_with_a_clear_error():
    regimen = Regimen((DoseEvent(time=0.0, amount=100.0, ii=12.0, ss=1),))
    with pytest.raises(SimulationError, match="steady-state"):
        simulate(get_model("pk1_iv_mm"), None, regimen, [1.0], method="diffrax")
