"""Pharmacodynamic (PD) models attached to a PK model: Emax, effect compartment, indirect response.

:func:`attach_pd` returns a new :class:`~medtwin.core.model.Model` made of a base
model and a PD part driven by one of the base model's outputs (the *driver*,
by default the plasma concentration ``"C"`` in mg/L).  The base model's
functions are reused, lifted by the same ``jit`` (see
:mod:`medtwin.core.model`), so there is still one definition of the PK part.
New parameters, states and outputs are appended after the base ones: the
NONMEM compartment numbers (``CMT``) and the parameter positions of the PK part
do not change, and the dose targets stay the base model's.  Attaching is
repeatable: a model that already carries an effect compartment can receive an
indirect-response biomarker driven by ``"C"`` or by ``"CE"``.

Kinds (``EC50``/``IC50``/``SC50`` are in the driver's unit; ``E0``, ``EMAX``,
``R0`` and the outputs ``E``/``R`` in ``response_unit``):

======================  =====================================================  ===============================
kind                    PD part                                                new parameters
======================  =====================================================  ===============================
``emax``                E = E0 + EMAX·C/(EC50 + C) (no state; stays linear)    E0, EMAX, EC50
``sigmoid_emax``        E = E0 + EMAX·C^HILL/(EC50^HILL + C^HILL)              E0, EMAX, EC50, HILL
``effect_compartment``  dCE/dt = KE0·(C − CE); E = sigmoid Emax of CE          KE0, E0, EMAX, EC50, HILL
``idr1``                dR/dt = kin·(1 − IMAX·C/(IC50 + C)) − KOUT·R           R0, KOUT, IMAX, IC50
``idr2``                dR/dt = kin − KOUT·(1 − IMAX·C/(IC50 + C))·R           R0, KOUT, IMAX, IC50
``idr3``                dR/dt = kin·(1 + SMAX·C/(SC50 + C)) − KOUT·R           R0, KOUT, SMAX, SC50
``idr4``                dR/dt = kin − KOUT·(1 + SMAX·C/(SC50 + C))·R           R0, KOUT, SMAX, SC50
======================  =====================================================  ===============================

with kin = R0·KOUT, so that R(0) = R0 is the drug-free steady state.  The
effect-site concentration starts at the driver's value in the base model's
initial state (0 for a drug-naive PK model).  In the sigmoid forms a driver that
a solver has pushed a rounding error below zero is read as 0 (C^HILL is not
real for C < 0); ``abs`` is the only non-arithmetic operation used and it
evaluates on floats, numpy arrays, JAX tracers and in numba alike.

Examples
--------
>>> import numpy as np
>>> from medtwin import Regimen, get_model, simulate
>>> model = attach_pd(get_model("pk1_iv"), "idr3", response_unit="ng/mL")
>>> model.state_names, model.output_names
(('CENTRAL', 'R'), ('C', 'R'))
>>> model.parameter_names
('CL', 'V', 'R0', 'KOUT', 'SMAX', 'SC50')
>>> tr = simulate(model, {"R0": 10.0}, Regimen.single(500.0), [0.0, 12.0, 240.0])
>>> tr.ok, bool(tr.output("R")[0, 1] > 10.0), round(float(tr.output("R")[0, 2]), 3)
(True, True, 10.0)
>>> w2 = get_model("pk2_oral_mm_effect_idr3")
>>> w2.state_names
('DEPOT', 'CENTRAL', 'PERIPHERAL', 'CE', 'R')
"""

from __future__ import annotations

import inspect
import math
from typing import Mapping

from medtwin.core.model import Model, Output, Parameter, State
from medtwin.errors import ModelError

