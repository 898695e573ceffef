"""Numerical verification of the whole-body PBPK model against first principles and scipy.

1. mass balance: the model augmented with an accumulator of the eliminated
   amount (hepatic + renal flux, written here independently) conserves the dose;
2. without elimination the total amount is conserved and the venous plasma
   concentration tends to C_eq = Dose / (BP·V_blood + Σ_T Kp_T·V_T);
3. at steady state of a constant infusion, rate / C_ss equals the well-stirred
   plasma clearance Q_H·fu·CLint/(Q_H + fu·CLint/BP) + CLR (and an oral
   constant input shows the first-pass factor F_H = Q_H/(Q_H + fu·CLint/BP));
4. the compiled solvers (dopri5, exact) against scipy's Radau on an
   independently written right-hand side.

The physiology used here is re-typed from ICRP Publication 89 (adult male,
73 kg, cardiac output 390 L/h) rather than read from the module, so these
tests also pin the module's reference table.

Derivation of (3): infusion R into venous blood.  At steady state the lung and
arterial equations give C_art = C_ven (blood).  Gut and spleen have no
elimination, so their outflow concentration equals C_art and the liver receives
blood at C_art with flow Q_H; the well-stirred liver gives
C_out,H = Q_H·C_art/(Q_H + fu·CLint/BP) and eliminates fu·CLint·C_out,H/BP.  The
kidney eliminates CLR·C_art/BP.  Mass balance R = elimination, and with
C_p = C_ven/BP: R / C_p = Q_H·fu·CLint/(Q_H + fu·CLint/BP) + CLR.  For an input R
into the gut lumen the liver also receives R directly, which gives
R·F_H / C_p = the same clearance.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from medtwin import DoseEvent, Model, Regimen, State, get_model, simulate
from medtwin.models import pbpk

# ICRP 89 adult male (73 kg): tissue volume (L, mass at 1 kg/L) and arterial flow (fraction of CO).
BW_REF, CO_REF, BLOOD = 73.0, 390.0, 5.3
ICRP = {
    "lung": (0.50, 1.0), "heart": (0.33, 0.04), "brain": (1.45, 0.12), "muscle": (29.0, 0.17),
    "adipose": (18.2, 0.05), "skin": (3.3, 0.05), "bone": (10.5, 0.05),
    "gut": (0.04 + 0.15 + 0.65 + 0.37 + 0.14, 0.01 + 0.10 + 0.04 + 0.01),  # GI walls + pancreas
    "spleen": (0.15, 0.03), "liver": (1.8, 0.065), "kidney": (0.31, 0.19),
}
ICRP["rest"] = (BW_REF - BLOOD - sum(v for v, _ in ICRP.values()),
                1.0 - sum(q for k, (_, q) in ICRP.items() if k != "lung"))
TISSUES = tuple(ICRP)
STATES = ("GUTLUMEN", "VEN", "ART") + tuple(k.upper() for k in TISSUES)
IX = {name: i for i, name in enumerate(STATES)}


@pytest.fixture(scope="module")
def model():
    return get_model("pbpk_whole_body")


def _phys(bw):
    ratio = bw / BW_REF
    co = CO_REF * ratio ** 0.75
    vol = {k: v * ratio for k, (v, _) in ICRP.items()}
    flow = {k: q * co for k, (_, q) in ICRP.items()}
    return vol, flow, co, BLOOD * ratio / 3.0, BLOOD * ratio * 2.0 / 3.0


def _named(model, p):
    return dict(zip(model.parameter_names, p))


def reference_rhs(th: dict, infusion: np.ndarray):
    """Independent concentration-form PBPK right-hand side (amounts in mg)."""
    vol, flow, co, v_art, v_ven = _phys(th["BW"])
    bp, fu = th["BP"], th["FU"]
    kp = {k: th[f"KP_{k.upper()}"] for k in TISSUES}
    q_h = flow["liver"] + flow["gut"] + flow["spleen"]

    def rhs(t, y):
        c_art, c_ven = y[IX["ART"]] / v_art, y[IX["VEN"]] / v_ven
        out = {k: y[IX[k.upper()]] / vol[k] * bp / kp[k] for k in TISSUES}
        d = np.zeros_like(y)
        d[IX["GUTLUMEN"]] = -th["KA"] * y[IX["GUTLUMEN"]]
        d[IX["LUNG"]] = co * (c_ven - out["lung"])
        d[IX["ART"]] = co * (out["lung"] - c_art)
        for k in ("heart", "brain", "muscle", "adipose", "skin", "bone", "spleen", "rest"):
            d[IX[k.upper()]] = flow[k] * (c_art - out[k])
        d[IX["GUT"]] = flow["gut"] * (c_art - out["gut"]) + th["KA"] * y[IX["GUTLUMEN"]]
        d[IX["KIDNEY"]] = flow["kidney"] * (c_art - out["kidney"]) - th["CLR"] * c_art / bp
        d[IX["LIVER"]] = (flow["liver"] * c_art + flow["gut"] * out["gut"] + flow["spleen"] * out["spleen"]
                          - q_h * out["liver"] - th["CLINT"] * fu * out["liver"] / bp)
        d[IX["VEN"]] = (sum(flow[k] * out[k] for k in ("heart", "brain", "muscle", "adipose", "skin", "bone",
                                                        "kidney", "rest"))
                        + q_h * out["liver"] - co * c_ven)
        return d + infusion

    return rhs


def test_module_reference_table_is_icrp89():
    assert pbpk.REFERENCE_BODY_WEIGHT == BW_REF and pbpk.REFERENCE_CARDIAC_OUTPUT == CO_REF
    assert pbpk.BLOOD_VOLUME == BLOOD and pbpk.ARTERIAL_FRACTION == pytest.approx(1.0 / 3.0)
    assert tuple(t.key for t in pbpk.TISSUES) == TISSUES
    for t in pbpk.TISSUES:
        assert t.volume == pytest.approx(ICRP[t.key][0], abs=1e-9), t.key
        assert t.flow_fraction == pytest.approx(ICRP[t.key][1], abs=1e-12), t.key
    assert pbpk.STATE_NAMES == STATES


# ------------------------------------------------------------------ (1) mass balance
def _with_accumulator(base: Model) -> Model:
    """The PBPK field plus ELIM, dELIM/dt = hepatic + renal elimination flux (written independently)."""
    names = base.parameter_names
    i_clint, i_clr, i_fu, i_bp, i_bw, i_kpl = (names.index(n) for n in ("CLINT", "CLR", "FU", "BP", "BW",
                                                                        "KP_LIVER"))
    x_liver, x_art = IX["LIVER"], IX["ART"]
    f_liver, f_art = ICRP["liver"][0] / BW_REF, BLOOD / 3.0 / BW_REF  # L per kg

    def build(jit):
        f = base.rhs(jit)

        def field(t, x, p):
            d = f(t, x, p)
            bw = p[i_bw]
            c_out_liver = x[x_liver] / (f_liver * bw) * p[i_bp] / p[i_kpl]  # blood leaving the liver
            hepatic = p[i_clint] * p[i_fu] * c_out_liver / p[i_bp]  # CLint on unbound emergent plasma
            renal = p[i_clr] * x[x_art] / (f_art * bw) / p[i_bp]  # CLR on arterial plasma
            return d + (hepatic + renal,)

        return field

    return Model(
        name="pbpk_with_eliminated", description="PBPK + accumulator of the eliminated amount",
        states=base.states + (State("ELIM", "mg", "eliminated amount"),), parameters=base.parameters,
        outputs=base.outputs, dose_targets=base.dose_targets, build=build,
    )


@pytest.fixture(scope="module")
def augmented(model):
    return _with_accumulator(model)


THETA_ELIM = {"CLINT": 60.0, "CLR": 6.0, "FU": 0.3, "BP": 1.3, "BW": 82.0, "F1": 0.6}


def test_mass_balance_iv_bolus(augmented):
    times = np.array([0.0, 0.1, 0.5, 2.0, 6.0, 24.0, 72.0])
    tr = simulate(augmented, THETA_ELIM, Regimen.single(250.0), times, method="dopri5", rtol=1e-10, atol=1e-12)
    assert tr.ok
    total = tr.states[:, :].sum(axis=1)
    np.testing.assert_allclose(total, 250.0, rtol=1e-8)
    elim = tr.state("ELIM")[0]
    assert elim[-1] > 0.5 * 250.0 and np.all(np.diff(elim) > 0)  # elimination is substantial


def test_mass_balance_during_infusion_and_oral(augmented):
    times = np.array([0.5, 2.0, 5.0, 9.5, 10.0, 12.0, 30.0])
    infusion = simulate(augmented, THETA_ELIM, Regimen.single(500.0, rate=50.0), times, method="dopri5",
                        rtol=1e-10, atol=1e-12)
    assert infusion.ok
    given = 50.0 * np.minimum(times, 10.0)
    np.testing.assert_allclose(infusion.states.sum(axis=1), given, rtol=1e-8)
    oral = simulate(augmented, THETA_ELIM, Regimen.single(400.0, cmt=1), times, method="dopri5", rtol=1e-10,
                    atol=1e-12)
    assert oral.ok
    np.testing.assert_allclose(oral.states.sum(axis=1), 0.6 * 400.0, rtol=1e-8)  # F1 = 0.6 of the dose


# ------------------------------------------------------------------ (2) equilibrium without elimination
def test_closed_system_reaches_analytic_equilibrium(model):
    theta = {"CLINT": 0.0, "CLR": 0.0, "BW": 64.0, "BP": 0.8, "KP_ADIPOSE": 15.0, "KP_MUSCLE": 1.7}
    dose = 300.0
    times = np.array([0.0, 1.0, 10.0, 50.0, 300.0, 400.0])
    tr = simulate(model, theta, Regimen.single(dose), times)  # exact (matrix exponential)
    assert tr.ok
    np.testing.assert_allclose(tr.states.sum(axis=1), dose, rtol=1e-10)
    th = _named(model, model.parameter_table(theta)[0])
    vol, _, _, v_art, v_ven = _phys(th["BW"])
    vss = th["BP"] * (v_art + v_ven) + sum(th[f"KP_{k.upper()}"] * vol[k] for k in TISSUES)
    c_eq = dose / vss
    assert pbpk.steady_state_volume(theta) == pytest.approx(vss, rel=1e-12)
    c = tr.output("C")[0]
    assert abs(c[2] - c_eq) / c_eq > 1e-3  # not yet equilibrated at 10 h
    np.testing.assert_allclose(c[-2:], c_eq, rtol=1e-9)
    # every tissue at A_T = V_T·Kp_T·C_p
    for k in TISSUES:
        assert tr.state(k.upper())[0, -1] == pytest.approx(vol[k] * th[f"KP_{k.upper()}"] * c_eq, rel=1e-9)
    dp = simulate(model, theta, Regimen.single(dose), times[:4], method="dopri5", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dp.states.sum(axis=1), dose, rtol=1e-10)


# ------------------------------------------------------------------ (3) steady-state clearance
CASES = [
    {},  # typical: low extraction
    {"CLINT": 400.0, "FU": 0.6, "BP": 0.7, "CLR": 8.0, "BW": 90.0},  # high extraction, renal
    {"CLINT": 50.0, "FU": 0.05, "BP": 2.5, "CLR": 0.5, "BW": 55.0, "KP_LIVER": 20.0},
]


def _well_stirred(th):
    _, flow, _, _, _ = _phys(th["BW"])
    q_h = flow["liver"] + flow["gut"] + flow["spleen"]
    cl_h = q_h * th["FU"] * th["CLINT"] / (q_h + th["FU"] * th["CLINT"] / th["BP"])
    return cl_h + th["CLR"], q_h / (q_h + th["FU"] * th["CLINT"] / th["BP"])


# The steady state of a linear model is solved directly (A·x = −r) whatever the method; the dopri5 case checks
# that path and the explicit integration after the SS record.
@pytest.mark.parametrize(("theta", "method"), [(c, "exact") for c in CASES] + [(CASES[1], "dopri5")])
def test_steady_state_infusion_clearance(model, theta, method):
    rate = 37.0
    th = _named(model, model.parameter_table(theta)[0])
    cl, f_h = _well_stirred(th)
    assert pbpk.clearance(theta)["CL"] == pytest.approx(cl, rel=1e-12)
    regimen = Regimen((DoseEvent(time=0.0, amount=0.0, rate=rate, ss=1, cmt=2),))
    tr = simulate(model, theta, regimen, [0.0, 5.0], method=method, rtol=1e-10, atol=1e-12)
    assert tr.ok
    c_ss = tr.output("C")[0]
    np.testing.assert_allclose(rate / c_ss, cl, rtol=1e-6)
    # arterial = venous blood at steady state
    assert tr.state("ART")[0, 0] / (pbpk.physiology(th["BW"])["V_art"]) == pytest.approx(
        tr.state("VEN")[0, 0] / pbpk.physiology(th["BW"])["V_ven"], rel=1e-6)
    # constant input into the gut lumen: first pass through the liver, C_ss = F_H·R/CL
    oral = simulate(model, theta, Regimen((DoseEvent(time=0.0, amount=0.0, rate=rate, ss=1, cmt=1),)), [0.0],
                    method=method, rtol=1e-10, atol=1e-12)
    assert oral.ok
    np.testing.assert_allclose(oral.output("C")[0, 0], f_h * rate / cl, rtol=1e-6)


# ------------------------------------------------------------------ (4) against scipy
THETA_REF = {"CLINT": 45.0, "CLR": 3.0, "FU": 0.2, "BP": 1.3, "BW": 85.0, "KA": 1.7, "F1": 0.8, "ALAG1": 0.5,
             "KP_ADIPOSE": 6.0, "KP_BRAIN": 1.1, "KP_LIVER": 8.0, "KP_LUNG": 1.5, "KP_KIDNEY": 4.0}


def _scipy_reference(model, times):
    """IV 100 mg at 0 h, oral 200 mg at 6 h (F1 0.8, lag 0.5 h), IV infusion 40 mg/h over 12–14 h."""
    th = _named(model, model.parameter_table(THETA_REF)[0])
    n = len(STATES)
    zero, inf = np.zeros(n), np.zeros(n)
    inf[IX["VEN"]] = 40.0
    jac = np.column_stack([reference_rhs(th, zero)(0.0, e) for e in np.eye(n)])  # linear: exact Jacobian
    segments = [(0.0, 6.5, zero), (6.5, 12.0, zero), (12.0, 14.0, inf), (14.0, 24.0, zero)]
    y = np.zeros(n)
    y[IX["VEN"]] += 100.0
    out = np.empty((len(times), n))
    for t0, t1, rate in segments:
        if t0 == 6.5:
            y[IX["GUTLUMEN"]] += 0.8 * 200.0
        mask = (times >= t0) & (times < t1) if t1 < 24.0 else (times >= t0)
        sol = solve_ivp(reference_rhs(th, rate), (t0, t1), y, method="Radau", t_eval=times[mask], rtol=1e-10,
                        atol=1e-12, jac=lambda t, y: jac)
        assert sol.success
        out[mask] = sol.y.T
        y = solve_ivp(reference_rhs(th, rate), (t0, t1), y, method="Radau", rtol=1e-10, atol=1e-12,
                      jac=lambda t, y: jac).y[:, -1]
    return th, out


@pytest.mark.parametrize("method", ["dopri5", "exact"])
def test_against_scipy_radau(model, method):
    times = np.linspace(0.0, 24.0, 97)
    th, ref = _scipy_reference(model, times)
    regimen = (Regimen.single(100.0) + Regimen.single(200.0, time=6.0, cmt=1)
               + Regimen.single(80.0, time=12.0, rate=40.0))
    tr = simulate(model, THETA_REF, regimen, times, method=method, rtol=1e-10, atol=1e-12)
    assert tr.ok
    states = tr.states
    scale = np.abs(ref).max(axis=0)
    for j, name in enumerate(STATES):
        mask = np.abs(ref[:, j]) > 1e-6 * scale[j]
        rel = np.abs(states[mask, j] - ref[mask, j]) / np.abs(ref[mask, j])
        assert rel.max() < 1e-6, (name, rel.max())
    _, _, _, _, v_ven = _phys(th["BW"])
    c_ref = ref[:, IX["VEN"]] / v_ven / th["BP"]
    np.testing.assert_allclose(tr.output("C")[0], c_ref, rtol=1e-6)
    vol, _, _, _, _ = _phys(th["BW"])
    np.testing.assert_allclose(tr.output("C_liver")[0][1:], ref[1:, IX["LIVER"]] / vol["liver"], rtol=1e-6)
