"""Steady state (SS=1/2) equals the limit of repeated dosing (NONMEM semantics)."""

import numpy as np
import pytest

from medtwin import Regimen, get_model, simulate
from medtwin.core.events import DoseEvent

N_REPEAT = 150  # enough intervals for every case below to converge to < 1e-9


def repeated_last_interval(model, params, dose_kwargs, ii, times_in_interval, method):
    start = (N_REPEAT - 1) * ii
    regimen = Regimen((DoseEvent(time=0.0, ii=ii, addl=N_REPEAT - 1, **dose_kwargs),))
    tr = simulate(model, params, regimen, start + times_in_interval, method=method, rtol=1e-11, atol=1e-13)
    return tr.output("C")[0]


CASES = [
    ("pk1_iv", {}, {"amount": 500.0}, "exact"),
    ("pk2_iv", {}, {"amount": 500.0, "rate": 250.0}, "exact"),
    ("pk2_oral", {"ALAG1": 1.5}, {"amount": 100.0}, "exact"),
    ("pk3_iv", {}, {"amount": 500.0, "rate": 40.0}, "exact"),  # infusion (12.5 h) longer than II
    ("pk2_oral", {"ALAG1": 1.5, "F1": 0.6}, {"amount": 100.0}, "dopri5"),
    ("pk1_iv_mm", {}, {"amount": 300.0}, "dopri5"),
    ("pk2_oral_mm", {"ALAG1": 0.5}, {"amount": 200.0}, "dopri5"),
    ("pk2_iv_mm", {}, {"amount": 300.0, "rate": 100.0}, "dopri5"),
]


@pytest.mark.parametrize("name, params, dose, method", CASES)
def test_ss1_equals_limit_of_repeated_dosing(name, params, dose, method):
    model = get_model(name)
    ii = 12.0
    t = np.linspace(0.0, ii, 25)
    ss = simulate(model, params, Regimen((DoseEvent(time=0.0, ii=ii, ss=1, **dose),)), t, method=method,
                  rtol=1e-11, atol=1e-13)
    assert ss.ok, ss.statuses()
    limit = repeated_last_interval(model, params, dose, ii, t, method)
    np.testing.assert_allclose(ss.output("C")[0], limit, rtol=1e-6, atol=1e-9 * limit.max())


def test_ss2_adds_to_existing_state_for_linear_models():
    model = get_model("pk1_iv")
    ii = 12.0
    t = np.array([24.0, 30.0, 36.0])
    regimen = Regimen((DoseEvent(time=0.0, amount=1000.0), DoseEvent(time=24.0, amount=500.0, ii=ii, ss=2)))
    tr = simulate(model, None, regimen, t)
    bolus_alone = simulate(model, None, Regimen.single(1000.0), t).output("C")[0]
    ss_alone = simulate(model, None, Regimen((DoseEvent(time=24.0, amount=500.0, ii=ii, ss=1),)), t).output("C")[0]
    np.testing.assert_allclose(tr.output("C")[0], bolus_alone + ss_alone, rtol=1e-10)


def test_ss1_resets_previous_doses():
    model = get_model("pk1_iv")
    regimen = Regimen((DoseEvent(time=0.0, amount=5000.0), DoseEvent(time=24.0, amount=500.0, ii=12.0, ss=1)))
    alone = Regimen((DoseEvent(time=24.0, amount=500.0, ii=12.0, ss=1),))
    t = np.array([24.0, 30.0])
    np.testing.assert_allclose(simulate(model, None, regimen, t).output("C"), simulate(model, None, alone, t).output("C"))


@pytest.mark.parametrize("method", ["exact", "dopri5"])
def test_constant_infusion_steady_state(method):
    model = get_model("pk1_iv")
    p = {"CL": 2.0, "V": 30.0}
    regimen = Regimen((DoseEvent(time=0.0, amount=0.0, rate=50.0, ss=1),))
    tr = simulate(model, p, regimen, [0.0, 10.0, 100.0], method=method, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(tr.output("C")[0], 50.0 / 2.0, rtol=1e-7)


def test_reset_evid3_returns_to_initial_state():
    model = get_model("pk1_iv")
    regimen = Regimen((DoseEvent(time=0.0, amount=500.0), DoseEvent(time=5.0, evid=3),
                       DoseEvent(time=10.0, amount=200.0, evid=4)))
    tr = simulate(model, {"CL": 2.0, "V": 20.0}, regimen, [4.0, 6.0, 10.0, 12.0])
    c = tr.output("C")[0]
    assert c[1] == 0.0
    np.testing.assert_allclose(c[2:], 200.0 / 20.0 * np.exp(-0.1 * np.array([0.0, 2.0])), rtol=1e-12)
