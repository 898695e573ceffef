"""What the twin proposes: one value shared by dose optimisation and model predictive control.

A :class:`Recommendation` carries the proposed action, the status of the
optimisation (never an unconstrained answer when the problem is infeasible:
the safest feasible fallback with status ``"infeasible-fallback"``), and the
explanation a clinician needs: the target, the constraints that are active,
the predicted trajectories with bands under the recommended and the current
action, the probabilities, the sensitivity to the most influential parameter
and the runner-up options.

Examples
--------
>>> r = Recommendation(kind="regimen", action={"dose_mg": 1250.0, "interval_h": 12.0}, status="optimal",
...                    target={"name": "AUC24", "low": 400.0, "high": 600.0, "unit": "mg*h/L"},
...                    probabilities={"target": 0.81, "toxic": 0.03})
>>> print(r.summary().splitlines()[0])
recommended (optimal): dose_mg=1250, interval_h=12
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from medtwin.control.status import RecommendationStatus
from medtwin.errors import DataError

STATUSES = tuple(RecommendationStatus)
KINDS = ("regimen", "mpc")


@dataclass(frozen=True, eq=False)
class Recommendation:
    """A proposed action with its explanation.

    Parameters
    ----------
    kind : {"regimen", "mpc"}
        A discrete regimen (dose optimisation) or a sequence of continuous inputs (MPC; only the first is applied).
    action : mapping
        The proposal in clinical units, e.g. ``{"dose_mg": 1250, "interval_h": 12, "loading_mg": 2000}`` or
        ``{"insulin_u_per_h": [...], "step_h": 0.25}``.
    status : {"optimal", "feasible", "infeasible-fallback"}
        ``infeasible-fallback``: no action met every constraint; ``action`` is the safest feasible one and
        ``message`` says which constraint could not be met.
    target : mapping
        What was aimed at (name, bounds, unit, objective).
    constraints : mapping
        Every constraint applied (name -> description).
    active_constraints : tuple of str
        Constraints binding at the proposal.
    probabilities : mapping
        E.g. ``{"target": P(target attained), "toxic": P(toxic exposure)}`` over posterior draws.
    predicted, current : PredictiveBand, optional
        Predicted trajectories with bands under the recommended and the current action.
    sensitivity : mapping
        The most influential parameter and how the recommendation moves with it.
    runner_ups : tuple of mapping
        The next best options with their scores.
    regimen : Regimen, optional
        The proposal as a dosing regimen (model units) where it is one.
    message : str
        Free-text note (why infeasible, what was rounded).
    """

    kind: str
    action: Mapping[str, Any]
    status: str
    target: Mapping[str, Any]
    constraints: Mapping[str, str] = field(default_factory=dict)
    active_constraints: tuple[str, ...] = ()
    probabilities: Mapping[str, float] = field(default_factory=dict)
    predicted: Any = None
    current: Any = None
    sensitivity: Mapping[str, Any] = field(default_factory=dict)
    runner_ups: tuple[Mapping[str, Any], ...] = ()
    regimen: Any = None
    message: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DataError(f"recommendation: kind must be one of {KINDS}, not {self.kind!r}")
        if self.status not in STATUSES:
            raise DataError(f"recommendation: status must be one of {STATUSES}, not {self.status!r}")

    @property
    def feasible(self) -> bool:
        return self.status != RecommendationStatus.INFEASIBLE_FALLBACK

    def summary(self) -> str:
        """A plain-text explanation for the clinician (first line: the action)."""
        action = ", ".join(f"{k}={_fmt(v)}" for k, v in self.action.items())
        lines = [f"recommended ({self.status}): {action}"]
        if self.target:
            lines.append("target: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.target.items()))
        if self.probabilities:
            lines.append("probabilities: " + ", ".join(f"P({k})={v:.2f}" for k, v in self.probabilities.items()))
        if self.active_constraints:
            lines.append("active constraints: " + "; ".join(self.active_constraints))
        if self.sensitivity:
            lines.append("sensitivity: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.sensitivity.items()))
        for i, option in enumerate(self.runner_ups, start=1):
            lines.append(f"runner-up {i}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in option.items()))
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)


@dataclass(frozen=True)
class RateConstraints:
    """Hard constraints of a continuous input plan (MPC): bounds and the largest change per step.

    Parameters
    ----------
    action_name : str
        Key of the plan (a sequence of rates, clinical units) in ``Recommendation.action``.
    bounds : (float, float)
        ``lo <= rate <= hi`` at every step (``hi`` may be ``inf``).
    max_change : float
        Largest change between consecutive steps of the plan (the change from the running rate to the first
        step is checked by the controller, which knows the running rate).
    unit : str
        Clinical unit, for messages.

    Examples
    --------
    >>> c = RateConstraints("insulin_u_per_h", (0.0, 10.0), 2.0, "U/h")
    >>> c.violations({"insulin_u_per_h": [1.0, 3.0, 12.0]})
    ['rate 12 U/h at step 3 outside [0, 10] U/h', 'change 9 U/h between steps 2 and 3 above 2 U/h']
    """

    action_name: str
    bounds: tuple[float, float]
    max_change: float = math.inf
    unit: str = ""

    def violations(self, action) -> list[str]:
        """Every hard constraint the plan in ``action`` breaks; empty when none."""
        if self.action_name not in action:
            return [f"the action has no {self.action_name!r} plan"]
        plan = np.asarray(action[self.action_name], dtype=float).reshape(-1)
        lo, hi = self.bounds
        tol = 1e-9 * max(1.0, abs(lo), abs(hi) if math.isfinite(hi) else 1.0)
        out = [f"rate {v:g} {self.unit} at step {k + 1} outside [{lo:g}, {hi:g}] {self.unit}"
               for k, v in enumerate(plan) if not (lo - tol <= v <= hi + tol)]
        if math.isfinite(self.max_change):
            for k, step in enumerate(np.diff(plan)):
                if abs(step) > self.max_change * (1 + 1e-9) + tol:
                    out.append(f"change {abs(step):g} {self.unit} between steps {k + 1} and {k + 2} above "
                               f"{self.max_change:g} {self.unit}")
        return out


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], float):
        return "[" + ", ".join(f"{v:.3g}" for v in value[:6]) + (", ...]" if len(value) > 6 else "]")
    return str(value)
