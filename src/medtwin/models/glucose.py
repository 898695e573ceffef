"""ICU glycaemic models: ICING (Lin 2011) and the Bergman minimal model with insulin kinetics.

Both models share one state and dosing layout, so that the same
:class:`~medtwin.core.events.Regimen` drives either of them (the twin runs
ICING; :mod:`medtwin.scenarios.glucose_patients` uses ``bergman_insulin`` as a
deliberately different "truth").  Time is in **hours** (per-minute literature
rates are multiplied by 60), glucose in mmol (amounts) and mmol/L
(concentration), insulin in mU and mU/L.

===  ======  ==========================================  ====================  ===============
CMT  state   meaning                                     unit                  dose route
===  ======  ==========================================  ====================  ===============
1    GLU     plasma glucose amount in the volume VG      mmol                  ``"pn"``
2    INS     plasma insulin amount in the volume VI      mU                    ``"iv_insulin"``
3    P1      stomach glucose                             mmol                  ``"enteral"``
4    Q / X   ICING: interstitial insulin Q               mU/L                  —
             Bergman: remote insulin action X            1/h
5    P2      gut glucose                                 mmol                  —
===  ======  ==========================================  ====================  ===============

Parenteral nutrition and IV dextrose are doses (mmol, or mmol/h infusions) into
CMT 1; IV insulin (mU bolus, mU/h infusion) into CMT 2; enteral feed (mmol of
glucose, 1 g = 1000/180.156 mmol) into CMT 3.  Outputs: ``G`` = GLU/VG
(mmol/L) and ``I`` = INS/VI (mU/L).  Gut absorption is the ICING one in both
models: dP1/dt = −d1·P1, dP2/dt = d1·P1 − min(d2·P2, PMAX), and the
appearance min(d2·P2, PMAX) enters the plasma glucose amount.

The vector fields use arithmetic and ``abs`` only (min(a, b) = ½(a + b − |a − b|),
max(a, b) = ½(a + b + |a − b|)), so they run on floats, numpy arrays with a
trailing patient axis, JAX tracers and in numba.

ICING (model ``icing``; Lin J, Razak NN, Pretty CG, Le Compte A, Docherty P,
Parente JD, Shaw GM, Hann CE, Chase JG. A physiological Intensive Control
Insulin-Nutrition-Glucose (ICING) model validated in critically ill patients.
Comput Methods Programs Biomed 2011;102(2):192-205), per minute::

    dG/dt  = −pG·G − SI·G·Q/(1 + αG·Q) + (P + EGP − CNS)/VG
    dQ/dt  = nI·(I − Q) − nC·Q/(1 + αG·Q)
    dI/dt  = −nK·I − nL·I/(1 + αI·I) − nI·(I − Q) + uex/VI + (1 − xL)·uen(G)/VI
    uen(G) = min(max(umin, k1·G + k2), umax)

Population constants (per minute in the sources; ×60 here): pG 0.006 1/min,
EGP 1.16 mmol/min, CNS 0.3 mmol/min, VG 13.3 L, nK 0.0542 1/min, nL 0.1578
1/min, nI = nC 0.0075 1/min, xL 0.67, VI 4.0 L, αG 1/65 L/mU, αI 1.7e-3 L/mU,
d1 ln2/20 1/min, d2 ln2/100 1/min, PMAX 6.11 mmol/min, k1 14.9 mU·L/(mmol·min),
k2 −49.9 mU/min, umin 16.7 mU/min, umax 266.7 mU/min (Lin 2011 Table/§4.1 as
reproduced, with the Table II citation of the later STAR model paper, in a public
C++ implementation of ICING; the earlier ICING text is often quoted with
nI = nC = 0.006 1/min — change ``nI``/``nC`` to use it).  SI is patient-specific:
typical ICU values 1e-4–1e-3 L/(mU·min), most below 0.5e-3 in the first day
(Pretty CG et al. BioMed Eng OnLine 2014;13:43); default 3e-4 L/(mU·min) =
0.018 L/(mU·h).

Bergman minimal model with insulin kinetics (model ``bergman_insulin``; Bergman
RN, Ider YZ, Bowden CR, Cobelli C. Am J Physiol 1979;236:E667-77; Bergman RN,
Phillips LS, Cobelli C. J Clin Invest 1981;68:1456-67; parameter set of Fisher
ME. IEEE Trans Biomed Eng 1991;38:57-61), in the ICU form used here::

    dG/dt = −p1·(G − Gb) − X·G + (P + PN)/VG
    dX/dt = −p2·X + p2·SI·(I − Ib)          (SI = p3/p2, L/(mU·min); ×60 in L/(mU·h))
    dI/dt = −n·(I − Ib) + uex/VI             (basal secretion keeps I at Ib)

Fisher's values are kept for p2 (0.028344 1/min), n (0.0926 1/min), VI (12 L)
and Ib (15 mU/L); Fisher's p1 (0.028735 1/min), p3 (5.035e-5 L/(mU·min²), i.e.
SI = 1.78e-3 L/(mU·min)) and Gb (4.5 mmol/L) describe the subjects of Fisher's
study, not a stressed ICU patient.  For ICU
stress hyperglycaemia the defaults here are ICU adaptations (an assumption,
chosen so that glucose stays 4–12 mmol/L for insulin 0–6 U/h and enteral feed
of 60–100 g glucose/day): p1 0.01 1/min, SI 1.05e-4 L/(mU·min) (p3 ≈ 3e-6
L/(mU·min²)), Gb 7 mmol/L (the stress "basal" glucose without insulin or feed),
VG 12 L.  ``FISHER_1991`` holds the published values.

Initial states (documented basal points):

- ``bergman_insulin``: G = Gb, I = Ib, X = 0, empty gut — an exact steady state
  of the vector field without inputs.
- ``icing``: G = G0 (parameter, admission glucose), Q and I at the steady state
  of the insulin kinetics driven by endogenous secretion uen(G0) without
  exogenous insulin (solved by unrolled Newton steps, exact to rounding), empty
  gut.  G itself is at rest only when the glucose balance is closed, e.g. by a
  PN/dextrose rate VG·(pG·G0 + SI·G0·Q0/(1 + αG·Q0)) − EGP + CNS (mmol/h) when
  this is positive.

Examples
--------
>>> from medtwin.models import get_model
>>> m = get_model("icing")
>>> m.state_names, m.output_names
(('GLU', 'INS', 'P1', 'Q', 'P2'), ('G', 'I'))
>>> [(t.cmt, t.route) for t in m.dose_targets]
[(1, 'pn'), (2, 'iv_insulin'), (3, 'enteral')]
>>> b = get_model("bergman_insulin")
>>> x0 = b.init()(b.typical_values())
>>> [abs(round(float(v), 6)) for v in b.rhs()(0.0, x0, b.typical_values())]
[0.0, 0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math

from medtwin.core.model import DoseTarget, Model, Output, Parameter, State, generated_function

#: Millimoles of glucose in one gram (molar mass 180.156 g/mol).
MMOL_PER_G_GLUCOSE = 1000.0 / 180.156

CITATION_ICING = (
    "Lin J, Razak NN, Pretty CG, Le Compte A, Docherty P, Parente JD, Shaw GM, Hann CE, Chase JG. "
    "A physiological Intensive Control Insulin-Nutrition-Glucose (ICING) model validated in critically ill "
    "patients. Comput Methods Programs Biomed 2011;102(2):192-205."
)
CITATION_BERGMAN = (
    "Bergman RN, Ider YZ, Bowden CR, Cobelli C. Am J Physiol 1979;236:E667-E677; Bergman RN, Phillips LS, "
    "Cobelli C. J Clin Invest 1981;68:1456-1467; parameters: Fisher ME. IEEE Trans Biomed Eng 1991;38:57-61 "
    "(p1, p3 and Gb adapted to ICU stress hyperglycaemia, see medtwin.models.glucose)."
)

#: Fisher (1991) minimal-model parameters in their published per-minute units.
FISHER_1991 = {
    "p1": (0.028735, "1/min"),
    "p2": (0.028344, "1/min"),
    "p3": (5.035e-5, "L/(mU*min^2)"),
    "n": (0.0926, "1/min"),
    "VI": (12.0, "L"),
    "Gb": (4.5, "mmol/L"),
    "Ib": (15.0, "mU/L"),
}

_LN2 = math.log(2.0)
_INF = math.inf

GLU = State("GLU", "mmol", "plasma glucose amount in the glucose distribution volume VG")
INS = State("INS", "mU", "plasma insulin amount in the insulin distribution volume VI")
P1 = State("P1", "mmol", "stomach glucose (enteral feed enters here)")
P2 = State("P2", "mmol", "gut glucose")
Q = State("Q", "mU/L", "interstitial insulin concentration")
X = State("X", "1/h", "remote insulin action (above basal)")

TARGETS = (DoseTarget(1, "pn"), DoseTarget(2, "iv_insulin"), DoseTarget(3, "enteral"))


def _par(name, unit, value, description, lower=1e-9, upper=_INF, transform="log"):
    return Parameter(name, unit, value, lower, upper, transform, description)


def _gut():
    return (
        _par("d1", "1/h", 60.0 * _LN2 / 20.0, "stomach emptying rate (half-time 20 min)"),
        _par("d2", "1/h", 60.0 * _LN2 / 100.0, "gut absorption rate (half-time 100 min)"),
        _par("PMAX", "mmol/h", 60.0 * 6.11, "maximal gut glucose appearance rate"),
    )


ICING_PARAMETERS = (
    _par("SI", "L/(mU*h)", 60.0 * 3.0e-4, "insulin sensitivity (3e-4 L/(mU*min))", lower=1e-6, upper=1.0),
    _par("G0", "mmol/L", 8.0, "glucose at the start (admission)", lower=0.1, upper=60.0),
    _par("EGP", "mmol/h", 60.0 * 1.16, "endogenous glucose production"),
    _par("CNS", "mmol/h", 60.0 * 0.3, "insulin-independent central nervous system uptake", lower=0.0),
    _par("pG", "1/h", 60.0 * 0.006, "insulin-independent glucose clearance"),
    _par("VG", "L", 13.3, "glucose distribution volume", lower=0.1),
    _par("nK", "1/h", 60.0 * 0.0542, "renal insulin clearance", lower=0.0),
    _par("nL", "1/h", 60.0 * 0.1578, "hepatic insulin clearance", lower=0.0),
    _par("nI", "1/h", 60.0 * 0.0075, "plasma-interstitium insulin transfer rate", lower=0.0),
    _par("nC", "1/h", 60.0 * 0.0075, "interstitial insulin degradation rate", lower=0.0),
    Parameter("xL", "1", 0.67, 0.0, 1.0, "logit", "first-pass hepatic extraction of secreted insulin"),
    _par("VI", "L", 4.0, "insulin distribution volume", lower=0.1),
    _par("alphaG", "L/mU", 1.0 / 65.0, "saturation of insulin-mediated glucose uptake", lower=0.0),
    _par("alphaI", "L/mU", 1.7e-3, "saturation of hepatic insulin clearance", lower=0.0),
    *_gut(),
    Parameter("k1", "mU*L/(mmol*h)", 60.0 * 14.9, 0.0, 1e6, "identity", "endogenous secretion slope"),
    Parameter("k2", "mU/h", 60.0 * -49.9, -1e6, 1e6, "identity", "endogenous secretion intercept"),
    _par("umin", "mU/h", 60.0 * 16.7, "minimal endogenous insulin secretion", lower=0.0),
    _par("umax", "mU/h", 60.0 * 266.7, "maximal endogenous insulin secretion", lower=0.0),
)


def _icing_field(t, x, p):
    si, egp, cns, pg, vg = p[0], p[2], p[3], p[4], p[5]
    nk, nl, ni, nc, xl, vi, ag, ai = p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    d1, d2, pmax, k1, k2, umin, umax = p[14], p[15], p[16], p[17], p[18], p[19], p[20]
    g = x[0] / vg
    i = x[1] / vi
    q = x[3]
    s = k1 * g + k2
    floor = 0.5 * (s + umin + abs(s - umin))
    uen = 0.5 * (floor + umax - abs(floor - umax))
    gut = d2 * x[4]
    appearance = 0.5 * (gut + pmax - abs(gut - pmax))
    q_eff = q / (1.0 + ag * q)
    d_glu = -pg * x[0] - si * x[0] * q_eff + appearance + egp - cns
    d_ins = -nk * x[1] - nl * vi * i / (1.0 + ai * i) - ni * vi * (i - q) + (1.0 - xl) * uen
    d_p1 = -d1 * x[2]
    d_q = ni * (i - q) - nc * q_eff
    d_p2 = d1 * x[2] - appearance
    return (d_glu, d_ins, d_p1, d_q, d_p2)


def _icing_init(p):
    g0, vg = p[1], p[5]
    nk, nl, ni, nc, xl, vi, ag, ai = p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    k1, k2, umin, umax = p[17], p[18], p[19], p[20]
    s = k1 * g0 + k2
    floor = 0.5 * (s + umin + abs(s - umin))
    uen = 0.5 * (floor + umax - abs(floor - umax))
    target = (1.0 - xl) * uen / vi
    # Steady insulin kinetics: I(Q) = Q + (nC/nI)·Q/(1 + αG·Q) and
    # R(Q) = nK·I + nL·I/(1 + αI·I) + nC·Q/(1 + αG·Q) − target = 0.  R is increasing
    # and concave in Q, so Newton's method from Q = 0 climbs monotonically to the root.
    q = 0.0 * target
    for _ in range(12):
        sat_g = 1.0 + ag * q
        i = q + nc / (ni + 1e-300) * q / sat_g
        sat_i = 1.0 + ai * i
        residual = nk * i + nl * i / sat_i + nc * q / sat_g - target
        di_dq = 1.0 + nc / (ni + 1e-300) / (sat_g * sat_g)
        slope = (nk + nl / (sat_i * sat_i)) * di_dq + nc / (sat_g * sat_g)
        q = q - residual / slope
    i = q + nc / (ni + 1e-300) * q / (1.0 + ag * q)
    zero = 0.0 * q
    return (vg * g0 + zero, vi * i, zero, q, zero)


BERGMAN_PARAMETERS = (
    _par("SI", "L/(mU*h)", 60.0 * 1.05e-4, "insulin sensitivity p3/p2 (ICU 1.05e-4 L/(mU*min); Fisher 1991: 1.78e-3)",
         lower=1e-6, upper=1.0),
    _par("p1", "1/h", 60.0 * 0.01, "glucose effectiveness (ICU value; Fisher 1991: 0.028735 1/min)"),
    _par("p2", "1/h", 60.0 * 0.028344, "remote insulin action decay rate (Fisher 1991)"),
    _par("n", "1/h", 60.0 * 0.0926, "plasma insulin clearance rate (Fisher 1991)"),
    _par("Gb", "mmol/L", 7.0, "basal glucose without insulin or feed (ICU stress value)", lower=0.1, upper=60.0),
    _par("Ib", "mU/L", 15.0, "basal plasma insulin (Fisher 1991)", lower=0.0),
    _par("VG", "L", 12.0, "glucose distribution volume", lower=0.1),
    _par("VI", "L", 12.0, "insulin distribution volume (Fisher 1991)", lower=0.1),
    *_gut(),
)


def _bergman_field(t, x, p):
    si, p1, p2, n, gb, ib, vg, vi, d1, d2, pmax = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    g = x[0] / vg
    i = x[1] / vi
    action = x[3]
    gut = d2 * x[4]
    appearance = 0.5 * (gut + pmax - abs(gut - pmax))
    d_glu = -p1 * (x[0] - vg * gb) - action * x[0] + appearance
    d_ins = -n * (x[1] - vi * ib)
    d_p1 = -d1 * x[2]
    d_x = -p2 * action + p2 * si * (i - ib)
    d_p2 = d1 * x[2] - appearance
    return (d_glu, d_ins, d_p1, d_x, d_p2)


def _bergman_init(p):
    gb, ib, vg, vi = p[4], p[5], p[6], p[7]
    zero = 0.0 * gb
    return (vg * gb, vi * ib, zero, zero, zero)


def _outputs(vg_index, vi_index):
    g = generated_function(f"def glucose(x, p):\n    return x[0] / p[{vg_index}]\n", "glucose")
    i = generated_function(f"def insulin(x, p):\n    return x[1] / p[{vi_index}]\n", "insulin")
    return (
        Output("G", "mmol/L", g, "plasma glucose concentration", linear=True),
        Output("I", "mU/L", i, "plasma insulin concentration", linear=True),
    )


def icing_model() -> Model:
    """The ICING model of Lin et al. 2011 in hours, mmol and mU (see the module docstring).

    Examples
    --------
    >>> m = icing_model()
    >>> round(m.parameter("SI").value, 6), m.parameter("SI").unit
    (0.018, 'L/(mU*h)')
    >>> m.check_well_posedness().ok
    True
    """
    return Model(
        name="icing",
        description="ICING glucose-insulin-nutrition model for critically ill patients (Lin 2011), time in h",
        states=(GLU, INS, P1, Q, P2),
        parameters=ICING_PARAMETERS,
        outputs=_outputs(5, 11),
        dose_targets=TARGETS,
        vector_field=_icing_field,
        initial_state=_icing_init,
        citation=CITATION_ICING,
    )


def bergman_insulin_model() -> Model:
    """Bergman minimal model with insulin kinetics and ICING gut absorption (see the module docstring).

    Examples
    --------
    >>> m = bergman_insulin_model()
    >>> m.parameter_names[:4]
    ('SI', 'p1', 'p2', 'n')
    >>> m.check_well_posedness().ok
    True
    """
    return Model(
        name="bergman_insulin",
        description="Bergman minimal model with insulin kinetics (Fisher 1991), ICU-adapted, time in h",
        states=(GLU, INS, P1, X, P2),
        parameters=BERGMAN_PARAMETERS,
        outputs=_outputs(6, 7),
        dose_targets=TARGETS,
        vector_field=_bergman_field,
        initial_state=_bergman_init,
        citation=CITATION_BERGMAN,
    )


def library_models() -> list[Model]:
    return [icing_model(), bergman_insulin_model()]
