"""The foreign ICU glucose models (Hovorka 2004, Dalla Man 2007) against independent references.

References: (1) the paper equations written again here in the papers' own units
(per minute, per kg, mg/dl, pmol) and solved by scipy's DOP853 at tight
tolerances; (2) steady states under constant inputs from the algebraic balance
equations (brentq / fsolve), not from integration.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq, fsolve

from medtwin.core.simulate import simulate
from medtwin.models.dallaman import DALLA_MAN_2007
from medtwin.models.hovorka import HOVORKA_2004
from medtwin.scenarios.foreign_glucose import foreign_model, foreign_stream, sample_foreign_patients, simulate_foreign
from medtwin.scenarios.glucose_patients import icu_regimen

INSULIN_U_H, FEED_G_H = 2.0, 3.5
FEED_MMOL_MIN = FEED_G_H * 1000.0 / 180.156 / 60.0


def _medtwin_glucose(model, times, insulin=INSULIN_U_H, feed=FEED_G_H, params=None):
    hours = float(np.ceil(times[-1]))
    regimen = icu_regimen(hours, insulin_u_per_h=insulin, enteral_g_per_h=feed, change_every_h=hours)
    tr = simulate(model, params, regimen, times, method="dopri5", rtol=1e-10, atol=1e-10)
    assert tr.ok
    return np.asarray(tr.outputs["G"]).reshape(-1)


# ---------------------------------------------------------------- Hovorka 2004, paper units (per min, per kg)
def _hovorka_paper_rhs(t, y, s, bw=70.0, g0=8.0):
    v = {k: val for k, (val, _) in HOVORKA_2004.items()}
    q1, q2, i, d1, d2, x1, x2, x3 = y
    vg = v["VG"] * bw
    g = q1 / vg
    f01c = v["F01"] * bw * (1.0 if g >= v["G_F01"] else g / v["G_F01"])
    fr = v["R_cl"] * (g - v["R_thr"]) * vg if g >= v["R_thr"] else 0.0
    egp = max(0.0, v["EGP0"] * bw * (1.0 - x3))
    ug = v["AG"] * d2 / v["tmaxG"]
    u_insulin = INSULIN_U_H * 1000.0 / 60.0  # mU/min
    return [
        -f01c - x1 * q1 + v["k12"] * q2 - fr + ug + egp,
        x1 * q1 - (v["k12"] + x2) * q2,
        u_insulin / (v["VI"] * bw) - v["ke"] * i,
        FEED_MMOL_MIN - d1 / v["tmaxG"],
        (d1 - d2) / v["tmaxG"],
        -v["ka1"] * x1 + v["ka1"] * s * v["SIT"] * i,
        -v["ka2"] * x2 + v["ka2"] * s * v["SID"] * i,
        -v["ka3"] * x3 + v["ka3"] * s * v["SIE"] * i,
    ]


def test_hovorka_matches_paper_equations_solved_by_scipy():
    m = foreign_model("hovorka_icu")
    s = m.parameter("SIscale").value
    times_h = np.array([0.5, 1.0, 3.0, 6.0])
    y0 = [8.0 * 0.16 * 70.0, 0, 0, 0, 0, 0, 0, 0]
    ref = solve_ivp(_hovorka_paper_rhs, (0.0, 360.0), y0, method="DOP853", t_eval=60.0 * times_h,
                    rtol=1e-11, atol=1e-11, args=(s,))
    np.testing.assert_allclose(_medtwin_glucose(m, times_h), ref.y[0] / (0.16 * 70.0), rtol=2e-6)


def test_hovorka_steady_state_from_the_balance_equation():
    m = foreign_model("hovorka_icu")
    v = {k: val for k, (val, _) in HOVORKA_2004.items()}
    s, bw = m.parameter("SIscale").value, 70.0
    i_ss = INSULIN_U_H * 1000.0 / 60.0 / (v["VI"] * bw * v["ke"])
    x1, x2, x3 = s * v["SIT"] * i_ss, s * v["SID"] * i_ss, s * v["SIE"] * i_ss
    vg = v["VG"] * bw

    def balance(g):
        f01c = v["F01"] * bw * min(1.0, g / v["G_F01"])
        fr = v["R_cl"] * max(0.0, g - v["R_thr"]) * vg
        return -f01c - x1 * x2 / (v["k12"] + x2) * g * vg - fr + v["AG"] * FEED_MMOL_MIN + max(
            0.0, v["EGP0"] * bw * (1 - x3))

    g_ss = brentq(balance, 0.1, 60.0, xtol=1e-12)
    assert 7.0 < g_ss < 10.0  # the documented ICU calibration of SIscale: near 8 mmol/L on 2 U/h + 3.5 g/h
    np.testing.assert_allclose(_medtwin_glucose(m, np.array([300.0]))[0], g_ss, rtol=1e-6)


# ---------------------------------------------------------------- Dalla Man 2007, paper units (mg/kg, pmol/kg, min)
def _dm_paper_rhs(t, y, s, bw=70.0):
    v = {k: val for k, (val, _) in DALLA_MAN_2007.items()}
    gp, gt, ip, il, qs1, qs2, qg, x, i1, idd = y
    i = ip / v["VI"]
    egp = max(0.0, v["kp1"] - v["kp2"] * gp - s * v["kp3"] * idd)
    uid = (v["Vm0"] + s * v["Vmx"] * x) * gt / (v["Km0"] + gt)
    e = v["ke1"] * (gp - v["ke2"]) if gp > v["ke2"] else 0.0
    ra = v["f"] * v["kabs"] * qg / bw  # mg/(kg min) from the gut amount in mg
    infusion = INSULIN_U_H * 6000.0 / 60.0 / bw  # pmol/(kg min)
    feed_mg_min = FEED_G_H * 1000.0 / 60.0
    return [
        egp + ra - v["Fcns"] - e - v["k1"] * gp + v["k2"] * gt,
        -uid + v["k1"] * gp - v["k2"] * gt,
        -(v["m2"] + v["m4"]) * ip + v["m1"] * il + infusion,
        -(v["m1"] + v["m30"]) * il + v["m2"] * ip,
        -v["kgri"] * qs1 + feed_mg_min,
        -v["kmax"] * qs2 + v["kgri"] * qs1,
        -v["kabs"] * qg + v["kmax"] * qs2,
        -v["p2U"] * x + v["p2U"] * (i - v["Ib"]),
        -v["ki"] * (i1 - i),
        -v["ki"] * (idd - i1),
    ]


def _dm_initial(g0=8.0):
    v = {k: val for k, (val, _) in DALLA_MAN_2007.items()}
    gp = g0 * 18.0156 * v["VG"]
    gt = brentq(lambda gt: v["k1"] * gp - v["k2"] * gt - v["Vm0"] * gt / (v["Km0"] + gt), 0.0, 1e4, xtol=1e-13)
    return [gp, gt, 0, 0, 0, 0, 0, 0, 0, 0]


def test_dalla_man_matches_paper_equations_solved_by_scipy():
    m = foreign_model("dalla_man_icu")
    s = m.parameter("SIscale").value
    times_h = np.array([0.5, 1.0, 3.0, 6.0])
    ref = solve_ivp(_dm_paper_rhs, (0.0, 360.0), _dm_initial(), method="DOP853", t_eval=60.0 * times_h,
                    rtol=1e-11, atol=1e-11, args=(s,))
    np.testing.assert_allclose(_medtwin_glucose(m, times_h), ref.y[0] / 1.88 / 18.0156, rtol=2e-6)


def test_dalla_man_steady_state_from_the_balance_equations():
    m = foreign_model("dalla_man_icu")
    v = {k: val for k, (val, _) in DALLA_MAN_2007.items()}
    s, bw = m.parameter("SIscale").value, 70.0
    infusion = INSULIN_U_H * 6000.0 / 60.0 / bw
    a = np.array([[-(v["m2"] + v["m4"]), v["m1"]], [v["m2"], -(v["m1"] + v["m30"])]])
    ip, _ = np.linalg.solve(a, [-infusion, 0.0])
    i = ip / v["VI"]
    x, idd = i - v["Ib"], i
    ra = v["f"] * FEED_G_H * 1000.0 / 60.0 / bw

    def balance(z):
        gp, gt = z
        egp = max(0.0, v["kp1"] - v["kp2"] * gp - s * v["kp3"] * idd)
        e = v["ke1"] * max(0.0, gp - v["ke2"])
        uid = (v["Vm0"] + s * v["Vmx"] * x) * gt / (v["Km0"] + gt)
        return [egp + ra - v["Fcns"] - e - v["k1"] * gp + v["k2"] * gt, -uid + v["k1"] * gp - v["k2"] * gt]

    gp, _ = fsolve(balance, [150.0, 150.0], xtol=1e-13)
    g_ss = gp / v["VG"] / 18.0156
    assert 6.0 < g_ss < 10.0  # documented ICU calibration of SIscale
    np.testing.assert_allclose(_medtwin_glucose(m, np.array([400.0]))[0], g_ss, rtol=1e-6)


# ---------------------------------------------------------------- sampler and streams
@pytest.mark.parametrize("model", ["hovorka_icu", "dalla_man_icu"])
def test_sampler_hourly_sensitivity_changes_the_truth(model):
    p = sample_foreign_patients(1, model=model, hours=6, seed=4)[0]
    assert p.si_multipliers[0] == 1.0 and np.all(p.si_multipliers[1:] != 1.0)
    regimen = icu_regimen(6, insulin_u_per_h=2.0, enteral_g_per_h=3.5)
    times = np.arange(0.0, 6.01, 0.5)
    varying = simulate_foreign(p, regimen, times)
    flat = simulate_foreign(type(p)(p.id, p.model, p.parameters, np.ones(6), p.measurement_cv, p.seed),
                            regimen, times)
    np.testing.assert_allclose(varying.glucose_true[:3], flat.glucose_true[:3], rtol=1e-9)  # hour 0 identical
    assert np.max(np.abs(varying.glucose_true - flat.glucose_true)) > 1e-3
    np.testing.assert_allclose(varying.si[-1], p.parameters["SIscale"] * p.si_multipliers[-1])


def test_jbds_stream_uses_the_scale_on_the_latest_reading():
    from medtwin.scenarios.glucose_loop import jbds_vriii_rate

    p = sample_foreign_patients(1, model="hovorka_icu", hours=4, seed=1)[0]
    s = foreign_stream(p, hours=4, every_min=15.0)
    rates = {int(e.time): e.rate / 1000.0 for e in s.stream.regimen.events if e.cmt == 2}
    readings = dict(zip(np.round(s.times, 6), s.glucose_measured))
    for hour in range(1, 4):
        assert rates.get(hour, 0.0) == jbds_vriii_rate(readings[float(hour)])
    assert rates.get(0, 0.0) == jbds_vriii_rate(p.parameters["G0"])
