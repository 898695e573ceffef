"""The one model definition shared by simulation, estimation, filtering, control and trials.

A :class:`Model` is an immutable value.  Its vector field is a plain Python
function written with arithmetic only (``+ - * / **``) on *sequences*::

    def vector_field(t, x, p):
        depot, central = x[0], x[1]
        ka, cl, v = p[0], p[1], p[2]
        return (-ka * depot, ka * depot - cl / v * central)

Because it uses arithmetic only, the same function runs on Python floats, on
numpy arrays with a trailing patient axis (vectorised checks), on JAX tracers
(gradients, diffrax) and, compiled by numba, inside the cohort kernels.  Models
that are built from other models (a PD model attached to a PK model) give a
*factory* ``build(jit)`` that lifts their parts with ``jit`` (identity for
numpy/JAX, ``numba.njit`` for the kernels) and returns the composed function,
so there is still exactly one definition.

Dose inputs are not part of the vector field: boluses jump a state and
zero-order infusions add a piecewise-constant rate to it, following NONMEM
semantics (see :mod:`medtwin.core.events`).  Compartment numbers (``CMT``) are
1-based state positions, as in NONMEM's ADVAN numbering.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import linecache
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np

from medtwin.errors import ModelError, ParameterError, WellPosednessError

TRANSFORMS = ("log", "logit", "identity")


def _identity(function):
    return function


@dataclass(frozen=True)
class Parameter:
    """One model parameter.

    Parameters
    ----------
    name : str
        Identifier used in datasets and parameter tables (e.g. ``"CL"``).
    unit : str
        Unit string, e.g. ``"L/h"``.
    value : float
        Typical (reference) value in ``unit``.
    lower, upper : float
        Domain bounds (inclusive for the well-posedness check).
    transform : {"log", "logit", "identity"}
        Unconstrained parametrisation used by estimators.
    description : str
        Human-readable meaning.
    """

    name: str
    unit: str
    value: float
    lower: float = 0.0
    upper: float = math.inf
    transform: str = "log"
    description: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ModelError(f"parameter name {self.name!r} is not an identifier")
        if self.transform not in TRANSFORMS:
            raise ModelError(f"parameter {self.name}: transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if not (self.lower <= self.value <= self.upper):
            raise ModelError(
                f"parameter {self.name}: typical value {self.value} outside its bounds [{self.lower}, {self.upper}]"
            )
        if self.transform == "log" and self.lower < 0:
            raise ModelError(f"parameter {self.name}: a log transform needs lower >= 0")
        if self.transform == "logit" and not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ModelError(f"parameter {self.name}: a logit transform needs finite bounds")

    def domain(self) -> tuple[float, float]:
        """Finite sampling range used by the well-posedness check (unit of the parameter)."""
        lo, hi = self.lower, self.upper
        if self.transform == "log":
            lo = max(lo, self.value / 20.0) if self.value > 0 else max(lo, 1e-6)
            hi = min(hi, self.value * 20.0) if self.value > 0 else min(hi, 1.0)
        else:
            span = abs(self.value) if self.value != 0 else 1.0
            lo = max(lo, self.value - 10 * span)
            hi = min(hi, self.value + 10 * span)
        return float(lo), float(hi)


@dataclass(frozen=True)
class State:
    """One state variable (a compartment amount, an effect-site concentration, a response)."""

    name: str
    unit: str
    description: str = ""


@dataclass(frozen=True)
class Output:
    """An observable: ``function(x, p)`` written with arithmetic only, like the vector field.

    ``linear`` declares that the output is linear in the state for fixed
    parameters (y = w(p)·x, e.g. a concentration amount/volume); the exact
    solver then reads the weights once per patient instead of calling the
    function at every time.
    """

    name: str
    unit: str
    function: Callable | None = None
    description: str = ""
    build: Callable | None = None
    linear: bool = False

    def lifted(self, jit=_identity):
        """Return the output function lifted by ``jit`` (see the module docstring)."""
        if self.build is not None:
            return jit(self.build(jit))
        return jit(self.function)


@dataclass(frozen=True)
class DoseTarget:
    """A compartment that accepts doses, with the parameters that modify them.

    Parameters
    ----------
    cmt : int
        NONMEM compartment number (1-based state position).
    route : str
        ``"oral"``, ``"iv"``, ``"sc"``...; documentation and the default route lookup.
    bioavailability : str, optional
        Name of the parameter holding F for this compartment (NONMEM ``F1``...).
    lag : str, optional
        Name of the lag-time parameter (NONMEM ``ALAG1``...), in hours.
    rate : str, optional
        Parameter giving the infusion rate when ``RATE = -1`` (NONMEM ``R1``).
    duration : str, optional
        Parameter giving the infusion duration when ``RATE = -2`` (NONMEM ``D1``).
    """

    cmt: int
    route: str
    bioavailability: str | None = None
    lag: str | None = None
    rate: str | None = None
    duration: str | None = None


@dataclass(frozen=True, eq=False)
class Model:
    """An ODE model dx/dt = f(t, x, θ) + r(t) with NONMEM dosing.

    Parameters
    ----------
    name : str
        Library identifier, e.g. ``"pk2_iv"``.
    description : str
        One sentence on what the model is.
    states : tuple of State
        Ordered states; ``CMT = k`` doses ``states[k-1]``.
    parameters : tuple of Parameter
        Ordered parameters; ``p[i]`` in the vector field is ``parameters[i]``.
    outputs : tuple of Output
        Observables; PK models expose the concentration as ``"C"``.
    dose_targets : tuple of DoseTarget
        Compartments that accept doses (the first is the default).
    vector_field : callable, optional
        ``f(t, x, p) -> tuple`` with arithmetic only.  Required unless ``build`` or
        ``linear_matrix`` is given.
    build : callable, optional
        Factory ``build(jit) -> f`` for composed models.
    linear_matrix : callable, optional
        ``A(p) -> tuple of row tuples`` for linear models, f = A x.  Enables the exact
        (matrix-exponential) solver; the vector field is derived from it when absent.
    initial_state : callable, optional
        ``x0(p) -> tuple``; zeros when absent.  A reset (EVID 3/4) returns here.
    init_build : callable, optional
        Factory ``init_build(jit) -> x0`` for composed models.
    covariate_model : callable, optional
        ``(typical: dict[str, array], covariates: dict[str, array]) -> dict`` giving the
        covariate-adjusted typical values (allometry, renal function ...).
    covariates : tuple of str
        Covariate names the covariate model needs, with units in ``covariate_units``.
    covariate_ranges : mapping, optional
        Covariate -> ``(low, high)`` in its unit: the (physiological) values the covariate model is declared
        valid for; :meth:`typical_parameters` refuses a value outside, naming the covariate.
    citation : str
        Literature source of the structure and values.

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> m = get_model("pk1_iv")
    >>> m.parameter_names
    ('CL', 'V')
    >>> m.rhs()(0.0, (10.0,), (2.0, 20.0))
    (-1.0,)
    """

    name: str
    description: str
    states: tuple[State, ...]
    parameters: tuple[Parameter, ...]
    outputs: tuple[Output, ...]
    dose_targets: tuple[DoseTarget, ...]
    vector_field: Callable | None = None
    build: Callable | None = None
    linear_matrix: Callable | None = None
    initial_state: Callable | None = None
    init_build: Callable | None = None
    covariate_model: Callable | None = None
    covariates: tuple[str, ...] = ()
    covariate_units: Mapping[str, str] = field(default_factory=dict)
    covariate_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    citation: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "covariate_ranges", checked_covariate_ranges(self.covariate_ranges, ModelError))
        for kind, items in (("state", self.states), ("parameter", self.parameters), ("output", self.outputs)):
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                raise ModelError(f"model {self.name}: duplicate {kind} names in {names}")
        if not self.states:
            raise ModelError(f"model {self.name}: needs at least one state")
        if self.vector_field is None and self.build is None and self.linear_matrix is None:
            raise ModelError(f"model {self.name}: give a vector_field, a build factory or a linear_matrix")
        names = set(self.parameter_names)
        for target in self.dose_targets:
            if not 1 <= target.cmt <= len(self.states):
                raise ModelError(f"model {self.name}: dose target CMT {target.cmt} has no state")
            for attr in ("bioavailability", "lag", "rate", "duration"):
                ref = getattr(target, attr)
                if ref is not None and ref not in names:
                    raise ModelError(f"model {self.name}: dose target {attr} parameter {ref!r} is not a parameter")

    # ------------------------------------------------------------------ names
    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def is_linear(self) -> bool:
        """True when an exact (matrix-exponential) solution is available."""
        return self.linear_matrix is not None

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise ParameterError(f"model {self.name} has no parameter {name!r}; it has {list(self.parameter_names)}")

    def output(self, name: str) -> Output:
        for o in self.outputs:
            if o.name == name:
                return o
        raise ModelError(f"model {self.name} has no output {name!r}; it has {list(self.output_names)}")

    def dose_target(self, cmt: int) -> DoseTarget:
        for target in self.dose_targets:
            if target.cmt == cmt:
                return target
        allowed = [t.cmt for t in self.dose_targets]
        raise ModelError(f"model {self.name}: CMT {cmt} does not accept doses (dose compartments: {allowed})")

    @property
    def default_cmt(self) -> int:
        return self.dose_targets[0].cmt if self.dose_targets else 1

    def typical_values(self) -> np.ndarray:
        """Typical parameter values, shape (n_parameters,), in declared units."""
        return np.array([p.value for p in self.parameters], dtype=float)

    # ---------------------------------------------------------- lifted functions
    def rhs(self, jit=_identity) -> Callable:
        """The vector field ``f(t, x, p) -> tuple`` lifted by ``jit``.

        ``jit`` is applied to the returned function and to every part it calls
        (identity for numpy/JAX, ``numba.njit`` for the kernels).
        """
        if self.build is not None:
            return jit(self.build(jit))
        if self.vector_field is not None:
            return jit(self.vector_field)
        return jit(_linear_rhs(jit(self.linear_matrix), self.n_states))

    def init(self, jit=_identity) -> Callable:
        """``x0(p) -> tuple`` lifted by ``jit`` (zeros when the model has no initial_state)."""
        if self.init_build is not None:
            return jit(self.init_build(jit))
        if self.initial_state is not None:
            return jit(self.initial_state)
        n = self.n_states
        zeros = (0.0,) * n

        def zero_state(p):
            return zeros

        return jit(zero_state)

    def output_functions(self, jit=_identity) -> tuple[Callable, ...]:
        return tuple(o.lifted(jit) for o in self.outputs)

    # ---------------------------------------------------------- parameter tables
    def parameter_table(self, values: Mapping[str, Any] | None = None, n: int | None = None) -> np.ndarray:
        """Assemble a parameter matrix of shape (n_patients, n_parameters).

        Missing parameters take their typical values; unknown names, non-finite
        values and values outside the declared bounds raise ParameterError.
        """
        values = dict(values or {})
        unknown = set(values) - set(self.parameter_names)
        if unknown:
            raise ParameterError(
                f"model {self.name}: unknown parameter(s) {sorted(unknown)}; known: {list(self.parameter_names)}"
            )
        columns = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in values.items()}
        sizes = {len(c) for c in columns.values() if len(c) != 1}
        if len(sizes) > 1:
            raise ParameterError(f"model {self.name}: parameter columns have different lengths {sorted(sizes)}")
        size = n if n is not None else (sizes.pop() if sizes else 1)
        table = np.empty((size, len(self.parameters)))
        for j, par in enumerate(self.parameters):
            col = columns.get(par.name, np.array([par.value]))
            if len(col) not in (1, size):
                raise ParameterError(f"parameter {par.name}: {len(col)} values for {size} patients")
            table[:, j] = col
        check_parameter_table(self, table)
        return table

    def typical_parameters(self, covariates: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Covariate-adjusted typical values (dict name -> array), via ``covariate_model``."""
        typical = {p.name: np.asarray(p.value, dtype=float) for p in self.parameters}
        if self.covariate_model is None or not covariates:
            return typical
        missing = [c for c in self.covariates if c not in covariates]
        if missing:
            raise ParameterError(f"model {self.name}: covariate(s) {missing} missing (needs {list(self.covariates)})")
        cov = {k: np.asarray(v, dtype=float) for k, v in covariates.items()}
        for name, value in cov.items():
            check_covariate_range(f"model {self.name}", name, value, self.covariate_ranges, self.covariate_units)
        return {**typical, **self.covariate_model(typical, cov)}

    # ---------------------------------------------------------- identity
    def digest(self) -> str:
        """SHA-256 over the definition: metadata and the source of every function."""
        parts: dict[str, Any] = {
            "name": self.name,
            "states": [(s.name, s.unit) for s in self.states],
            "parameters": [(p.name, p.unit, p.value, p.lower, p.upper, p.transform) for p in self.parameters],
            "outputs": [(o.name, o.unit, _source(o.function or o.build)) for o in self.outputs],
            "dose_targets": [vars(t) for t in self.dose_targets],
        }
        for attr in ("vector_field", "build", "linear_matrix", "initial_state", "init_build", "covariate_model"):
            parts[attr] = _source(getattr(self, attr))
        if self.covariate_ranges:  # (absent when empty: the digests of models without ranges are unchanged)
            parts["covariate_ranges"] = {k: list(v) for k, v in sorted(self.covariate_ranges.items())}
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def describe(self) -> dict:
        """A JSON-ready description (used by ``medtwin models --json``)."""
        return {
            "name": self.name,
            "description": self.description,
            "linear": self.is_linear,
            "compartments": [
                {"cmt": i + 1, "name": s.name, "unit": s.unit, "description": s.description}
                for i, s in enumerate(self.states)
            ],
            "parameters": [
                {
                    "name": p.name,
                    "unit": p.unit,
                    "value": p.value,
                    "lower": None if math.isinf(p.lower) else p.lower,
                    "upper": None if math.isinf(p.upper) else p.upper,
                    "transform": p.transform,
                    "description": p.description,
                }
                for p in self.parameters
            ],
            "outputs": [{"name": o.name, "unit": o.unit, "description": o.description} for o in self.outputs],
            "dose_targets": [
                {k: v for k, v in vars(t).items() if v is not None} for t in self.dose_targets
            ],
            "covariates": [{"name": c, "unit": self.covariate_units.get(c, "")} for c in self.covariates],
            "citation": self.citation,
        }

    def with_changes(self, **changes) -> "Model":
        """A copy with some fields replaced (the cache is not carried over)."""
        return replace(self, _cache={}, **changes)

    # ---------------------------------------------------------- well-posedness
    def check_well_posedness(self, **kwargs) -> "WellPosednessReport":
        """Run (once, then cached) :func:`check_well_posedness` on this model."""
        from medtwin.core.compile_cache import cached

        return cached(self, "well-posedness", tuple(sorted(kwargs.items())), lambda: check_well_posedness(self, **kwargs))

    def require_well_posed(self) -> None:
        """Raise WellPosednessError unless the default check passes."""
        report = self.check_well_posedness()
        if not report.ok:
            raise WellPosednessError(f"model {self.name} is not well posed: {report.summary()}", report)


