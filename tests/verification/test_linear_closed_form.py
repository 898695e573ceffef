"""Exact (matrix-exponential) and ODE solutions against classical closed forms.

References are written independently of the library: superposition of the
textbook one- and two-compartment solutions (Gibaldi & Perrier,
Pharmacokinetics, 2nd ed., ch. 1-3).
"""

import numpy as np
import pytest

from medtwin import Regimen, get_model, simulate
from medtwin.core.events import DoseEvent

TIMES = np.linspace(0.0, 96.0, 193)


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3 * np.max(np.abs(b))))


def one_cmt_bolus(t, dose_times, dose, cl, v):
    k = cl / v
    c = np.zeros_like(t)
    for td in dose_times:
        dt = t - td
        c += np.where(dt >= 0, dose / v * np.exp(-k * np.clip(dt, 0, None)), 0.0)
    return c


def one_cmt_infusion(t, start, dose, duration, cl, v):
    k = cl / v
    rate = dose / duration
    dt = t - start
    during = rate / cl * (1 - np.exp(-k * np.clip(dt, 0, duration)))
    after = rate / cl * (1 - np.exp(-k * duration)) * np.exp(-k * np.clip(dt - duration, 0, None))
    return np.where(dt < 0, 0.0, np.where(dt <= duration, during, after))


def bateman(t, td, dose, f, ka, cl, v):
    k = cl / v
    dt = np.clip(t - td, 0, None)
    return np.where(t >= td, f * dose * ka / (v * (ka - k)) * (np.exp(-k * dt) - np.exp(-ka * dt)), 0.0)


def two_cmt_bolus(t, td, dose, cl, v1, q, v2):
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s = k10 + k12 + k21
    root = np.sqrt(s * s - 4 * k10 * k21)
    alpha, beta = (s + root) / 2, (s - root) / 2
    a = (alpha - k21) / (alpha - beta) / v1
    b = (k21 - beta) / (alpha - beta) / v1
    dt = np.clip(t - td, 0, None)
    return np.where(t >= td, dose * (a * np.exp(-alpha * dt) + b * np.exp(-beta * dt)), 0.0)


@pytest.mark.parametrize("method", ["exact", "dopri5"])
def test_pk1_iv_bolus_repeated(method):
    p = {"CL": 3.0, "V": 25.0}
    regimen = Regimen.every(8, "h", 500, "mg", n=12)
    tr = simulate(get_model("pk1_iv"), p, regimen, TIMES, method=method, rtol=1e-10, atol=1e-12)
    ref = one_cmt_bolus(TIMES, np.arange(12) * 8.0, 500.0, 3.0, 25.0)
    assert tr.ok
    assert rel_err(tr.output("C")[0], ref) < 1e-6


@pytest.mark.parametrize("method", ["exact", "dopri5"])
def test_pk1_iv_infusions(method):
    p = {"CL": 3.0, "V": 25.0}
    regimen = Regimen.every(12, "h", 1000, "mg", n=8, duration=1.5)
    tr = simulate(get_model("pk1_iv"), p, regimen, TIMES, method=method, rtol=1e-10, atol=1e-12)
    ref = sum(one_cmt_infusion(TIMES, 12.0 * i, 1000.0, 1.5, 3.0, 25.0) for i in range(8))
    assert rel_err(tr.output("C")[0], ref) < 1e-6


@pytest.mark.parametrize("method", ["exact", "dopri5"])
def test_pk1_oral_with_lag_and_bioavailability(method):
    p = {"KA": 1.3, "CL": 4.0, "V": 40.0, "F1": 0.7, "ALAG1": 0.75}
    regimen = Regimen.every(12, "h", 200, "mg", n=8)
    tr = simulate(get_model("pk1_oral"), p, regimen, TIMES, method=method, rtol=1e-10, atol=1e-12)
    ref = sum(bateman(TIMES, 12.0 * i + 0.75, 200.0, 0.7, 1.3, 4.0, 40.0) for i in range(8))
    assert rel_err(tr.output("C")[0], ref) < 1e-6


@pytest.mark.parametrize("method", ["exact", "dopri5"])
def test_pk2_iv_biexponential(method):
    p = {"CL": 4.0, "V1": 30.0, "Q": 8.0, "V2": 60.0}
    regimen = Regimen.every(24, "h", 1000, "mg", n=4)
    tr = simulate(get_model("pk2_iv"), p, regimen, TIMES, method=method, rtol=1e-10, atol=1e-12)
    ref = sum(two_cmt_bolus(TIMES, 24.0 * i, 1000.0, 4.0, 30.0, 8.0, 60.0) for i in range(4))
    assert rel_err(tr.output("C")[0], ref) < 1e-6


LINEAR_CASES = {
    "pk1_iv": {},
    "pk1_oral": {"ALAG1": 0.5, "F1": 0.8},
    "pk2_iv": {},
    "pk2_oral": {"ALAG1": 0.25},
    "pk3_iv": {},
    "pk3_oral": {"F1": 0.6},
    "pk1_oral_transit": {},
    "vancomycin_goti2018": {},
}


@pytest.mark.parametrize("name", sorted(LINEAR_CASES))
def test_every_linear_model_exact_equals_ode(name):
    """Multiple doses incl. infusions and a steady-state start: exact vs a tight ODE solve."""
    model = get_model(name)
    cmt = model.default_cmt
    regimen = Regimen((
        DoseEvent(time=0.0, amount=300.0, cmt=cmt, ii=12.0, ss=1),
        DoseEvent(time=12.0, amount=300.0, cmt=cmt, ii=12.0, addl=2),
        DoseEvent(time=48.0, amount=450.0, cmt=cmt, rate=300.0, ii=12.0, addl=3),
    ))
    exact = simulate(model, LINEAR_CASES[name], regimen, TIMES, method="exact")
    ode = simulate(model, LINEAR_CASES[name], regimen, TIMES, method="dopri5", rtol=1e-11, atol=1e-13)
    assert exact.ok and ode.ok
    assert rel_err(exact.output("C")[0], ode.output("C")[0]) < 1e-6
    assert exact.solver.method == "exact" and ode.solver.method == "dopri5"
