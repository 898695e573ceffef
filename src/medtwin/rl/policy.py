"""Learned policies as ``propose(twin) -> Recommendation``, shielded by the same hard constraints as MPC.

A :class:`LearnedPolicy` ranks its discrete actions by a fitted Q function
(:mod:`medtwin.rl.fqi`) on the observation its ``features`` reads from the twin,
and proposes the best-scoring action that satisfies every hard constraint
(shielding by projection onto the feasible set: actions that break one are
never proposed).  When no action is feasible it returns the policy's
``fallback`` with status ``"infeasible-fallback"``, which
:func:`medtwin.control.policy.propose` (called by ``Twin.recommend``) checks
again: a learned policy cannot bypass the constraints.

:class:`RunningRateConstraints` are the insulin infusion's hard constraints:
rate bounds and the largest change from the running rate.

Examples
--------
>>> import numpy as np
>>> class Q:                                  # scores that want the highest rate
...     def score(self, obs): return np.arange(8.0)[None, :].repeat(len(obs), 0)
>>> policy = insulin_policy(Q(), features=lambda twin, **o: np.zeros(4))
>>> r = policy.propose(None, current_rate=1.0)
>>> r.action["apply_now_u_per_h"], r.status   # 8 U/h wanted, 3 U/h is the highest within 2 U/h of 1 U/h
(3.0, 'feasible')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from medtwin.control.recommendation import Recommendation
from medtwin.errors import DataError
from medtwin.rl.envs import INSULIN_RATES, VANCO_DOSES_MG

__all__ = ["RunningRateConstraints", "LearnedPolicy", "insulin_policy", "vancomycin_policy", "glucose_features"]


@dataclass(frozen=True)
class RunningRateConstraints:
    """Hard constraints of an infusion rate: ``bounds`` (U/h) and ``|rate - running rate| <= max_change``.

    ``violations(action)`` reads ``action[action_name]`` (the rate, or a one-element plan) and
    ``action["current_u_per_h"]`` (the running rate).
    """

    action_name: str = "apply_now_u_per_h"
    bounds: tuple[float, float] = (0.0, 10.0)
    max_change: float = 2.0

    def violations(self, action) -> list[str]:
        out = []
        if self.action_name not in action or "current_u_per_h" not in action:
            return [f"the action needs {self.action_name!r} and 'current_u_per_h'"]
        rate = float(np.asarray(action[self.action_name], float).reshape(-1)[0])
        current = float(action["current_u_per_h"])
        lo, hi = self.bounds
        if not (lo - 1e-9 <= rate <= hi + 1e-9) or not math.isfinite(rate):
            out.append(f"rate {rate:g} U/h outside [{lo:g}, {hi:g}] U/h")
        if abs(rate - current) > self.max_change + 1e-9:
            out.append(f"change {abs(rate - current):g} U/h from the running {current:g} U/h above "
                       f"{self.max_change:g} U/h")
        return out


@dataclass(frozen=True)
class LearnedPolicy:
    """A Q-function policy over discrete actions, shielded by hard constraints.

    Parameters
    ----------
    q : object
        ``score(obs (n, d)) -> (n, A)`` (a :class:`~medtwin.rl.fqi.QFunction`); actions outside its
        ``allowed`` set (conservative variant) are ranked last.
    features : callable
        ``features(twin, **options) -> obs (d,)``: the observation the policy was trained on, read from the twin.
    make_action : callable
        ``make_action(j, **options) -> dict``: action index to the clinical action (the Recommendation's
        ``action``).
    constraints : HardConstraints
        ``violations(action) -> list[str]``.
    fallback : callable
        ``fallback(**options) -> dict``: the safe action when no action is feasible.
    kind : {"mpc", "regimen"}
    target : mapping
        What the policy was trained for (reward, units).
    """

    q: Any
    features: Callable
    make_action: Callable
    constraints: Any
    fallback: Callable
    n_actions: int
    kind: str = "mpc"
    target: dict = field(default_factory=dict)
    name: str = "learned"

    def scores(self, obs) -> np.ndarray:
        obs = np.asarray(obs, float).reshape(1, -1)
        s = np.asarray(self.q.score(obs), float)[0]
        allowed = getattr(self.q, "allowed", None)
        if allowed is not None:
            s = np.where(allowed(obs)[0], s, -np.inf)
        return s

    def propose(self, twin, **options) -> Recommendation:
        """The best-scoring feasible action for ``twin`` (options pass to ``features`` and ``make_action``)."""
        s = self.scores(self.features(twin, **options))
        order = np.argsort(-np.where(np.isfinite(s), s, -1e300), kind="stable")
        skipped = []
        for rank, j in enumerate(order):
            action = dict(self.make_action(int(j), **options))
            broken = self.constraints.violations(action)
            if not broken:
                status = "optimal" if rank == 0 else "feasible"
                message = "" if rank == 0 else "shielded: " + "; ".join(skipped[:3])
                runner = tuple({"action": int(k), "score": float(s[k])} for k in order[rank + 1: rank + 3])
                return Recommendation(kind=self.kind, action=action, status=status, target=dict(self.target),
                                      constraints={"hard": repr(self.constraints)},
                                      active_constraints=tuple(skipped[:3]), runner_ups=runner, message=message)
            skipped.append(f"action {int(j)}: " + "; ".join(broken))
        action = dict(self.fallback(**options))
        return Recommendation(kind=self.kind, action=action, status="infeasible-fallback", target=dict(self.target),
                              constraints={"hard": repr(self.constraints)},
                              message="no learned action satisfies the hard constraints; safe fallback")


def glucose_features(twin, *, current_rate: float, time: float = 0.0, hours: float = 24.0) -> np.ndarray:
    """The glucose environment's observation from a twin: its two latest G results, the running rate, time."""
    values = [e.measurement.value for e in getattr(twin, "history", ()) if e.measurement.output == "G"]
    if not values:
        raise DataError("learned glucose policy: the twin has no glucose result yet")
    latest = values[-1]
    previous = values[-2] if len(values) > 1 else latest
    return np.array([latest, previous, current_rate, min(time / hours, 1.0)], float)


