"""The Hovorka (Cambridge) glucose–insulin model in an ICU form: IV insulin, enteral feed, time in hours.

A *foreign* model for the ICU glycaemic twin: the twin runs ICING
(:mod:`medtwin.models.glucose`); virtual patients drawn from this model
(:mod:`medtwin.scenarios.foreign_glucose`) test it on dynamics it does not share.

Source: Hovorka R, Canonico V, Chassin LJ, Haueter U, Massi-Benedetti M,
Orsini Federici M, Pieber TR, Schaller HC, Schaupp L, Vering T, Wilinska ME.
Nonlinear model predictive control of glucose concentration in subjects with
type 1 diabetes. Physiol Meas 2004;25(4):905-920, doi:10.1088/0967-3334/25/4/010
(equations (1)-(9) and Table 1).  Per minute in the paper::

    dQ1/dt = −F01c − x1·Q1 + k12·Q2 − FR + UG + EGP0·(1 − x3)
    dQ2/dt = x1·Q1 − (k12 + x2)·Q2                 G = Q1/VG
    dxi/dt = −kai·xi + kbi·I,  kbi = SI·kai         (SIT, SID, SIE for i = 1, 2, 3)
    dI/dt  = UI/VI − ke·I
    F01c = F01·min(1, G/4.5);  FR = 0.003·(G − 9)·VG for G ≥ 9 mmol/L, else 0
    UG  = AG·D2/tmaxG,  dD1/dt = −D1/tmaxG (+ feed),  dD2/dt = (D1 − D2)/tmaxG

ICU form (medtwin): insulin is given **intravenously** into plasma (UI in mU/h
into the insulin amount VI·I; the paper's subcutaneous depot S1, S2 is left
out), the enteral feed enters the two-compartment gut (its
bioavailability AG applied at absorption, which gives the paper's UG), EGP is
floored at 0 (the paper's EGP0·(1 − x3) would turn negative at high insulin),
and there is no endogenous insulin secretion (patients on an insulin infusion).

Published values (Hovorka 2004 Table 1; per minute there, ×60 here): k12 0.066
1/min, ka1 0.006, ka2 0.06, ka3 0.03 1/min, SIT 51.2e-4 and SID 8.2e-4
1/min per mU/L, SIE 520e-4 L/mU, ke 0.138 1/min, VI 0.12 L/kg, VG 0.16 L/kg,
F01 0.0097 and EGP0 0.0161 mmol/(kg·min), AG 0.8, tmaxG 40 min; FR threshold 9
mmol/L and rate 0.003 1/min; F01 linear below 4.5 mmol/L (eq. (5), (6)).

ICU adaptation (assumption, documented): the Table 1 sensitivities describe
subjects with type 1 diabetes outside the ICU; critically ill patients are
strongly insulin resistant (Pretty CG et al. BioMed Eng OnLine 2014;13:43;
Wink F et al. "Time-variant insulin sensitivity in critically ill subjects",
IFAC, up to five-fold variation of basal insulin requirements within 8-10 h).
All three sensitivities are multiplied by one factor ``SIscale`` (typical
0.25, chosen so that the typical patient settles near 8 mmol/L on 2 U/h IV
insulin with 3.5 g/h enteral glucose); virtual patients vary it between
patients and hour by hour.  Body weight 70 kg (assumption: typical adult).

===  ======  ==========================================  ======  ================
CMT  state   meaning                                     unit    dose route
===  ======  ==========================================  ======  ================
1    Q1      glucose in the accessible compartment       mmol    ``"pn"``
2    INS     plasma insulin amount VI·I                  mU      ``"iv_insulin"``
3    D1      gut glucose, first compartment              mmol    ``"enteral"``
4    Q2      glucose in the non-accessible compartment   mmol    —
5    D2      gut glucose, second compartment             mmol    —
6-8  X1..X3  insulin action on transport, disposal, EGP  1/h, 1  —
===  ======  ==========================================  ======  ================

Outputs ``G`` = Q1/VG (mmol/L) and ``I`` = INS/VI (mU/L).  The initial state
is Q1 = VG·G0 with everything else zero.

Examples
--------
>>> m = hovorka_icu_model()
>>> m.state_names[:3], m.output_names
(('Q1', 'INS', 'D1'), ('G', 'I'))
>>> round(m.parameter("SIT").value, 6), m.parameter("SIT").unit
(0.3072, '1/h per mU/L')
"""

