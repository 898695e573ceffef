"""Learned policies in the closed-loop harnesses of :mod:`medtwin.scenarios` (side by side with MPC and the protocol).

The harnesses call their policies with what the bedside knows (arrived results, the dose history); these
adapters build the environment's observation from it (the same fields, units and delays as
:mod:`medtwin.rl.envs`), ask the learned policy (obs -> probabilities) and return the harness' action.

Examples
--------
>>> import numpy as np
>>> from medtwin.rl.envs import INSULIN_RATES
>>> policy = glucose_harness_policy(lambda obs: np.eye(len(INSULIN_RATES))[[3]], hours=12)
>>> policy(None, 0.33, [], 0.0)[0]          # no result yet: the running rate
0.0
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from medtwin.core.events import Regimen
from medtwin.rl.envs import INSULIN_RATES, VANCO_DOSES_MG, shield_rate

__all__ = ["glucose_harness_policy", "vanco_harness_policy", "vanco_observation"]


def glucose_harness_policy(policy: Callable, *, hours: int, max_change: float = 2.0) -> Callable:
    """``policy(obs)`` as a :func:`~medtwin.scenarios.glucose_loop.run_glucose_patient` policy (shielded)."""
    def harness_policy(state, now, results, current_rate):
        if not results:
            return float(current_rate), state, "no result yet"
        values = [m.value for m in sorted(results, key=lambda m: m.time)]
        latest = values[-1]
        previous = values[-2] if len(values) > 1 else latest
        obs = np.array([[latest, previous, current_rate, min(math.floor(now + 1e-9), hours) / hours]])
        requested = INSULIN_RATES[int(np.argmax(policy(obs)[0]))]
        rate = float(shield_rate(np.array([requested]), np.array([current_rate]), max_change=max_change)[0])
        return rate, state, "learned" if rate == requested else "learned (shielded)"

    return harness_policy


def vanco_observation(covariates, now: float, history: Regimen, levels, days: int) -> np.ndarray:
    """The vancomycin environment's observation at decision time ``now`` (h) from the harness' knowledge."""
    trough = peak = 0.0
    for t, v in levels:
        if abs(t - (now - 24.5)) < 1e-6:
            trough = v
        elif now - 24.0 < t < now - 12.0:
            peak = v
    doses = [e.amount for e in history.expanded() if e.amount > 0 and e.time < now]
    dose = doses[-1] if doses else 0.0
    return np.array([[trough, peak, covariates["CRCL"] / 100.0, covariates["WT"] / 100.0, dose / 1000.0,
                      min(now / 24.0, days) / days]])


def vanco_harness_policy(policy: Callable, *, days: int) -> Callable:
    """``policy(obs)`` as a :func:`~medtwin.scenarios.vanco_loop.run_vanco_patient` policy (q12h doses)."""
    def harness_policy(covariates, now, history, levels, until):
        obs = vanco_observation(covariates, now, history, levels, days)
        dose = VANCO_DOSES_MG[int(np.argmax(policy(obs)[0]))]
        n = max(1, int(math.ceil((until - now) / 12.0 - 1e-9)))
        return Regimen.every(12, "h", dose, "mg", n=n, duration=max(1.0, dose / 1000.0), start=now), "learned"

    return harness_policy