def checked_covariate_ranges(ranges: Mapping, error: type[Exception]) -> dict[str, tuple[float, float]]:
    """``covariate_ranges`` as ``{name: (low, high)}`` floats with finite low < high, else ``error`` naming the entry."""
    out = {}
    for name, bounds in dict(ranges).items():
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise error(f"covariate_ranges.{name}: give [low, high] numbers, got {bounds!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise error(f"covariate_ranges.{name}: need finite low < high, got [{lo:g}, {hi:g}]")
        out[str(name)] = (lo, hi)
    return out


def check_covariate_range(owner: str, name: str, value, ranges: Mapping, units: Mapping) -> None:
    """Refuse values of covariate ``name`` outside ``ranges[name]``, naming it, the value and the range.

    ``value`` is a scalar or one value per patient; nothing is checked for a
    covariate without a declared range.

    Raises
    ------
    ParameterError

    Examples
    --------
    >>> check_covariate_range("model m", "WT", [70.0, 80.0], {"WT": (25.0, 300.0)}, {"WT": "kg"})
    >>> check_covariate_range("model m", "WT", [70.0, 5000.0], {"WT": (25.0, 300.0)}, {"WT": "kg"})
    Traceback (most recent call last):
    ...
    medtwin.errors.ParameterError: model m: covariate WT = 5000 kg (patient index 1) is outside the range [25, 300] the model is declared valid for (covariate_ranges)
    """
    if name not in ranges:
        return
    lo, hi = ranges[name]
    value = np.asarray(value, dtype=float)
    outside = np.flatnonzero((value < lo) | (value > hi))
    if outside.size:
        which = "" if value.ndim == 0 else f" (patient index {int(outside[0])})"
        unit = units.get(name, "")
        raise ParameterError(f"{owner}: covariate {name} = {value.flat[outside[0]]:g} {unit}{which} is outside the "
                             f"range [{lo:g}, {hi:g}] the model is declared valid for (covariate_ranges)")


def _source(function) -> str:
    if function is None:
        return ""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return repr(function)


def generated_function(source: str, name: str, namespace: dict | None = None, tag: str = "medtwin"):
    """Compile generated model code, keeping its source visible to ``inspect`` (and so to digests).

    Model code generated from a specification (unrolled matrices, PBPK fluxes)
    is registered in ``linecache`` under a stable file name, so that
    :meth:`Model.digest` hashes its text and is reproducible across processes.
    """
    filename = f"<{tag}:{name}:{hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope = dict(namespace or {})
    exec(compile(source, filename, "exec"), scope)
    return scope[name]


def _linear_rhs(matrix, n):
    """Vector field f = A(p) x built from a linear_matrix function.

    The source is generated so that the function stays arithmetic-only and
    unrolled: numba, numpy and JAX evaluate it without loops over tuples.
    """
    rows = ", ".join(" + ".join(f"a[{i}][{j}] * x[{j}]" for j in range(n)) for i in range(n))
    source = f"def linear_vector_field(t, x, p):\n    a = matrix(p)\n    return ({rows},)\n"
    return generated_function(source, "linear_vector_field", {"matrix": matrix})


def parameter_matrix(model: Model, params) -> np.ndarray:
    """Parameters of one or more patients as a (n_patients, n_parameters) float table in ``model``'s order.

    ``params``: None (typical values), a mapping name -> value(s) (missing names take typical values), a
    DataFrame with one column per parameter (an ``ID`` column is ignored), or an array of shape
    (n_parameters,) or (n_patients, n_parameters).  The one parameter parser of simulate, the JAX paths,
    the schedule and the observers.

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> parameter_matrix(get_model("pk1_iv"), {"CL": [2.0, 3.0]}).shape
    (2, 2)
    """
    if params is None:
        return model.parameter_table()
    if hasattr(params, "columns") and hasattr(params, "to_numpy"):
        params = {c: params[c].to_numpy() for c in params.columns if c != "ID"}
    if isinstance(params, Mapping):
        return model.parameter_table(params)
    table = np.asarray(params, dtype=float)
    if table.ndim == 1:
        table = table[None, :]
    check_parameter_table(model, table)
    return np.ascontiguousarray(table)


def check_parameter_table(model: Model, table: np.ndarray) -> None:
    """Raise ParameterError naming the patient row and parameter of the first bad value."""
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[1] != len(model.parameters):
        raise ParameterError(
            f"model {model.name}: parameter table must have shape (n, {len(model.parameters)}), got {table.shape}"
        )
    biggest = np.finfo(float).max
    for j, par in enumerate(model.parameters):
        col = table[:, j]
        # One pass: NaN fails both comparisons, ±inf fails the finite-clipped bounds.
        if np.all((col >= max(par.lower, -biggest)) & (col <= min(par.upper, biggest))):
            continue
        bad = ~np.isfinite(col) | (col < par.lower) | (col > par.upper)
        if bad.any():
            i = int(np.argmax(bad))
            raise ParameterError(
                f"patient {i}: parameter {par.name} = {float(col[i])!r} {par.unit} is outside its domain "
                f"[{par.lower}, {par.upper}]"
            )


def _stack(values, n_points: int) -> np.ndarray:
    """Stack a tuple of scalars/arrays into shape (len(values), n_points)."""
    return np.array([np.broadcast_to(np.asarray(v, dtype=float), (n_points,)) for v in values])


@dataclass(frozen=True)
class WellPosednessReport:
    """Outcome of :func:`check_well_posedness`.

    Attributes
    ----------
    ok : bool
        True when every sampled point gave a finite vector field and a Jacobian
        norm below ``lipschitz_limit``.
    n_points : int
        Number of (θ, x) points checked.
    max_jacobian_norm : float
        Largest ∞-norm of ∂f/∂x seen (a local Lipschitz bound), 1/h.
    lipschitz_limit : float
        Threshold used, 1/h.
    bad_points : tuple of dict
        Up to ten offending points: parameters, state, reason.
    """

    ok: bool
    n_points: int
    max_jacobian_norm: float
    lipschitz_limit: float
    bad_points: tuple[dict, ...] = ()

    def summary(self) -> str:
        if self.ok:
            return (
                f"well posed on {self.n_points} sampled points; max |df/dx| = {self.max_jacobian_norm:.3g} 1/h "
                f"(limit {self.lipschitz_limit:.3g})"
            )
        first = self.bad_points[0] if self.bad_points else {}
        return f"{len(self.bad_points)} bad point(s) among {self.n_points}; first: {first}"


def check_well_posedness(
    model: Model,
    *,
    n_points: int = 256,
    state_scale: float = 1000.0,
    lipschitz_limit: float = 1e7,
    seed: int = 0,
) -> WellPosednessReport:
    """Sample the parameter domain and state space; flag non-finite or exploding vector fields.

    Parameters are drawn log-uniformly (log transform) or uniformly over
    :meth:`Parameter.domain`, states uniformly on [0, ``state_scale``] (plus the
    origin and the model's initial state).  The Jacobian ∂f/∂x is taken by
    central differences; its ∞-norm is a local Lipschitz constant.

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> check_well_posedness(get_model("pk1_iv")).ok
    True
    """
    rng = np.random.default_rng(seed)
    n_par, n_x = len(model.parameters), model.n_states
    p = np.empty((n_par, n_points))
    for i, par in enumerate(model.parameters):
        lo, hi = par.domain()
        if par.transform == "log" and lo > 0:
            p[i] = np.exp(rng.uniform(np.log(lo), np.log(hi), n_points))
        else:
            p[i] = rng.uniform(lo, hi, n_points)
        p[i, 0] = par.value
    x = rng.uniform(0.0, state_scale, (n_x, n_points))
    x[:, 0] = 0.0
    x0 = _stack(model.init()(p), n_points)
    x[:, 1] = x0[:, 1]
    f = model.rhs()
    with np.errstate(all="ignore"):
        f0 = _stack(f(0.0, x, p), n_points)
        finite = np.all(np.isfinite(f0), axis=0)
        row_sums = np.zeros((n_x, n_points))
        for j in range(n_x):
            h = 1e-6 * np.maximum(np.abs(x[j]), 1.0)
            x_plus, x_minus = x.copy(), x.copy()
            x_plus[j] += h
            x_minus[j] = np.maximum(x_minus[j] - h, 0.0)
            f_plus = _stack(f(0.0, x_plus, p), n_points)
            f_minus = _stack(f(0.0, x_minus, p), n_points)
            column = (f_plus - f_minus) / (x_plus[j] - x_minus[j])
            finite &= np.all(np.isfinite(column), axis=0)
            row_sums += np.abs(column)
        jac_norm = row_sums.max(axis=0)
    bad = ~finite | ~(jac_norm <= lipschitz_limit)
    bad_points = []
    for k in np.flatnonzero(bad)[:10]:
        reason = "non-finite vector field or Jacobian" if not finite[k] else f"|df/dx| = {jac_norm[k]:.3g} 1/h"
        bad_points.append(
            {
                "parameters": {par.name: float(p[i, k]) for i, par in enumerate(model.parameters)},
                "state": {s.name: float(x[i, k]) for i, s in enumerate(model.states)},
                "reason": reason,
            }
        )
    finite_norms = jac_norm[np.isfinite(jac_norm)]
    return WellPosednessReport(
        ok=not bad.any(),
        n_points=n_points,
        max_jacobian_norm=float(finite_norms.max()) if finite_norms.size else math.inf,
        lipschitz_limit=lipschitz_limit,
        bad_points=tuple(bad_points),
    )
