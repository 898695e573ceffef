"""The Dalla Man (UVA/Padova) meal model in an ICU form: IV insulin, enteral feed as the gut input, hours.

A *foreign* model for the ICU glycaemic twin (which runs ICING): virtual
patients drawn from it (:mod:`medtwin.scenarios.foreign_glucose`) test the twin
on dynamics it does not share.

Source: Dalla Man C, Rizza RA, Cobelli C. Meal simulation model of the
glucose-insulin system. IEEE Trans Biomed Eng 2007;54(10):1740-1749,
doi:10.1109/TBME.2007.893506 (equations and Table 1, "normal" column).  Per
minute and per kg of body weight in the paper::

    dGp/dt = EGP + Ra − Uii − E − k1·Gp + k2·Gt        G = Gp/VG       (mg/kg, mg/dl)
    dGt/dt = −Uid + k1·Gp − k2·Gt
    EGP = kp1 − kp2·Gp − kp3·Id − kp4·Ipo,   Uii = Fcns
    Uid = (Vm0 + Vmx·X)·Gt/(Km0 + Gt),  dX/dt = −p2U·X + p2U·(I − Ib)
    E   = ke1·(Gp − ke2) for Gp > ke2, else 0
    dIl/dt = −(m1 + m3)·Il + m2·Ip,  dIp/dt = −(m2 + m4)·Ip + m1·Il + S,  I = Ip/VI  (pmol/kg, pmol/L)
    dI1/dt = −ki·(I1 − I),  dId/dt = −ki·(Id − I1)
    dQsto1/dt = −kgri·Qsto1 + meal,  dQsto2/dt = −kempt·Qsto2 + kgri·Qsto1
    dQgut/dt  = −kabs·Qgut + kempt·Qsto2,  Ra = f·kabs·Qgut/BW

Table 1 (normal): VG 1.88 dl/kg, k1 0.065, k2 0.079 1/min, VI 0.05 L/kg, m1
0.190, m2 0.484, m4 0.194, m30 0.285 1/min, kmax 0.0558, kabs 0.057, kgri 0.0558
1/min, f 0.90, kp1 2.70 mg/(kg·min), kp2 0.0021 1/min, kp3 0.009 mg/(kg·min)
per pmol/L, ki 0.0079 1/min, Fcns 1 mg/(kg·min), Vm0 2.50 mg/(kg·min), Vmx
0.047 mg/(kg·min) per pmol/L, Km0 225.59 mg/kg, p2U 0.0331 1/min, ke1 0.0005
1/min, ke2 339 mg/kg; basal insulin Ib 25.49 pmol/L of the normal subjects.

ICU form (medtwin, documented simplifications):

- insulin secretion S is the **IV insulin infusion** only (no β-cell
  secretion; patients on an insulin infusion), so the portal insulin term kp4·Ipo
  is 0 and the hepatic extraction m3 is its basal value m30;
- the **enteral feed** is the gut input (into Qsto1); the paper's gastric
  emptying kempt depends on the amount of the last meal, which a continuous
  feed does not have: kempt = kmax here (the value the paper's kempt takes
  when the stomach is nearly full or nearly empty);
- EGP is floored at 0 (as the UVA/Padova simulator does);
- ICU insulin resistance: Vmx and kp3 are multiplied by one factor ``SIscale``
  (typical 0.3, an assumption chosen so that the typical patient settles near
  7 mmol/L on 2 U/h IV insulin with 3.5 g/h enteral glucose; ICU patients are
  strongly insulin resistant: Pretty CG et al. BioMed Eng OnLine 2014;13:43);
  virtual patients vary it between patients and hour by hour.  Body weight 70
  kg (assumption: typical adult).

States are absolute amounts so that the shared ICU regimen doses them
directly: glucose in mmol (1 mmol = 180.156 mg), insulin in mU (1 mU = 6 pmol).

===  ======  ==========================================  ======  ================
CMT  state   meaning                                     unit    dose route
===  ======  ==========================================  ======  ================
1    GP      plasma (and fast-equilibrating) glucose     mmol    ``"pn"``
2    INS     plasma insulin BW·Ip                        mU      ``"iv_insulin"``
3    QSTO1   stomach, solid phase (enteral feed)         mmol    ``"enteral"``
4    GT      slowly equilibrating tissue glucose         mmol    —
5    QSTO2   stomach, triturated phase                   mmol    —
6    QGUT    gut glucose                                 mmol    —
7    IL      liver insulin BW·Il                         mU      —
8    X       insulin action on glucose utilisation       pmol/L  —
9    I1      delayed insulin signal (EGP)                pmol/L  —
10   ID      delayed insulin action on EGP               pmol/L  —
===  ======  ==========================================  ======  ================

Outputs ``G`` (mmol/L) and ``I`` (mU/L).  Initial state: Gp at glucose G0,
Gt at rest for Gp with X = 0 (root of a quadratic), the rest zero.

Examples
--------
>>> m = dalla_man_icu_model()
>>> m.state_names[:3], m.output_names
(('GP', 'INS', 'QSTO1'), ('G', 'I'))
>>> round(m.parameter("Km0").value, 2), m.parameter("Km0").unit
(225.59, 'mg/kg')
"""

