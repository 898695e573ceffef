"""Forecast validation: personalize on each patient's first k observations, predict the rest, score.

For every patient with more than ``k`` observations, :func:`validate`

1. personalizes on the first ``k`` (:meth:`PatientData.first`, the population
   prior times their likelihood, :func:`~medtwin.infer.personalize.personalize`);
2. forecasts the held-out observations at their own times under the patient's
   full regimen: the posterior predictive distribution *with* residual error
   (parameter draws z ~ p(z | first k), f = model(z), y = f + √Var(y | f)·ε),
   honouring NONMEM record order (``pre_dose``: an observation recorded before a
   dose at the same time sees the pre-dose state);
3. scores each held-out observation: inside the central ``level`` prediction
   interval or not, absolute percentage error of the predictive median
   (APE = 100·|median − DV| / |DV|), its PIT (fraction of predictive draws
   below DV) and, for every nominal level of a grid, whether it is inside the
   central interval of that level (the calibration curve).

If the population model generated the data and the posterior were exact, every
held-out observation would fall inside its central L interval with probability
L, so the empirical coverage estimates L.  Observations of one patient share
the posterior and are positively correlated, so the binomial band of
:func:`plot_calibration` (independent observations) is somewhat too narrow.

Patients with ≤ k observations are skipped and listed; a patient whose
personalization or forecast fails is reported with its status, not raised.
Held-out observations flagged BLQ are not scored (no value to compare).

Examples
--------
>>> from medtwin.core.events import Regimen
>>> from medtwin.core.data import PatientData
>>> from medtwin.io.population_file import load_population, shipped_population_path
>>> pop = load_population(shipped_population_path("pheno"))
>>> reg = Regimen.every(12.0, "h", 5.0, "mg", n=6)
>>> pts = [PatientData(reg, [2.0, 35.0, 59.0], [6.0, 9.5, 12.0], {"WGT": 1.2, "APGR": 7.0}, patient="1"),
...        PatientData(reg, [3.0], [4.0], {"WGT": 1.0, "APGR": 4.0}, patient="2")]
>>> r = validate(pop, pts, k=1, n_draws=400)
>>> r.n_patients, r.n_observations, r.skipped
(1, 2, ('2',))
>>> list(r.observations.columns[:8])
['ID', 'TIME', 'DV', 'median', 'lo', 'hi', 'inside', 'APE']
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from medtwin.core.population import Population
from medtwin.errors import DataError, EstimationError, MedtwinError
from medtwin.core.data import PatientData
from medtwin.infer.personalize import METHODS, personalize
from medtwin.models import get_model
from medtwin.infer.status import FitStatus

__all__ = ["CALIBRATION_LEVELS", "ValidationResult", "binomial_band", "plot_calibration", "predictive_observations",
           "validate"]

#: Nominal central-interval levels of the calibration curve.
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Errors a patient's personalization or forecast may raise that are reported instead of raised.
_PATIENT_ERRORS = (MedtwinError, np.linalg.LinAlgError, ArithmeticError, ValueError)


def _frozen(values, dtype=None) -> np.ndarray:
    out = np.array(values, dtype=dtype)
    out.flags.writeable = False
    return out


def binomial_band(n: int, p, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Central ``confidence`` range of an empirical proportion x/n when x ~ Binomial(n, p).

    Parameters
    ----------
    n : int
        Number of (independent) observations, > 0.
    p : float or array_like
        Nominal probabilities in [0, 1].
    confidence : float
        Probability content of the range, in (0, 1).

    Returns
    -------
    lo, hi : ndarray
        Bounds on the proportion (same shape as ``p``).

    Examples
    --------
    >>> lo, hi = binomial_band(100, 0.9)
    >>> float(lo), float(hi)
    (0.84, 0.95)
    """
    from scipy import stats

    if int(n) <= 0:
        raise DataError(f"binomial_band: n must be positive, got {n}")
    if not 0.0 < confidence < 1.0:
        raise DataError(f"binomial_band: confidence must be in (0, 1), got {confidence}")
    p = np.asarray(p, dtype=float)
    tail = (1.0 - confidence) / 2.0
    return stats.binom.ppf(tail, int(n), p) / int(n), stats.binom.ppf(1.0 - tail, int(n), p) / int(n)