CITATION_EMAX = (
    "Holford NHG, Sheiner LB. Understanding the dose-effect relationship. Clin Pharmacokinet 1981;6:429-453."
)
CITATION_EFFECT = (
    "Sheiner LB, Stanski DR, Vozeh S, Miller RD, Ham J. Simultaneous modeling of pharmacokinetics and "
    "pharmacodynamics: application to d-tubocurarine. Clin Pharmacol Ther 1979;25:358-371."
)
CITATION_IDR = (
    "Dayneka NL, Garg V, Jusko WJ. Comparison of four basic models of indirect pharmacodynamic responses. "
    "J Pharmacokinet Biopharm 1993;21:457-478."
)

# Bounds of the sign-free parameters E0 and EMAX: practically unbounded, but finite so
# that ``Model.describe()`` stays valid JSON (it writes an infinite *lower* bound as
# -Infinity; only an infinite upper bound becomes null).
UNBOUNDED = 1e9

KINDS = ("emax", "sigmoid_emax", "effect_compartment", "idr1", "idr2", "idr3", "idr4")
_SUFFIX = {"effect_compartment": "effect"}

# Generic typical values (override them with ``values=``).  They suit the library's
# PK typical values (pk1_iv: CL 5 L/h, V 50 L; a 500 mg bolus gives C0 = 10 mg/L).
DEFAULTS = {
    "E0": 0.0,  # no effect without drug
    "EMAX": 1.0,  # effect expressed as a fraction of the maximal effect
    "EC50": 5.0,  # mid-range of the concentrations a typical dose produces
    "HILL": 2.0,  # moderately steep concentration-effect curve
    "KE0": 0.5,  # equilibration half-life ln2/KE0 ≈ 1.4 h
    "R0": 100.0,  # baseline biomarker level
    "KOUT": 0.1,  # response turnover half-life ln2/KOUT ≈ 6.9 h
    "IMAX": 0.9,
    "IC50": 5.0,
    "SMAX": 2.0,  # up to three-fold stimulation
    "SC50": 5.0,
}


# ------------------------------------------------------------------ arithmetic-only PD parts
def _emax(c, e0, emax, ec50):
    return e0 + emax * c / (ec50 + c)


def _sigmoid_emax(c, e0, emax, ec50, hill):
    c_pos = 0.5 * (c + abs(c))
    u = c_pos**hill
    return e0 + emax * u / (ec50**hill + u)


def _idr1(c, r, r0, kout, imax, ic50):
    return r0 * kout * (1.0 - imax * c / (ic50 + c)) - kout * r


def _idr2(c, r, r0, kout, imax, ic50):
    return r0 * kout - kout * (1.0 - imax * c / (ic50 + c)) * r


def _idr3(c, r, r0, kout, smax, sc50):
    return r0 * kout * (1.0 + smax * c / (sc50 + c)) - kout * r


def _idr4(c, r, r0, kout, smax, sc50):
    return r0 * kout - kout * (1.0 + smax * c / (sc50 + c)) * r


_IDR = {"idr1": _idr1, "idr2": _idr2, "idr3": _idr3, "idr4": _idr4}
_IDR_TEXT = {
    "idr1": "indirect response I (inhibition of production)",
    "idr2": "indirect response II (inhibition of loss)",
    "idr3": "indirect response III (stimulation of production)",
    "idr4": "indirect response IV (stimulation of loss)",
}


# ------------------------------------------------------------------ factories (one definition, lifted by jit)
class _Factory:
    """A ``build(jit)`` / ``init_build(jit)`` factory that describes itself for :meth:`Model.digest`.

    The composed functions are closures, so their source alone does not say which
    kind, driver and base model they combine.  ``repr`` gives that (with the base
    model's digest and the source of the PD formula), and ``Model.digest`` hashes
    the ``repr`` of a factory that has no source of its own.
    """

    __slots__ = ("_make", "_spec")

    def __init__(self, make, spec: str):
        self._make = make
        self._spec = spec

    def __call__(self, jit):
        return self._make(jit)

    def __repr__(self) -> str:
        return self._spec


def _source_text(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):  # no source shipped (e.g. a bytecode-only install)
        return f"{function.__module__}.{function.__qualname__}"


