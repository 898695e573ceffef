"""Global sensitivity analysis: Sobol' indices with bootstrap confidence intervals.

:func:`sobol_indices` computes first-order (S1), total-order (ST) and,
optionally, second-order (S2) Sobol' indices of any vectorised function
f(X: (n, d)) -> (n,) or (n, k); :func:`model_sobol` does the same for a scalar
exposure summary (AUC, Cmax, trough or your own) of a medtwin model, with every
sample simulated in one batched :func:`~medtwin.core.simulate.simulate` call;
:func:`plot_sobol` draws the indices with their confidence intervals.

Why SALib rather than hand-written estimators
---------------------------------------------
The sampling design (Saltelli's cross-sampled matrices A, B and A_B^(i) built
on a scrambled Sobol' sequence), the estimators (Saltelli et al. 2010 for S1,
Jansen 1999 for ST, Saltelli 2002 for S2) and the bootstrap confidence
intervals are easy to get subtly wrong (the off-by-one of the A_B columns, the
centring of Y, non-power-of-two sample sizes that break the sequence's
balance).  SALib is the reference open-source implementation, is cited in the
literature and is verified on the standard test functions; medtwin adds only
input checking, reproducible seeding, unit bookkeeping and the batched model
evaluation (DESIGN.md §4).

Conventions
-----------
* ``n`` is the *base* sample size (SALib's N, a power of two); the function is
  evaluated ``n·(d + 2)`` times, or ``n·(2d + 2)`` with ``second_order=True``.
* Inputs are independent.  A range (low, high) means uniform on it; a frozen
  ``scipy.stats`` distribution is sampled by its inverse CDF applied to the
  uniform Sobol' points (the indices are those of the inputs themselves).
* The confidence values (``S1_conf``...) are half-widths of normal-theory
  intervals from SALib's bootstrap (index ± half-width at level
  ``confidence``).  The bootstrap resamples the quasi-random points as if they
  were independent, so with a Sobol' sequence the intervals are conservative.

References
----------
Sobol' IM. Global sensitivity indices for nonlinear mathematical models and
their Monte Carlo estimates. Math Comput Simul 2001;55:271-280.
Saltelli A, Annoni P, Azzini I, Campolongo F, Ratto M, Tarantola S. Variance
based sensitivity analysis of model output. Comput Phys Commun 2010;181:259-270.
Herman J, Usher W. SALib: an open-source Python library for sensitivity
analysis. J Open Source Softw 2017;2(9):97.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medtwin.errors import DataError, ParameterError, SimulationError

SUMMARIES = ("auc", "cmax", "ctrough")


def _frozen(values) -> np.ndarray:
    out = np.array(values, dtype=float)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class SobolResult:
    """Sobol' indices of one or several outputs with respect to ``d`` inputs.

    Attributes
    ----------
    names : tuple of str
        The inputs, in column order of ``X``.
    S1, ST : ndarray
        First- and total-order indices (dimensionless), shape (d,) for a
        scalar output and (k, d) for k outputs (rows follow ``output_names``).
    S1_conf, ST_conf : ndarray
        Confidence half-widths of S1 and ST at level ``confidence`` (same shapes).
    S2, S2_conf : ndarray or None
        Second-order indices and half-widths, (d, d) or (k, d, d); only the
        upper triangle (i < j) is filled, the rest is NaN.  None unless asked for.
    n : int
        Base sample size N (a power of two).
    n_evaluations : int
        Function evaluations used: N·(d + 2), or N·(2d + 2) with S2.
    seed : int
        Seed that reproduces the sample and the bootstrap exactly.
    confidence : float
        Level of the confidence intervals (e.g. 0.95).
    n_bootstrap : int
        Bootstrap resamples behind the intervals.
    output_names : tuple of str
        Output names (one entry, ``"y"`` by default, for a scalar output).
    unit : str
        Unit of the analysed output (the indices themselves are dimensionless).
    label : str
        What was analysed, in words.
    output_variance : ndarray
        Sample variance of each output over all evaluations (``unit`` squared),
        shape () or (k,).
    extra : mapping
        Context recorded by the caller (model, regimen, summary...).

    Notes
    -----
    Indices are NaN for an output of a multi-output function that does not vary
    over the sample (its variance decomposition is undefined).
    """

    names: tuple[str, ...]
    S1: np.ndarray
    S1_conf: np.ndarray
    ST: np.ndarray
    ST_conf: np.ndarray
    n: int
    n_evaluations: int
    seed: int
    confidence: float
    n_bootstrap: int
    S2: np.ndarray | None = None
    S2_conf: np.ndarray | None = None
    output_names: tuple[str, ...] = ("y",)
    unit: str = ""
    label: str = ""
    output_variance: np.ndarray = field(default_factory=lambda: _frozen(np.nan))
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def multi_output(self) -> bool:
        """True when the indices have a leading output axis."""
        return self.S1.ndim == 2

    def _row(self, output) -> int | None:
        if not self.multi_output:
            if output not in (None, 0, self.output_names[0]):
                raise DataError(f"output: the result has the single output {self.output_names[0]!r}, got {output!r}")
            return None
        if output is None:
            raise DataError(f"output: choose one of {list(self.output_names)} (the result has {len(self.output_names)})")
        if isinstance(output, str):
            if output not in self.output_names:
                raise DataError(f"output: no output {output!r}; outputs are {list(self.output_names)}")
            return self.output_names.index(output)
        if not isinstance(output, numbers.Integral) or not 0 <= int(output) < len(self.output_names):
            raise DataError(f"output: index {output!r} outside 0..{len(self.output_names) - 1}")
        return int(output)

    def indices(self, output=None) -> dict[str, np.ndarray]:
        """S1, S1_conf, ST, ST_conf (each (d,)) of one output (name or index; optional for a scalar output)."""
        row = self._row(output)
        keys = ("S1", "S1_conf", "ST", "ST_conf")
        return {k: getattr(self, k) if row is None else getattr(self, k)[row] for k in keys}

    def to_frame(self):
        """Long pandas DataFrame: output, input, S1, S1_conf, ST, ST_conf."""
        import pandas as pd

        rows = []
        for k, out in enumerate(self.output_names):
            values = self.indices(k if self.multi_output else None)
            for j, name in enumerate(self.names):
                rows.append({"output": out, "input": name, **{key: float(v[j]) for key, v in values.items()}})
        return pd.DataFrame(rows)

    def as_dict(self) -> dict:
        """JSON-ready dictionary of everything in the result (for provenance records and services)."""

        def plain(a):
            return None if a is None else np.where(np.isnan(a), None, a).tolist()

        return {
            "names": list(self.names), "output_names": list(self.output_names), "unit": self.unit,
            "label": self.label, "S1": plain(self.S1), "S1_conf": plain(self.S1_conf), "ST": plain(self.ST),
            "ST_conf": plain(self.ST_conf), "S2": plain(self.S2), "S2_conf": plain(self.S2_conf), "n": self.n,
            "n_evaluations": self.n_evaluations, "seed": self.seed, "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap, "output_variance": plain(self.output_variance),
            "extra": {k: v for k, v in self.extra.items()},
        }


# ----------------------------------------------------------------------------- input spaces
def _is_distribution(spec) -> bool:
    return hasattr(spec, "ppf") and callable(spec.ppf)


def _range(name: str, spec, field_name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in spec)
    except (TypeError, ValueError):
        raise DataError(
            f"{field_name}[{name!r}]: give a (low, high) range or a frozen scipy.stats distribution, got {spec!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise DataError(f"{field_name}[{name!r}]: range must be finite with low < high, got ({low}, {high})")
    return low, high


@dataclass(frozen=True)
class _Space:
    """Independent inputs: a SALib problem on which X is sampled, and the per-column transforms."""

    names: tuple[str, ...]
    problem: dict
    distributions: tuple[Any, ...]  # None (sampled directly) or a frozen distribution (sampled on [0, 1])

    def transform(self, X: np.ndarray) -> np.ndarray:
        if all(d is None for d in self.distributions):
            return X
        X = X.copy()
        tiny = np.finfo(float).eps
        for j, dist in enumerate(self.distributions):
            if dist is not None:
                X[:, j] = dist.ppf(np.clip(X[:, j], tiny, 1.0 - tiny))
        return X


def _space(problem_or_bounds, field_name: str = "problem_or_bounds") -> _Space:
    """Normalise a SALib problem, a {name: range or distribution} mapping or a list of ranges."""
    spec = problem_or_bounds
    if isinstance(spec, Mapping) and "bounds" in spec:
        if "groups" in spec and spec["groups"] is not None:
            raise DataError(f"{field_name}: SALib groups are not supported; give one entry per input")
        bounds = list(spec["bounds"])
        names = tuple(spec.get("names") or (f"x{i + 1}" for i in range(len(bounds))))
        if len(names) != len(bounds):
            raise DataError(f"{field_name}: {len(names)} names for {len(bounds)} bounds")
        if "num_vars" in spec and int(spec["num_vars"]) != len(bounds):
            raise DataError(f"{field_name}: num_vars = {spec['num_vars']} but {len(bounds)} bounds")
        if "dists" in spec:  # SALib's own distributions: bounds carry their parameters
            problem = {"num_vars": len(bounds), "names": list(names), "bounds": [list(map(float, b)) for b in bounds],
                       "dists": list(spec["dists"])}
            return _check_names(_Space(names, problem, (None,) * len(names)), field_name)
        entries = dict(zip(names, bounds))
        if len(entries) != len(names):
            raise DataError(f"{field_name}: duplicate input names in {list(names)}")
    elif isinstance(spec, Mapping):
        entries = dict(spec)
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        entries = {f"x{i + 1}": b for i, b in enumerate(spec)}
    else:
        raise DataError(f"{field_name}: give a SALib problem dict, a mapping name -> range/distribution or a "
                        f"list of (low, high) ranges, got {type(spec).__name__}")
    if not entries:
        raise DataError(f"{field_name}: needs at least one input")
    names, bounds, dists = [], [], []
    for name, item in entries.items():
        names.append(str(name))
        if _is_distribution(item):
            bounds.append([0.0, 1.0])
            dists.append(item)
        else:
            bounds.append(list(_range(str(name), item, field_name)))
            dists.append(None)
    problem = {"num_vars": len(names), "names": names, "bounds": bounds}
    return _check_names(_Space(tuple(names), problem, tuple(dists)), field_name)


def _check_names(space: _Space, field_name: str) -> _Space:
    if len(set(space.names)) != len(space.names):
        raise DataError(f"{field_name}: duplicate input names in {list(space.names)}")
    return space


def _check_settings(n, n_bootstrap, confidence) -> None:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2 or (int(n) & (int(n) - 1)):
        raise DataError(f"n: the base sample size must be a power of two >= 2 (Sobol' sequence balance), got {n!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 2:
        raise DataError(f"n_bootstrap: need an integer >= 2 bootstrap resamples, got {n_bootstrap!r}")
    if not isinstance(confidence, numbers.Real) or not 0.0 < float(confidence) < 1.0:
        raise DataError(f"confidence: must lie strictly between 0 and 1, got {confidence!r}")


def _seeds(seed) -> tuple[int, int, int]:
    """(recorded seed, sampling seed, bootstrap seed); the bootstrap seed is never 0 (SALib treats 0 as unseeded)."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    elif isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed: must be a non-negative integer or None, got {seed!r}")
    sample_seed, boot_seed = np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint32)
    return int(seed), int(sample_seed), int(boot_seed) | 1


