"""Pharmacokinetic compartment models (NONMEM ADVAN numbering of compartments).

Linear models give their system matrix ``A(p)`` (``linear_matrix``), which
yields both the vector field f = A x and the exact matrix-exponential solution.
Units: amounts mg, volumes L, clearances L/h, rate constants 1/h, time h.

Parameter naming follows common usage: ``V1`` central and ``V2`` (``V3``)
peripheral volumes, ``Q`` (``Q2``, ``Q3``) inter-compartmental clearances.  Oral
models carry ``F1`` (bioavailability) and ``ALAG1`` (lag time, h) for the depot.
"""

from __future__ import annotations

from medtwin.core.model import DoseTarget, Model, Output, Parameter, State, generated_function

CITATION_PK = "Gabrielsson J, Weiner D. Pharmacokinetic and Pharmacodynamic Data Analysis, 5th ed. 2016; NONMEM Users Guide VI (ADVAN1-4, 11, 12)."


def _p(name, unit, value, description, lower=0.0, upper=float("inf"), transform="log"):
    return Parameter(name, unit, value, lower, upper, transform, description)


CL = _p("CL", "L/h", 5.0, "clearance", lower=1e-6)
V = _p("V", "L", 50.0, "volume of distribution", lower=1e-6)
V1 = _p("V1", "L", 30.0, "central volume", lower=1e-6)
V2 = _p("V2", "L", 40.0, "peripheral volume", lower=1e-6)
Q = _p("Q", "L/h", 8.0, "inter-compartmental clearance", lower=0.0)
Q2 = _p("Q2", "L/h", 8.0, "inter-compartmental clearance to peripheral 1", lower=0.0)
Q3 = _p("Q3", "L/h", 2.0, "inter-compartmental clearance to peripheral 2", lower=0.0)
V3 = _p("V3", "L", 100.0, "second peripheral volume", lower=1e-6)
KA = _p("KA", "1/h", 1.0, "first-order absorption rate constant", lower=1e-6)
F1 = _p("F1", "1", 1.0, "bioavailability of the depot dose", lower=0.0, upper=1.0, transform="logit")
ALAG1 = _p("ALAG1", "h", 0.0, "absorption lag time", lower=0.0, upper=48.0, transform="identity")
VMAX = _p("VMAX", "mg/h", 50.0, "maximum elimination rate", lower=1e-6)
KM = _p("KM", "mg/L", 5.0, "Michaelis constant", lower=1e-6)
MTT = _p("MTT", "h", 2.0, "mean transit time", lower=1e-6)

DEPOT = State("DEPOT", "mg", "absorption depot (gut)")
CENTRAL = State("CENTRAL", "mg", "central compartment")
PERIPHERAL = State("PERIPHERAL", "mg", "peripheral compartment")
PERIPHERAL2 = State("PERIPHERAL2", "mg", "second peripheral compartment")

ORAL = DoseTarget(1, "oral", bioavailability="F1", lag="ALAG1")


def _conc(index, volume_index):
    """Output C = amount in state ``index`` / volume parameter ``volume_index`` (mg/L)."""
    source = f"def concentration(x, p):\n    return x[{index}] / p[{volume_index}]\n"
    return Output("C", "mg/L", generated_function(source, "concentration"), "concentration in the central compartment", linear=True)


# ---------------------------------------------------------------- linear models
def _a_pk1_iv(p):
    cl, v = p[0], p[1]
    return ((-cl / v,),)


def _a_pk1_oral(p):
    ka, cl, v = p[0], p[1], p[2]
    return ((-ka, 0.0), (ka, -cl / v))


def _a_pk2_iv(p):
    cl, v1, q, v2 = p[0], p[1], p[2], p[3]
    return ((-(cl + q) / v1, q / v2), (q / v1, -q / v2))