def _factory(make, role: str, base: Model, driver: str, indices: tuple[int, ...], *parts) -> _Factory:
    sources = "\n".join(_source_text(part) for part in (make, *parts))
    spec = (
        f"medtwin.models.pd.{role}(base={base.name}@{base.digest()}, driver={driver}, indices={indices})\n{sources}"
    )
    return _Factory(make, spec)


def _direct_effect_output(base: Model, driver: str, sigmoid: bool, ip: tuple[int, ...], name: str, unit: str,
                          description: str) -> Output:
    """Output E of a direct (sigmoid) Emax model of the base output ``driver``."""
    drive_output = base.output(driver)
    effect_function = _sigmoid_emax if sigmoid else _emax

    def build(jit):
        drive = drive_output.lifted(jit)
        effect = jit(effect_function)
        if sigmoid:
            i_e0, i_emax, i_ec50, i_hill = ip

            def sigmoid_emax_output(x, p):
                return effect(drive(x, p), p[i_e0], p[i_emax], p[i_ec50], p[i_hill])

            return sigmoid_emax_output
        i_e0, i_emax, i_ec50 = ip

        def emax_output(x, p):
            return effect(drive(x, p), p[i_e0], p[i_emax], p[i_ec50])

        return emax_output

    factory = _factory(build, "direct_effect", base, driver, ip, effect_function)
    return Output(name, unit, build=factory, description=description)


def _state_output(index: int, name: str, unit: str, description: str) -> Output:
    def state_value(x, p):
        return x[index]

    return Output(name, unit, state_value, description)


def _site_sigmoid_output(base: Model, driver: str, i_state: int, ip: tuple[int, ...], name: str, unit: str,
                         description: str) -> Output:
    """Output E = sigmoid Emax of the state ``x[i_state]`` (the effect-site concentration)."""
    i_e0, i_emax, i_ec50, i_hill = ip

    def build(jit):
        effect = jit(_sigmoid_emax)

        def effect_site_output(x, p):
            return effect(x[i_state], p[i_e0], p[i_emax], p[i_ec50], p[i_hill])

        return effect_site_output

    factory = _factory(build, "effect_site_output", base, driver, (i_state, *ip), _sigmoid_emax)
    return Output(name, unit, build=factory, description=description)


def _effect_compartment_parts(base: Model, driver: str, i_state: int, i_ke0: int):
    """(build, init_build) appending dCE/dt = KE0·(driver − CE) to the base vector field."""
    drive_output = base.output(driver)

    def build(jit):
        base_field = base.rhs(jit)
        drive = drive_output.lifted(jit)

        def effect_compartment_field(t, x, p):
            return base_field(t, x, p) + (p[i_ke0] * (drive(x, p) - x[i_state]),)

        return effect_compartment_field

    def init_build(jit):
        base_init = base.init(jit)
        drive = drive_output.lifted(jit)

        def effect_compartment_initial_state(p):
            x0 = base_init(p)
            return x0 + (drive(x0, p),)

        return effect_compartment_initial_state

    indices = (i_state, i_ke0)
    return (
        _factory(build, "effect_compartment", base, driver, indices),
        _factory(init_build, "effect_compartment_init", base, driver, indices),
    )


def _idr_parts(base: Model, driver: str, kind: str, i_state: int, ip: tuple[int, int, int, int]):
    """(build, init_build) appending an indirect-response state R with R(0) = R0."""
    drive_output = base.output(driver)
    response = _IDR[kind]
    i_r0, i_kout, i_max, i_50 = ip

    def build(jit):
        base_field = base.rhs(jit)
        drive = drive_output.lifted(jit)
        rate = jit(response)

        def indirect_response_field(t, x, p):
            d_r = rate(drive(x, p), x[i_state], p[i_r0], p[i_kout], p[i_max], p[i_50])
            return base_field(t, x, p) + (d_r,)

        return indirect_response_field

    def init_build(jit):
        base_init = base.init(jit)

        def indirect_response_initial_state(p):
            return base_init(p) + (p[i_r0],)

        return indirect_response_initial_state

    indices = (i_state, *ip)
    return (
        _factory(build, kind, base, driver, indices, response),
        _factory(init_build, f"{kind}_init", base, driver, indices),
    )


