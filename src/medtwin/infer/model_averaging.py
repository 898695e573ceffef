"""Multi-model precision dosing: personalize under several published priors, weight them by the patient's levels.

A drug often has several published population models, each built on a different
population (e.g. vancomycin: Goti 2018, Thomson 2009, Buelga 2005).  Which fits a
new patient is not known in advance; the patient's own levels say.  Following
Uster et al. (Clin Pharmacol Ther 2021;109(1):175-183, "A model averaging/selection
approach improves the predictive performance of model-informed precision dosing"),
:func:`personalize_averaged` personalizes the patient under every candidate prior
(:func:`medtwin.infer.personalize.personalize`, MAP + Laplace) and weights the
candidates by how well each explains the patient's data:

``"map"``  (Uster 2021)  w_m ∝ exp(−OFV_m / 2) with OFV_m = −2 log p(y | ẑ_m) + (ẑ_m − μ_m)ᵀ Ω_m⁻¹ (ẑ_m − μ_m),
           the individual MAP objective (likelihood at the mode plus the prior penalty; normalising constants
           of the likelihood included, those of the prior not).
``"aic"``  (Uster 2021)  w_m ∝ exp(−OFV_m / 2 − k_m), k_m the number of random effects (an AIC-like charge).
``"likelihood"``         w_m ∝ p(y | ẑ_m): the likelihood at the mode alone (no prior penalty).
``"laplace"``            w_m ∝ p̂(y | M_m) = exp(−U_m(ẑ)) · |Ω_m|^(−1/2) · |H_m|^(−1/2), the Laplace approximation
           of the marginal likelihood (U the −log posterior, H its Hessian at the mode): Bayesian model
           averaging with equal prior model probabilities.  It charges each model for the prior volume its
           random effects spread over, so models with more or wider random effects are not favoured for
           fitting noise.

``mode="average"`` keeps the mixture Σ_m w_m p_m(θ | y); ``mode="select"`` keeps only the best candidate (weight 1).
Which weighting is the default is decided by measurement (``benchmarks/model_averaging.py``,
docs/model-averaging.md): :data:`DEFAULT_WEIGHTING`.

The result, :class:`ModelAveragedPosterior`, is immutable and behaves like a
:class:`~medtwin.infer.posterior.Posterior` where forecasts and the dose optimiser need one:
:meth:`~ModelAveragedPosterior.predict` draws ``round(w_m · n)`` draws from component m
(largest-remainder rounding, deterministic) and stacks them into one
:class:`~medtwin.core.data.PredictiveBand`, so probability queries on the band are mixture
probabilities; :func:`medtwin.control.dosing.recommend_dose` scores each component's draws
with the component's own model (components may be different models: 1- and 2-compartment).

Usage (a few seconds: three MAP fits)::

    from medtwin.io.population_file import drug_populations
    mix = personalize_averaged(drug_populations("vancomycin"), data)    # data: PatientData with CRCL, WT, DIAL
    mix.weight_table()                                                  # weight and scores per model
    band = mix.predict(regimen, times, n_draws=1000, seed=0)            # the mixture's predictive band

Examples
--------
>>> allocate([0.25, 0.75], 10).tolist()                  # draws of each component in 10 mixture draws
[3, 7]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from medtwin.core.data import PatientData, PredictiveBand
from medtwin.core.population import Population
from medtwin.errors import DataError, PopulationError
from medtwin.infer.status import FitStatus

__all__ = ["DEFAULT_WEIGHTING", "MODES", "WEIGHTINGS", "ModelAveragedPosterior", "allocate",
           "check_candidates", "model_weights", "personalize_averaged", "score"]

WEIGHTINGS = ("map", "aic", "likelihood", "laplace")
MODES = ("average", "select")
#: The weighting used unless another is asked for; chosen by measurement (docs/model-averaging.md).
DEFAULT_WEIGHTING = "laplace"


def allocate(weights, n: int) -> np.ndarray:
    """Draw counts per component: ``n`` split by ``weights`` with largest-remainder rounding (deterministic).

    Ties in the remainders go to the lower index.

    Examples
    --------
    >>> allocate([0.5, 0.3, 0.2], 7).tolist()
    [4, 2, 1]
    >>> allocate([1.0, 0.0], 3).tolist()
    [3, 0]
    """
    w = np.asarray(weights, dtype=float)
    n = int(n)
    if n < 0 or w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise DataError(f"allocate: weights must be finite, >= 0 and not all 0, n >= 0; got {weights!r}, {n}")
    exact = w / w.sum() * n
    counts = np.floor(exact).astype(np.int64)
    order = sorted(range(w.size), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: n - int(counts.sum())]:
        counts[k] += 1
    return counts


def _log_normalised(log_w: np.ndarray) -> np.ndarray:
    finite = np.isfinite(log_w)
    out = np.zeros(log_w.size)
    if finite.any():
        shifted = np.where(finite, log_w - np.max(log_w[finite]), -np.inf)
        out = np.exp(shifted)
        out /= out.sum()
    return out


def model_weights(scores, mode: str = "average") -> np.ndarray:
    """Normalised weights from per-model log scores (log evidence or −OFV/2); −inf or NaN: weight 0.

    ``mode="select"`` puts weight 1 on the best score (the first of equal ones).

    Examples
    --------
    >>> model_weights([0.0, math.log(3.0)]).round(6).tolist()
    [0.25, 0.75]
    >>> model_weights([0.0, 1.0, float("nan")], mode="select").tolist()
    [0.0, 1.0, 0.0]
    """
    if mode not in MODES:
        raise DataError(f"model averaging: mode must be one of {MODES}, not {mode!r}")
    s = np.asarray(scores, dtype=float)
    s = np.where(np.isnan(s), -np.inf, s)
    if not np.isfinite(s).any():
        raise DataError("model averaging: no candidate model has a finite score")
    if mode == "select":
        out = np.zeros(s.size)
        out[int(np.argmax(s))] = 1.0
        return out
    return _log_normalised(s)


def check_candidates(populations: Sequence[Population], sources: Sequence[str] | None = None) -> None:
    """Refuse a candidate set that cannot be averaged; the message names the file (or population) and field.

    Candidates must be at least two distinct populations of one drug (``drug`` equal where declared) whose
    models observe the same output with the same unit (``residual.output``, ``residual.unit``).
    """
    from medtwin.models import get_model

    sources = [p.name for p in populations] if sources is None else list(sources)
    if len(populations) < 2:
        raise DataError("model averaging needs at least two population files (candidate priors), got "
                        f"{len(populations)}")
    if len({p.name for p in populations}) != len(populations):
        raise PopulationError(f"model averaging: population names must differ, got {[p.name for p in populations]}")
    first = populations[0]
    drugs = {p.drug for p in populations if p.drug}
    if len(drugs) > 1:
        bad = next(k for k, p in enumerate(populations) if p.drug and p.drug != next(
            q.drug for q in populations if q.drug))
        raise PopulationError(f"{sources[bad]}: drug: {populations[bad].drug!r} differs from the other candidate "
                              f"priors' ({sorted(drugs)}): model averaging combines models of one drug")
    for p, src in zip(populations, sources):
        r = p.residual
        if r.output != first.residual.output:
            raise PopulationError(f"{src}: residual.output: {r.output!r} differs from {sources[0]}'s "
                                  f"{first.residual.output!r}: the candidates must observe the same output")
        if r.unit != first.residual.unit:
            raise PopulationError(f"{src}: residual.unit: {r.unit!r} differs from {sources[0]}'s "
                                  f"{first.residual.unit!r}")
        model = get_model(p.model)
        if r.output not in model.output_names:
            raise PopulationError(f"{src}: residual.output: model {p.model} has no output {r.output!r} "
                                  f"({list(model.output_names)})")


@dataclass(frozen=True, eq=False)
class ModelAveragedPosterior:
    """A mixture of per-model posteriors with weights from the patient's data (see the module docstring).

    Attributes
    ----------
    components : tuple of Posterior
        One Laplace posterior per candidate prior (each with its own Model).
    names : tuple of str
        The candidate populations' names, in the order of ``components``.
    weights : ndarray (n_models,)
        Mixture weights, summing to 1 (read-only).
    weighting : {"map", "aic", "likelihood", "laplace"}
    mode : {"average", "select"}
    scores : ndarray (n_models,)
        Per model: the log score the weights come from (−OFV/2, log-likelihood or log evidence).
    model_diagnostics : tuple of dict
        Per model: objective (−log posterior at the mode), log_likelihood, prior_penalty, log_evidence,
        n_random_effects, status, message.
    """

    components: tuple
    names: tuple
    weights: np.ndarray
    weighting: str
    mode: str
    scores: np.ndarray
    model_diagnostics: tuple = ()
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "names", tuple(self.names))
        w = np.array(self.weights, dtype=float)
        if w.shape != (len(self.components),) or len(self.names) != w.size or not w.size:
            raise DataError("ModelAveragedPosterior: one weight and one name per component")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
            raise DataError(f"ModelAveragedPosterior: weights must be >= 0 and sum to 1, got {w.tolist()}")
        w.flags.writeable = False
        s = np.array(self.scores, dtype=float)
        s.flags.writeable = False
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "scores", s)
        outputs = {c.prior.residual.output for c in self.components}
        if len(outputs) != 1:
            raise DataError(f"ModelAveragedPosterior: the components observe different outputs {sorted(outputs)}")

    @classmethod
    def from_priors(cls, populations: Sequence[Population], covariates: Mapping[str, Any], *,
                    weighting: str = DEFAULT_WEIGHTING, mode: str = "average", models=None,
                    sources: Sequence[str] | None = None) -> "ModelAveragedPosterior":
        """The mixture before any level: every candidate's population prior for ``covariates``, equal weights
        (a priori dosing; :meth:`update` weights the candidates once levels arrive)."""
        from medtwin.infer.posterior import Posterior
        from medtwin.models import get_model

        populations = list(populations)
        check_candidates(populations, sources)
        models = [get_model(p.model) for p in populations] if models is None else list(models)
        components = tuple(Posterior.from_prior(p.prior_for({c: covariates[c] for c in p.covariates
                                                             if c in covariates}), m)
                           for p, m in zip(populations, models))
        n = len(components)
        weights = model_weights(np.zeros(n), mode)
        return cls(components, tuple(p.name for p in populations), weights, weighting, mode, np.zeros(n),
                   tuple({"objective": 0.0, "log_likelihood": 0.0, "prior_penalty": 0.0, "ofv": 0.0,
                          "log_evidence": 0.0, "n_random_effects": len(c.parameters), "status": c.status,
                          "message": c.message, "usable": True} for c in components))

    def update(self, data) -> "ModelAveragedPosterior":
        """Every component updated with new ``data`` (:meth:`Posterior.update`: today's posterior is tomorrow's
        prior) and the weights re-computed: each model's score gains the new batch's score under its updated
        prior (exact chaining of the Laplace evidence p(y1, y2) = p(y1) p(y2 | y1); for ``map`` and
        ``likelihood`` the batch objectives add up)."""
        components = tuple(c.update(data) for c in self.components)
        diagnostics = tuple(_scores(c, n) for c, n in zip(components, self.names))
        scores = self.scores + np.array([score(d, self.weighting) for d in diagnostics])
        scores = np.where(np.isnan(scores), -math.inf, scores)
        return ModelAveragedPosterior(components, self.names, model_weights(scores, self.mode), self.weighting,
                                      self.mode, scores, diagnostics, dict(self.diagnostics))

    # ------------------------------------------------------------------ Posterior-like
    @property
    def best(self) -> int:
        """Index of the component with the largest weight (the first of equal ones)."""
        return int(np.argmax(self.weights))

    @property
    def model(self):
        """The model of the largest-weight component (each component keeps its own: ``components[k].model``)."""
        return self.components[self.best].model

    @property
    def prior(self):
        """The prior of the largest-weight component (its ``residual.output`` is every component's)."""
        return self.components[self.best].prior

    @property
    def data(self) -> tuple:
        return self.components[0].data

    @property
    def method(self) -> str:
        return f"{self.mode}:{self.weighting}"

    @property
    def status(self) -> str:
        """``converged`` when every component with weight >= 1 % converged; else the first such status."""
        for c, w in zip(self.components, self.weights):
            if w >= 0.01 and c.status != FitStatus.CONVERGED:
                return c.status
        return FitStatus.CONVERGED

    @property
    def ok(self) -> bool:
        return self.status == FitStatus.CONVERGED

    @property
    def message(self) -> str:
        parts = [f"{n} {w:.3f}" for n, w in zip(self.names, self.weights)]
        return f"model {'selection' if self.mode == 'select' else 'averaging'} ({self.weighting}): " + ", ".join(parts)

    def warnings(self) -> list[str]:
        """The warnings of every component with weight >= 1 %, prefixed by its population's name."""
        return [f"{n}: {line}" for n, c, w in zip(self.names, self.components, self.weights) if w >= 0.01
                for line in c.warnings()]

    def weight_table(self) -> list[dict]:
        """One row per candidate: name, model, weight, score and the per-model diagnostics."""
        return [{"population": n, "model": c.model.name, "weight": float(w), "score": float(s), **d}
                for n, c, w, s, d in zip(self.names, self.components, self.weights, self.scores,
                                         self.model_diagnostics or ({},) * len(self.names))]

    def allocation(self, n_draws: int) -> np.ndarray:
        """Draws per component for ``n_draws`` mixture draws (:func:`allocate`)."""
        return allocate(self.weights, n_draws)

    def _seeds(self, seed: int) -> list[int]:
        return [int(seed) + 2 * k for k in range(len(self.components))]  # predict uses seed and seed + 1

    def component_draws(self, n_draws: int, seed: int = 0) -> list[tuple[int, Any, np.ndarray]]:
        """(component index, posterior, z draws (n_k, n_k_params)) for every component with n_k > 0 draws."""
        out = []
        for k, (n, s) in enumerate(zip(self.allocation(n_draws), self._seeds(seed))):
            if n > 0:
                out.append((k, self.components[k], self.components[k].sample(int(n), s)))
        return out

    def predict(self, regimen, times, *, n_draws: int = 1000, seed: int = 0, pre_dose=None) -> PredictiveBand:
        """The mixture's predictive band: ``round(w_m · n_draws)`` draws of component m, stacked in order.

        Outputs are those every drawn component's model has; ``failed`` sums the components'.
        """
        bands = [self.components[k].predict(regimen, times, n_draws=int(n), seed=s, pre_dose=pre_dose)
                 for k, (n, s) in enumerate(zip(self.allocation(n_draws), self._seeds(seed))) if n > 0]
        names = [o for o in bands[0].draws if all(o in b.draws for b in bands)]
        observed = [o for o in bands[0].observed if all(o in b.observed for b in bands)]
        return PredictiveBand(bands[0].times, {o: np.concatenate([b.draws[o] for b in bands]) for o in names},
                              {o: np.concatenate([b.observed[o] for b in bands]) for o in observed},
                              {o: bands[0].units[o] for o in names}, failed=sum(b.failed for b in bands))

    def summary(self, n: int = 4000, seed: int = 0):
        """Every component's :meth:`~medtwin.infer.posterior.Posterior.summary`, parameter named
        ``population:parameter``, with the component's ``weight``."""
        import pandas as pd

        frames = []
        for name, c, w in zip(self.names, self.components, self.weights):
            if not np.all(np.isfinite(c.covariance)):
                continue
            f = c.summary(n, seed)
            f["parameter"] = [f"{name}:{p}" for p in f["parameter"]]
            f["weight"] = float(w)
            frames.append(f)
        return pd.concat(frames, ignore_index=True)

    def provenance_content(self) -> dict:
        """Weights, scores and every component's content, for digests."""
        arrays = {"weights": self.weights, "scores": self.scores}
        content = {"names": list(self.names), "weighting": self.weighting, "mode": self.mode, **arrays}
        for name, c in zip(self.names, self.components):
            inner = c.provenance_content()
            for key, value in inner["outputs"].items():
                arrays[f"{name}.{key}"] = value
            content[name] = inner["content"]
        return {"content": content, "outputs": arrays, "solver": {"method": self.method}}


def _scores(post, population_name: str) -> dict:
    """Per-model diagnostics of one Laplace component: objective, log-likelihood, penalty, log evidence."""
    mean, cov = np.asarray(post.mean, float), np.asarray(post.covariance, float)
    prior_cov = np.asarray(post.prior_covariance, float)
    objective = float(post.diagnostics.get("objective", math.nan))
    r = mean - np.asarray(post.prior_mean, float)
    penalty = float(0.5 * r @ np.linalg.solve(prior_cov, r))
    usable = math.isfinite(objective) and np.all(np.isfinite(cov)) and post.status != FitStatus.FAILED
    if usable:
        sign_c, logdet_c = np.linalg.slogdet(prior_cov)
        sign_s, logdet_s = np.linalg.slogdet(cov)
        usable = sign_c > 0 and sign_s > 0
    evidence = -objective - 0.5 * logdet_c + 0.5 * logdet_s if usable else -math.inf
    return {"objective": objective, "log_likelihood": -(objective - penalty) if usable else -math.inf,
            "prior_penalty": penalty, "ofv": 2.0 * objective if usable else math.inf,
            "log_evidence": float(evidence), "n_random_effects": int(mean.size), "status": post.status,
            "message": post.message, "usable": bool(usable)}


def score(diagnostics: Mapping, weighting: str) -> float:
    """The log score of one candidate (its :attr:`ModelAveragedPosterior.model_diagnostics` entry) under
    ``weighting``; −inf for an unusable fit."""
    if not diagnostics["usable"]:
        return -math.inf
    d = diagnostics
    return {"map": lambda: -0.5 * d["ofv"], "aic": lambda: -0.5 * d["ofv"] - d["n_random_effects"],
            "likelihood": lambda: d["log_likelihood"], "laplace": lambda: d["log_evidence"]}[weighting]()


def personalize_averaged(populations: Sequence[Population], data: PatientData | Sequence[PatientData], *,
                         weighting: str = DEFAULT_WEIGHTING, mode: str = "average", models=None,
                         sources: Sequence[str] | None = None, engine: str = "jax") -> ModelAveragedPosterior:
    """Personalize ``data`` under every candidate population and weight the candidates by the data.

    Parameters
    ----------
    populations : sequence of Population
        The candidate priors (>= 2, one drug, one observed output): e.g.
        :func:`medtwin.io.population_file.drug_populations` ``("vancomycin")``.
    data : PatientData or sequence of PatientData
        The patient's data (covariates needed by every candidate).
    weighting : {"map", "aic", "likelihood", "laplace"}
        How the weights are computed (module docstring); default :data:`DEFAULT_WEIGHTING`.
    mode : {"average", "select"}
        Keep the weighted mixture, or only the best candidate.
    models : sequence of Model, optional
        The Model of each population (default: the library model each names).
    sources : sequence of str, optional
        How each population is named in error messages (its file); default its name.
    engine : {"jax", "auto", "numpy"}
        The Laplace fits' engine (:func:`medtwin.infer.personalize.personalize`).

    Returns
    -------
    ModelAveragedPosterior
    """
    from medtwin.infer.personalize import personalize

    if weighting not in WEIGHTINGS:
        raise DataError(f"model averaging: weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    if mode not in MODES:
        raise DataError(f"model averaging: mode must be one of {MODES}, not {mode!r}")
    populations = list(populations)
    sources = [p.name for p in populations] if sources is None else list(sources)
    check_candidates(populations, sources)
    models = [None] * len(populations) if models is None else list(models)
    components, diagnostics = [], []
    for pop, model in zip(populations, models):
        post = personalize(pop, data, method="laplace", model=model, engine=engine)  # refusals name the population
        components.append(post)
        diagnostics.append(_scores(post, pop.name))
    scores = np.array([score(d, weighting) for d in diagnostics])
    if not np.isfinite(scores).any():
        raise DataError("model averaging: no candidate prior gave a usable posterior: " + "; ".join(
            f"{s}: {d['status']} ({d['message']})" for s, d in zip(sources, diagnostics)))
    weights = model_weights(scores, mode)
    return ModelAveragedPosterior(tuple(components), tuple(p.name for p in populations), weights, weighting,
                                  mode, scores, tuple(diagnostics))
