"""Population models: typical values, covariate effects, inter-individual and inter-occasion variability.

A :class:`Population` says how the parameters of one library model vary
between patients.  For a model parameter P with typical-value parameter θ_P::

    TV_P  = θ_P · Π_k effect_k(covariate_k)          (covariate-adjusted typical value)
    P_i   = TV_P · exp(η_i,P [+ κ_i,occ,P])            (log-normal variability)

η_i ~ N(0, Ω) over the parameters with IIV (a full, possibly correlated Ω);
κ_i,occ ~ N(0, Ω_IOV) per occasion when inter-occasion variability (IOV) is
declared.  Parameters of the model not named in the population keep the
model's typical value.  Covariate effect forms (x the covariate, θ its
coefficient, ref the reference value):

===============  ==============================  ==================================
form             factor                          example
===============  ==============================  ==================================
``power``        (x / ref)^θ                     allometry (WT/70)^0.75
``exponential``  exp(θ · (x − ref))              exp(θ·(AGE − 40))
``linear``       1 + θ · (x − ref)               1 + θ·(CRCL − 100)
``categorical``  1 + θ when the condition holds  V·(1 + θ) if APGR < 5; 0.7^DIAL = 1 − 0.3
===============  ==============================  ==================================

θ of an effect is either the name of an estimated :class:`Theta` or a fixed
number (``power`` with θ = 1 and ref = 1 is NONMEM's ``THETA(1)*WGT``).  A
categorical condition is ``(op, value)`` with op one of ``== != < <= > >=``.
An optional ``clip`` (lo, hi) truncates the covariate first (e.g. CrCl at
150 mL/min).  The residual error is a :class:`~medtwin.core.observation.ResidualError`.

Values are immutable; :meth:`Population.to_dict` / :meth:`Population.from_dict`
give a plain JSON/YAML-ready mapping (files: :mod:`medtwin.io.population_file`).
Every inconsistency raises :class:`~medtwin.errors.PopulationError` whose
message starts with the offending field.

Examples
--------
>>> pop = Population(
...     name="demo", model="pk1_iv",
...     thetas=(Theta("TVCL", 0.005, "L/h/kg", lower=0.0), Theta("TVV", 1.0, "L/kg", lower=0.0)),
...     typical={"CL": "TVCL", "V": "TVV"},
...     effects=(CovariateEffect("CL", "WGT", "power", 1.0), CovariateEffect("V", "WGT", "power", 1.0)),
...     iiv=("CL", "V"), omega=((0.03, 0.0), (0.0, 0.03)),
...     residual=ResidualError("proportional", proportional=0.1))
>>> {k: round(float(v), 4) for k, v in pop.typical_parameters({"WGT": 2.0}).items()}
{'CL': 0.01, 'V': 2.0}
>>> prior = pop.prior_for({"WGT": 2.0})
>>> prior.parameters, [round(float(m), 4) for m in prior.log_mean]
(('CL', 'V'), [-4.6052, 0.6931])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from medtwin.core.model import check_covariate_range, checked_covariate_ranges
from medtwin.core.observation import ERROR_MODELS, ResidualError
from medtwin.errors import ParameterError, PopulationError

__all__ = ["FORMS", "OPERATORS", "Theta", "CovariateEffect", "InterOccasion", "Population", "IndividualPrior",
           "check_covariance"]

FORMS = ("power", "exponential", "linear", "categorical")
OPERATORS = ("==", "!=", "<", "<=", ">", ">=")
FORMAT = "medtwin-population/1"
_DRUG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
#: Largest |theta value| accepted from a population file (as for dataset cells in medtwin.io.nonmem).
MAX_FILE_VALUE = 1e9


def check_covariance(matrix, field_name: str, size: int | None = None) -> np.ndarray:
    """Return ``matrix`` as a read-only float array after checking it is a symmetric positive-definite matrix.

    Raises PopulationError naming ``field_name`` otherwise.

    Examples
    --------
    >>> check_covariance([[1.0, 2.0], [2.0, 1.0]], "omega")
    Traceback (most recent call last):
    ...
    medtwin.errors.PopulationError: omega: not positive definite (smallest eigenvalue -1)
    """
    try:
        m = np.array(matrix, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PopulationError(f"{field_name}: not a numeric matrix ({exc})") from None
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise PopulationError(f"{field_name}: must be a square matrix, got shape {m.shape}")
    if size is not None and m.shape[0] != size:
        raise PopulationError(f"{field_name}: must be {size}×{size} (one row per parameter), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise PopulationError(f"{field_name}: has non-finite entries")
    if not np.allclose(m, m.T, rtol=1e-12, atol=0.0):
        i, j = np.unravel_index(np.argmax(np.abs(m - m.T)), m.shape)
        raise PopulationError(f"{field_name}: not symmetric ([{i}][{j}] = {m[i, j]} but [{j}][{i}] = {m[j, i]})")
    if m.size:
        smallest = float(np.linalg.eigvalsh(m).min())
        if smallest <= 0:
            raise PopulationError(f"{field_name}: not positive definite (smallest eigenvalue {smallest:.3g})")
    m.flags.writeable = False
    return m


@dataclass(frozen=True)
class Theta:
    """A fixed-effect (typical-value or covariate) parameter.

    Parameters
    ----------
    name : str
        Identifier (``"TVCL"``).
    value : float
        Value in ``unit``.
    unit : str
        e.g. ``"L/h/kg"``; ``"1"`` for dimensionless coefficients.
    lower, upper : float
        Bounds used by estimation (strict: the estimate stays inside).
    fixed : bool
        Not estimated.
    description : str
        Meaning.
    """

    name: str
    value: float
    unit: str = "1"
    lower: float = -math.inf
    upper: float = math.inf
    fixed: bool = False
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise PopulationError(f"thetas: name {self.name!r} is not an identifier")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value)):
            raise PopulationError(f"thetas.{self.name}: value must be a finite number, got {self.value!r}")
        if not self.lower < self.upper or not (self.lower <= self.value <= self.upper):
            raise PopulationError(f"thetas.{self.name}: value {self.value} outside its bounds "
                                  f"({self.lower}, {self.upper})")


@dataclass(frozen=True)
class CovariateEffect:
    """One multiplicative covariate effect on a model parameter's typical value (forms: module table).

    Parameters
    ----------
    parameter : str
        Model parameter affected (``"CL"``).
    covariate : str
        Covariate name (``"WGT"``), a dataset column.
    form : {"power", "exponential", "linear", "categorical"}
        Shape of the factor.
    theta : str or float
        Name of the coefficient's :class:`Theta`, or a fixed number.
    reference : float
        Reference covariate value (not used by ``categorical``).
    condition : (str, float), optional
        ``categorical`` only: when the factor 1 + θ applies, e.g. ``("<", 5)``.
    clip : (float, float), optional
        Truncate the covariate to [lo, hi] before the effect.

    Examples
    --------
    >>> CovariateEffect("V", "APGR", "categorical", 0.2, condition=("<", 5)).factor([3.0, 7.0], 0.2).tolist()
    [1.2, 1.0]
    """

    parameter: str
    covariate: str
    form: str
    theta: str | float
    reference: float = 1.0
    condition: tuple | None = None
    clip: tuple | None = None

    def __post_init__(self):
        where = f"effects.{self.parameter}.{self.covariate}"
        if self.form not in FORMS:
            raise PopulationError(f"{where}: form must be one of {FORMS}, got {self.form!r}")
        if not isinstance(self.theta, str) and not (isinstance(self.theta, (int, float))
                                                    and math.isfinite(self.theta)):
            raise PopulationError(f"{where}: theta must be a theta name or a finite number, got {self.theta!r}")
        if self.form == "categorical":
            if self.condition is None or len(self.condition) != 2 or self.condition[0] not in OPERATORS:
                raise PopulationError(f"{where}: a categorical effect needs condition (op, value) with op in "
                                      f"{OPERATORS}, got {self.condition!r}")
            object.__setattr__(self, "condition", (str(self.condition[0]), float(self.condition[1])))
        elif self.condition is not None:
            raise PopulationError(f"{where}: only categorical effects take a condition")
        if self.form == "power" and not self.reference > 0:
            raise PopulationError(f"{where}: a power effect needs reference > 0, got {self.reference}")
        if self.clip is not None:
            if len(self.clip) != 2 or not float(self.clip[0]) < float(self.clip[1]):
                raise PopulationError(f"{where}: clip must be (lo, hi) with lo < hi, got {self.clip!r}")
            object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))

    def factor(self, x, theta_value):
        """The multiplicative factor for covariate values ``x`` and coefficient ``theta_value``."""
        x = np.asarray(x, dtype=float)
        if self.clip is not None:
            x = np.clip(x, *self.clip)
        if self.form == "power":
            if np.any(x <= 0):
                raise ParameterError(f"covariate {self.covariate} must be > 0 for a power effect")
            return (x / self.reference) ** theta_value
        if self.form == "exponential":
            return np.exp(theta_value * (x - self.reference))
        if self.form == "linear":
            return 1.0 + theta_value * (x - self.reference)
        op, level = self.condition
        holds = {"==": x == level, "!=": x != level, "<": x < level, "<=": x <= level, ">": x > level,
                 ">=": x >= level}[op]
        return np.where(holds, 1.0 + theta_value, 1.0)


#: Occasion timings of :class:`InterOccasion` (see there).
IOV_TIMINGS = ("record", "nonmem")


@dataclass(frozen=True)
class InterOccasion:
    """Inter-occasion variability: κ ~ N(0, ``omega``) per occasion on ``parameters`` (log scale).

    ``occasion`` names the dataset column numbering occasions (NONMEM ``OCC``).  ``timing`` says over which
    times an occasion's parameters hold: ``"record"`` (default) from the time of the occasion's first record on;
    ``"nonmem"`` NONMEM PREDPP's rule, the parameters over (t_{i−1}, t_i] are those of record i (the record
    closing the interval, "next observation carried backward"), so an occasion column that differs between
    neighbouring records (e.g. dose and observation records) acts on the interval before each record
    (:mod:`medtwin.infer.occasions`).
    """

    parameters: tuple[str, ...]
    omega: Any
    occasion: str = "OCC"
    timing: str = "record"

    def __post_init__(self):
        object.__setattr__(self, "parameters", tuple(self.parameters))
        if len(set(self.parameters)) != len(self.parameters) or not self.parameters:
            raise PopulationError(f"iov.parameters: must be distinct and non-empty, got {list(self.parameters)}")
        object.__setattr__(self, "omega", check_covariance(self.omega, "iov.omega", len(self.parameters)))
        if self.timing not in IOV_TIMINGS:
            raise PopulationError(f"iov.timing: must be one of {IOV_TIMINGS}, got {self.timing!r}")


@dataclass(frozen=True)
class IndividualPrior:
    """The population prior of one patient's parameters given covariates.

    ``log(P) ~ N(log_mean, covariance)`` for ``parameters`` (those with IIV);
    ``fixed`` holds the other model parameters (no variability, model units).
    """

    model: str
    parameters: tuple[str, ...]
    log_mean: np.ndarray
    covariance: np.ndarray
    fixed: Mapping[str, float]
    residual: ResidualError
    units: Mapping[str, str] = field(default_factory=dict)


def _matrix_list(m) -> list:
    return [[float(v) for v in row] for row in np.asarray(m)]


@dataclass(frozen=True, eq=False)
class Population:
    """A population model for one library model (see the module docstring).

    Parameters
    ----------
    name : str
        Identifier, e.g. ``"pheno_grasela1985"``.
    model : str
        Library model name (:func:`medtwin.models.get_model`).
    thetas : tuple of Theta
        Fixed effects.
    typical : mapping
        Model parameter -> name of the Theta that is its typical value.
    effects : tuple of CovariateEffect
        Covariate effects on typical values.
    iiv : tuple of str
        Model parameters with log-normal inter-individual variability, in Ω's order.
    omega : array_like
        Ω, the covariance of η (log scale), symmetric positive definite.
    residual : ResidualError
        The residual error model of ``residual.output``.
    iov : InterOccasion, optional
        Inter-occasion variability.
    covariate_units : mapping
        Covariate -> unit.
    covariate_ranges : mapping, optional
        Covariate -> ``(low, high)``: the values the model is declared valid for (physiological range,
        in the covariate's unit); a patient outside it is refused with the covariate named.
    description, citation : str
        What it is and where the values come from.
    drug : str, optional
        The drug the population describes (e.g. ``"vancomycin"``): all population files of one drug are the
        candidate priors of model averaging (:mod:`medtwin.infer.model_averaging`).  Letters, digits, ``_``
        and ``-``; empty when not declared.
    estimation : mapping
        Provenance of the values (method, objective function value, software).
    """

    name: str
    model: str
    thetas: tuple[Theta, ...]
    typical: Mapping[str, str]
    residual: ResidualError
    effects: tuple[CovariateEffect, ...] = ()
    iiv: tuple[str, ...] = ()
    omega: Any = ()
    iov: InterOccasion | None = None
    covariate_units: Mapping[str, str] = field(default_factory=dict)
    covariate_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    description: str = ""
    citation: str = ""
    estimation: Mapping[str, Any] = field(default_factory=dict)
    drug: str = ""

    def __post_init__(self):
        if not isinstance(self.drug, str) or (self.drug and not _DRUG.fullmatch(self.drug)):
            raise PopulationError(f"drug: must be a name of letters, digits, '_' or '-' (e.g. vancomycin), "
                                  f"got {self.drug!r}")
        object.__setattr__(self, "thetas", tuple(self.thetas))
        object.__setattr__(self, "effects", tuple(self.effects))
        object.__setattr__(self, "iiv", tuple(self.iiv))
        object.__setattr__(self, "typical", dict(self.typical))
        names = [t.name for t in self.thetas]
        if len(set(names)) != len(names):
            raise PopulationError(f"thetas: duplicate names in {names}")
        for parameter, theta in self.typical.items():
            if theta not in names:
                raise PopulationError(f"typical.{parameter}: theta {theta!r} is not defined (thetas: {names})")
        for effect in self.effects:
            if effect.parameter not in self.typical:
                raise PopulationError(f"effects.{effect.parameter}.{effect.covariate}: parameter "
                                      f"{effect.parameter!r} has no typical value in 'typical'")
            if isinstance(effect.theta, str) and effect.theta not in names:
                raise PopulationError(f"effects.{effect.parameter}.{effect.covariate}: theta {effect.theta!r} "
                                      f"is not defined (thetas: {names})")
        if len(set(self.iiv)) != len(self.iiv):
            raise PopulationError(f"iiv: duplicate parameters in {list(self.iiv)}")
        for parameter in self.iiv + (self.iov.parameters if self.iov else ()):
            if parameter not in self.typical:
                raise PopulationError(f"iiv: parameter {parameter!r} has no typical value in 'typical'")
        omega = np.zeros((0, 0)) if len(self.iiv) == 0 and np.size(self.omega) == 0 else self.omega
        object.__setattr__(self, "omega", check_covariance(omega, "omega", len(self.iiv)))
        if not isinstance(self.residual, ResidualError):
            raise PopulationError("residual: must be a ResidualError")
        object.__setattr__(self, "covariate_ranges", checked_covariate_ranges(self.covariate_ranges,
                                                                                PopulationError))

    # ------------------------------------------------------------------ values
    @property
    def covariates(self) -> tuple[str, ...]:
        """Covariates the effects need, in first-use order."""
        return tuple(dict.fromkeys(e.covariate for e in self.effects))

    def theta_values(self) -> dict[str, float]:
        """Theta name -> value."""
        return {t.name: float(t.value) for t in self.thetas}

    def theta(self, name: str) -> Theta:
        for t in self.thetas:
            if t.name == name:
                return t
        raise PopulationError(f"thetas: no theta {name!r}")

    def with_values(self, *, theta: Mapping[str, float] | None = None, omega=None,
                    residual: ResidualError | None = None, estimation: Mapping | None = None,
                    iov_omega=None) -> "Population":
        """A copy with new θ values, Ω, residual error, estimation record or IOV Ω (validated again)."""
        thetas = self.thetas
        if theta:
            unknown = set(theta) - {t.name for t in thetas}
            if unknown:
                raise PopulationError(f"thetas: unknown {sorted(unknown)}")
            thetas = tuple(replace(t, value=float(theta[t.name])) if t.name in theta else t for t in thetas)
        iov = self.iov
        if iov_omega is not None:
            if iov is None:
                raise PopulationError("iov.omega: the population has no inter-occasion variability")
            iov = replace(iov, omega=iov_omega)
        return replace(self, thetas=thetas, omega=self.omega if omega is None else omega, iov=iov,
                       residual=residual or self.residual,
                       estimation=self.estimation if estimation is None else dict(estimation))

    def _covariate(self, covariates: Mapping[str, Any], name: str) -> np.ndarray:
        if name not in covariates:
            raise ParameterError(f"population {self.name}: covariate {name!r} missing "
                                 f"(needs {list(self.covariates)})")
        value = np.asarray(covariates[name], dtype=float)
        if not np.all(np.isfinite(value)):
            raise ParameterError(f"population {self.name}: covariate {name} has non-finite values")
        check_covariate_range(f"population {self.name}", name, value, self.covariate_ranges, self.covariate_units)
        return value

    def typical_parameters(self, covariates: Mapping[str, Any] | None = None,
                           theta: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """Covariate-adjusted typical values TV_P (model units), one entry per parameter in ``typical``.

        ``theta`` overrides θ values (estimation); covariates are scalars or arrays (one per patient).
        """
        values = {**self.theta_values(), **(theta or {})}
        covariates = covariates or {}
        out = {p: np.asarray(values[t], dtype=float) for p, t in self.typical.items()}
        for e in self.effects:
            coefficient = values[e.theta] if isinstance(e.theta, str) else float(e.theta)
            out[e.parameter] = out[e.parameter] * e.factor(self._covariate(covariates, e.covariate), coefficient)
        return out

    def individual_parameters(self, covariates: Mapping[str, Any] | None = None, eta=None, *,
                              theta: Mapping[str, float] | None = None, kappa=None) -> dict[str, np.ndarray]:
        """P = TV_P · exp(η_P + κ_P): ``eta`` (..., n_iiv) in ``iiv`` order, ``kappa`` (..., n_iov) in IOV order."""
        out = self.typical_parameters(covariates, theta)
        for source, names in ((eta, self.iiv), (kappa, self.iov.parameters if self.iov else ())):
            if source is None:
                continue
            source = np.asarray(source, dtype=float)
            if source.shape[-1:] != (len(names),):
                raise ParameterError(f"population {self.name}: expected {len(names)} random effects "
                                     f"({list(names)}) on the last axis, got shape {source.shape}")
            for k, p in enumerate(names):
                out[p] = out[p] * np.exp(source[..., k])
        return out

    def prior_for(self, covariates: Mapping[str, Any] | None = None) -> IndividualPrior:
        """The prior of one patient's parameters: log P ~ N(log TV(covariates), Ω (+ Ω_IOV on shared parameters))."""
        typical = self.typical_parameters(covariates)
        for p, v in typical.items():
            if np.ndim(v) != 0:
                raise ParameterError(f"prior_for: give one patient's covariates (scalars); {p} has shape {np.shape(v)}")
        covariance = np.array(self.omega, dtype=float)
        if self.iov is not None:
            for a, pa in enumerate(self.iov.parameters):
                for b, pb in enumerate(self.iov.parameters):
                    if pa in self.iiv and pb in self.iiv:
                        covariance[self.iiv.index(pa), self.iiv.index(pb)] += self.iov.omega[a, b]
        covariance.flags.writeable = False
        log_mean = np.log(np.array([float(typical[p]) for p in self.iiv]))
        log_mean.flags.writeable = False
        fixed = {p: float(v) for p, v in typical.items() if p not in self.iiv}
        units = {p: self.theta(t).unit for p, t in self.typical.items()}
        return IndividualPrior(self.model, self.iiv, log_mean, covariance, fixed, self.residual, units)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """A plain mapping (str, float, list, dict) for YAML/JSON; :meth:`from_dict` inverts it."""
        effects = []
        for e in self.effects:
            item = {"parameter": e.parameter, "covariate": e.covariate, "form": e.form, "theta": e.theta}
            if e.form != "categorical":
                item["reference"] = float(e.reference)
            if e.condition is not None:
                item["condition"] = [e.condition[0], e.condition[1]]
            if e.clip is not None:
                item["clip"] = list(e.clip)
            effects.append(item)
        thetas = []
        for t in self.thetas:
            item = {"name": t.name, "value": float(t.value), "unit": t.unit}
            if math.isfinite(t.lower):
                item["lower"] = float(t.lower)
            if math.isfinite(t.upper):
                item["upper"] = float(t.upper)
            if t.fixed:
                item["fixed"] = True
            if t.description:
                item["description"] = t.description
            thetas.append(item)
        r = self.residual
        out = {
            "format": FORMAT, "name": self.name, **({"drug": self.drug} if self.drug else {}),
            "description": self.description, "citation": self.citation,
            "model": self.model, "covariates": dict(self.covariate_units), "thetas": thetas,
            "typical": dict(self.typical), "effects": effects,
            "iiv": {"parameters": list(self.iiv), "omega": _matrix_list(self.omega)},
            "residual": {"model": r.model, "additive_sd": float(r.additive), "proportional_sd": float(r.proportional),
                         "output": r.output, "unit": r.unit},
        }
        if self.covariate_ranges:
            out["covariate_ranges"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.covariate_ranges.items()}
        if self.iov is not None:
            out["iov"] = {"parameters": list(self.iov.parameters), "omega": _matrix_list(self.iov.omega),
                          "occasion": self.iov.occasion}
            if self.iov.timing != "record":
                out["iov"]["timing"] = self.iov.timing
        if self.estimation:
            out["estimation"] = dict(self.estimation)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "Population":
        """Build a Population from :meth:`to_dict`'s mapping; errors name the offending field."""
        if not isinstance(data, Mapping):
            raise PopulationError(f"population: expected a mapping, got {type(data).__name__}")
        if data.get("format", FORMAT) != FORMAT:
            raise PopulationError(f"format: expected {FORMAT!r}, got {data.get('format')!r}")
        for key in ("name", "model", "thetas", "typical", "residual"):
            if key not in data:
                raise PopulationError(f"{key}: missing")
        for key, kind in (("thetas", list), ("effects", list), ("typical", Mapping), ("iiv", Mapping),
                          ("iov", Mapping), ("covariates", Mapping), ("covariate_ranges", Mapping),
                          ("estimation", Mapping)):
            if data.get(key) is not None and not isinstance(data[key], kind):
                raise PopulationError(f"{key}: expected a {'list' if kind is list else 'mapping'}, got "
                                      f"{type(data[key]).__name__}")
        thetas = tuple(_build(Theta, t, f"thetas[{i}]") for i, t in enumerate(data["thetas"]))
        for t in thetas:  # a file's values (estimation itself may move inside the bounds freely)
            if abs(t.value) > MAX_FILE_VALUE:
                raise PopulationError(f"thetas.{t.name}: value {t.value:g} is beyond the largest accepted magnitude "
                                      f"{MAX_FILE_VALUE:g}")
        effects = tuple(_build(CovariateEffect, e, f"effects[{i}]", tuples=("condition", "clip"))
                        for i, e in enumerate(data.get("effects") or ()))
        iiv = data.get("iiv") or {}
        iov = data.get("iov")
        if iov is not None:
            iov = _build(InterOccasion, {**iov, "parameters": tuple(iov.get("parameters", ()))}, "iov")
        residual = data["residual"]
        if not isinstance(residual, Mapping) or residual.get("model") not in ERROR_MODELS:
            raise PopulationError(f"residual.model: must be one of {ERROR_MODELS}")
        try:
            residual = ResidualError(residual["model"], float(residual.get("additive_sd", 0.0)),
                                     float(residual.get("proportional_sd", 0.0)), residual.get("output", "C"),
                                     residual.get("unit", "mg/L"))
        except ParameterError as exc:
            raise PopulationError(str(exc)) from None
        return cls(name=data["name"], model=data["model"], thetas=thetas, typical=dict(data["typical"]),
                   residual=residual, effects=effects, iiv=tuple(iiv.get("parameters", ())),
                   omega=iiv.get("omega", ()), iov=iov, covariate_units=dict(data.get("covariates") or {}),
                   covariate_ranges=dict(data.get("covariate_ranges") or {}),
                   description=data.get("description", ""), citation=data.get("citation", ""),
                   estimation=dict(data.get("estimation") or {}), drug=data.get("drug") or "")


def _build(cls, item, where: str, tuples=()):
    if not isinstance(item, Mapping):
        raise PopulationError(f"{where}: expected a mapping, got {item!r}")
    known = set(cls.__dataclass_fields__)
    unknown = set(item) - known
    if unknown:
        raise PopulationError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
    values = {k: (tuple(v) if k in tuples and v is not None else v) for k, v in item.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise PopulationError(f"{where}: {exc}") from None
