"""Whole-body physiologically based pharmacokinetic (PBPK) model, flow-limited tissues.

Structure
---------
Fourteen compartments — lung, heart, brain, muscle, adipose, skin, bone, gut,
spleen, liver, kidney, a "rest of body" closing the mass and flow balances,
arterial and venous blood — plus an oral gut-lumen depot (amounts in mg)::

                 ┌──────────── lung ◄─────── venous blood ◄─────────────┐
                 ▼                                ▲  ▲  ▲               │
          arterial blood ──► heart, brain, muscle, adipose, skin, bone, │
                 │           kidney (renal CLR), rest ──────────────────┘
                 ├──► gut ◄── gut lumen (KA, F1, ALAG1)   ┐
                 ├──► spleen                              ├─ portal vein ─► liver ──► venous blood
                 └──► liver (hepatic artery) ◄────────────┘               (CLint, well-stirred)

Every tissue T is *flow limited* (perfusion-rate limited, well stirred): the
tissue is in instantaneous equilibrium with the blood leaving it, so with the
tissue:plasma partition coefficient ``Kp_T`` and the blood:plasma ratio ``BP``

    C_T = A_T / V_T                  (tissue concentration, mg/L)
    C_out,T = C_T · BP / Kp_T        (blood concentration leaving T; C_T / Kp_T is its plasma concentration)
    dA_T/dt = Q_T · (C_art − C_out,T)

with ``C_art = A_ART / V_art`` the arterial blood concentration.  The lung sits
in series and receives the whole cardiac output CO from venous blood
(``dA_LUNG/dt = CO · (C_ven − C_out,LUNG)``) and sends it to arterial blood
(``dA_ART/dt = CO · (C_out,LUNG − C_art)``).  Venous blood collects every
tissue outflow except gut and spleen, which drain through the portal vein into
the liver; the liver's outflow is therefore Q_H = Q_ha + Q_gut + Q_spleen
(hepatic artery plus portal flow), and ``dA_VEN/dt = Σ_T Q_T·C_out,T + Q_H·C_out,LIVER − CO·C_ven``.
The flows close: Σ (systemic tissue flows) = CO, so venous return equals cardiac output.

Hepatic clearance — the well-stirred model (Rowland M, Benet LZ, Graham GG.
J Pharmacokinet Biopharm 1973;1:123-136; Pang KS, Rowland M. J Pharmacokinet
Biopharm 1977;5:625-653).  The unbound concentration in the liver equals the
unbound plasma concentration of the emergent (hepatic-vein) blood,
``fu · C_out,LIVER / BP``, and the unbound intrinsic clearance CLint (L/h) acts on it:

    elimination_H = CLint · fu · C_out,LIVER / BP  =  fu · CLint · A_LIVER / (V_LIVER · Kp_LIVER)

At steady state with hepatic inflow blood concentration C_in this gives
C_out = Q_H·C_in / (Q_H + fu·CLint/BP), the extraction ratio
E_H = (fu·CLint/BP) / (Q_H + fu·CLint/BP), the blood clearance Q_H·E_H and the
*plasma* clearance (blood clearance × BP)

    CL_H = Q_H · fu · CLint / (Q_H + fu · CLint / BP)                         (L/h, plasma)

Renal clearance CLR (L/h) is a *plasma* clearance acting on the arterial plasma
that perfuses the kidney (e.g. glomerular filtration, CLR = fu · GFR), and the
filtered drug leaves the kidney compartment:

    elimination_R = CLR · C_art / BP

It is physical (kidney amount stays ≥ 0) while CLR ≤ BP · Q_kidney, i.e. a renal
blood extraction ratio ≤ 1; the model does not enforce this.  With these two
definitions the total plasma clearance at steady state (input into venous blood,
where C_art = C_ven) is exactly CL = CL_H + CLR (see :func:`clearance`).

Oral doses enter the gut lumen (CMT 1) and are absorbed with first-order KA
into the gut tissue, hence into the portal vein and through the liver (hepatic
first pass F_H = 1 − E_H).  ``F1`` is the fraction of the dose reaching the gut
tissue (F_a · F_G; gut-wall metabolism is not modelled separately) and
``ALAG1`` the absorption lag.  Oral bioavailability is F = F1 · F_H.

Equilibrium without elimination (CLint = CLR = 0): every outflow concentration
equals C_art and C_ven = C_art, so A_T = V_T · Kp_T · C_p and the blood holds
V_blood · BP · C_p, giving

    Vss = BP · V_blood + Σ_T Kp_T · V_T ,   C_p,eq = Dose / Vss              (see :func:`steady_state_volume`)

Reference physiology (adult male)
---------------------------------
ICRP Publication 89 (2002): Basic anatomical and physiological data for use in
radiological protection: reference values.  Valentin J, ed.  Ann ICRP
2002;32(3-4).  Organ masses: Table 2.8 (reference adult male, 73 kg); blood
flows: Table 2.40 (distribution of cardiac output, adult male, cardiac output
6.5 L/min = 390 L/h); total blood volume 5.3 L (adult male).  Tissue volumes
are the masses at unit density (1 kg/L), a common PBPK simplification.

=========  ==========================================================  ======  ====== ========
tissue     ICRP 89 entry (adult male)                                  V (L)   Q %CO  Kp (drug)
=========  ==========================================================  ======  ====== ========
lung       lungs, tissue without blood                                 0.50    100 †  0.83
heart      heart, tissue only (coronary flow)                          0.33    4.0    1.95
brain      brain                                                       1.45    12.0   7.35
muscle     skeletal muscle                                             29.0    17.0   2.94
adipose    adipose tissue                                              18.2    5.0    9.89
skin       skin                                                        3.30    5.0    4.0 ‡
bone       skeleton (total)                                            10.5    5.0    7.91
gut        GI-tract walls (oesophagus 0.04, stomach 0.15, small        1.35    16.0   5.82
           intestine 0.65, colon 0.37) + pancreas 0.14; flow: stomach
           & oesophagus 1 + small intestine 10 + large intestine 4 +
           pancreas 1 (all drain into the portal vein)
spleen     spleen                                                      0.15    3.0    2.96
liver      liver; flow = hepatic artery (total liver 25.5 % with the   1.80    6.5    4.66
           portal 19 %: gut 16 + spleen 3)
kidney     kidneys                                                     0.31    19.0   2.90
rest       closure: 73 kg − Σ above − blood; 100 % − Σ flows (thyroid,  0.81    7.5    4.0
           lymph nodes, adrenals, bronchial, gonads, ...)
blood      total blood 5.3 L: arterial 1/3, venous 2/3 §               5.30    —      (BP)
=========  ==========================================================  ======  ====== ========

† the lung receives the whole cardiac output in series; its bronchial (nutrient)
flow is part of "rest".  ‡ no predicted value in the drug source; set to the
source's rule for unlisted tissues (mean of the non-adipose Kp, 4.0).
§ a modelling convention, not an ICRP value; it only shapes the first minutes
after a dose (it changes neither Vss nor any clearance).

The explicit tissues and blood account for 72.19 of 73 kg (98.9 %) and for
92.5 % of cardiac output; the "rest" compartment closes both balances exactly.

Body-weight scaling (per patient, inside the vector field): V_T = V_T,ref · BW/73
and CO = 390 L/h · (BW/73)^0.75 with fixed flow fractions.  This is an adult
approximation (ICRP 89 gives different proportions for children): use it for
adults, roughly 40–150 kg.

Illustrative drug (typical values of :data:`pbpk_whole_body`)
-------------------------------------------------------------
A voriconazole-like moderately lipophilic, essentially neutral drug (logP 2.56,
fu = 0.42, BP = 1).  Kp values: Poulin & Theil predictions (Poulin P, Theil FP.
J Pharm Sci 2002;91:1358-1370) as used for voriconazole by Elmokadem A, Riggs MM,
Baron KT. CPT Pharmacometrics Syst Pharmacol 2019;8:883-893 (muscle Kp optimised
there).  CLint = 19.8 L/h is the linear (low-concentration) in-vitro intrinsic
clearance scaled to the liver as in that paper: Vmax/Km = 40 pmol/min/mg / 9.3 µM
(Yanni SB et al. Drug Metab Dispos 2010;38:25-31) × 30.3 mg microsomal protein/g
× 1800 g liver / fu,mic 0.711; CLR = 0.096 L/h (Zane NR, Thakker DR. Clin
Pharmacokinet 2014;53:1171-1182); KA = 1 /h and F1 = 1 are generic.
This is an *illustrative* linear parameter set, not a validated voriconazole model
(voriconazole elimination is saturable and CYP2C19 polymorphic).

The model is linear in the amounts, so it carries its system matrix and the
default solver is the exact matrix exponential (the lung makes the system
stiff: its time constant is about 1/1000 h, which limits explicit steps).  The
vector field and the matrix are generated from one declarative list of
first-order fluxes (:data:`FLUXES`), so there is one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from medtwin.core.model import DoseTarget, Model, Output, Parameter, State, generated_function
from medtwin.errors import ModelError

CITATION_PBPK = (
    "ICRP Publication 89 (Valentin J, ed. Ann ICRP 2002;32(3-4)), Tables 2.8 (organ masses) and 2.40 "
    "(blood flows, % of cardiac output), adult male; well-stirred liver: Rowland M, Benet LZ, Graham GG. "
    "J Pharmacokinet Biopharm 1973;1:123-136; illustrative drug: Elmokadem A, Riggs MM, Baron KT. "
    "CPT Pharmacometrics Syst Pharmacol 2019;8:883-893."
)

REFERENCE_BODY_WEIGHT = 73.0
"""kg, ICRP 89 reference adult male."""
REFERENCE_CARDIAC_OUTPUT = 390.0
"""L/h (6.5 L/min), ICRP 89 reference adult male at rest."""
ALLOMETRIC_EXPONENT = 0.75
"""Exponent of body weight for cardiac output (and hence every flow)."""
BLOOD_VOLUME = 5.3
"""L, ICRP 89 total blood volume, reference adult male."""
ARTERIAL_FRACTION = 1.0 / 3.0
"""Share of the blood volume in the arterial compartment (modelling convention)."""


@dataclass(frozen=True)
class ReferenceTissue:
    """One tissue of the reference table (73-kg ICRP 89 adult male).

    Attributes
    ----------
    key : str
        Lower-case name, used in output names (``C_liver``) and the ``kp`` mapping.
    state : str
        State name (amount in the tissue, mg); its partition coefficient is ``KP_<state>``.
    volume : float
        Tissue volume in the reference male, L (ICRP mass at 1 kg/L).
    flow_fraction : float
        Arterial blood flow as a fraction of cardiac output (the lung: 1, in series).
    kp : float
        Tissue:plasma partition coefficient of the illustrative drug.
    source : str
        What the ICRP entry covers.
    """

    key: str
    state: str
    volume: float
    flow_fraction: float
    kp: float
    source: str


_EXPLICIT = (
    ReferenceTissue("lung", "LUNG", 0.50, 1.0, 0.83, "lungs, tissue without blood; whole cardiac output in series"),
    ReferenceTissue("heart", "HEART", 0.33, 0.040, 1.95, "heart, tissue only; coronary flow"),
    ReferenceTissue("brain", "BRAIN", 1.45, 0.120, 7.35, "brain"),
    ReferenceTissue("muscle", "MUSCLE", 29.0, 0.170, 2.94, "skeletal muscle"),
    ReferenceTissue("adipose", "ADIPOSE", 18.2, 0.050, 9.89, "adipose tissue"),
    ReferenceTissue("skin", "SKIN", 3.30, 0.050, 4.0, "skin"),
    ReferenceTissue("bone", "BONE", 10.5, 0.050, 7.91, "total skeleton"),
    ReferenceTissue("gut", "GUT", 1.35, 0.160, 5.82,
                    "GI-tract walls (oesophagus, stomach, small intestine, colon) + pancreas; portal drainage"),
    ReferenceTissue("spleen", "SPLEEN", 0.15, 0.030, 2.96, "spleen; portal drainage"),
    ReferenceTissue("liver", "LIVER", 1.80, 0.065, 4.66, "liver; flow = hepatic artery (portal flow added)"),
    ReferenceTissue("kidney", "KIDNEY", 0.31, 0.190, 2.90, "kidneys"),
)

_REST_VOLUME = round(REFERENCE_BODY_WEIGHT - BLOOD_VOLUME - sum(t.volume for t in _EXPLICIT), 10)
_REST_FLOW = round(1.0 - sum(t.flow_fraction for t in _EXPLICIT[1:]), 10)

TISSUES: tuple[ReferenceTissue, ...] = _EXPLICIT + (
    ReferenceTissue("rest", "REST", _REST_VOLUME, _REST_FLOW, 4.0,
                    "closure of body weight and cardiac output (thyroid, lymph nodes, adrenals, bronchial, ...)"),
)
"""The reference table, in state order (after GUTLUMEN, VEN, ART)."""

PORTAL = ("gut", "spleen")
"""Tissues draining into the liver through the portal vein."""

STATE_NAMES = ("GUTLUMEN", "VEN", "ART") + tuple(t.state for t in TISSUES)
_S = {name: i for i, name in enumerate(STATE_NAMES)}
_TISSUE = {t.key: t for t in TISSUES}

# -------------------------------------------------------------------- parameters
_DRUG_PARAMETERS = (
    Parameter("CLINT", "L/h", 19.8, 0.0, math.inf, "log",
              "unbound hepatic intrinsic clearance (well-stirred liver)"),
    Parameter("CLR", "L/h", 0.096, 0.0, math.inf, "log",
              "renal plasma clearance acting on arterial plasma (e.g. fu·GFR)"),
    Parameter("FU", "1", 0.42, 0.0, 1.0, "logit", "fraction unbound in plasma"),
    Parameter("BP", "1", 1.0, 0.2, 50.0, "log", "blood:plasma concentration ratio"),
    Parameter("KA", "1/h", 1.0, 1e-6, math.inf, "log", "first-order absorption rate constant, lumen to gut"),
    Parameter("F1", "1", 1.0, 0.0, 1.0, "logit", "fraction of an oral dose reaching the gut tissue (Fa·Fg)"),
    Parameter("ALAG1", "h", 0.0, 0.0, 48.0, "identity", "absorption lag time"),
    Parameter("BW", "kg", 70.0, 2.0, 300.0, "log",
              "body weight: volumes scale with BW, flows with BW^0.75 (ICRP 89 adult male at 73 kg)"),
)
PARAMETER_NAMES = tuple(p.name for p in _DRUG_PARAMETERS) + tuple(f"KP_{t.state}" for t in TISSUES)
_P = {name: i for i, name in enumerate(PARAMETER_NAMES)}


def _kp_parameter(tissue: ReferenceTissue, value: float) -> Parameter:
    return Parameter(f"KP_{tissue.state}", "1", float(value), 1e-4, 1e4, "log",
                     f"{tissue.key}:plasma partition coefficient")


# -------------------------------------------------------------------- physiology (numbers)
def physiology(body_weight: float = 70.0) -> dict[str, float]:
    """Volumes (L) and blood flows (L/h) of the model at ``body_weight`` kg.

    Keys: ``V_<key>`` for every tissue, ``V_ven``, ``V_art``, ``V_blood``;
    ``Q_<key>`` for every tissue (arterial supply; the lung gets CO),
    ``Q_liver_total`` (hepatic artery + portal), ``CO`` (cardiac output).

    Examples
    --------
    >>> round(physiology(73.0)["CO"], 6)
    390.0
    >>> round(physiology(73.0)["Q_liver_total"] / 390.0, 6)
    0.255
    """
    ratio = body_weight / REFERENCE_BODY_WEIGHT
    co = REFERENCE_CARDIAC_OUTPUT * ratio ** ALLOMETRIC_EXPONENT
    out = {"CO": co, "V_blood": BLOOD_VOLUME * ratio, "V_art": BLOOD_VOLUME * ARTERIAL_FRACTION * ratio,
           "V_ven": BLOOD_VOLUME * (1.0 - ARTERIAL_FRACTION) * ratio}
    for t in TISSUES:
        out[f"V_{t.key}"] = t.volume * ratio
        out[f"Q_{t.key}"] = t.flow_fraction * co
    out["Q_liver_total"] = out["Q_liver"] + sum(out[f"Q_{k}"] for k in PORTAL)
    return out


def _values(params: Mapping[str, float] | None, model: Model | None) -> dict[str, float]:
    values = {p.name: p.value for p in (model or pbpk_whole_body).parameters}
    for name, value in dict(params or {}).items():
        if name not in values:
            raise ModelError(f"unknown PBPK parameter {name!r}; known: {list(values)}")
        values[name] = float(value)
    return values


def steady_state_volume(params: Mapping[str, float] | None = None, model: Model | None = None) -> float:
    """Vss = BP·V_blood + Σ_T Kp_T·V_T (L, referred to plasma).

    Missing parameters take the typical values of ``model`` (default :data:`pbpk_whole_body`).
    """
    v = _values(params, model)
    phys = physiology(v["BW"])
    return v["BP"] * phys["V_blood"] + sum(v[f"KP_{t.state}"] * phys[f"V_{t.key}"] for t in TISSUES)


def clearance(params: Mapping[str, float] | None = None, model: Model | None = None) -> dict[str, float]:
    """Well-stirred hepatic, renal and total plasma clearance (L/h) and the hepatic extraction.

    Returns ``CL_H`` = Q_H·fu·CLint/(Q_H + fu·CLint/BP), ``CLR``, ``CL`` = CL_H + CLR,
    ``E_H`` = (fu·CLint/BP)/(Q_H + fu·CLint/BP), ``F_H`` = 1 − E_H and ``Q_H`` (L/h).
    Missing parameters take the typical values of ``model`` (default :data:`pbpk_whole_body`).

    Examples
    --------
    >>> round(clearance({"CLINT": 0.0})["CL"], 3)  # renal only
    0.096
    """
    v = _values(params, model)
    q_h = physiology(v["BW"])["Q_liver_total"]
    k = v["FU"] * v["CLINT"] / v["BP"]
    cl_h = q_h * v["FU"] * v["CLINT"] / (q_h + k)
    e_h = k / (q_h + k)
    return {"CL_H": cl_h, "CLR": v["CLR"], "CL": cl_h + v["CLR"], "E_H": e_h, "F_H": 1.0 - e_h, "Q_H": q_h}


# -------------------------------------------------------------------- the one definition: first-order fluxes
@dataclass(frozen=True)
class Flux:
    """A first-order flux ``rate · x[source]`` (mg/h) leaving state ``sink_from`` and entering ``sink_to``.

    ``rate`` is an arithmetic expression in the names of :func:`_preamble`;
    ``sink_to`` None means eliminated.  The renal flux is driven by arterial
    blood (``source`` ART) but leaves the kidney (``sink_from`` KIDNEY).
    """

    name: str
    rate: str
    source: str
    sink_from: str
    sink_to: str | None


def _fluxes() -> tuple[Flux, ...]:
    fl = [
        Flux("absorption", "ka", "GUTLUMEN", "GUTLUMEN", "GUT"),
        Flux("ven_to_lung", "co / v_ven", "VEN", "VEN", "LUNG"),
        Flux("lung_to_art", "co * bp / (v_lung * kp_lung)", "LUNG", "LUNG", "ART"),
    ]
    for t in TISSUES[1:]:
        fl.append(Flux(f"art_to_{t.key}", f"q_{t.key} / v_art", "ART", "ART", t.state))
    for t in TISSUES[1:]:
        flow = "q_liver_total" if t.key == "liver" else f"q_{t.key}"
        to = "LIVER" if t.key in PORTAL else "VEN"
        fl.append(Flux(f"{t.key}_out", f"{flow} * bp / (v_{t.key} * kp_{t.key})", t.state, t.state, to))
    fl.append(Flux("hepatic_elimination", "fu * clint / (v_liver * kp_liver)", "LIVER", "LIVER", None))
    fl.append(Flux("renal_elimination", "clr / (bp * v_art)", "ART", "KIDNEY", None))
    return tuple(fl)


FLUXES = _fluxes()


def _preamble() -> list[str]:
    lines = [f"    {name.lower()} = p[{_P[name]}]" for name in ("CLINT", "CLR", "FU", "BP", "KA", "BW")]
    lines += [f"    kp_{t.key} = p[{_P['KP_' + t.state]}]" for t in TISSUES]
    lines.append(f"    ratio = bw / {REFERENCE_BODY_WEIGHT!r}")
    lines.append(f"    co = {REFERENCE_CARDIAC_OUTPUT!r} * ratio ** {ALLOMETRIC_EXPONENT!r}")
    lines.append(f"    v_ven = {BLOOD_VOLUME * (1.0 - ARTERIAL_FRACTION)!r} * ratio")
    lines.append(f"    v_art = {BLOOD_VOLUME * ARTERIAL_FRACTION!r} * ratio")
    lines += [f"    v_{t.key} = {t.volume!r} * ratio" for t in TISSUES]
    lines += [f"    q_{t.key} = {t.flow_fraction!r} * co" for t in TISSUES[1:]]
    lines.append("    q_liver_total = q_liver + " + " + ".join(f"q_{k}" for k in PORTAL))
    lines += [f"    k_{f.name} = {f.rate}" for f in FLUXES]
    return lines


def _register(source: str, name: str):
    """Compile generated source with its text kept for inspect/digests (see generated_function)."""
    return generated_function(source, name, {"__name__": __name__}, tag="medtwin.models.pbpk")


def _generate_vector_field():
    lines = ["def pbpk_vector_field(t, x, p):", *_preamble()]
    plus: dict[str, list[str]] = {s: [] for s in STATE_NAMES}
    minus: dict[str, list[str]] = {s: [] for s in STATE_NAMES}
    for f in FLUXES:
        lines.append(f"    r_{f.name} = k_{f.name} * x[{_S[f.source]}]")
        minus[f.sink_from].append(f"r_{f.name}")
        if f.sink_to is not None:
            plus[f.sink_to].append(f"r_{f.name}")
    rows = []
    for s in STATE_NAMES:
        expr = " + ".join(plus[s]) if plus[s] else "0.0"
        if minus[s]:
            expr += " - " + " - ".join(minus[s])
        rows.append(f"        {expr},  # d{s}/dt")
    lines += ["    return (", *rows, "    )"]
    return _register("\n".join(lines) + "\n", "pbpk_vector_field")


def _generate_matrix():
    n = len(STATE_NAMES)
    cells: dict[tuple[int, int], list[str]] = {}
    for f in FLUXES:
        j = _S[f.source]
        cells.setdefault((_S[f.sink_from], j), []).append(f"- k_{f.name}")
        if f.sink_to is not None:
            cells.setdefault((_S[f.sink_to], j), []).append(f"+ k_{f.name}")
    lines = ["def pbpk_matrix(p):", *_preamble(), "    return ("]
    for i in range(n):
        entries = []
        for j in range(n):
            terms = cells.get((i, j))
            entries.append(f"({' '.join(terms)})" if terms else "0.0")
        lines.append(f"        ({', '.join(entries)}),  # d{STATE_NAMES[i]}/dt")
    lines.append("    )")
    return _register("\n".join(lines) + "\n", "pbpk_matrix")


def _generate_output(name: str, state: str, volume_expr: str, per_plasma: bool):
    fn = f"pbpk_output_{name.lower()}"
    denominator = f"({volume_expr} * (p[{_P['BW']}] / {REFERENCE_BODY_WEIGHT!r}))"
    if per_plasma:
        denominator = f"({denominator} * p[{_P['BP']}])"
    source = f"def {fn}(x, p):\n    return x[{_S[state]}] / {denominator}\n"
    return _register(source, fn)


_FIELD = _generate_vector_field()
_MATRIX = _generate_matrix()
_V_VEN_REF = repr(BLOOD_VOLUME * (1.0 - ARTERIAL_FRACTION))
_OUTPUTS = (
    Output("C", "mg/L", _generate_output("C", "VEN", _V_VEN_REF, True),
           "venous plasma concentration (venous blood concentration / BP)"),
    Output("C_blood", "mg/L", _generate_output("C_blood", "VEN", _V_VEN_REF, False), "venous blood concentration"),
) + tuple(
    Output(f"C_{t.key}", "mg/L", _generate_output(f"C_{t.key}", t.state, repr(t.volume), False),
           f"{t.key} tissue concentration (A/V)")
    for t in TISSUES
)

_STATES = (
    State("GUTLUMEN", "mg", "oral depot: gut lumen, absorbed with KA into the gut tissue"),
    State("VEN", "mg", "venous blood (IV doses)"),
    State("ART", "mg", "arterial blood"),
) + tuple(State(t.state, "mg", f"{t.key} tissue ({t.source})") for t in TISSUES)

IV = DoseTarget(_S["VEN"] + 1, "iv")
ORAL = DoseTarget(_S["GUTLUMEN"] + 1, "oral", bioavailability="F1", lag="ALAG1")


def pbpk_model(
    body_weight: float = 70.0,
    kp: Mapping[str, float] | None = None,
    *,
    clint: float = 19.8,
    clr: float = 0.096,
    fu: float = 0.42,
    bp: float = 1.0,
    ka: float = 1.0,
    f1: float = 1.0,
    alag1: float = 0.0,
    name: str = "pbpk_whole_body",
) -> Model:
    """The whole-body PBPK model with the given typical values.

    Parameters
    ----------
    body_weight : float
        Typical body weight BW, kg (a parameter: each patient may have its own).
    kp : mapping, optional
        Partition coefficients by tissue key (``"liver"``) or parameter name
        (``"KP_LIVER"``); missing tissues keep the illustrative values.
    clint, clr : float
        Unbound hepatic intrinsic clearance and renal plasma clearance, L/h.
    fu, bp : float
        Fraction unbound in plasma and blood:plasma ratio.
    ka, f1, alag1 : float
        Absorption rate constant (1/h), oral fraction reaching the gut tissue, lag (h).
    name : str
        Model name.

    Returns
    -------
    Model
        States in :data:`STATE_NAMES` order (CMT 1 gut lumen, CMT 2 venous blood);
        the default dose target is IV into venous blood (CMT 2), the oral target is
        the gut lumen (CMT 1, with F1 and ALAG1).

    Examples
    --------
    >>> m = pbpk_model(80.0, kp={"adipose": 12.0})
    >>> m.parameter("BW").value, m.parameter("KP_ADIPOSE").value, m.default_cmt
    (80.0, 12.0, 2)
    """
    kp_values = {t.key: t.kp for t in TISSUES}
    for key, value in dict(kp or {}).items():
        k = key.lower()
        if k.startswith("kp_"):
            k = k[3:]
        if k not in kp_values:
            raise ModelError(f"unknown PBPK tissue {key!r}; tissues: {list(kp_values)}")
        kp_values[k] = float(value)
    typical = {"CLINT": clint, "CLR": clr, "FU": fu, "BP": bp, "KA": ka, "F1": f1, "ALAG1": alag1,
               "BW": body_weight}
    drug = tuple(Parameter(p.name, p.unit, float(typical[p.name]), p.lower, p.upper, p.transform, p.description)
                 for p in _DRUG_PARAMETERS)
    parameters = drug + tuple(_kp_parameter(t, kp_values[t.key]) for t in TISSUES)
    return Model(
        name=name,
        description="whole-body flow-limited PBPK (12 tissues incl. rest of body, arterial and venous blood, "
                    "gut lumen), well-stirred liver, renal plasma clearance, ICRP 89 adult male physiology "
                    "scaled by body weight",
        states=_STATES,
        parameters=parameters,
        outputs=_OUTPUTS,
        dose_targets=(IV, ORAL),
        vector_field=_FIELD,
        linear_matrix=_MATRIX,
        citation=CITATION_PBPK,
    )


pbpk_whole_body = pbpk_model()
"""The library instance: 70-kg adult, illustrative voriconazole-like drug (see the module docstring)."""


def library_models() -> list[Model]:
    """The PBPK models of the library."""
    return [pbpk_whole_body]
