"""PD models against independent references.

References are written here, independently of :mod:`medtwin.models.pd`:

* the effect-compartment closed form after IV boluses into a one-compartment
  model (Sheiner et al., Clin Pharmacol Ther 1979;25:358-71), by superposition;
* the direct Emax formula applied to the simulated concentration;
* the analytic steady states of the four indirect-response models under a
  constant infusion (Dayneka, Garg & Jusko, J Pharmacokinet Biopharm 1993;21:457-78);
* scipy's DOP853 at tight tolerances on right-hand sides written out by hand.
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from medtwin import Regimen, get_model, simulate
from medtwin.core.events import DoseEvent

TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-12)


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3 * np.max(np.abs(b))))


# ---------------------------------------------------------------- (1) effect compartment, closed form
def effect_site_bolus(t, dose_times, dose, cl, v, ke0):
    """CE(t) = Σ D/V·KE0/(KE0 − k)·(e^{−k s} − e^{−KE0 s}), s = t − t_dose ≥ 0, k = CL/V."""
    k = cl / v
    ce = np.zeros_like(t)
    for td in dose_times:
        s = np.clip(t - td, 0.0, None)
        ce += np.where(t >= td, dose / v * ke0 / (ke0 - k) * (np.exp(-k * s) - np.exp(-ke0 * s)), 0.0)
    return ce


@pytest.mark.parametrize("ke0", [0.05, 0.7, 4.0])
def test_effect_compartment_single_bolus_closed_form(ke0):
    m = get_model("pk1_iv_effect")
    cl, v, dose = 3.0, 25.0, 500.0
    times = np.linspace(0.0, 72.0, 145)
    tr = simulate(m, {"CL": cl, "V": v, "KE0": ke0}, Regimen.single(dose), times, **TIGHT)
    assert tr.ok
    reference = effect_site_bolus(times, [0.0], dose, cl, v, ke0)
    assert rel_err(tr.output("CE")[0], reference) < 1e-7
    assert rel_err(tr.output("C")[0], dose / v * np.exp(-cl / v * times)) < 1e-7


def test_effect_compartment_repeated_boluses_and_effect():
    m = get_model("pk1_iv_effect")
    cl, v, ke0, dose = 3.0, 25.0, 0.7, 500.0
    e0, emax, ec50, hill = 10.0, 50.0, 4.0, 2.5
    times = np.linspace(0.0, 96.0, 193)
    params = {"CL": cl, "V": v, "KE0": ke0, "E0": e0, "EMAX": emax, "EC50": ec50, "HILL": hill}
    tr = simulate(m, params, Regimen.every(12, "h", dose, "mg", n=6), times, **TIGHT)
    assert tr.ok
    ce = effect_site_bolus(times, [12.0 * k for k in range(6)], dose, cl, v, ke0)
    assert rel_err(tr.output("CE")[0], ce) < 1e-7
    effect = e0 + emax * ce**hill / (ec50**hill + ce**hill)
    assert rel_err(tr.output("E")[0], effect) < 1e-7


# ---------------------------------------------------------------- (2) direct Emax
def test_direct_emax_equals_the_formula_on_the_simulated_concentration():
    m = get_model("pk1_iv_emax")
    params = {"CL": 4.0, "V": 40.0, "E0": 2.0, "EMAX": -1.5, "EC50": 3.0}
    times = np.linspace(0.0, 48.0, 97)
    regimen = Regimen.every(8, "h", 300, "mg", n=6, duration=0.5)
    for method in ("exact", "dopri5"):
        tr = simulate(m, params, regimen, times, method=method)
        c = tr.output("C")
        np.testing.assert_array_equal(tr.output("E"), 2.0 + -1.5 * c / (3.0 + c))


def test_direct_sigmoid_emax_equals_the_formula_on_the_simulated_concentration():
    m = get_model("pk1_iv_sigmoid_emax")
    params = {"CL": 4.0, "V": 40.0, "E0": 2.0, "EMAX": 7.0, "EC50": 3.0, "HILL": 2.7}
    times = np.linspace(0.0, 48.0, 97)
    tr = simulate(m, params, Regimen.every(8, "h", 300, "mg", n=6), times)
    c = tr.output("C")
    np.testing.assert_allclose(tr.output("E"), 2.0 + 7.0 * c**2.7 / (3.0**2.7 + c**2.7), rtol=1e-14, atol=0)


# ---------------------------------------------------------------- (3) indirect responses at steady state
IDR_PARAMS = {"CL": 5.0, "V": 50.0, "R0": 80.0, "KOUT": 0.2}
DRUG = {"idr1": {"IMAX": 0.8, "IC50": 3.0}, "idr2": {"IMAX": 0.8, "IC50": 3.0},
        "idr3": {"SMAX": 2.5, "SC50": 3.0}, "idr4": {"SMAX": 2.5, "SC50": 3.0}}
RATE = 20.0  # mg/h → Css = RATE/CL = 4 mg/L


def idr_steady_state(kind, css, r0, p):
    if kind in ("idr1", "idr2"):
        frac = p["IMAX"] * css / (p["IC50"] + css)
        return r0 * (1.0 - frac) if kind == "idr1" else r0 / (1.0 - frac)
    frac = p["SMAX"] * css / (p["SC50"] + css)
    return r0 * (1.0 + frac) if kind == "idr3" else r0 / (1.0 + frac)


@pytest.mark.parametrize("kind", ["idr1", "idr2", "idr3", "idr4"])
def test_idr_long_infusion_reaches_the_analytic_steady_state(kind):
    m = get_model(f"pk1_iv_{kind}")
    params = {**IDR_PARAMS, **DRUG[kind]}
    infusion = Regimen.single(RATE * 2000.0, rate=RATE)  # 2000 h infusion; slowest rate here ≥ 0.1/h
    times = np.array([400.0, 700.0, 1000.0])
    tr = simulate(m, params, infusion, times, **TIGHT)
    assert tr.ok
    css = RATE / IDR_PARAMS["CL"]
    r_ss = idr_steady_state(kind, css, IDR_PARAMS["R0"], DRUG[kind])
    np.testing.assert_allclose(tr.output("C"), css, rtol=1e-8)
    np.testing.assert_allclose(tr.output("R"), r_ss, rtol=1e-6)


@pytest.mark.parametrize("kind", ["idr1", "idr2", "idr3", "idr4"])
def test_idr_steady_state_constant_infusion_record(kind):
    """SS=1, AMT=0, RATE>0 (NONMEM's steady-state constant infusion)."""
    m = get_model(f"pk1_iv_{kind}")
    params = {**IDR_PARAMS, **DRUG[kind]}
    regimen = Regimen((DoseEvent(time=0.0, amount=0.0, rate=RATE, ss=1),))
    tr = simulate(m, params, regimen, [0.0, 5.0, 50.0], **TIGHT)
    assert tr.ok, tr.statuses()
    css = RATE / IDR_PARAMS["CL"]
    np.testing.assert_allclose(tr.output("C"), css, rtol=1e-8)
    np.testing.assert_allclose(tr.output("R"), idr_steady_state(kind, css, IDR_PARAMS["R0"], DRUG[kind]), rtol=1e-6)


def test_w2_long_infusion_reaches_the_analytic_steady_state():
    """Michaelis–Menten PK: RATE = VMAX·C/(KM + C) → Css = KM·RATE/(VMAX − RATE); CE = Css; R from IDR III."""
    m = get_model("pk2_oral_mm_effect_idr3")
    typical = dict(zip(m.parameter_names, m.typical_values()))
    rate = 20.0
    infusion = Regimen.single(rate * 3000.0, rate=rate, cmt=2)
    tr = simulate(m, None, infusion, [1500.0, 2000.0], **TIGHT)
    assert tr.ok
    css = typical["KM"] * rate / (typical["VMAX"] - rate)
    np.testing.assert_allclose(tr.output("C"), css, rtol=1e-8)
    np.testing.assert_allclose(tr.output("CE"), css, rtol=1e-8)
    effect = typical["E0"] + typical["EMAX"] * css ** typical["HILL"] / (
        typical["EC50"] ** typical["HILL"] + css ** typical["HILL"])
    np.testing.assert_allclose(tr.output("E"), effect, rtol=1e-8)
    r_ss = typical["R0"] * (1.0 + typical["SMAX"] * css / (typical["SC50"] + css))
    np.testing.assert_allclose(tr.output("R"), r_ss, rtol=1e-6)


# ---------------------------------------------------------------- (4) trajectories against scipy DOP853
def idr_reference_rhs(kind, cl, v, r0, kout, a, b):
    kin = r0 * kout

    def rhs(t, y):
        amount, r = y
        c = amount / v
        if kind == "idr1":
            dr = kin * (1.0 - a * c / (b + c)) - kout * r
        elif kind == "idr2":
            dr = kin - kout * (1.0 - a * c / (b + c)) * r
        elif kind == "idr3":
            dr = kin * (1.0 + a * c / (b + c)) - kout * r
        else:
            dr = kin - kout * (1.0 + a * c / (b + c)) * r
        return [-cl / v * amount, dr]

    return rhs


@pytest.mark.parametrize("kind", ["idr1", "idr2", "idr3", "idr4"])
def test_idr_bolus_trajectory_matches_scipy_dop853(kind):
    m = get_model(f"pk1_iv_{kind}")
    drug = DRUG[kind]
    a, b = (drug["IMAX"], drug["IC50"]) if "IMAX" in drug else (drug["SMAX"], drug["SC50"])
    cl, v, r0, kout, dose = 4.0, 30.0, 80.0, 0.15, 600.0
    params = {"CL": cl, "V": v, "R0": r0, "KOUT": kout, **drug}
    times = np.linspace(0.0, 120.0, 241)
    tr = simulate(m, params, Regimen.single(dose), times, **TIGHT)
    assert tr.ok
    ref = solve_ivp(idr_reference_rhs(kind, cl, v, r0, kout, a, b), (0.0, 120.0), [dose, r0], method="DOP853",
                    t_eval=times, rtol=1e-12, atol=1e-12)
    assert ref.success
    assert rel_err(tr.output("R")[0], ref.y[1]) < 1e-6
    assert rel_err(tr.output("C")[0], ref.y[0] / v) < 1e-6
    assert np.max(np.abs(tr.output("R")[0] - r0)) > 1.0  # the drug did move the response


def test_w2_oral_trajectory_matches_scipy_dop853():
    m = get_model("pk2_oral_mm_effect_idr3")
    p = dict(zip(m.parameter_names, m.typical_values()))
    dose = 400.0
    regimen = Regimen.every(12, "h", dose, "mg", n=3)

    def rhs(t, y):
        depot, central, peripheral, ce, r = y
        c = central / p["V1"]
        exchange = p["Q"] * c - p["Q"] * peripheral / p["V2"]
        elimination = p["VMAX"] * c / (p["KM"] + c)
        kin = p["R0"] * p["KOUT"]
        return [
            -p["KA"] * depot,
            p["KA"] * depot - elimination - exchange,
            exchange,
            p["KE0"] * (c - ce),
            kin * (1.0 + p["SMAX"] * ce / (p["SC50"] + ce)) - p["KOUT"] * r,
        ]

    times = np.linspace(0.0, 96.0, 193)
    y = np.array([0.0, 0.0, 0.0, 0.0, p["R0"]])
    ref = np.empty((5, len(times)))
    for start, stop in ((0.0, 12.0), (12.0, 24.0), (24.0, 96.0)):
        y[0] += dose * p["F1"]
        mask = (times >= start) & (times < stop) if stop < 96.0 else (times >= start)
        sol = solve_ivp(rhs, (start, stop), y, method="DOP853", t_eval=times[mask], rtol=1e-12, atol=1e-12,
                        dense_output=True)
        assert sol.success
        ref[:, mask] = sol.y
        y = sol.sol(stop)
    tr = simulate(m, None, regimen, times, **TIGHT)
    assert tr.ok
    assert rel_err(tr.output("C")[0], ref[1] / p["V1"]) < 1e-6
    assert rel_err(tr.output("CE")[0], ref[3]) < 1e-6
    assert rel_err(tr.output("R")[0], ref[4]) < 1e-6