from __future__ import annotations

import math

from medtwin.core.model import DoseTarget, Model, Output, Parameter, State, generated_function

CITATION_DALLA_MAN = (
    "Dalla Man C, Rizza RA, Cobelli C. Meal simulation model of the glucose-insulin system. IEEE Trans Biomed Eng "
    "2007;54(10):1740-1749, doi:10.1109/TBME.2007.893506 (Table 1, normal subjects; IV insulin, enteral feed and an "
    "ICU insulin-resistance factor SIscale: medtwin.models.dallaman)."
)

#: Milligrams of glucose per millimole.
MG_PER_MMOL = 180.156
#: Picomoles of insulin per milliunit (1 U = 6000 pmol).
PMOL_PER_MU = 6.0

#: Dalla Man 2007 Table 1, normal column, in the paper's units.
DALLA_MAN_2007 = {
    "VG": (1.88, "dl/kg"), "k1": (0.065, "1/min"), "k2": (0.079, "1/min"), "VI": (0.05, "L/kg"),
    "m1": (0.190, "1/min"), "m2": (0.484, "1/min"), "m4": (0.194, "1/min"), "m30": (0.285, "1/min"),
    "kmax": (0.0558, "1/min"), "kabs": (0.057, "1/min"), "kgri": (0.0558, "1/min"), "f": (0.90, "1"),
    "kp1": (2.70, "mg/(kg*min)"), "kp2": (0.0021, "1/min"), "kp3": (0.009, "mg/(kg*min) per pmol/L"),
    "ki": (0.0079, "1/min"), "Fcns": (1.0, "mg/(kg*min)"), "Vm0": (2.50, "mg/(kg*min)"),
    "Vmx": (0.047, "mg/(kg*min) per pmol/L"), "Km0": (225.59, "mg/kg"), "p2U": (0.0331, "1/min"),
    "ke1": (0.0005, "1/min"), "ke2": (339.0, "mg/kg"), "Ib": (25.49, "pmol/L"),
}

_INF = math.inf


def _par(name, unit, value, description, lower=1e-9, upper=_INF, transform="log"):
    return Parameter(name, unit, value, lower, upper, transform, description)


def _per_h(name, description):
    value, unit = DALLA_MAN_2007[name]
    new_unit = unit.replace("min", "h")
    return _par(name, new_unit, 60.0 * value, f"{description} ({value} {unit})")


DALLA_MAN_PARAMETERS = (
    _par("SIscale", "1", 0.3, "ICU insulin-resistance factor on Vmx and kp3 (assumption)", lower=1e-4, upper=20.0),
    _par("G0", "mmol/L", 8.0, "glucose at the start", lower=0.1, upper=60.0),
    _par("BW", "kg", 70.0, "body weight (typical adult, assumption)", lower=1.0, upper=400.0),
    _par("VG", "dl/kg", 1.88, "glucose distribution volume"),
    _per_h("k1", "rate Gp -> Gt"),
    _per_h("k2", "rate Gt -> Gp"),
    _par("VI", "L/kg", 0.05, "insulin distribution volume"),
    _per_h("m1", "rate liver -> plasma insulin"),
    _per_h("m2", "rate plasma -> liver insulin"),
    _per_h("m4", "peripheral insulin degradation"),
    _per_h("m30", "basal hepatic insulin extraction rate"),
    _per_h("kgri", "grinding rate"),
    _per_h("kmax", "gastric emptying rate (kempt = kmax for a continuous feed)"),
    _per_h("kabs", "intestinal absorption rate"),
    Parameter("f", "1", 0.90, 0.0, 1.0, "logit", "fraction of intestinal absorption appearing in plasma"),
    _per_h("kp1", "extrapolated EGP at zero glucose and insulin"),
    _per_h("kp2", "liver glucose effectiveness"),
    _per_h("kp3", "insulin action on the liver"),
    _per_h("ki", "delay of insulin action on the liver"),
    _per_h("Fcns", "insulin-independent utilisation"),
    _per_h("Vm0", "insulin-independent maximal utilisation of Gt"),
    _per_h("Vmx", "insulin-dependent maximal utilisation of Gt"),
    _par("Km0", "mg/kg", 225.59, "Michaelis constant of utilisation"),
    _per_h("p2U", "rate of insulin action on utilisation"),
    _per_h("ke1", "renal glomerular filtration rate"),
    _par("ke2", "mg/kg", 339.0, "renal threshold of glucose"),
    _par("Ib", "pmol/L", 25.49, "basal plasma insulin of the normal subjects", lower=0.0),
)


