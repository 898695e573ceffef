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

from dataclasses import dataclass, field
from typing import Any, Mapping

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


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], float):
        return "[" + ", ".join(f"{v:.3g}" for v in value[:6]) + (", ...]" if len(value) > 6 else "]")
    return str(value)