# ------------------------------------------------------------------ parameters of each kind
def _pd_parameters(kind: str, driver_unit: str, response_unit: str, driver: str) -> list[Parameter]:
    def par(name, unit, description, lower=0.0, upper=math.inf, transform="log"):
        return Parameter(name, unit, DEFAULTS[name], lower, upper, transform, description)

    big = UNBOUNDED
    e0 = par("E0", response_unit, "effect without drug (baseline)", -big, big, "identity")
    emax = par("EMAX", response_unit, "maximal drug effect (negative for an inhibitory effect)", -big, big, "identity")
    hill = par("HILL", "1", "Hill coefficient (steepness of the concentration-effect curve)", 0.01, 20.0)
    if kind == "emax":
        return [e0, emax, par("EC50", driver_unit, f"{driver} giving half the maximal effect", 1e-9)]
    if kind == "sigmoid_emax":
        return [e0, emax, par("EC50", driver_unit, f"{driver} giving half the maximal effect", 1e-9), hill]
    if kind == "effect_compartment":
        return [
            par("KE0", "1/h", f"equilibration rate constant between {driver} and the effect site", 1e-9),
            e0,
            emax,
            par("EC50", driver_unit, "effect-site concentration giving half the maximal effect", 1e-9),
            hill,
        ]
    r0 = par("R0", response_unit, "baseline response (drug-free steady state); kin = R0·KOUT")
    kout = par("KOUT", "1/h", "first-order loss rate constant of the response", 1e-9)
    if kind in ("idr1", "idr2"):
        what = "production" if kind == "idr1" else "loss"
        return [
            r0,
            kout,
            par("IMAX", "1", f"maximal fractional inhibition of {what}", 0.0, 1.0, "logit"),
            par("IC50", driver_unit, f"{driver} giving half the maximal inhibition", 1e-9),
        ]
    what = "production" if kind == "idr3" else "loss"
    return [
        r0,
        kout,
        par("SMAX", "1", f"maximal fractional stimulation of {what}"),
        par("SC50", driver_unit, f"{driver} giving half the maximal stimulation", 1e-9),
    ]


def _renamed(parameter: Parameter, name: str, value: float | None) -> Parameter:
    return Parameter(
        name, parameter.unit, parameter.value if value is None else float(value), parameter.lower,
        parameter.upper, parameter.transform, parameter.description,
    )