def _dalla_man_field(t, x, p):
    s, bw, vg, k1, k2, vi, m1, m2, m4, m3 = p[0], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    kgri, kempt, kabs, f, kp1, kp2, kp3, ki = p[11], p[12], p[13], p[14], p[15], p[16], p[17], p[18]
    fcns, vm0, vmx, km0, p2u, ke1, ke2, ib = p[19], p[20], p[21], p[22], p[23], p[24], p[25], p[26]
    c = 180.156 / bw  # mg/kg per mmol
    gp = x[0] * c
    gt = x[3] * c
    i = 6.0 * x[1] / (bw * vi)
    drive = kp1 - kp2 * gp - s * kp3 * x[9]
    egp = 0.5 * (drive + abs(drive))
    uid = (vm0 + s * vmx * x[7]) * gt / (km0 + gt)
    over = gp - ke2
    renal = ke1 * 0.5 * (over + abs(over))
    d_gp = (egp - fcns - renal - k1 * gp + k2 * gt) / c + f * kabs * x[5]
    d_gt = (-uid + k1 * gp - k2 * gt) / c
    d_ins = -(m2 + m4) * x[1] + m1 * x[6]
    d_s1 = -kgri * x[2]
    d_s2 = kgri * x[2] - kempt * x[4]
    d_gut = kempt * x[4] - kabs * x[5]
    d_il = -(m1 + m3) * x[6] + m2 * x[1]
    d_x = p2u * (i - ib - x[7])
    d_i1 = ki * (i - x[8])
    d_id = ki * (x[8] - x[9])
    return (d_gp, d_ins, d_s1, d_gt, d_s2, d_gut, d_il, d_x, d_i1, d_id)


def _dalla_man_init(p):
    g0, bw, vg, k1, k2, vm0, km0 = p[1], p[2], p[3], p[4], p[5], p[20], p[22]
    c = 180.156 / bw
    gp = g0 * 18.0156 * vg
    # Gt at rest for X = 0: k2·Gt² + (k2·Km0 + Vm0 − k1·Gp)·Gt − k1·Gp·Km0 = 0 (positive root)
    b = k2 * km0 + vm0 - k1 * gp
    gt = (-b + (b * b + 4.0 * k2 * k1 * gp * km0) ** 0.5) / (2.0 * k2)
    zero = 0.0 * g0
    return (gp / c, zero, zero, gt / c, zero, zero, zero, zero, zero, zero)


def dalla_man_icu_model() -> Model:
    """The Dalla Man 2007 meal model with IV insulin and enteral feed, hours, mmol, mU (module docstring).

    Examples
    --------
    >>> m = dalla_man_icu_model()
    >>> m.check_well_posedness().ok
    True
    >>> [(t.cmt, t.route) for t in m.dose_targets]
    [(1, 'pn'), (2, 'iv_insulin'), (3, 'enteral')]
    """
    g = generated_function("def glucose(x, p):\n    return x[0] * 10.0 / (p[2] * p[3])\n", "glucose", tag="dallaman")
    i = generated_function("def insulin(x, p):\n    return x[1] / (p[2] * p[6])\n", "insulin", tag="dallaman")
    return Model(
        name="dalla_man_icu",
        description="Dalla Man 2007 meal model, IV insulin and enteral feed, ICU insulin resistance, time in h",
        states=(
            State("GP", "mmol", "glucose in plasma and rapidly equilibrating tissues"),
            State("INS", "mU", "plasma insulin amount"),
            State("QSTO1", "mmol", "stomach glucose, solid phase (enteral feed enters here)"),
            State("GT", "mmol", "glucose in slowly equilibrating tissues"),
            State("QSTO2", "mmol", "stomach glucose, triturated phase"),
            State("QGUT", "mmol", "gut glucose"),
            State("IL", "mU", "liver insulin amount"),
            State("X", "pmol/L", "insulin action on glucose utilisation"),
            State("I1", "pmol/L", "delayed insulin signal to the liver"),
            State("ID", "pmol/L", "delayed insulin action on endogenous glucose production"),
        ),
        parameters=DALLA_MAN_PARAMETERS,
        outputs=(Output("G", "mmol/L", g, "plasma glucose concentration", linear=True),
                 Output("I", "mU/L", i, "plasma insulin concentration", linear=True)),
        dose_targets=(DoseTarget(1, "pn"), DoseTarget(2, "iv_insulin"), DoseTarget(3, "enteral")),
        vector_field=_dalla_man_field,
        initial_state=_dalla_man_init,
        citation=CITATION_DALLA_MAN,
    )


def library_models() -> list[Model]:
    """The models of this family (for :func:`medtwin.models.get_model`)."""
    return [dalla_man_icu_model()]