# ------------------------------------------------------------------------------- result value
@dataclass(frozen=True, eq=False)
class ValidationResult:
    """Scores of a k-observation forecast validation (see the module docstring).

    Attributes
    ----------
    k : int
        Observations used to personalize each patient.
    level : float
        Level of the scored central prediction interval (``lo``, ``hi``, ``inside``).
    method : str
        Personalization method ("laplace" or "nuts").
    columns : read-only mapping name -> read-only ndarray
        Per held-out observation: ID, TIME (h), DV, median, lo, hi (DV unit), inside (bool),
        APE (%), PIT, and ``inside_<L>`` for every calibration level L.
    levels : ndarray
        Nominal levels of the calibration grid.
    patient_ids, patient_status, patient_message : tuple of str
        Every patient that had more than k observations, its posterior status
        ("converged", "not-converged", ...) or "failed", and a message.
    skipped : tuple of str
        Patients with ≤ k observations.
    unit : str
        Unit of DV.
    n_draws, seed : int
        Predictive draws per patient and base seed.
    """

    k: int
    level: float
    method: str
    columns: Mapping[str, np.ndarray]
    levels: np.ndarray
    patient_ids: tuple
    patient_status: tuple
    patient_message: tuple
    skipped: tuple
    unit: str
    n_draws: int
    seed: int

    @property
    def observations(self) -> pd.DataFrame:
        """Per held-out observation: ID, TIME, DV, median, lo, hi, inside, APE, PIT (a new DataFrame)."""
        return pd.DataFrame({c: self.columns[c] for c in ("ID", "TIME", "DV", "median", "lo", "hi", "inside",
                                                            "APE", "PIT")})

    @property
    def n_observations(self) -> int:
        """Held-out observations scored."""
        return int(self.columns["DV"].size)

    @property
    def n_patients(self) -> int:
        """Patients with at least one scored held-out observation."""
        return int(np.unique(self.columns["ID"]).size)

    @property
    def coverage(self) -> float:
        """Fraction of held-out observations inside the central ``level`` prediction interval."""
        return float(np.mean(self.columns["inside"])) if self.n_observations else float("nan")

    @property
    def mape(self) -> float:
        """Mean absolute percentage error of the predictive median (%), over observations with DV ≠ 0."""
        ape = self.columns["APE"]
        ape = ape[np.isfinite(ape)]
        return float(np.mean(ape)) if ape.size else float("nan")

    @property
    def calibration(self) -> pd.DataFrame:
        """Per nominal level: empirical coverage, n, and the binomial 95 % range of the empirical coverage."""
        n = self.n_observations
        empirical = [float(np.mean(self.columns[_level_key(v)])) if n else np.nan for v in self.levels]
        lo, hi = binomial_band(n, self.levels) if n else (np.full(self.levels.size, np.nan),) * 2
        return pd.DataFrame({"nominal": self.levels, "empirical": empirical, "n": n, "lo95": lo, "hi95": hi})

    @property
    def patients(self) -> pd.DataFrame:
        """Every patient with more than k observations: ID, status, message."""
        return pd.DataFrame({"ID": list(self.patient_ids), "status": list(self.patient_status),
                             "message": list(self.patient_message)})

    @property
    def failed(self) -> tuple:
        """Patients whose personalization or forecast failed."""
        return tuple(p for p, s in zip(self.patient_ids, self.patient_status) if s == FitStatus.FAILED)

    def summary(self) -> str:
        """One line: coverage, MAPE and counts."""
        return (f"k={self.k} ({self.method}): {round(100 * self.level)} % interval coverage {self.coverage:.3f}, "
                f"MAPE {self.mape:.1f} % over {self.n_observations} observations of {self.n_patients} patients "
                f"({len(self.skipped)} skipped, {len(self.failed)} failed)")


