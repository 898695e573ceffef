"""ICU glycaemic models against closed forms and an independent per-minute implementation of ICING."""

import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from medtwin import simulate
from medtwin.core.events import DoseEvent, Regimen
from medtwin.models import get_model
from medtwin.scenarios.glucose_patients import (
    SI_REVERSION,
    SI_STEP_SD,
    SyntheticICUPatient,
    icu_regimen,
    sample_icu_patients,
    simulate_truth,
)

LN2 = math.log(2.0)


def test_enteral_bolus_gut_closed_form_and_mass_balance():
    # Bergman with (almost) no glucose effectiveness and no insulin input: X stays 0, so the
    # plasma glucose amount gains exactly what the gut released (d2·P2 < PMAX throughout).
    m = get_model("bergman_insulin")
    dose = 200.0  # mmol
    params = {"p1": 1e-9}
    times = np.array([0.5, 1.0, 3.0, 8.0, 20.0])
    tr = simulate(m, params, Regimen((DoseEvent(time=0.0, amount=dose, cmt=3),)), times, rtol=1e-11, atol=1e-11)
    p = dict(zip(m.parameter_names, m.typical_values()))
    d1, d2 = p["d1"], p["d2"]
    assert d1 == pytest.approx(60 * LN2 / 20) and d2 == pytest.approx(60 * LN2 / 100)
    p1_ref = dose * np.exp(-d1 * times)
    p2_ref = dose * d1 / (d2 - d1) * (np.exp(-d1 * times) - np.exp(-d2 * times))
    assert np.allclose(tr.state("P1")[0], p1_ref, rtol=1e-8)
    assert np.allclose(tr.state("P2")[0], p2_ref, rtol=1e-8)
    absorbed = tr.state("GLU")[0] - p["VG"] * p["Gb"]
    assert np.allclose(absorbed + p1_ref + p2_ref, dose, rtol=1e-7)


def test_gut_appearance_saturates_at_pmax():
    m = get_model("bergman_insulin")
    pmax = m.parameter("PMAX").value
    big = 20.0 * pmax / m.parameter("d2").value  # d2·P2 far above PMAX while P2 stays large
    x = (m.parameter("VG").value * 7.0, m.parameter("VI").value * 15.0, 0.0, 0.0, big)
    f = m.rhs()(0.0, x, m.typical_values())
    assert f[4] == pytest.approx(-pmax) and f[0] == pytest.approx(pmax)


def test_bergman_insulin_infusion_matches_closed_form():
    m = get_model("bergman_insulin")
    rate = 3000.0  # mU/h
    times = np.array([0.25, 1.0, 4.0, 12.0])
    tr = simulate(m, None, Regimen((DoseEvent(time=0.0, amount=rate * 12, cmt=2, rate=rate),)), times)
    n, vi, ib = (m.parameter(k).value for k in ("n", "VI", "Ib"))
    ref = ib + rate / (n * vi) * (1.0 - np.exp(-n * times))
    assert np.allclose(tr.output("I")[0], ref, rtol=1e-8)


def test_icing_insulin_kinetics_linear_limit_matches_matrix_exponential():
    # αI = αG = 0 removes the saturations; xL = 1 removes endogenous secretion: the I–Q system
    # is linear, dI/dt = −(nK + nL + nI)·I + nI·Q + u/VI, dQ/dt = nI·I − (nI + nC)·Q.
    m = get_model("icing")
    params = {"alphaI": 0.0, "alphaG": 0.0, "xL": 1.0}
    rate = 4000.0  # mU/h
    times = np.array([0.5, 2.0, 6.0])
    tr = simulate(m, params, Regimen((DoseEvent(time=0.0, amount=rate * 6, cmt=2, rate=rate),)), times,
                  rtol=1e-11, atol=1e-11)
    nk, nl, ni, nc, vi = (m.parameter(k).value for k in ("nK", "nL", "nI", "nC", "VI"))
    a = np.array([[-(nk + nl + ni), ni], [ni, -(ni + nc)]])
    b = np.array([rate / vi, 0.0])
    ref = np.array([np.linalg.solve(a, (expm(a * t) - np.eye(2)) @ b) for t in times])
    assert np.allclose(tr.output("I")[0], ref[:, 0], rtol=1e-8)
    assert np.allclose(tr.state("Q")[0], ref[:, 1], rtol=1e-8)