def insulin_policy(q, *, features: Callable = glucose_features, levels: Sequence[float] = INSULIN_RATES,
                   constraints: RunningRateConstraints = RunningRateConstraints(),
                   name: str = "learned") -> LearnedPolicy:
    """A learned insulin-rate policy (actions: ``levels`` U/h for the next hour) under ``constraints``."""
    levels = tuple(float(v) for v in levels)

    def make_action(j, *, current_rate, **_):
        return {"insulin_u_per_h": [levels[j]], "apply_now_u_per_h": levels[j], "step_h": 1.0,
                "current_u_per_h": float(current_rate)}

    def fallback(*, current_rate, **_):   # step towards 0 U/h by at most max_change: always feasible
        rate = max(constraints.bounds[0], float(current_rate) - constraints.max_change)
        rate = min(rate, constraints.bounds[1])
        return {"insulin_u_per_h": [rate], "apply_now_u_per_h": rate, "step_h": 1.0,
                "current_u_per_h": float(current_rate)}

    return LearnedPolicy(q, features, make_action, constraints, fallback, len(levels), "mpc",
                         {"name": "time in 4.4-8.0 mmol/L", "unit": "h"}, name)


def vancomycin_policy(q, features: Callable, constraints, *, doses: Sequence[float] = VANCO_DOSES_MG,
                      name: str = "learned") -> LearnedPolicy:
    """A learned daily vancomycin policy (a dose every 12 h) under ``DoseConstraints``."""
    doses = tuple(float(v) for v in doses)

    def make_action(j, **_):
        return {"dose_mg": doses[j], "interval_h": 12.0, "infusion_h": max(1.0, doses[j] / 1000.0)}

    def fallback(**_):
        d = min(doses)
        return {"dose_mg": d, "interval_h": 24.0, "infusion_h": max(1.0, d / 1000.0)}

    return LearnedPolicy(q, features, make_action, constraints, fallback, len(doses), "regimen",
                         {"name": "AUC24", "low": 400.0, "high": 600.0, "unit": "mg*h/L"}, name)