def _level_key(level: float) -> str:
    return f"inside_{level:g}"


# ------------------------------------------------------------------------------- prediction
def predictive_observations(posterior, data: PatientData, *, n_draws: int = 1000, seed: int = 0,
                            output: str | None = None) -> np.ndarray:
    """Posterior predictive draws of ``data``'s observations, residual error included.

    :meth:`Posterior.predict` at the observations' own times with their
    ``pre_dose`` flags, under ``data.regimen`` (the band's observed draws).

    Parameters
    ----------
    posterior : Posterior
        From :func:`~medtwin.infer.personalize.personalize`.
    data : PatientData
        The observations to forecast (times, pre_dose; values are not used).
    n_draws, seed : int
        Posterior draws and seed.
    output : str, optional
        Output to forecast (default: ``data.output`` or the residual-error output).

    Returns
    -------
    ndarray, shape (n_draws, J)
        Predicted observations (output unit); NaN for draws whose simulation failed.

    Examples
    --------
    >>> from medtwin.core.events import Regimen
    >>> from medtwin.infer.personalize import personalize
    >>> from medtwin.io.population_file import load_population, shipped_population_path
    >>> pop = load_population(shipped_population_path("pheno"))
    >>> d = PatientData(Regimen.every(12.0, "h", 5.0, "mg", n=3), [2.0, 12.0, 12.0], [5.0, 4.0, 8.0],
    ...                 {"WGT": 1.0, "APGR": 7.0}, pre_dose=[False, True, False])
    >>> y = predictive_observations(personalize(pop, d.first(1)), d, n_draws=200)
    >>> y.shape, bool(np.median(y[:, 2]) > np.median(y[:, 1]))  # after the 12 h dose > before it
    ((200, 3), True)
    """
    if not isinstance(data, PatientData):
        raise DataError(f"data: expected a PatientData, got {type(data).__name__}")
    err = posterior.prior.residual
    output = output or data.output or err.output
    model = posterior.model
    if output not in model.output_names:
        raise DataError(f"model {model.name} has no output {output!r}; have {list(model.output_names)}")
    n = int(n_draws)
    if n < 1:
        raise DataError(f"n_draws must be at least 1, got {n_draws}")
    band = posterior.predict(data.regimen, data.times, n_draws=n, seed=seed, pre_dose=data.pre_dose)
    return band.observed[output] if output == err.output else band.draws[output]


