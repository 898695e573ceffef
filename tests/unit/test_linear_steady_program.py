"""Steady-state (SS=1) records on the cohort fast path (linear model, shared schedule).

The fast path solves the periodic state x = (I - Φ(II))⁻¹ x₁ per patient, x₁ one period of the dose from zero,
as the general kernel does; checked against the closed form of a one-compartment bolus and against the general
(per-patient) kernel for infusions, an infusion longer than II and a dose history before the SS record.
"""

import numpy as np
import pytest

from medtwin import Regimen, get_model, simulate
from medtwin.core.events import DoseEvent


def test_bolus_steady_state_matches_closed_form(rng):
    model = get_model("pk1_iv")
    n, dose, tau = 40, 500.0, 12.0
    cl, v = 2.0 * rng.lognormal(0, 0.3, n), 10.0 * rng.lognormal(0, 0.3, n)
    times = np.linspace(0.0, tau, 25)
    tr = simulate(model, {"CL": cl, "V": v}, Regimen((DoseEvent(time=0.0, amount=dose, ii=tau, ss=1),)), times)
    assert tr.extra["kernel"] == "linear-block" and tr.ok
    k = (cl / v)[:, None]
    expected = dose / v[:, None] * np.exp(-k * times) / (1.0 - np.exp(-k * tau))  # SS=1: the dose at t = 0 included
    np.testing.assert_allclose(tr.output("C").reshape(n, -1), expected, rtol=1e-10)


@pytest.mark.parametrize("rate, ii, history", [(500.0, 12.0, False), (100.0, 6.0, False), (250.0, 24.0, True)])
def test_steady_state_fast_path_equals_general_kernel(rng, rate, ii, history):
    model = get_model("pk2_oral")
    n = 70  # more than two blocks of 32, last one short
    params = {"KA": rng.lognormal(0, 0.3, n), "CL": 5 * rng.lognormal(0, 0.3, n), "V1": 30 * rng.lognormal(0, 0.3, n)}
    before = (DoseEvent(time=0.0, amount=100.0, ii=12.0, addl=2),) if history else ()
    # rate 100 mg/h of 1000 mg every 6 h: a 10-h infusion overlapping itself (n_full = 1)
    regimen = Regimen(before + (DoseEvent(time=40.0, amount=1000.0, cmt=2, rate=rate, ii=ii, ss=1),))
    times = np.linspace(0.0, 40.0 + 2 * ii, 81)
    fast = simulate(model, params, regimen, times)
    general = simulate(model, params, regimen, [times] * n, pre_dose=[np.zeros(81, bool)] * n)  # per-patient path
    assert fast.extra["kernel"] == "linear-block" and general.extra["kernel"] == "patient"
    np.testing.assert_allclose(fast.output("C"), general.output("C").reshape(n, 81), rtol=1e-12, atol=1e-14)
    assert fast.ok and general.ok


def test_ss2_records_keep_the_general_kernel():
    model = get_model("pk1_iv")
    regimen = Regimen((DoseEvent(time=0.0, amount=100.0, ii=12.0, addl=3), DoseEvent(time=24.0, amount=50.0, ii=12.0,
                                                                                       ss=2)))
    tr = simulate(model, {"CL": np.full(3, 2.0), "V": np.full(3, 10.0)}, regimen, np.linspace(0.0, 48.0, 9))
    assert tr.extra["kernel"] == "patient" and tr.ok