# ------------------------------------------------------------------ public API
def attach_pd(
    pk: Model,
    kind: str,
    *,
    driver: str = "C",
    name: str | None = None,
    prefix: str = "",
    response_unit: str = "1",
    values: Mapping[str, float] | None = None,
    description: str | None = None,
) -> Model:
    """Return ``pk`` with a PD part of ``kind`` driven by its output ``driver``.

    Parameters
    ----------
    pk : Model
        Base model (a PK model or an already composed PK/PD model).
    kind : {"emax", "sigmoid_emax", "effect_compartment", "idr1", "idr2", "idr3", "idr4"}
        PD structure (see the module docstring).
    driver : str
        Name of the base output that drives the PD part (``"C"`` mg/L by default;
        ``"CE"`` on a model that already has an effect compartment).
    name : str, optional
        Name of the new model; default ``f"{pk.name}_{suffix}"`` with the suffix
        ``effect`` for an effect compartment and the kind otherwise.
    prefix : str
        Prepended to every new parameter, state and output name, to attach the
        same kind twice (e.g. two biomarkers) or to avoid a name collision.
    response_unit : str
        Unit of E0, EMAX, R0 and of the outputs ``E`` / ``R`` (default ``"1"``).
    values : mapping, optional
        Typical values of the new parameters, by their unprefixed names
        (e.g. ``{"EC50": 2.0}``); the others take :data:`DEFAULTS`.
    description : str, optional
        One sentence on the new model (default: base description + PD part).

    Returns
    -------
    Model
        Parameters, states and outputs of ``pk`` followed by the PD ones; the same
        dose targets.  ``emax``/``sigmoid_emax`` keep ``pk``'s linear matrix.

    Raises
    ------
    ModelError
        Unknown kind or driver, or a new name that already exists in ``pk``.

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> m = attach_pd(get_model("pk1_iv"), "effect_compartment")
    >>> m.name, m.state_names, m.output_names
    ('pk1_iv_effect', ('CENTRAL', 'CE'), ('C', 'CE', 'E'))
    >>> attach_pd(m, "idr3", driver="CE").parameter_names
    ('CL', 'V', 'KE0', 'E0', 'EMAX', 'EC50', 'HILL', 'R0', 'KOUT', 'SMAX', 'SC50')
    """
    if kind not in KINDS:
        raise ModelError(f"attach_pd: unknown PD kind {kind!r}; choose one of {list(KINDS)}")
    if driver not in pk.output_names:
        raise ModelError(
            f"attach_pd({pk.name!r}, {kind!r}): the driver must be an output of {pk.name}; "
            f"{driver!r} is not one of {list(pk.output_names)}"
        )
    driver_unit = pk.output(driver).unit
    template = _pd_parameters(kind, driver_unit, response_unit, driver)
    values = dict(values or {})
    unknown = set(values) - {p.name for p in template}
    if unknown:
        raise ModelError(
            f"attach_pd({pk.name!r}, {kind!r}): values given for unknown PD parameter(s) {sorted(unknown)}; "
            f"the {kind} parameters are {[p.name for p in template]} (give them without the prefix)"
        )
    try:
        new_params = [_renamed(p, prefix + p.name, values.get(p.name)) for p in template]
    except ModelError as exc:
        raise ModelError(f"attach_pd({pk.name!r}, {kind!r}): {exc}") from None

    n_par, n_x = len(pk.parameters), pk.n_states
    ip = tuple(range(n_par, n_par + len(new_params)))
    new_states: list[State] = []
    new_outputs: list[Output] = []
    build = init_build = None
    if kind in ("emax", "sigmoid_emax"):
        curve = "sigmoid Emax" if kind == "sigmoid_emax" else "Emax"
        new_outputs.append(
            _direct_effect_output(pk, driver, kind == "sigmoid_emax", ip, prefix + "E", response_unit,
                                  f"direct {curve} effect of {driver}")
        )
        pd_text = f"direct {curve} effect of {driver}"
        pd_citation = CITATION_EMAX
    elif kind == "effect_compartment":
        ce_name = prefix + "CE"
        new_states.append(State(ce_name, driver_unit, f"effect-site concentration (equilibrates with {driver})"))
        new_outputs.append(_state_output(n_x, ce_name, driver_unit, "effect-site concentration"))
        new_outputs.append(
            _site_sigmoid_output(pk, driver, n_x, ip[1:], prefix + "E", response_unit,
                                 f"sigmoid Emax effect of {ce_name}")
        )
        build, init_build = _effect_compartment_parts(pk, driver, n_x, ip[0])
        pd_text = f"effect compartment driven by {driver} with a sigmoid Emax effect"
        pd_citation = f"{CITATION_EFFECT} {CITATION_EMAX}"
    else:
        r_name = prefix + "R"
        new_states.append(State(r_name, response_unit, f"{_IDR_TEXT[kind]} response driven by {driver}"))
        new_outputs.append(_state_output(n_x, r_name, response_unit, f"{_IDR_TEXT[kind]} response"))
        build, init_build = _idr_parts(pk, driver, kind, n_x, ip)
        pd_text = f"{_IDR_TEXT[kind]} driven by {driver}"
        pd_citation = CITATION_IDR

    clashes = []
    for what, old, new in (
        ("parameter", pk.parameter_names, [p.name for p in new_params]),
        ("state", pk.state_names, [s.name for s in new_states]),
        ("output", pk.output_names, [o.name for o in new_outputs]),
    ):
        taken = sorted(set(old) & set(new))
        if taken:
            clashes.append(f"{what} name(s) {taken}")
    if clashes:
        raise ModelError(
            f"attach_pd({pk.name!r}, {kind!r}, prefix={prefix!r}): the PD part's {' and '.join(clashes)} already "
            f"exist in model {pk.name}; pass a prefix (e.g. prefix='PD2_') to rename the new parameters, states "
            f"and outputs"
        )

    suffix = _SUFFIX.get(kind, kind)
    common = dict(
        name=name or f"{pk.name}_{prefix.lower()}{suffix}",
        description=description or f"{pk.description}; {pd_text}",
        states=pk.states + tuple(new_states),
        parameters=pk.parameters + tuple(new_params),
        outputs=pk.outputs + tuple(new_outputs),
        dose_targets=pk.dose_targets,
        covariate_model=pk.covariate_model,
        covariates=pk.covariates,
        covariate_units=dict(pk.covariate_units),
        citation="; ".join(c for c in (pk.citation, pd_citation) if c),
    )
    if build is None:  # direct effect: the base dynamics, unchanged (and still linear when it was)
        return Model(
            vector_field=pk.vector_field, build=pk.build, linear_matrix=pk.linear_matrix,
            initial_state=pk.initial_state, init_build=pk.init_build, **common,
        )
    return Model(build=build, init_build=init_build, **common)


