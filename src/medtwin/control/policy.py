"""One interface for every policy that proposes an action for a twin: ``propose(twin) -> Recommendation``.

Dose optimisation (:class:`DoseOptimizer`, the search of
:func:`medtwin.control.dosing.recommend_dose`) and model predictive control
(:class:`medtwin.control.mpc.MPCController`) both implement :class:`Policy`:
a ``constraints`` value with ``violations(action) -> list[str]`` (the hard
constraints: :class:`~medtwin.control.dosing.DoseConstraints`,
:class:`~medtwin.control.recommendation.RateConstraints`) and
``propose(twin, **options) -> Recommendation``.  :meth:`medtwin.twin.Twin.recommend`
calls :func:`propose`, which checks the proposal against the policy's hard
constraints before anyone sees it: a proposal that breaks one is an error,
never a recommendation (an infeasible problem is the policy's
``"infeasible-fallback"``, which still satisfies every hard constraint).  The
clinician decision layer (:mod:`medtwin.control.decisions`) consumes the one
:class:`~medtwin.control.recommendation.Recommendation` type either way.

Examples
--------
>>> import numpy as np
>>> from medtwin.control.targets import AUC24Window, Threshold
>>> from medtwin.core.observation import ResidualError
>>> from medtwin.core.population import IndividualPrior
>>> from medtwin.infer.posterior import Posterior
>>> from medtwin.models import get_model
>>> from medtwin.twin import Twin
>>> z = np.log([2.0, 10.0])                                  # CL 2 L/h, V 10 L, almost no uncertainty
>>> prior = IndividualPrior("pk1_iv", ("CL", "V"), z, np.eye(2) * 1e-6, {}, ResidualError("additive", 1.0))
>>> twin = Twin.from_posterior(Posterior(get_model("pk1_iv"), prior, "laplace", ("CL", "V"), z,
...                                      np.eye(2) * 1e-6, None, (), z, np.eye(2) * 1e-6, "converged", ""))
>>> policy = DoseOptimizer(AUC24Window(400.0, 600.0), DoseConstraints(max_dose_mg=2000.0),
...                        toxic=Threshold(AUC24Window(), above=600.0), n_draws=200)
>>> twin.recommend(policy).action["daily_mg"]               # AUC24 = daily / CL = 1000 / 2 = 500 mg·h/L
1000.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from medtwin.control.dosing import OBJECTIVES, DoseConstraints, recommend_dose
from medtwin.control.recommendation import Recommendation
from medtwin.control.targets import Target, Threshold
from medtwin.errors import DataError

__all__ = ["DoseOptimizer", "HardConstraints", "Policy", "propose"]


@runtime_checkable
class HardConstraints(Protocol):
    """Hard constraints of a policy: the reasons an action breaks them (empty when it satisfies them all)."""

    def violations(self, action) -> list[str]: ...


@runtime_checkable
class Policy(Protocol):
    """Anything that proposes an action for a twin under hard constraints."""

    @property
    def constraints(self) -> HardConstraints: ...

    def propose(self, twin, **options) -> Recommendation: ...


def propose(policy, twin, **options) -> Recommendation:
    """``policy.propose(twin, **options)``, checked: a Recommendation satisfying the policy's hard constraints.

    Raises
    ------
    DataError
        ``policy`` is not a Policy, returned something other than a Recommendation, or proposed an action
        that breaks one of its hard constraints (never returned to a clinician).
    """
    if not isinstance(policy, Policy):
        raise DataError(f"recommend: {type(policy).__name__} is not a policy (needs propose(twin) and constraints)")
    recommendation = policy.propose(twin, **options)
    if not isinstance(recommendation, Recommendation):
        raise DataError(f"recommend: {type(policy).__name__}.propose returned {type(recommendation).__name__}, "
                        "not a Recommendation")
    broken = policy.constraints.violations(recommendation.action)
    if broken:
        raise DataError(f"recommend: {type(policy).__name__} proposed an action that breaks its hard constraints: "
                        + "; ".join(broken))
    return recommendation


@dataclass(frozen=True)
class DoseOptimizer:
    """Dose optimisation as a policy: the regimen search of :func:`recommend_dose` on the twin's posterior.

    Parameters
    ----------
    target : Target
        E.g. ``AUC24Window(400, 600)``.
    constraints : DoseConstraints
        The hard constraints (dose steps, single and daily maxima, intervals, infusion rate, loading dose).
    objective : {"window", "pta", "median"}
        Default ``"window"`` (see :func:`recommend_dose`).
    toxic : Threshold, optional
    max_toxic_probability : float
    n_draws, seed : int
    sensitivity : bool
    grid_h, band_step_h : float
        See :func:`recommend_dose`.

    ``propose(twin, *, start_time=None, evaluation_window=None, current=None)``: the doses given so far are
    the twin's inputs (``history``), the posterior and the model are the twin's.
    """

    target: Target
    constraints: DoseConstraints = field(default_factory=DoseConstraints)
    objective: str = "window"
    toxic: Threshold | None = None
    max_toxic_probability: float = 0.1
    n_draws: int = 1000
    seed: int = 0
    sensitivity: bool = True
    grid_h: float = 0.25
    band_step_h: float = 0.25

    def __post_init__(self):
        if not isinstance(self.constraints, DoseConstraints):
            raise DataError("DoseOptimizer: constraints must be a DoseConstraints")
        if self.objective not in OBJECTIVES:
            raise DataError(f"DoseOptimizer: objective must be one of {OBJECTIVES}, not {self.objective!r}")

    def propose(self, twin, *, start_time: float | None = None, evaluation_window=None,
                current: Any = None) -> Recommendation:
        """The recommended regimen for ``twin`` (its posterior, model and inputs as the dose history)."""
        if getattr(twin, "posterior", None) is None:
            raise DataError("DoseOptimizer: the twin has no posterior to optimise the dose on")
        return recommend_dose(twin.posterior, self.target, constraints=self.constraints, objective=self.objective,
                              toxic=self.toxic, max_toxic_probability=self.max_toxic_probability, current=current,
                              history=twin.inputs, start_time=start_time, evaluation_window=evaluation_window,
                              n_draws=self.n_draws, seed=self.seed, model=twin.model, grid_h=self.grid_h,
                              band_step_h=self.band_step_h, sensitivity=self.sensitivity)