def _icing_per_minute(t, y, pn, uex, enteral, si):
    """ICING as printed (per minute; G, Q, I concentrations), written independently of medtwin."""
    g, q, i, p1, p2 = y
    vg, vi = 13.3, 4.0
    d1, d2 = LN2 / 20.0, LN2 / 100.0
    p = min(d2 * p2, 6.11) + pn
    uen = min(max(16.7, 14.9 * g - 49.9), 266.7)
    dg = -0.006 * g - si * g * q / (1 + q / 65.0) + (p + 1.16 - 0.3) / vg
    dq = 0.0075 * (i - q) - 0.0075 * q / (1 + q / 65.0)
    di = -0.0542 * i - 0.1578 * i / (1 + 1.7e-3 * i) - 0.0075 * (i - q) + uex / vi + (1 - 0.67) * uen / vi
    return [dg, dq, di, -d1 * p1 + enteral, d1 * p1 - min(d2 * p2, 6.11)]


def test_icing_matches_an_independent_per_minute_implementation():
    m = get_model("icing")
    si_min = 2.5e-4
    pn_h, ins_u_h, feed_g_h = 20.0, 3.0, 4.0  # mmol/h, U/h, g/h
    hours = 12.0
    reg = icu_regimen(hours, insulin_u_per_h=ins_u_h, enteral_g_per_h=feed_g_h, pn_mmol_per_h=pn_h,
                      change_every_h=hours)
    times_h = np.array([0.5, 2.0, 6.0, 12.0])
    tr = simulate(m, {"SI": 60 * si_min, "G0": 9.0}, reg, times_h, rtol=1e-11, atol=1e-11)
    x0 = m.init()(m.parameter_table({"SI": 60 * si_min, "G0": 9.0})[0])
    y0 = [9.0, x0[3], x0[1] / 4.0, 0.0, 0.0]
    args = (pn_h / 60.0, ins_u_h * 1000.0 / 60.0, feed_g_h * 1000.0 / 180.156 / 60.0, si_min)
    ref = solve_ivp(_icing_per_minute, (0.0, 60 * hours), y0, args=args, method="LSODA", rtol=1e-11, atol=1e-12,
                    t_eval=60 * times_h)
    assert np.allclose(tr.output("G")[0], ref.y[0], rtol=1e-6)
    assert np.allclose(tr.output("I")[0], ref.y[2], rtol=1e-6)
    assert np.allclose(tr.state("Q")[0], ref.y[1], rtol=1e-6)


def test_icing_basal_steady_state_with_balancing_parenteral_glucose():
    m = get_model("icing")
    p = m.parameter_table({"G0": 6.0, "SI": 0.06})[0]
    x0 = m.init()(p)
    v = dict(zip(m.parameter_names, p))
    q = x0[3]
    # closed glucose balance (mmol/h) at G0: pG·G0·VG + SI·G0·VG·Q/(1 + αG·Q) − EGP + CNS
    pn = v["VG"] * (v["pG"] * 6.0 + v["SI"] * 6.0 * q / (1 + v["alphaG"] * q)) - v["EGP"] + v["CNS"]
    assert pn > 0
    f = np.array(m.rhs()(0.0, x0, p)) + np.array([pn, 0, 0, 0, 0])
    assert np.allclose(f, 0.0, atol=1e-9 * x0[0])
    tr = simulate(m, {"G0": 6.0, "SI": 0.06}, icu_regimen(48, pn_mmol_per_h=pn, change_every_h=48),
                  [0.0, 5.0, 24.0, 48.0])
    assert np.allclose(tr.output("G")[0], 6.0, rtol=1e-7)