def _a_pk2_oral(p):
    ka, cl, v1, q, v2 = p[0], p[1], p[2], p[3], p[4]
    return ((-ka, 0.0, 0.0), (ka, -(cl + q) / v1, q / v2), (0.0, q / v1, -q / v2))


def _a_pk3_iv(p):
    cl, v1, q2, v2, q3, v3 = p[0], p[1], p[2], p[3], p[4], p[5]
    return (
        (-(cl + q2 + q3) / v1, q2 / v2, q3 / v3),
        (q2 / v1, -q2 / v2, 0.0),
        (q3 / v1, 0.0, -q3 / v3),
    )


def _a_pk3_oral(p):
    ka, cl, v1, q2, v2, q3, v3 = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    return (
        (-ka, 0.0, 0.0, 0.0),
        (ka, -(cl + q2 + q3) / v1, q2 / v2, q3 / v3),
        (0.0, q2 / v1, -q2 / v2, 0.0),
        (0.0, q3 / v1, 0.0, -q3 / v3),
    )


# ---------------------------------------------------------------- Michaelis–Menten
def _f_pk1_iv_mm(t, x, p):
    vmax, km, v = p[0], p[1], p[2]
    c = x[0] / v
    return (-vmax * c / (km + c),)


def _f_pk1_oral_mm(t, x, p):
    ka, vmax, km, v = p[0], p[1], p[2], p[3]
    c = x[1] / v
    return (-ka * x[0], ka * x[0] - vmax * c / (km + c))


def _f_pk2_iv_mm(t, x, p):
    vmax, km, v1, q, v2 = p[0], p[1], p[2], p[3], p[4]
    c = x[0] / v1
    exchange = q * c - q * x[1] / v2
    return (-vmax * c / (km + c) - exchange, exchange)


def _f_pk2_oral_mm(t, x, p):
    ka, vmax, km, v1, q, v2 = p[0], p[1], p[2], p[3], p[4], p[5]
    c = x[1] / v1
    exchange = q * c - q * x[2] / v2
    return (-ka * x[0], ka * x[0] - vmax * c / (km + c) - exchange, exchange)


def _mm_doc(route, cmt):
    return f"{cmt}-compartment {route} PK with Michaelis–Menten elimination VMAX·C/(KM + C)"


def _linear(name, description, states, params, matrix, targets, conc_state, volume_param):
    return Model(
        name=name,
        description=description,
        states=states,
        parameters=params,
        outputs=(_conc(conc_state, [p.name for p in params].index(volume_param)),),
        dose_targets=targets,
        linear_matrix=matrix,
        citation=CITATION_PK,
    )


def _nonlinear(name, description, states, params, field, targets, conc_state, volume_param):
    return Model(
        name=name,
        description=description,
        states=states,
        parameters=params,
        outputs=(_conc(conc_state, [p.name for p in params].index(volume_param)),),
        dose_targets=targets,
        vector_field=field,
        citation=CITATION_PK,
    )