# ----------------------------------------------------------------------------- generic indices
def sobol_indices(
    func: Callable[[np.ndarray], np.ndarray],
    problem_or_bounds,
    n: int = 2**14,
    *,
    second_order: bool = False,
    seed: int | None = None,
    n_bootstrap: int = 100,
    confidence: float = 0.95,
    output_names: Sequence[str] | None = None,
    unit: str = "",
    label: str = "",
    extra: Mapping[str, Any] | None = None,
) -> SobolResult:
    """Sobol' indices of a vectorised function by Saltelli sampling (SALib).

    Parameters
    ----------
    func : callable
        ``func(X) -> Y`` with X of shape (n_evaluations, d) in the inputs' own
        units and Y of shape (n_evaluations,) or (n_evaluations, k); called
        exactly once with the whole sample.
    problem_or_bounds : mapping or sequence
        The inputs: a mapping ``name -> (low, high)`` (uniform) or ``name ->``
        frozen ``scipy.stats`` distribution; a list of (low, high) ranges (inputs
        named ``x1, x2, ...``); or a SALib problem dict (``names``, ``bounds``,
        optional ``dists``).
    n : int
        Base sample size N, a power of two (default 2^14).
    second_order : bool
        Also compute S2 (costs N·d more evaluations).
    seed : int, optional
        Seed of the scrambled Sobol' sample and of the bootstrap; None draws one
        and records it in the result.
    n_bootstrap : int
        Bootstrap resamples for the confidence intervals (SALib's default 100).
    confidence : float
        Confidence level of the intervals, in (0, 1).
    output_names : sequence of str, optional
        Names of the k outputs (default ``y`` or ``y0, y1, ...``).
    unit : str
        Unit of the output, carried into the result.
    label : str
        What the output is, carried into the result.
    extra : mapping, optional
        Context stored in :attr:`SobolResult.extra`.

    Returns
    -------
    SobolResult

    Raises
    ------
    DataError
        Invalid settings or inputs (the message names the argument), a
        function result of the wrong shape or with non-finite values, or a
        scalar output that does not vary.

    Examples
    --------
    y = x1 + 2·x2 with both inputs uniform on [0, 1]: S1 = (1/5, 4/5), no interactions.

    >>> res = sobol_indices(lambda X: X[:, 0] + 2 * X[:, 1], {"x1": (0, 1), "x2": (0, 1)}, n=2**12, seed=1)
    >>> res.S1.round(2).tolist(), res.ST.round(2).tolist(), res.n_evaluations
    ([0.2, 0.8], [0.2, 0.8], 16384)
    """
    from SALib.analyze import sobol as salib_analyze
    from SALib.sample import sobol as salib_sample

    if not callable(func):
        raise DataError(f"func: must be callable, got {type(func).__name__}")
    _check_settings(n, n_bootstrap, confidence)
    space = _space(problem_or_bounds)
    recorded, sample_seed, boot_seed = _seeds(seed)
    d = len(space.names)

    X = salib_sample.sample(space.problem, int(n), calc_second_order=bool(second_order), seed=sample_seed)
    X = space.transform(X)
    Y = np.asarray(func(X), dtype=float)
    if Y.ndim not in (1, 2) or Y.shape[0] != X.shape[0]:
        raise DataError(f"func: returned shape {Y.shape} for X of shape {X.shape}; expected ({X.shape[0]},) or "
                        f"({X.shape[0]}, k)")
    bad = ~np.isfinite(Y) if Y.ndim == 1 else ~np.all(np.isfinite(Y), axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        at = ", ".join(f"{name}={X[i, j]:.6g}" for j, name in enumerate(space.names))
        raise DataError(f"func: non-finite output for {int(bad.sum())} of {len(Y)} samples, first at {at}")
    columns = Y[:, None] if Y.ndim == 1 else Y
    k = columns.shape[1]
    if output_names is None:
        names_out = ("y",) if Y.ndim == 1 else tuple(f"y{i}" for i in range(k))
    else:
        names_out = tuple(str(s) for s in output_names)
        if len(names_out) != k:
            raise DataError(f"output_names: {len(names_out)} names for {k} outputs")
    variance = columns.var(axis=0)
    if Y.ndim == 1 and not variance[0] > 0:
        raise DataError("func: the output is constant over the sample; Sobol' indices are undefined")

    shape1 = (k, d)
    S1, S1c, ST, STc = (np.full(shape1, np.nan) for _ in range(4))
    S2 = np.full((k, d, d), np.nan) if second_order else None
    S2c = np.full((k, d, d), np.nan) if second_order else None
    salib_problem = {"num_vars": d, "names": list(space.names), "bounds": space.problem["bounds"]}
    for c in range(k):
        if not variance[c] > 0:
            continue
        res = salib_analyze.analyze(salib_problem, np.ascontiguousarray(columns[:, c]),
                                    calc_second_order=bool(second_order), num_resamples=int(n_bootstrap),
                                    conf_level=float(confidence), seed=boot_seed)
        S1[c], S1c[c], ST[c], STc[c] = res["S1"], res["S1_conf"], res["ST"], res["ST_conf"]
        if second_order:
            S2[c], S2c[c] = res["S2"], res["S2_conf"]

    def shaped(a):
        if a is None:
            return None
        return _frozen(a[0] if Y.ndim == 1 else a)

    return SobolResult(
        names=space.names, S1=shaped(S1), S1_conf=shaped(S1c), ST=shaped(ST), ST_conf=shaped(STc),
        S2=shaped(S2), S2_conf=shaped(S2c), n=int(n), n_evaluations=int(X.shape[0]), seed=recorded,
        confidence=float(confidence), n_bootstrap=int(n_bootstrap), output_names=names_out, unit=str(unit),
        label=str(label), output_variance=_frozen(variance[0] if Y.ndim == 1 else variance),
        extra=dict(extra or {}),
    )


# ----------------------------------------------------------------------------- model outputs
def _summary_unit(summary: str, unit: str) -> str:
    if summary != "auc":
        return unit
    if "/" in unit:
        numerator, denominator = unit.split("/", 1)
        return f"{numerator}·h/{denominator}"
    return f"{unit}·h"


def _model_inputs(model, parameters, covariates) -> tuple[dict, set]:
    """Check the varied names against the model (parameters or covariates) and ranges against the bounds."""
    if not isinstance(parameters, Mapping) or not parameters:
        raise ParameterError("parameters: give a non-empty mapping name -> (low, high) or distribution")
    covariate_names = set(model.covariates) | set(model.covariate_units)
    varied_covariates = set()
    for name, spec in parameters.items():
        if name in model.parameter_names:
            if not _is_distribution(spec):
                low, high = _range(name, spec, "parameters")
                par = model.parameter(name)
                if low < par.lower or high > par.upper:
                    raise ParameterError(f"parameters[{name!r}]: range ({low}, {high}) {par.unit} leaves the "
                                         f"parameter's domain [{par.lower}, {par.upper}]")
        elif name in covariate_names:
            varied_covariates.add(name)
        else:
            raise ParameterError(f"parameters: {name!r} is neither a parameter {list(model.parameter_names)} nor a "
                                 f"covariate {sorted(covariate_names)} of model {model.name}")
    fixed = dict(covariates or {})
    unknown = set(fixed) - covariate_names
    if unknown:
        raise ParameterError(f"covariates: model {model.name} has no covariate(s) {sorted(unknown)}; "
                             f"known: {sorted(covariate_names)}")
    both = set(fixed) & varied_covariates
    if both:
        raise ParameterError(f"covariates: {sorted(both)} are both fixed and varied; drop them from covariates")
    return fixed, varied_covariates


def _summarise(summary, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    if summary == "auc":
        return np.trapezoid(values, times, axis=1)
    if summary == "cmax":
        return values.max(axis=1)
    if summary == "ctrough":
        return values[:, -1]
    out = np.asarray(summary(times, values), dtype=float)
    if out.shape != (values.shape[0],):
        raise DataError(f"summary: callable returned shape {out.shape}, expected ({values.shape[0]},)")
    return out


def model_sobol(
    model,
    regimen,
    times,
    parameters: Mapping[str, Any],
    *,
    output: str | None = None,
    summary: str | Callable = "auc",
    summary_unit: str | None = None,
    covariates: Mapping[str, float] | None = None,
    n: int = 2**12,
    second_order: bool = False,
    seed: int | None = None,
    n_bootstrap: int = 100,
    confidence: float = 0.95,
    simulate_options: Mapping[str, Any] | None = None,
) -> SobolResult:
    """Sobol' indices of a scalar exposure summary of a model output w.r.t. chosen parameters.

    All N·(d + 2) parameter samples are simulated in one batched
    :func:`~medtwin.core.simulate.simulate` call (one row of the parameter
    table per sample), then reduced to one number per sample by ``summary``.

    Parameters
    ----------
    model : Model or str
        A model or the name of a library model.
    regimen : Regimen
        The dosing regimen, shared by all samples.
    times : array_like
        Output times in h (1-D, non-decreasing) on which the summary is taken.
    parameters : mapping
        The varied inputs: ``name -> (low, high)`` (uniform, in the parameter's
        unit, inside its bounds) or a frozen ``scipy.stats`` distribution.  A
        name may also be a covariate of the model (e.g. ``CRCL``): its samples
        go through the model's covariate model.  Parameters not listed keep
        their (covariate-adjusted) typical values; listed parameters override
        covariate-derived values.
    output : str, optional
        Model output to summarise (default: the model's first output, ``C`` for PK).
    summary : {"auc", "cmax", "ctrough"} or callable
        ``auc``: trapezoidal area over ``times`` (output unit · h; use a grid
        fine and long enough for the exposure you mean); ``cmax``: the largest
        value on ``times``; ``ctrough``: the value at the last time (a trough
        when the grid ends before the next dose: a time that coincides with a
        dose is rejected because it sees the post-dose state).  A callable
        ``summary(times (n_times,), values (n_samples, n_times)) -> (n_samples,)``
        needs ``summary_unit``.
    summary_unit : str, optional
        Unit of a callable summary's result.
    covariates : mapping, optional
        Fixed covariate values (e.g. ``{"CRCL": 60, "WT": 80}``) for the
        covariate model.
    n, second_order, seed, n_bootstrap, confidence
        As in :func:`sobol_indices` (default N = 2^12 here).
    simulate_options : mapping, optional
        Extra keyword arguments for :func:`~medtwin.core.simulate.simulate`
        (``method``, ``rtol``, ``atol``...).

    Returns
    -------
    SobolResult
        With ``unit`` the summary's unit and the setting in ``extra``.

    Raises
    ------
    ParameterError
        Unknown names or ranges outside a parameter's domain (the message names them).
    DataError
        Invalid summary, times or sampling settings.
    SimulationError
        Some samples failed numerically (their statuses are counted in the message).

    Examples
    --------
    AUC of a single IV bolus is Dose/CL: clearance explains all of its variance.

    >>> from medtwin.core.events import Regimen
    >>> res = model_sobol("pk1_iv", Regimen.single(100.0), np.linspace(0, 400, 2001),
    ...                   {"CL": (1.0, 3.0), "V": (10.0, 30.0)}, n=2**8, seed=7)
    >>> res.unit, res.names
    ('mg·h/L', ('CL', 'V'))
    >>> bool(res.S1[0] > 0.99 and abs(res.ST[1]) < 0.01)
    True
    """
    from medtwin.core.simulate import simulate
    from medtwin.core.status import Status
    from medtwin.models import get_model

    if isinstance(model, str):
        model = get_model(model)
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or len(times) < 1:
        raise DataError(f"times: need a 1-D array of output times (h), got shape {times.shape}")
    out_name = model.outputs[0].name if output is None else output
    out_unit = model.output(out_name).unit
    if isinstance(summary, str):
        if summary not in SUMMARIES:
            raise DataError(f"summary: choose one of {SUMMARIES} or a callable, got {summary!r}")
        if summary == "auc" and len(times) < 2:
            raise DataError("times: an AUC needs at least two output times")
        if summary == "ctrough" and regimen is not None:
            dosing = {e.time for e in regimen.expanded() if e.amount > 0}
            if float(times[-1]) in dosing:
                raise DataError(f"times: the trough time {times[-1]} h coincides with a dose (the output would be "
                                "post-dose); end the grid just before the dose")
        unit = _summary_unit(summary, out_unit)
        label_summary = summary
    elif callable(summary):
        if summary_unit is None:
            raise DataError("summary_unit: a callable summary needs the unit of its result")
        unit = str(summary_unit)
        label_summary = getattr(summary, "__name__", "custom")
    else:
        raise DataError(f"summary: choose one of {SUMMARIES} or a callable, got {summary!r}")
    fixed, varied_covariates = _model_inputs(model, parameters, covariates)
    names = tuple(parameters)
    options = dict(simulate_options or {})
    options.pop("keep_states", None)

    def evaluate(X: np.ndarray) -> np.ndarray:
        m = X.shape[0]
        cov = {k: np.full(m, float(v)) for k, v in fixed.items()}
        cov.update({name: X[:, j] for j, name in enumerate(names) if name in varied_covariates})
        typical = model.typical_parameters(cov) if cov else model.typical_parameters()
        values = {p: np.broadcast_to(np.asarray(typical[p], dtype=float), (m,)) for p in model.parameter_names}
        values.update({name: X[:, j] for j, name in enumerate(names) if name in model.parameter_names})
        table = model.parameter_table(values, n=m)
        trajectory = simulate(model, table, regimen, times, keep_states=False, **options)
        if not trajectory.ok:
            failed = trajectory.status != Status.OK
            kinds = {Status(int(s)).name: int(np.sum(trajectory.status == s)) for s in np.unique(trajectory.status[failed])}
            i = int(np.argmax(failed))
            at = ", ".join(f"{name}={X[i, j]:.6g}" for j, name in enumerate(names))
            raise SimulationError(f"{int(failed.sum())} of {m} samples failed {kinds}; first at {at}")
        return _summarise(summary, times, trajectory.output(out_name))

    label = f"{label_summary} of {out_name} ({model.name}) over [{times[0]:g}, {times[-1]:g}] h"
    extra = {"model": model.name, "model_digest": model.digest(), "output": out_name, "summary": label_summary,
             "times_h": [float(times[0]), float(times[-1]), len(times)], "covariates": dict(fixed),
             "regimen_total_mg": None if regimen is None else regimen.total_amount()}
    return sobol_indices(evaluate, dict(parameters), n, second_order=second_order, seed=seed,
                         n_bootstrap=n_bootstrap, confidence=confidence, output_names=(label_summary,), unit=unit,
                         label=label, extra=extra)


# ----------------------------------------------------------------------------- plot
def plot_sobol(result: SobolResult, ax=None, *, output=None):
    """Bar chart of S1 and ST per input with their confidence intervals as error bars.

    Parameters
    ----------
    result : SobolResult
        From :func:`sobol_indices` or :func:`model_sobol`.
    ax : matplotlib Axes, optional
        Where to draw; a new figure (pyplot) when None.
    output : str or int, optional
        Which output of a multi-output result to draw.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> res = sobol_indices(lambda X: X[:, 0] + 2 * X[:, 1], [(0, 1), (0, 1)], n=2**8, seed=1)
    >>> ax = plot_sobol(res)
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['x1', 'x2']
    """
    values = result.indices(output)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(result.names) + 2.0), 3.5))
    x = np.arange(len(result.names))
    width = 0.38
    ax.bar(x - width / 2, values["S1"], width, yerr=values["S1_conf"], capsize=3, label="first order S1")
    ax.bar(x + width / 2, values["ST"], width, yerr=values["ST_conf"], capsize=3, label="total order ST")
    ax.set_xticks(x)
    ax.set_xticklabels(result.names)
    ax.set_ylabel("Sobol' index")
    ax.axhline(0.0, color="black", linewidth=0.6)
    level = f"{100 * result.confidence:g}% CI"
    title = result.label or (result.output_names[0] if output is None else str(output))
    ax.set_title(f"{title}{f' [{result.unit}]' if result.unit else ''}; bars: {level}", fontsize="medium")
    ax.legend(frameon=False)
    return ax
