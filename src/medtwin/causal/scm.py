"""Structural causal models: structural equations, exogenous noise, do(), sampling and counterfactuals.

An :class:`SCM` is an ordered set of :class:`Variable` values, each ``x_j = f_j(pa_j, u_j)`` with an
exogenous noise ``u_j`` drawn from its own :class:`Noise`.  The graph is a :class:`networkx.DiGraph`
(parents → child); every graph algorithm (topological order, ancestors, d-separation) is networkx's.

* :meth:`SCM.do` returns a NEW model in which the intervened variables are constants (or a new
  equation, e.g. a dosing policy of the covariates); the original is unchanged (values are immutable).
* :meth:`SCM.sample` draws ``n`` units.  Each variable draws its noise from its own child stream of the
  seed (:class:`numpy.random.SeedSequence` spawned in declaration order), so ``scm.sample(n, seed)`` and
  ``scm.do(x=1).sample(n, seed)`` share every unit's noise: the two samples are the same units'
  factual and interventional worlds (common random numbers).
* :meth:`SCM.counterfactual` answers "what would this unit's Y have been under do(X = x)" by abduction
  (recover the unit's noise from its observed values), action (:meth:`do`) and prediction.  Abduction needs
  invertible equations (:class:`Additive`, :class:`Linear`, or :class:`Function` with an ``inverse``);
  otherwise it is refused with a :class:`~medtwin.errors.ModelError` naming the variable.

Examples
--------
>>> scm = SCM([
...     Variable("age", Linear({}, intercept=60.0), Noise.normal(10.0)),
...     Variable("dose", Linear({"age": -5.0}, intercept=1000.0), Noise.normal(50.0)),
...     Variable("level", Linear({"dose": 0.02, "age": 0.1}), Noise.normal(1.0)),
... ])
>>> scm.parents("level"), sorted(scm.descendants("dose"))
(('dose', 'age'), ['level'])
>>> scm.d_separated("age", "level", {"dose"})
False
>>> cf = scm.counterfactual({"age": 70.0, "dose": 600.0, "level": 20.0}, {"dose": 800.0})
>>> round(cf["level"], 6)   # 20 + 0.02 · (800 − 600)
24.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import networkx as nx
import numpy as np

from medtwin.errors import DataError, ModelError

__all__ = ["Noise", "Equation", "Linear", "Additive", "Function", "Bernoulli", "Constant", "Variable", "SCM"]


# ----------------------------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class Noise:
    """An exogenous noise distribution: ``draw(rng, n)`` returns shape (n,) or (n, dim).

    Use the constructors :meth:`normal`, :meth:`uniform`, :meth:`logistic`, :meth:`mvnormal`,
    :meth:`none`.  ``dim`` is the number of noise components per unit (1 for scalar noise).

    Examples
    --------
    >>> Noise.normal(2.0).draw(np.random.default_rng(0), 3).shape
    (3,)
    >>> Noise.mvnormal([[1.0, 0.0], [0.0, 1.0]]).draw(np.random.default_rng(0), 3).shape
    (3, 2)
    """

    name: str
    params: tuple = ()
    dim: int = 1

    @classmethod
    def normal(cls, sd: float, mean: float = 0.0) -> "Noise":
        """N(mean, sd²) in the variable's unit."""
        if not (np.isfinite(sd) and sd >= 0):
            raise ModelError(f"normal noise needs a finite sd >= 0, got {sd!r}")
        return cls("normal", (float(mean), float(sd)))

    @classmethod
    def uniform(cls, low: float = 0.0, high: float = 1.0) -> "Noise":
        """U(low, high)."""
        if not low < high:
            raise ModelError(f"uniform noise needs low < high, got ({low}, {high})")
        return cls("uniform", (float(low), float(high)))

    @classmethod
    def logistic(cls, scale: float = 1.0) -> "Noise":
        """Standard logistic noise times ``scale`` (a logit threshold model)."""
        return cls("logistic", (float(scale),))

    @classmethod
    def mvnormal(cls, cov, names: Sequence[str] = ()) -> "Noise":
        """N(0, cov) with ``dim = len(cov)`` components (e.g. a population model's η ~ N(0, Ω))."""
        c = np.array(cov, dtype=float)
        if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.allclose(c, c.T):
            raise ModelError(f"mvnormal noise needs a symmetric square covariance, got shape {c.shape}")
        if c.size and float(np.linalg.eigvalsh(c).min()) < 0:
            raise ModelError("mvnormal noise: covariance is not positive semi-definite")
        return cls("mvnormal", (tuple(map(tuple, c.tolist())), tuple(names)), dim=c.shape[0])

    @classmethod
    def none(cls) -> "Noise":
        """No noise (a deterministic equation)."""
        return cls("none")

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, shape (n,) (or (n, dim) for multivariate noise)."""
        if self.name == "normal":
            return rng.normal(self.params[0], self.params[1], n)
        if self.name == "uniform":
            return rng.uniform(self.params[0], self.params[1], n)
        if self.name == "logistic":
            return rng.logistic(0.0, self.params[0], n)
        if self.name == "mvnormal":
            return rng.multivariate_normal(np.zeros(self.dim), np.array(self.params[0]), n, method="cholesky")
        return np.zeros(n)


# ----------------------------------------------------------------------------------------------- equations
class Equation:
    """A structural equation ``x = f(parents, u)``; subclasses define :meth:`evaluate` and maybe :meth:`abduct`.

    ``parents`` is the tuple of parent names; ``evaluate(values, u)`` gets a mapping parent -> (n,) array and
    the noise array and returns (n,) values.  ``abduct(x, values)`` recovers ``u`` from the observed ``x`` and
    parents, or raises :class:`~medtwin.errors.ModelError` when the noise is not identifiable.
    """

    parents: tuple[str, ...]

    def evaluate(self, values: Mapping[str, np.ndarray], u: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def abduct(self, x: np.ndarray, values: Mapping[str, np.ndarray]) -> np.ndarray:
        raise ModelError(f"{type(self).__name__} equations are not invertible in their noise")

    def describe(self) -> str:
        return f"{type(self).__name__}({', '.join(self.parents)})"


@dataclass(frozen=True)
class _Weighted(Equation):
    """An equation on a weighted sum of its parents: ``coefficients`` (parent -> weight) and ``intercept``."""

    coefficients: Mapping[str, float]
    intercept: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "coefficients", MappingProxyType({str(k): float(v) for k, v in
                                                                   dict(self.coefficients).items()}))

    @property
    def parents(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.coefficients)

    def weighted_sum(self, values) -> np.ndarray:
        """``intercept + Σ coef_p · p``, shape (n,)."""
        out = np.full(_length(values), self.intercept)
        for p, c in self.coefficients.items():
            out = out + c * np.asarray(values[p], dtype=float)
        return out


@dataclass(frozen=True)
class Linear(_Weighted):
    """``x = intercept + Σ coef_p · p + u`` (additive noise, so abduction is exact).

    Examples
    --------
    >>> Linear({"a": 2.0}, intercept=1.0).evaluate({"a": np.array([1.0, 2.0])}, np.zeros(2)).tolist()
    [3.0, 5.0]
    """

    def mean(self, values):
        return self.weighted_sum(values)

    def evaluate(self, values, u):
        return self.mean(values) + u

    def abduct(self, x, values):
        return np.asarray(x, dtype=float) - self.mean(values)

    def describe(self) -> str:
        terms = " + ".join(f"{c:g}·{p}" for p, c in self.coefficients.items())
        return f"{self.intercept:g}" + (f" + {terms}" if terms else "") + " + u"


@dataclass(frozen=True)
class Additive(Equation):
    """``x = f(parents) + u`` with ``f(values) -> (n,)`` any vectorised function (abduction: u = x − f)."""

    parents: tuple[str, ...]
    f: Callable[[Mapping[str, np.ndarray]], np.ndarray]

    def __post_init__(self):
        object.__setattr__(self, "parents", tuple(self.parents))

    def evaluate(self, values, u):
        return np.asarray(self.f(values), dtype=float) + u

    def abduct(self, x, values):
        return np.asarray(x, dtype=float) - np.asarray(self.f(values), dtype=float)


@dataclass(frozen=True)
class Function(Equation):
    """``x = f(values, u)``; counterfactuals need ``inverse(x, values) -> u`` (f strictly monotone in u)."""

    parents: tuple[str, ...]
    f: Callable[[Mapping[str, np.ndarray], np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray, Mapping[str, np.ndarray]], np.ndarray] | None = None

    def __post_init__(self):
        object.__setattr__(self, "parents", tuple(self.parents))

    def evaluate(self, values, u):
        return np.asarray(self.f(values, u), dtype=float)

    def abduct(self, x, values):
        if self.inverse is None:
            raise ModelError("its equation has no inverse in the noise (give Function(..., inverse=...))")
        return np.asarray(self.inverse(np.asarray(x, dtype=float), values), dtype=float)


@dataclass(frozen=True)
class Bernoulli(_Weighted):
    """A binary variable ``x = 1[u < logit⁻¹(intercept + Σ coef_p · p)]`` with u ~ U(0, 1).

    Its noise is not identifiable from the observed 0/1 value, so counterfactuals through it are refused.
    Pair it with ``Noise.uniform()``.
    """

    def probability(self, values) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.weighted_sum(values)))

    def evaluate(self, values, u):
        return (np.asarray(u) < self.probability(values)).astype(float)

    def abduct(self, x, values):
        raise ModelError("a binary (threshold) equation loses its noise: only a range of u is known, "
                         "so the counterfactual is not a single value")


@dataclass(frozen=True)
class Constant(Equation):
    """``x = value`` (what :meth:`SCM.do` puts in place of an equation)."""

    value: Any

    @property
    def parents(self) -> tuple[str, ...]:  # type: ignore[override]
        return ()

    def evaluate(self, values, u):
        return np.broadcast_to(np.asarray(self.value, dtype=float), (len(u),)).copy()

    def abduct(self, x, values):
        return np.zeros(np.shape(x))

    def describe(self) -> str:
        return f"do({self.value!r})"


def _length(values: Mapping[str, np.ndarray]) -> int:
    """Units in the parent arrays; 1 without parents (the result then broadcasts against the noise)."""
    for v in values.values():
        return int(np.shape(v)[0])
    return 1


# ----------------------------------------------------------------------------------------------- variables and SCM
@dataclass(frozen=True)
class Variable:
    """One endogenous variable: name, structural equation, exogenous noise, unit and whether it is latent.

    ``latent=True`` marks an unobserved variable (e.g. an unmeasured confounder): it is sampled but may
    never be adjusted for (:mod:`medtwin.causal.identification`).
    """

    name: str
    equation: Equation
    noise: Noise = field(default_factory=Noise.none)
    unit: str = "1"
    latent: bool = False
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ModelError(f"variable name {self.name!r} is not an identifier")
        if not isinstance(self.equation, Equation):
            raise ModelError(f"variable {self.name}: equation must be an Equation, got {type(self.equation).__name__}")
        if not isinstance(self.noise, Noise):
            raise ModelError(f"variable {self.name}: noise must be a Noise, got {type(self.noise).__name__}")


class SCM:
    """An immutable structural causal model (see the module docstring).

    Parameters
    ----------
    variables : sequence of Variable
        In any order; names unique; every parent must be a variable; the graph must be acyclic.
    """

    def __init__(self, variables: Iterable[Variable]):
        variables = tuple(variables)
        names = [v.name for v in variables]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ModelError(f"SCM: variable names must be unique; repeated: {duplicated}")
        graph = nx.DiGraph()
        for v in variables:
            graph.add_node(v.name, latent=v.latent, unit=v.unit)
        for v in variables:
            for p in v.equation.parents:
                if p not in graph:
                    raise ModelError(f"SCM: variable {v.name} has parent {p!r}, which is not a variable "
                                     f"(variables: {names})")
                graph.add_edge(p, v.name)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = " -> ".join(a for a, _ in nx.find_cycle(graph))
            raise ModelError(f"SCM: the graph has a cycle ({cycle} -> {nx.find_cycle(graph)[0][0]})")
        nx.freeze(graph)
        self._variables = MappingProxyType({v.name: v for v in variables})
        self._order = tuple(names)
        self._graph = graph
        self._topo = tuple(nx.lexicographical_topological_sort(graph, key=names.index))

    # --------------------------------------------------------------------------- queries
    @property
    def variables(self) -> Mapping[str, Variable]:
        """Name -> :class:`Variable`, in declaration order (read-only)."""
        return self._variables

    @property
    def names(self) -> tuple[str, ...]:
        return self._order

    @property
    def graph(self) -> nx.DiGraph:
        """The causal DAG (frozen networkx DiGraph; node attribute ``latent``)."""
        return self._graph

    @property
    def latent(self) -> frozenset[str]:
        return frozenset(n for n, v in self._variables.items() if v.latent)

    def _check(self, *names: str) -> None:
        for n in names:
            if n not in self._variables:
                raise ModelError(f"SCM has no variable {n!r}; variables: {list(self._order)}")

    def parents(self, name: str) -> tuple[str, ...]:
        """Parents of ``name`` in equation order."""
        self._check(name)
        return tuple(self._variables[name].equation.parents)

    def children(self, name: str) -> set[str]:
        self._check(name)
        return set(self._graph.successors(name))

    def ancestors(self, name: str) -> set[str]:
        self._check(name)
        return set(nx.ancestors(self._graph, name))

    def descendants(self, name: str) -> set[str]:
        self._check(name)
        return set(nx.descendants(self._graph, name))

    def d_separated(self, x, y, z=()) -> bool:
        """True when ``x`` and ``y`` (names or sets of names) are d-separated given ``z`` (networkx)."""
        xs, ys, zs = _as_set(x), _as_set(y), _as_set(z)
        self._check(*xs, *ys, *zs)
        return bool(nx.is_d_separator(self._graph, xs, ys, zs))

    def __repr__(self) -> str:
        lines = [f"{n} := {self._variables[n].equation.describe()}" for n in self._topo]
        return "SCM(" + "; ".join(lines) + ")"

    # --------------------------------------------------------------------------- interventions
    def do(self, interventions: Mapping[str, Any] | None = None, /, **kwargs) -> "SCM":
        """A new SCM with the named variables set: a number (or per-unit array) or a new :class:`Equation`.

        The noise of an intervened variable is kept (unused) so that the noise streams, and hence the units,
        stay aligned with the original model under the same seed.

        Examples
        --------
        >>> scm = SCM([Variable("x", Linear({}), Noise.normal(1.0)), Variable("y", Linear({"x": 2.0}))])
        >>> float(scm.do(x=3.0).sample(2, seed=1)["y"].iloc[0])
        6.0
        """
        changes = {**(interventions or {}), **kwargs}
        if not changes:
            raise ModelError("do(): give at least one intervention, e.g. do(dose=1000.0)")
        self._check(*changes)
        new = []
        for name in self._order:
            v = self._variables[name]
            if name in changes:
                value = changes[name]
                equation = value if isinstance(value, Equation) else Constant(_constant(name, value))
                v = Variable(v.name, equation, v.noise, v.unit, v.latent, v.description)
            new.append(v)
        return SCM(new)

    # --------------------------------------------------------------------------- sampling
    def noise(self, n: int, seed) -> dict[str, np.ndarray]:
        """Every variable's noise for ``n`` units: one child stream of ``seed`` per variable (declaration order)."""
        n = _check_n(n)
        streams = np.random.SeedSequence(seed).spawn(len(self._order)) if not isinstance(
            seed, np.random.SeedSequence) else seed.spawn(len(self._order))
        return {name: self._variables[name].noise.draw(np.random.default_rng(s), n)
                for name, s in zip(self._order, streams)}

    def evaluate(self, noise: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Propagate given noise through the equations in topological order; name -> (n,) array."""
        values: dict[str, np.ndarray] = {}
        for name in self._topo:
            eq = self._variables[name].equation
            u = np.asarray(noise[name])
            parent_values = {p: values[p] for p in eq.parents}
            x = np.asarray(eq.evaluate(parent_values, u), dtype=float)
            if x.shape != (u.shape[0],):
                raise ModelError(f"variable {name}: equation returned shape {x.shape}, expected ({u.shape[0]},)")
            values[name] = x
        return {name: values[name] for name in self._order}

    def sample(self, n: int, seed=None, *, frame: bool = True):
        """``n`` units drawn from the model: a pandas DataFrame (one column per variable), or a dict of arrays.

        ``seed`` is an int, a SeedSequence or None; the same seed gives the same units in :meth:`do` models.
        """
        values = self.evaluate(self.noise(n, seed))
        if not frame:
            return values
        import pandas as pd

        return pd.DataFrame(values)

    # --------------------------------------------------------------------------- counterfactuals
    def counterfactual(self, unit: Mapping[str, float], interventions: Mapping[str, Any]) -> dict[str, float]:
        """One unit's values had ``interventions`` been applied (abduction – action – prediction).

        Parameters
        ----------
        unit : mapping name -> float
            The unit's observed (factual) values.  Every descendant of an intervened variable and each of
            their parents must be given, so that their noise can be recovered.
        interventions : mapping name -> value
            As for :meth:`do`.

        Returns
        -------
        dict name -> float
            Counterfactual values of the given, intervened and affected variables (non-descendants of the
            intervention keep their factual values).

        Raises
        ------
        ModelError
            A needed value is missing, or a variable's noise is not identifiable (its equation is not
            invertible, e.g. a binary threshold or a multi-dimensional mechanistic noise).
        """
        if not interventions:
            raise ModelError("counterfactual: give at least one intervention")
        self._check(*interventions, *unit)
        affected = set()
        for x in interventions:
            affected |= self.descendants(x)
        affected -= set(interventions)
        needed = set(affected).union(*(self.parents(a) for a in affected))
        missing = sorted(needed - set(unit))
        if missing:
            raise ModelError(f"counterfactual: the unit must give the observed values of {missing} (descendants "
                             "of the intervention and their parents, factual values) to recover its noise")
        observed = {k: np.array([float(v)]) for k, v in unit.items()}
        noise = {}
        for name in self._order:
            v = self._variables[name]
            if name in affected:
                eq = v.equation
                try:
                    u = eq.abduct(observed[name], {p: observed[p] for p in eq.parents})
                except ModelError as exc:
                    raise ModelError(f"counterfactual: the noise of {name} is not identifiable from its observed "
                                     f"value: {exc}") from None
                if v.noise.dim != 1 or np.ndim(u) != 1:
                    raise ModelError(f"counterfactual: the noise of {name} has {v.noise.dim} components, which one "
                                     "observed value cannot recover")
                noise[name] = np.asarray(u, dtype=float).reshape(1)
            else:
                noise[name] = np.zeros((1, v.noise.dim)) if v.noise.dim > 1 else np.zeros(1)
        world = self.do(interventions)
        # non-descendants: factual values (they are unchanged by the intervention)
        fixed = {k: Constant(float(unit[k])) for k in self._order
                 if k not in affected and k not in interventions and k in unit}
        if fixed:
            world = world.do(fixed)
        values = world.evaluate(noise)
        known = set(unit) | affected | set(interventions)
        return {k: float(v[0]) for k, v in values.items() if k in known}


def _as_set(x) -> set[str]:
    if isinstance(x, str):
        return {x}
    return set(x)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"sample size must be a positive integer, got {n!r}")
    return int(n)


def _constant(name: str, value) -> Any:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ModelError(f"do({name}=...): the value must be finite, got {value!r}")
    return float(arr) if arr.ndim == 0 else arr