def _score(y: np.ndarray, draws: np.ndarray, level: float, levels: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of observations ``y`` (J,) against predictive ``draws`` (n, J)."""
    tails = np.concatenate([[(1 - level) / 2, 0.5, (1 + level) / 2], (1 - levels) / 2, (1 + levels) / 2])
    q = np.nanquantile(draws, tails, axis=0)
    lo, median, hi = q[0], q[1], q[2]
    m = levels.size
    lower, upper = q[3:3 + m], q[3 + m:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.where(y != 0, 100.0 * np.abs(median - y) / np.abs(y), np.nan)
    valid = np.isfinite(draws)
    pit = (np.sum((draws < y) & valid, axis=0) + 0.5 * np.sum((draws == y) & valid, axis=0)) / \
        np.maximum(valid.sum(axis=0), 1)
    out = {"median": median, "lo": lo, "hi": hi, "inside": (y >= lo) & (y <= hi), "APE": ape, "PIT": pit}
    for j, v in enumerate(levels):
        out[_level_key(v)] = (y >= lower[j]) & (y <= upper[j])
    return out


def _patient_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _as_patients(dataset_or_patients) -> list[PatientData]:
    if isinstance(dataset_or_patients, PatientData):
        return [dataset_or_patients]
    subjects = getattr(dataset_or_patients, "subjects", None)
    if subjects is not None:  # a medtwin.io.nonmem.Dataset
        return [PatientData.from_subject(s) for s in subjects]
    patients = list(dataset_or_patients)
    bad = [type(p).__name__ for p in patients if not isinstance(p, PatientData)]
    if bad:
        raise DataError(f"validate: expected a Dataset or PatientData values, got {bad[0]}")
    return patients


def _check_settings(k, level, levels, n_draws, method) -> np.ndarray:
    if int(k) != k or k < 0:
        raise DataError(f"validate: k must be a non-negative integer, got {k}")
    if not 0.0 < level < 1.0:
        raise DataError(f"validate: level must be in (0, 1), got {level}")
    levels = np.asarray(levels, dtype=float).reshape(-1)
    if levels.size == 0 or np.any((levels <= 0) | (levels >= 1)) or np.any(np.diff(levels) <= 0):
        raise DataError(f"validate: levels must be increasing values in (0, 1), got {levels.tolist()}")
    if int(n_draws) < 2:
        raise DataError(f"validate: n_draws must be at least 2, got {n_draws}")
    if method not in METHODS:
        raise DataError(f"validate: method must be one of {METHODS}, not {method!r}")
    return levels


# ------------------------------------------------------------------------------- validate
def validate(population: Population, dataset_or_patients, k: int, *, method: str = "laplace", level: float = 0.9,
             levels: Sequence[float] = CALIBRATION_LEVELS, n_draws: int = 1000, seed: int = 0,
             progress: Callable[[int, int], None] | None = None,
             personalize_options: Mapping[str, Any] | None = None) -> ValidationResult:
    """Personalize every patient on its first ``k`` observations and score forecasts of the rest.

    Parameters
    ----------
    population : Population
        The population model (prior, residual error).
    dataset_or_patients : Dataset or sequence of PatientData
        A NONMEM dataset (:func:`~medtwin.io.nonmem.read_nonmem`) or the patients' data.
    k : int
        Observations used to personalize (≥ 0; 0 forecasts from the population prior alone).
    method : {"laplace", "nuts"}
        Personalization method.
    level : float
        Level of the scored central prediction interval (0.9: the 5th to 95th percentile).
    levels : sequence of float
        Increasing nominal levels of the calibration curve.
    n_draws : int
        Posterior predictive draws per patient.
    seed : int
        Base seed; each patient gets its own stream (results do not depend on the order of evaluation).
    progress : callable(done, total), optional
        Called after each patient with more than ``k`` observations.
    personalize_options : mapping, optional
        Extra keywords for :func:`personalize` (e.g. NUTS ``chains``, ``draws``, ``warmup``).

    Returns
    -------
    ValidationResult

    Raises
    ------
    DataError
        Invalid settings or data.
    EstimationError
        No held-out observation could be scored (every patient skipped or failed).

    Examples
    --------
    See the module docstring.
    """
    levels = _check_settings(k, level, levels, n_draws, method)
    k = int(k)
    patients = _as_patients(dataset_or_patients)
    options = dict(personalize_options or {})
    clash = sorted({"method", "seed", "model", "prior"} & set(options))
    if clash:
        raise DataError(f"validate: personalize_options may not set {clash} (method and seed are validate's own)")
    eligible = [(i, p) for i, p in enumerate(patients) if p.n_observations > k]
    skipped = tuple(_name(p, i) for i, p in enumerate(patients) if p.n_observations <= k)
    parts: list[dict] = []
    ids, status, messages = [], [], []
    for done, (i, data) in enumerate(eligible, start=1):
        name = _name(data, i)
        ids.append(name)
        held = data.rest(k)
        try:
            post = personalize(population, data.first(k), method=method, seed=_patient_seed(seed, i), **options) \
                if k > 0 else _prior_posterior(population, data)
            draws = predictive_observations(post, held, n_draws=n_draws, seed=_patient_seed(seed, i))
        except _PATIENT_ERRORS as exc:
            status.append(FitStatus.FAILED)
            messages.append(f"{type(exc).__name__}: {exc}")
        else:
            status.append(post.status)
            messages.append(post.message)
            scored = ~np.asarray(held.blq, dtype=bool)
            y = np.asarray(held.values, dtype=float)[scored]
            part = _score(y, draws[:, scored], float(level), levels)
            part.update(ID=np.full(y.size, name, dtype=object), TIME=np.asarray(held.times)[scored], DV=y)
            parts.append(part)
        if progress is not None:
            progress(done, len(eligible))
    if not parts or sum(p["DV"].size for p in parts) == 0:
        reasons = "; ".join(f"{p}: {m}" for p, s, m in zip(ids, status, messages) if s == FitStatus.FAILED)[:500]
        raise EstimationError(f"validate: nothing to score with k={k}: {len(skipped)} patient(s) have ≤ k "
                              f"observations, {status.count('failed')} failed" + (f" ({reasons})" if reasons else ""))
    keys = ("ID", "TIME", "DV", "median", "lo", "hi", "inside", "APE", "PIT") + tuple(_level_key(v) for v in levels)
    columns = MappingProxyType({c: _frozen(np.concatenate([p[c] for p in parts])) for c in keys})
    unit = population.residual.unit
    return ValidationResult(k=k, level=float(level), method=method, columns=columns, levels=_frozen(levels),
                            patient_ids=tuple(ids), patient_status=tuple(status), patient_message=tuple(messages),
                            skipped=skipped, unit=unit, n_draws=int(n_draws), seed=int(seed))


def _name(data: PatientData, index: int) -> str:
    return data.patient if data.patient is not None else str(index + 1)


def _prior_posterior(population: Population, data: PatientData):
    """k = 0: the population prior of the patient as a Laplace-type posterior (no data)."""
    from medtwin.infer.posterior import Posterior

    missing = [c for c in population.covariates if c not in data.covariates]
    if missing:
        raise DataError(f"patient data: covariate(s) {missing} needed by population {population.name} are missing")
    prior = population.prior_for({c: data.covariates[c] for c in population.covariates})
    mean, cov = np.asarray(prior.log_mean, dtype=float), np.asarray(prior.covariance, dtype=float)
    return Posterior(model=get_model(population.model), prior=prior, method="prior", parameters=prior.parameters,
                     mean=mean,
                     covariance=cov, draws=None, data=(), prior_mean=mean, prior_covariance=cov,
                     status=FitStatus.PRIOR, message="population prior (k = 0)")


# ------------------------------------------------------------------------------- plot
def plot_calibration(result: ValidationResult, ax=None, *, confidence: float = 0.95):
    """Calibration plot: nominal vs empirical coverage, the identity line and a binomial band.

    Parameters
    ----------
    result : ValidationResult
        From :func:`validate`.
    ax : matplotlib Axes, optional
        Where to draw; a new :class:`matplotlib.figure.Figure` (no pyplot state) when omitted.
    confidence : float
        Probability content of the binomial band around the identity (n = scored observations,
        treated as independent).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> r = ValidationResult(1, 0.9, "laplace", {"inside_0.5": np.array([True, False]),
    ...                      "inside_0.9": np.array([True, True]), "DV": np.ones(2)}, np.array([0.5, 0.9]),
    ...                      (), (), (), (), "mg/L", 10, 0)
    >>> ax = plot_calibration(r)
    >>> ax.get_xlabel(), ax.lines[1].get_ydata().tolist()
    ('nominal coverage', [0.5, 1.0])
    """
    if not isinstance(result, ValidationResult):
        raise DataError(f"plot_calibration: expected a ValidationResult, got {type(result).__name__}")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(4.8, 4.5)).add_subplot()
    table = result.calibration
    n = result.n_observations
    grid = np.linspace(0.0, 1.0, 201)
    ax.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--", label="identity")
    if n:
        lo, hi = binomial_band(n, grid, confidence)
        ax.fill_between(grid, lo, hi, color="0.6", alpha=0.3, lw=0,
                        label=f"binomial {round(100 * confidence)} % band (n = {n})")
    ax.plot(table["nominal"].to_numpy(), table["empirical"].to_numpy(), color="tab:blue", marker="o", lw=1.5,
            label="empirical")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title(f"Forecast calibration (k = {result.k}, {result.method})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return ax