@pytest.mark.parametrize("name", ["icing", "bergman_insulin"])
def test_truth_simulator_matches_simulate_when_si_is_constant(name):
    patient = sample_icu_patients(1, model=name, hours=24, seed=4, si_step_sd=0.0)[0]
    assert np.all(patient.si_multipliers == 1.0)
    reg = icu_regimen(24, insulin_u_per_h=np.tile([0.0, 2.0, 5.0, 1.0], 3), enteral_g_per_h=3.0,
                      pn_mmol_per_h=np.repeat([0.0, 15.0], 6), change_every_h=2.0)
    reg = reg + Regimen((DoseEvent(time=7.5, amount=2000.0, cmt=2),))  # an insulin bolus between readings
    times = np.linspace(0.0, 24.0, 25)
    truth = simulate_truth(patient, reg, times, rtol=1e-10, atol=1e-10)
    ref = simulate(get_model(name), dict(patient.parameters), reg, times, rtol=1e-10, atol=1e-10)
    assert np.allclose(truth.glucose_true, ref.output("G")[0], rtol=1e-7)
    assert np.allclose(truth.states[:, 1], ref.state("INS")[0], rtol=1e-7)


def test_truth_with_constant_multiplier_equals_scaled_si():
    base = sample_icu_patients(1, model="icing", hours=6, seed=2, si_step_sd=0.0)[0]
    scaled = SyntheticICUPatient(id=0, model="icing", parameters=dict(base.parameters),
                                 si_multipliers=np.full(6, 0.4))
    reg = icu_regimen(6, insulin_u_per_h=3.0, enteral_g_per_h=3.0)
    times = np.array([1.0, 3.0, 6.0])
    truth = simulate_truth(scaled, reg, times)
    params = dict(base.parameters, SI=0.4 * base.parameters["SI"])
    ref = simulate(get_model("icing"), params, reg, times)
    assert np.allclose(truth.glucose_true, ref.output("G")[0], rtol=1e-6)


def test_truth_hourly_si_change_acts_from_the_next_hour_only():
    base = sample_icu_patients(1, hours=4, seed=0, si_step_sd=0.0)[0]
    steps = SyntheticICUPatient(id=0, model=base.model, parameters=dict(base.parameters),
                                si_multipliers=np.array([1.0, 1.0, 3.0, 3.0]))
    reg = icu_regimen(4, insulin_u_per_h=4.0)
    times = np.array([1.0, 2.0, 3.0, 4.0])
    a, b = simulate_truth(base, reg, times), simulate_truth(steps, reg, times)
    assert np.allclose(a.glucose_true[:2], b.glucose_true[:2], rtol=1e-9)
    assert np.all(b.glucose_true[2:] < a.glucose_true[2:] - 0.05)


def test_hourly_log_si_walk_has_the_configured_statistics():
    patients = sample_icu_patients(400, hours=72, seed=11)
    z = np.log(np.array([p.si_multipliers for p in patients]))  # (400, 72)
    innovations = z[:, 1:] - SI_REVERSION * z[:, :-1]
    n = innovations.size
    # SD of a sample SD of n normal draws ≈ σ/sqrt(2n) ≈ 0.0008 here; 5 standard errors allowed
    assert abs(innovations.std() - SI_STEP_SD) < 5 * SI_STEP_SD / math.sqrt(2 * n)
    assert abs(innovations.mean()) < 5 * SI_STEP_SD / math.sqrt(n)
    # AR(1) from z0 = 0: Var z_k = σ²(1 − φ^{2k})/(1 − φ²)
    k = 48
    expected = SI_STEP_SD * math.sqrt((1 - SI_REVERSION ** (2 * k)) / (1 - SI_REVERSION**2))
    assert abs(z[:, k].std() / expected - 1) < 0.15
    log_si = np.log([p.parameters["SI"] for p in patients])
    typical = math.log(get_model("bergman_insulin").parameter("SI").value)
    assert abs(log_si.std() - 0.5) < 0.06 and abs(np.median(log_si) - typical) < 0.1