from __future__ import annotations

import math

from medtwin.core.model import DoseTarget, Model, Output, Parameter, State, generated_function

CITATION_HOVORKA = (
    "Hovorka R, Canonico V, Chassin LJ, Haueter U, Massi-Benedetti M, Orsini Federici M, Pieber TR, Schaller HC, "
    "Schaupp L, Vering T, Wilinska ME. Nonlinear model predictive control of glucose concentration in subjects with "
    "type 1 diabetes. Physiol Meas 2004;25(4):905-920, doi:10.1088/0967-3334/25/4/010 (IV insulin, enteral feed and "
    "an ICU insulin-resistance factor SIscale: medtwin.models.hovorka)."
)

#: Hovorka 2004 Table 1 in the paper's units (per kg of body weight where stated).
HOVORKA_2004 = {
    "k12": (0.066, "1/min"), "ka1": (0.006, "1/min"), "ka2": (0.06, "1/min"), "ka3": (0.03, "1/min"),
    "SIT": (51.2e-4, "1/min per mU/L"), "SID": (8.2e-4, "1/min per mU/L"), "SIE": (520e-4, "L/mU"),
    "ke": (0.138, "1/min"), "VI": (0.12, "L/kg"), "VG": (0.16, "L/kg"), "F01": (0.0097, "mmol/(kg*min)"),
    "EGP0": (0.0161, "mmol/(kg*min)"), "AG": (0.8, "1"), "tmaxG": (40.0, "min"),
    "R_thr": (9.0, "mmol/L"), "R_cl": (0.003, "1/min"), "G_F01": (4.5, "mmol/L"),
}

_INF = math.inf


def _par(name, unit, value, description, lower=1e-9, upper=_INF, transform="log"):
    return Parameter(name, unit, value, lower, upper, transform, description)


HOVORKA_PARAMETERS = (
    _par("SIscale", "1", 0.25, "ICU insulin-resistance factor on SIT, SID, SIE (assumption)", lower=1e-4, upper=20.0),
    _par("G0", "mmol/L", 8.0, "glucose at the start", lower=0.1, upper=60.0),
    _par("BW", "kg", 70.0, "body weight (typical adult, assumption)", lower=1.0, upper=400.0),
    _par("VG", "L/kg", 0.16, "glucose distribution volume"),
    _par("VI", "L/kg", 0.12, "insulin distribution volume"),
    _par("F01", "mmol/(kg*h)", 60.0 * 0.0097, "non-insulin-dependent glucose flux (0.0097 mmol/(kg*min))"),
    _par("EGP0", "mmol/(kg*h)", 60.0 * 0.0161, "EGP extrapolated to zero insulin (0.0161 mmol/(kg*min))"),
    _par("k12", "1/h", 60.0 * 0.066, "transfer rate Q2 -> Q1 (0.066 1/min)"),
    _par("ka1", "1/h", 60.0 * 0.006, "deactivation rate of insulin action on transport (0.006 1/min)"),
    _par("ka2", "1/h", 60.0 * 0.06, "deactivation rate of insulin action on disposal (0.06 1/min)"),
    _par("ka3", "1/h", 60.0 * 0.03, "deactivation rate of insulin action on EGP (0.03 1/min)"),
    _par("SIT", "1/h per mU/L", 60.0 * 51.2e-4, "insulin sensitivity of transport (51.2e-4 1/min per mU/L)"),
    _par("SID", "1/h per mU/L", 60.0 * 8.2e-4, "insulin sensitivity of disposal (8.2e-4 1/min per mU/L)"),
    _par("SIE", "L/mU", 520e-4, "insulin sensitivity of EGP"),
    _par("ke", "1/h", 60.0 * 0.138, "insulin elimination from plasma (0.138 1/min)"),
    Parameter("AG", "1", 0.8, 0.0, 1.0, "logit", "carbohydrate bioavailability"),
    _par("tmaxG", "h", 40.0 / 60.0, "time-to-maximum of carbohydrate absorption (40 min)"),
    _par("R_thr", "mmol/L", 9.0, "renal glucose clearance threshold"),
    _par("R_cl", "1/h", 60.0 * 0.003, "renal glucose clearance rate above the threshold (0.003 1/min)", lower=0.0),
    _par("G_F01", "mmol/L", 4.5, "glucose below which F01 falls linearly"),
)


