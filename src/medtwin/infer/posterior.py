"""A patient's posterior, its forecasts with uncertainty, and probability queries.

:class:`Posterior` (from :func:`medtwin.infer.personalize.personalize`) holds
the posterior of z = log P for the parameters with inter-individual
variability: a Gaussian (Laplace) or NUTS draws.  :meth:`Posterior.predict`
simulates a regimen for posterior draws (one batched numba ``simulate`` call)
and returns a :class:`PredictiveBand`: for every output the median and the
50 % and 90 % bands from parameter uncertainty, and, for the observed output,
the same with residual error added (the two are kept apart).  Probability
queries work on the draws: P(trough in [10, 20] mg/L), P(AUC24 > 600 mg·h/L),
P(Cmax > a toxic level).

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> from medtwin.core.data import PatientData
>>> from medtwin.infer.personalize import personalize
>>> from medtwin.io.population_file import load_population, shipped_population_path
>>> pop = load_population(shipped_population_path("vancomycin_goti2018"))
>>> regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=8, duration=1.0)
>>> post = personalize(pop, PatientData(regimen, [11.5, 35.5], [9.0, 12.5], {"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}))
>>> band = post.predict(regimen, np.arange(0.0, 96.01, 0.25), n_draws=500, seed=1)
>>> p = probability(band.auc("C", 72.0, 96.0), 400.0, 600.0)
>>> 0.0 <= p <= 1.0
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from medtwin.core.data import PredictiveBand
from medtwin.core.events import Regimen
from medtwin.core.model import Model
from medtwin.core.population import IndividualPrior
from medtwin.core.simulate import simulate
from medtwin.errors import DataError, ModelError
from medtwin.infer.status import FitStatus

__all__ = ["Posterior", "convergence", "probability"]

#: A posterior mean more than this many population SDs from the population prior (|η| / ω) is warned about.
ETA_WARNING_SD = 3.0


def convergence(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat and bulk effective sample size per parameter (arviz).

    ``samples`` has shape (chains, draws, n_parameters).
    """
    import arviz as az

    ds = az.convert_to_dataset({"z": np.asarray(samples)})
    return np.asarray(az.rhat(ds)["z"].values), np.asarray(az.ess(ds)["z"].values)


def probability(values, low: float | None = None, high: float | None = None) -> float:
    """P(low <= value <= high) over draws (either bound may be omitted).

    Examples
    --------
    >>> probability(np.array([1.0, 2.0, 3.0, 4.0]), low=2.5)
    0.5
    """
    values = np.asarray(values, dtype=float)
    if low is None and high is None:
        raise DataError("probability: give low, high or both")
    ok = np.ones(values.shape, bool)
    if low is not None:
        ok &= values >= low
    if high is not None:
        ok &= values <= high
    return float(np.mean(ok))


