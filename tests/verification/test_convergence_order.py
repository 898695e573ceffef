"""Observed convergence order of each fixed-step method equals its nominal order.

Error at t = 12 h after a bolus into the nonlinear Michaelis–Menten oral model,
against a tight adaptive solve; the step is halved repeatedly and the order is
log2(e(h) / e(h/2)).
"""

import numpy as np
import pytest

from medtwin import Regimen, get_model, simulate

PARAMS = {"KA": 1.5, "VMAX": 40.0, "KM": 4.0, "V": 30.0}


def error_at(method, dt, reference):
    tr = simulate(get_model("pk1_oral_mm"), PARAMS, Regimen.single(500.0), [12.0], method=method, dt=dt)
    return abs(tr.output("C")[0, 0] - reference)


@pytest.mark.parametrize(
    "method, nominal, steps",
    [("euler", 1, [0.01, 0.005, 0.0025, 0.00125]), ("heun", 2, [0.2, 0.1, 0.05, 0.025]), ("rk4", 4, [0.05, 0.025, 0.0125, 0.00625])],
)
def test_observed_order(method, nominal, steps):
    ref = simulate(get_model("pk1_oral_mm"), PARAMS, Regimen.single(500.0), [12.0], method="dopri5",
                   rtol=1e-13, atol=1e-14).output("C")[0, 0]
    errors = np.array([error_at(method, dt, ref) for dt in steps])
    orders = np.log2(errors[:-1] / errors[1:])
    assert np.all(np.abs(orders - nominal) < 0.15), (method, errors, orders)


def test_dopri5_error_shrinks_with_tolerance():
    ref = simulate(get_model("pk1_oral_mm"), PARAMS, Regimen.single(500.0), [12.0], method="dopri5",
                   rtol=1e-13, atol=1e-14).output("C")[0, 0]
    errs = []
    for tol in (1e-4, 1e-6, 1e-8):
        c = simulate(get_model("pk1_oral_mm"), PARAMS, Regimen.single(500.0), [12.0], method="dopri5",
                     rtol=tol, atol=tol * 1e-2).output("C")[0, 0]
        errs.append(abs(c - ref) / ref)
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-7