def _hovorka_field(t, x, p):
    s, bw, vg_kg, vi_kg, f01, egp0 = p[0], p[2], p[3], p[4], p[5], p[6]
    k12, ka1, ka2, ka3, sit, sid, sie, ke = p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14]
    ag, tmax, rthr, rcl, gf = p[15], p[16], p[17], p[18], p[19]
    vg = vg_kg * bw
    g = x[0] / vg
    i = x[1] / (vi_kg * bw)
    ratio = g / gf
    f01c = f01 * bw * 0.5 * (1.0 + ratio - abs(1.0 - ratio))
    excess = g - rthr
    fr = rcl * vg * 0.5 * (excess + abs(excess))
    drive = egp0 * bw * (1.0 - x[7])
    egp = 0.5 * (drive + abs(drive))
    ug = ag * x[4] / tmax
    d_q1 = -f01c - x[5] * x[0] + k12 * x[3] - fr + ug + egp
    d_ins = -ke * x[1]
    d_d1 = -x[2] / tmax
    d_q2 = x[5] * x[0] - (k12 + x[6]) * x[3]
    d_d2 = (x[2] - x[4]) / tmax
    d_x1 = ka1 * (s * sit * i - x[5])
    d_x2 = ka2 * (s * sid * i - x[6])
    d_x3 = ka3 * (s * sie * i - x[7])
    return (d_q1, d_ins, d_d1, d_q2, d_d2, d_x1, d_x2, d_x3)


def _hovorka_init(p):
    zero = 0.0 * p[1]
    return (p[1] * p[3] * p[2], zero, zero, zero, zero, zero, zero, zero)


def hovorka_icu_model() -> Model:
    """The Hovorka 2004 model with IV insulin and enteral feed, hours and mmol (see the module docstring).

    Examples
    --------
    >>> m = hovorka_icu_model()
    >>> m.check_well_posedness().ok
    True
    >>> [(t.cmt, t.route) for t in m.dose_targets]
    [(1, 'pn'), (2, 'iv_insulin'), (3, 'enteral')]
    """
    g = generated_function("def glucose(x, p):\n    return x[0] / (p[3] * p[2])\n", "glucose", tag="hovorka")
    i = generated_function("def insulin(x, p):\n    return x[1] / (p[4] * p[2])\n", "insulin", tag="hovorka")
    return Model(
        name="hovorka_icu",
        description="Hovorka 2004 glucose-insulin model, IV insulin and enteral feed, ICU insulin resistance, time in h",
        states=(
            State("Q1", "mmol", "glucose in the accessible (plasma) compartment"),
            State("INS", "mU", "plasma insulin amount VI*I"),
            State("D1", "mmol", "gut glucose, first compartment (enteral feed enters here)"),
            State("Q2", "mmol", "glucose in the non-accessible compartment"),
            State("D2", "mmol", "gut glucose, second compartment"),
            State("X1", "1/h", "remote insulin action on glucose transport"),
            State("X2", "1/h", "remote insulin action on glucose disposal"),
            State("X3", "1", "remote insulin action on endogenous glucose production"),
        ),
        parameters=HOVORKA_PARAMETERS,
        outputs=(Output("G", "mmol/L", g, "plasma glucose concentration", linear=True),
                 Output("I", "mU/L", i, "plasma insulin concentration", linear=True)),
        dose_targets=(DoseTarget(1, "pn"), DoseTarget(2, "iv_insulin"), DoseTarget(3, "enteral")),
        vector_field=_hovorka_field,
        initial_state=_hovorka_init,
        citation=CITATION_HOVORKA,
    )


def library_models() -> list[Model]:
    """The models of this family (for :func:`medtwin.models.get_model`)."""
    return [hovorka_icu_model()]