@dataclass(frozen=True, eq=False)
class Posterior:
    """One patient's posterior over z = log P of ``parameters`` (see :mod:`medtwin.infer.personalize`).

    Attributes
    ----------
    model : Model
        The model object itself (never a name): a posterior of a user-defined model predicts like one of a
        library model.  Stored values name it by :func:`medtwin.models.model_reference` (name + digest).
    prior : IndividualPrior
        The population prior of this patient (fixed parameters, residual error, units).
    method : {"laplace", "nuts"}
    parameters : tuple of str
    mean, covariance : ndarray
        Posterior mean (the mode for Laplace) and covariance of z.
    draws : ndarray (chains, draws, n) or None
        NUTS draws of z.
    data : tuple of PatientData
        Every batch of data since the population prior.
    prior_mean, prior_covariance : ndarray
        The Gaussian prior of z this fit started from.
    status, message : str
    diagnostics : dict
    """

    model: Model
    prior: IndividualPrior
    method: str
    parameters: tuple
    mean: np.ndarray
    covariance: np.ndarray
    draws: np.ndarray | None
    data: tuple
    prior_mean: np.ndarray
    prior_covariance: np.ndarray
    status: str
    message: str
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.model, Model):
            raise ModelError(f"Posterior.model must be a Model object, not {type(self.model).__name__} "
                             f"({self.model!r}); resolve a library model with medtwin.models.get_model(name)")
        missing = [p for p in self.parameters if p not in self.model.parameter_names]
        if missing:
            raise ModelError(f"posterior: parameter(s) {missing} are not parameters of model {self.model.name} "
                             f"({list(self.model.parameter_names)})")

    @classmethod
    def from_prior(cls, prior: IndividualPrior, model: Model | None = None) -> "Posterior":
        """The posterior before any data: the population prior itself (a priori dosing, the first decision).

        ``model`` is the model of the prior (default: the library model the prior names, ``prior.model``).

        Examples
        --------
        >>> from medtwin.io.population_file import load_population, shipped_population_path
        >>> pop = load_population(shipped_population_path("vancomycin_goti2018"))
        >>> post = Posterior.from_prior(pop.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}))
        >>> post.status, post.parameters == pop.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}).parameters
        ('converged', True)
        """
        if model is None:
            from medtwin.models import resolve_model

            model = resolve_model(prior.model)  # a population prior names its library model
        mean, cov = np.asarray(prior.log_mean, dtype=float), np.asarray(prior.covariance, dtype=float)
        return cls(model=model, prior=prior, method="laplace", parameters=tuple(prior.parameters), mean=mean,
                   covariance=cov, draws=None, data=(), prior_mean=mean, prior_covariance=cov, status=FitStatus.CONVERGED,
                   message="prior only: no data yet")

    @property
    def ok(self) -> bool:
        return self.status == FitStatus.CONVERGED

    @property
    def eta_z(self) -> dict[str, float]:
        """Parameter -> z = η / ω: the posterior mean of log P minus the patient's population prior mean (the
        covariate-adjusted typical value), in population SDs.  Far from 0 (|z| > 3) means the data drive the
        patient outside the population the model was built on: check the data before trusting a forecast."""
        sd = np.sqrt(np.diag(np.asarray(self.prior.covariance, dtype=float)))
        eta = np.asarray(self.mean, dtype=float) - np.asarray(self.prior.log_mean, dtype=float)
        return {p: float(e / s) for p, e, s in zip(self.parameters, eta, sd)}

    def warnings(self, limit: float = ETA_WARNING_SD) -> list[str]:
        """One line per parameter whose posterior lies more than ``limit`` population SDs from the population.

        Examples
        --------
        >>> from medtwin.io.population_file import load_population, shipped_population_path
        >>> pop = load_population(shipped_population_path("vancomycin_goti2018"))
        >>> Posterior.from_prior(pop.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})).warnings()
        []
        """
        out = []
        for p, z in self.eta_z.items():
            if not abs(z) <= limit:
                typical = float(np.exp(self.prior.log_mean[list(self.parameters).index(p)]))
                value = float(np.exp(self.mean[list(self.parameters).index(p)]))
                unit = self.prior.units.get(p, "")
                out.append(f"{p} = {value:.4g} {unit} is {z:+.1f} SD from the population ({typical:.4g} {unit}): the "
                           "data drive this patient far outside the population; check the levels and dose times "
                           "before using it")
        return out

    def provenance_content(self) -> dict:
        """Everything the posterior holds, for digests (see :func:`medtwin.governance.provenance.result_view`)."""
        arrays = {"mean": self.mean, "covariance": self.covariance}
        if self.draws is not None:
            arrays["draws"] = self.draws
        settings = {k: v for k, v in self.diagnostics.items() if isinstance(v, (int, float, str)) and k != "seconds"}
        return {"content": {"parameters": list(self.parameters), "method": self.method, "status": self.status,
                            "message": self.message, **arrays},
                "outputs": arrays, "solver": {"method": self.method, **settings}}

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` draws of z, shape (n, n_parameters)."""
        rng = np.random.default_rng(seed)
        if self.draws is not None:
            flat = self.draws.reshape(-1, self.draws.shape[-1])
            return flat[rng.choice(flat.shape[0], size=n, replace=n > flat.shape[0])]
        if not np.all(np.isfinite(self.covariance)):
            raise DataError(f"posterior ({self.status}): no covariance to sample from: {self.message}")
        return rng.multivariate_normal(self.mean, self.covariance, size=n, method="cholesky")

    def parameter_table(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """Model parameters (model units) for draws ``z`` (n, n_parameters): exp(z) and the fixed values."""
        z = np.atleast_2d(np.asarray(z, dtype=float))
        table = {p: np.full(z.shape[0], v) for p, v in self.prior.fixed.items()}
        table.update({p: np.exp(z[:, k]) for k, p in enumerate(self.parameters)})
        return table

    def summary(self, n: int = 4000, seed: int = 0):
        """Per parameter: unit, prior median, posterior median and 90 % interval (model units)."""
        import pandas as pd

        z = self.sample(n, seed)
        rows = []
        for k, p in enumerate(self.parameters):
            q = np.exp(np.quantile(z[:, k], (0.05, 0.5, 0.95)))
            rows.append({"parameter": p, "unit": self.prior.units.get(p, ""),
                         "prior_median": float(np.exp(self.prior.log_mean[k])), "median": q[1],
                         "p05": q[0], "p95": q[2], "mode": float(np.exp(self.mean[k])) if self.method == "laplace"
                         else np.nan})
        return pd.DataFrame(rows)

    def predict(self, regimen: Regimen, times, *, n_draws: int = 1000, seed: int = 0,
                pre_dose=None) -> PredictiveBand:
        """Posterior predictive band of ``regimen`` at ``times`` (h) from ``n_draws`` posterior draws.

        ``pre_dose`` (bool per time) marks outputs taken before a dose at the
        same time (NONMEM record order), e.g. troughs drawn at a dose time.
        """
        model = self.model
        times = np.asarray(times, dtype=float)
        n = int(n_draws)
        z = self.sample(n, seed)
        pre = None if pre_dose is None else np.asarray(pre_dose, dtype=bool)
        trajectory = simulate(model, self.parameter_table(z), regimen, times, keep_states=False,
                              pre_dose=[pre] * n if pre is not None and pre.any() else None)
        draws = {name: np.asarray(trajectory.output(name), dtype=float).reshape(n, times.size)
                 for name in model.output_names}
        err = self.prior.residual
        rng = np.random.default_rng(seed + 1)
        f = draws[err.output]
        observed = {err.output: f + np.sqrt(err.variance(f)) * rng.standard_normal(f.shape)}
        units = {o.name: o.unit for o in model.outputs}
        return PredictiveBand(times, draws, observed, units, failed=int(np.sum(trajectory.status != 0)))

    def update(self, data, **options) -> "Posterior":
        """Today's posterior as tomorrow's prior, given new ``data`` (PatientData).

        Laplace: N(mean, covariance) is the new prior.  NUTS: the population
        prior times the likelihood of every batch so far and the new one.
        """
        from medtwin.core.data import PatientData
        from medtwin.infer.personalize import _laplace, _nuts

        if not isinstance(data, PatientData):
            raise DataError("update: data must be a PatientData")
        model = self.model
        if self.method == "laplace":
            new = _laplace(model, self.prior, [data], self.mean, self.covariance)
            return replace(new, data=self.data + (data,))
        settings = {k: self.diagnostics[k] for k in ("chains", "draws", "warmup", "seed")}
        settings.update(options)
        settings.setdefault("progress", False)
        return _nuts(model, self.prior, list(self.data) + [data], np.asarray(self.prior.log_mean),
                     np.asarray(self.prior.covariance), **settings)