def transit_model(n_transit: int = 3) -> Model:
    """One-compartment oral PK with ``n_transit`` transit compartments before the depot.

    The dose enters TRANSIT1; each transit compartment empties with
    k_tr = (n + 1)/MTT into the next, the last into DEPOT, which is absorbed with
    KA (Savic RM et al., J Pharmacokinet Pharmacodyn 2007;34:711-26).

    Examples
    --------
    >>> transit_model(2).state_names
    ('TRANSIT1', 'TRANSIT2', 'DEPOT', 'CENTRAL')
    """
    if n_transit < 1:
        raise ValueError("n_transit must be >= 1")
    n = n_transit
    size = n + 2
    rows = []
    for i in range(size):
        row = ["0.0"] * size
        if i < n:
            row[i] = "-ktr"
            if i > 0:
                row[i - 1] = "ktr"
        elif i == n:
            row[n - 1] = "ktr"
            row[n] = "-ka"
        else:
            row[n] = "ka"
            row[n + 1] = "-cl / v"
        rows.append("(" + ", ".join(row) + ",)")
    source = (
        "def transit_matrix(p):\n"
        "    mtt, ka, cl, v = p[0], p[1], p[2], p[3]\n"
        f"    ktr = {n + 1}.0 / mtt\n"
        f"    return ({', '.join(rows)},)\n"
    )
    states = tuple(State(f"TRANSIT{i + 1}", "mg", f"transit compartment {i + 1}") for i in range(n)) + (
        DEPOT,
        CENTRAL,
    )
    return Model(
        name=f"pk1_oral_transit{n}" if n != 3 else "pk1_oral_transit",
        description=f"1-compartment oral PK with {n} transit compartments (Savic 2007)",
        states=states,
        parameters=(MTT, KA, CL, V, F1, ALAG1),
        outputs=(_conc(n + 1, 3),),
        dose_targets=(ORAL, DoseTarget(n + 2, "iv")),
        linear_matrix=generated_function(source, "transit_matrix"),
        citation="Savic RM, Jonker DM, Kerbusch T, Karlsson MO. J Pharmacokinet Pharmacodyn 2007;34:711-726.",
    )


def pk_models() -> list[Model]:
    """Every PK model of the library."""
    iv1 = DoseTarget(1, "iv")
    oral_iv2 = DoseTarget(2, "iv")
    return [
        _linear("pk1_iv", "1-compartment IV (bolus/infusion), linear elimination", (CENTRAL,), (CL, V),
                _a_pk1_iv, (iv1,), 0, "V"),
        _linear("pk1_oral", "1-compartment, first-order absorption with F and lag", (DEPOT, CENTRAL),
                (KA, CL, V, F1, ALAG1), _a_pk1_oral, (ORAL, oral_iv2), 1, "V"),
        _linear("pk2_iv", "2-compartment IV (bolus/infusion), linear elimination", (CENTRAL, PERIPHERAL),
                (CL, V1, Q, V2), _a_pk2_iv, (iv1,), 0, "V1"),
        _linear("pk2_oral", "2-compartment, first-order absorption with F and lag", (DEPOT, CENTRAL, PERIPHERAL),
                (KA, CL, V1, Q, V2, F1, ALAG1), _a_pk2_oral, (ORAL, oral_iv2), 1, "V1"),
        _linear("pk3_iv", "3-compartment IV (bolus/infusion), linear elimination",
                (CENTRAL, PERIPHERAL, PERIPHERAL2), (CL, V1, Q2, V2, Q3, V3), _a_pk3_iv, (iv1,), 0, "V1"),
        _linear("pk3_oral", "3-compartment, first-order absorption with F and lag",
                (DEPOT, CENTRAL, PERIPHERAL, PERIPHERAL2), (KA, CL, V1, Q2, V2, Q3, V3, F1, ALAG1),
                _a_pk3_oral, (ORAL, oral_iv2), 1, "V1"),
        _nonlinear("pk1_iv_mm", _mm_doc("IV", 1), (CENTRAL,), (VMAX, KM, V), _f_pk1_iv_mm, (iv1,), 0, "V"),
        _nonlinear("pk1_oral_mm", _mm_doc("oral", 1), (DEPOT, CENTRAL), (KA, VMAX, KM, V, F1, ALAG1),
                   _f_pk1_oral_mm, (ORAL, oral_iv2), 1, "V"),
        _nonlinear("pk2_iv_mm", _mm_doc("IV", 2), (CENTRAL, PERIPHERAL), (VMAX, KM, V1, Q, V2),
                   _f_pk2_iv_mm, (iv1,), 0, "V1"),
        _nonlinear("pk2_oral_mm", _mm_doc("oral", 2), (DEPOT, CENTRAL, PERIPHERAL),
                   (KA, VMAX, KM, V1, Q, V2, F1, ALAG1), _f_pk2_oral_mm, (ORAL, oral_iv2), 1, "V1"),
        transit_model(3),
    ]