# ------------------------------------------------------------------ the library
# The cohort benchmark's W2 model: pk2_oral_mm (KA 1/h, VMAX 50 mg/h, KM 5 mg/L, V1 30 L,
# Q 8 L/h, V2 40 L) → effect compartment with a sigmoid Emax → IDR III driven by CE.
W2_EFFECT = {
    "KE0": 0.5,  # effect-site equilibration half-life ≈ 1.4 h: visible hysteresis behind C at KA = 1/h
    "E0": 0.0,  # effect as a fraction of the maximal effect
    "EMAX": 1.0,
    "EC50": 5.0,  # = KM: the PD curve is steepest where elimination saturates
    "HILL": 2.0,  # moderately steep, a common estimate for sigmoid Emax fits
}
W2_IDR = {
    "R0": 100.0,  # baseline biomarker level (arbitrary units, e.g. % of normal)
    "KOUT": 0.05,  # turnover half-life ≈ 14 h, slower than PK and effect site (a delayed biomarker)
    "SMAX": 2.0,  # production at most three-fold baseline
    "SC50": 5.0,  # same potency as the direct effect (EC50)
}


def library_models() -> list[Model]:
    """The named PK/PD combinations of the library (picked up by :func:`medtwin.models.get_model`)."""
    from medtwin.models.pk import pk_models

    base = {m.name: m for m in pk_models()}
    pk1 = base["pk1_iv"]
    models = [
        attach_pd(pk1, "emax"),
        attach_pd(pk1, "sigmoid_emax"),
        attach_pd(pk1, "effect_compartment"),
        *(attach_pd(pk1, f"idr{k}") for k in (1, 2, 3, 4)),
        attach_pd(base["pk2_oral"], "effect_compartment"),
    ]
    w2_effect = attach_pd(base["pk2_oral_mm"], "effect_compartment", values=W2_EFFECT)
    models.append(
        attach_pd(
            w2_effect, "idr3", driver="CE", name="pk2_oral_mm_effect_idr3", values=W2_IDR,
            description="W2: 2-compartment oral PK with Michaelis–Menten elimination, an effect compartment "
            "with a sigmoid Emax effect, and an indirect-response (III) biomarker driven by the effect site",
        )
    )
    return models
