"""The attainment ceiling of a decision scenario: a policy that knows the truth models (a diagnostic, never a prior).

:func:`oracle_policy` is what the best possible twin could do in :func:`medtwin.scenarios.robustness.evaluate`'s
scenario: it knows every truth model's structure (one compartment), its typical values for the patient's
covariates, its inter-individual variability and the laboratory's assay error, but not which truth model a
patient came from nor the patient's own parameters.  From the two levels it computes the exact Bayesian
posterior of (log CL, log V) under each truth model on a grid (prior × likelihood of the levels, with the assay
error the levels were drawn with), mixes the truth models by their evidence (equal prior odds), and chooses the
maintenance regimen with the twin's own objective (:func:`medtwin.control.dosing` ``"window"``, P(AUC24 > 800)
<= ``max_toxic_probability``), scored on the same candidates.  What it misses no twin built from the same two
levels can reliably reach: the misses are set by the information in the levels, not by the prior.

Use it only as a ceiling in benchmarks: it reads the truth models, which a twin must never do.

Examples
--------
>>> import numpy as np
>>> round(float(infusion_concentration(10.0, 100.0, [(0.0, 1000.0, 1.0)], 1.0)), 4)   # end of a 1 h infusion
9.5163
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from medtwin.control.dosing import _rank, _summarise
from medtwin.control.candidates import _candidates
from medtwin.control.targets import AUC24Window, Threshold
from medtwin.errors import DataError
from medtwin.scenarios.robustness import HIGH, TARGET, Decision, EvaluationScenario

__all__ = ["infusion_concentration", "oracle_policy"]


def infusion_concentration(cl, v, doses: Sequence[tuple[float, float, float]], t: float) -> np.ndarray:
    """One-compartment concentration (mg/L) at ``t`` h after zero-order infusions ``(start h, mg, duration h)``.

    ``cl`` (L/h) and ``v`` (L) broadcast together; superposition of the closed-form infusion solution.
    """
    cl, v = np.asarray(cl, float), np.asarray(v, float)
    k = cl / v
    out = np.zeros(np.broadcast(cl, v).shape)
    for start, amount, duration in doses:
        if t <= start:
            continue
        if duration <= 0:
            out = out + amount / v * np.exp(-k * (t - start))
            continue
        inside = min(t - start, duration)
        out = out + amount / duration / cl * (1.0 - np.exp(-k * inside)) * np.exp(-k * (t - start - inside))
    return out


def _posterior(truth, covariates, doses, levels, scenario: EvaluationScenario, grid: int, span: float):
    """(CL values (G,), weights (G,), log evidence) of one truth model on a standardised (g_CL, g_V) grid."""
    log_mean, sd = truth.log_prior(covariates)
    g = np.linspace(-span, span, int(grid))
    cl = np.exp(log_mean[0] + sd[0] * g)[:, None] * np.ones((1, g.size))
    v = np.ones((g.size, 1)) * np.exp(log_mean[1] + sd[1] * g)[None, :]
    log_p = -0.5 * (g[:, None] ** 2 + g[None, :] ** 2) - math.log(2.0 * math.pi)
    for t, y in levels:
        c = infusion_concentration(cl, v, doses, t)
        s = np.sqrt(scenario.additive ** 2 + (scenario.proportional * c) ** 2)
        log_p = log_p - np.log(s) - 0.5 * math.log(2.0 * math.pi) - 0.5 * ((y - c) / s) ** 2
    top = float(log_p.max())
    w = np.exp(log_p - top)
    total = float(w.sum())
    return cl.ravel(), (w / total).ravel(), top + math.log(total * (g[1] - g[0]) ** 2)


def oracle_policy(truths: Sequence, *, scenario: EvaluationScenario = EvaluationScenario(), n_draws: int = 2000,
                  seed: int = 0, max_toxic_probability: float = 0.25, grid: int = 161, span: float = 4.5):
    """The ceiling policy (module docstring): exact posterior under the truth models, the twin's ``window`` objective.

    Parameters
    ----------
    truths : sequence
        Truth models with ``log_prior(covariates) -> (log mean (CL L/h, V L), log SD)`` (one compartment,
        log-normal IIV: :class:`~medtwin.scenarios.truth.RobertsICU2011`,
        :class:`~medtwin.scenarios.truth.RevillaICU2010`).
    scenario : EvaluationScenario
        Its assay error is the likelihood's; its constraints the candidates'.
    n_draws : int
        Posterior draws (resampled from the grid) the objective is scored on.
    max_toxic_probability : float
        P(steady-state AUC24 > 800 mg·h/L) allowed, as the twin's.
    grid, span : int, float
        Grid points per axis and its half-width in prior SDs.
    """
    from medtwin.scenarios.truth import truth_model

    models = [truth_model(t) for t in truths]
    if not models or not all(hasattr(m, "log_prior") for m in models):
        raise DataError("oracle policy: every truth model must give log_prior(covariates) (one compartment)")
    candidates = _candidates(scenario.constraints())
    daily = np.array([c.dose * 24.0 / c.interval for c in candidates])
    target, toxic = AUC24Window(*TARGET), Threshold(AUC24Window(), above=HIGH)

    def policy(covariates, history, levels, start) -> Decision:
        doses = [(e.time, e.amount, e.amount / e.rate if e.rate > 0 else 0.0) for e in history.expanded()
                 if e.amount > 0 and e.time < start]
        parts = [_posterior(m, covariates, doses, levels, scenario, grid, span) for m in models]
        log_ev = np.array([p[2] for p in parts])
        model_w = np.exp(log_ev - log_ev.max())
        model_w /= model_w.sum()
        cl = np.concatenate([p[0] for p in parts])
        w = np.concatenate([p[1] * mw for p, mw in zip(parts, model_w)])
        rng = np.random.default_rng([int(seed), 4242])
        draws = cl[rng.choice(cl.size, size=int(n_draws), p=w / w.sum())]
        metrics = [(d / draws, d / draws) for d in daily]
        ranked, feasible = _rank(_summarise(candidates, metrics, target, toxic), "window", max_toxic_probability)
        best = ranked[0].candidate
        chosen = best.dose * 24.0 / best.interval / draws
        return Decision(best.dose, best.interval, best.infusion, lambda: chosen,
                        {"status": "optimal" if feasible else "infeasible-fallback",
                         "model_weights": dict(zip([m.name for m in models], model_w.round(4).tolist()))})

    return policy
