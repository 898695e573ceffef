"""Logging decision data: episodes from the vectorised environments and from the closed-loop harnesses.

:func:`collect` runs a stochastic behaviour policy ``behaviour(obs (n, d)) -> probabilities (n, A)`` on a
vector environment and records every transition with the propensity of the action actually applied
(after the environment's shield).  :func:`epsilon_soft` turns a deterministic protocol into such a
behaviour policy (known propensities are what importance sampling needs).  :func:`logged_glucose_policy`
wraps a :mod:`medtwin.scenarios.glucose_loop` policy so that the harness' decisions are logged too.

Examples
--------
>>> import numpy as np
>>> from medtwin.rl.envs import GlucoseVectorEnv, INSULIN_RATES
>>> env = GlucoseVectorEnv(4, hours=3)
>>> data = collect(env, epsilon_soft(glucose_protocol, 0.2, len(INSULIN_RATES)), seed=0)
>>> data.n_episodes, len(data), bool(np.all(data.propensity > 0))
(4, 12, True)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from medtwin.errors import DataError
from medtwin.rl.data import Episodes
from medtwin.rl.envs import INSULIN_RATES, VANCO_DOSES_MG

__all__ = ["collect", "epsilon_soft", "glucose_protocol", "vancomycin_protocol", "rollout_value",
           "logged_glucose_policy"]


def glucose_protocol(obs) -> np.ndarray:
    """The JBDS variable-rate insulin scale on the latest result, as the index into ``INSULIN_RATES``."""
    from medtwin.scenarios.glucose_loop import jbds_vriii_rate

    rates = [jbds_vriii_rate(float(g)) for g in np.asarray(obs)[:, 0]]
    return np.array([INSULIN_RATES.index(r) for r in rates])


def vancomycin_protocol(obs) -> np.ndarray:
    """Label dosing (15 mg/kg daily... per 12 h, as :func:`~medtwin.scenarios.vanco_loop.label_dose`) as an
    index into ``VANCO_DOSES_MG``; the q24h regimen of CrCl < 50 mL/min becomes half the dose every 12 h."""
    from medtwin.scenarios.vanco_loop import label_dose

    obs = np.asarray(obs)
    out = []
    for crcl, weight in zip(obs[:, 2] * 100.0, obs[:, 3] * 100.0):
        dose, interval = label_dose({"CRCL": crcl, "WT": weight})
        per12 = dose * 12.0 / interval
        out.append(int(np.argmin(np.abs(np.asarray(VANCO_DOSES_MG) - per12))))
    return np.array(out)


def epsilon_soft(protocol: Callable, epsilon: float, n_actions: int, *, neighbours: bool = True) -> Callable:
    """Behaviour policy: the protocol's action with probability 1 - epsilon, else a neighbouring action
    (index ± 1, ``neighbours``) or any action uniformly."""
    if not 0 < epsilon < 1:
        raise DataError(f"epsilon_soft: epsilon must be in (0, 1), got {epsilon}")

    def behaviour(obs):
        a = np.asarray(protocol(obs), int)
        p = np.zeros((len(a), n_actions))
        if neighbours:
            for shift in (-1, 1):
                j = np.clip(a + shift, 0, n_actions - 1)
                np.add.at(p, (np.arange(len(a)), j), epsilon / 2)
        else:
            p += epsilon / n_actions
        p[np.arange(len(a)), a] += 1 - p.sum(1)
        return p

    return behaviour


def collect(env, behaviour: Callable, *, seed: int = 0, episodes: int = 1, metadata: dict | None = None) -> Episodes:
    """Run ``behaviour`` on a vector environment for ``episodes`` rounds of ``env.num_envs`` patients."""
    rng = np.random.default_rng([seed, 11])
    rows = []
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    for e in range(episodes):
        if e:
            obs, _ = env.reset(seed=seed + e)
        t = 0
        while True:
            p = behaviour(obs)
            a = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(1).clip(0, p.shape[1] - 1)
            nxt, reward, term, trunc, info = env.step(a)
            applied = np.asarray(info.get("applied_action", a), int)
            prop = np.where(applied == a, p[np.arange(n), a], np.nan)
            shield = np.asarray(info.get("shielded", np.zeros(n, bool)), bool)
            if np.any(shield):   # propensity of the applied action: all requests the shield maps onto it
                prop = _shielded_propensity(env, obs, p, applied)
            rows.append((np.arange(n) + e * n, np.full(n, t), obs, applied, reward, nxt, term, trunc, prop,
                         np.asarray(info.get("cost", np.zeros(n)), float)))
            obs, t = nxt, t + 1
            if np.all(term | trunc):
                break
    cols = [np.concatenate(c) if np.ndim(c[0]) == 1 else np.concatenate(c, axis=0) for c in zip(*rows)]
    order = np.lexsort((cols[1], cols[0]))
    ep, st, o, a, r, nx, te, tr, pr, c = (x[order] for x in cols)
    return Episodes(episode=ep, step=st, obs=o, action=a, reward=r, next_obs=nx, terminated=te, truncated=tr,
                    propensity=pr, cost=c, n_actions=env.single_action_space.n,
                    obs_names=tuple(env.core.obs_names), metadata=dict(metadata or {}))


def _shielded_propensity(env, obs, p, applied) -> np.ndarray:
    from medtwin.rl.envs import shield_rate

    n, A = p.shape
    current = np.asarray(obs)[:, 2].astype(float)
    out = np.zeros(n)
    for j in range(A):
        mapped = shield_rate(np.full(n, INSULIN_RATES[j]), current, max_change=env.core.max_change,
                             bounds=(0.0, env.core.insulin_max))
        out += np.where(np.searchsorted(INSULIN_RATES, mapped) == applied, p[:, j], 0.0)
    return out


def rollout_value(env, policy: Callable, *, seed: int = 0) -> dict:
    """Fresh closed-loop simulation: mean return, its standard error, mean cost and P(unsafe) per patient."""
    obs, _ = env.reset(seed=seed)
    n = env.num_envs
    ret, cost, unsafe = np.zeros(n), np.zeros(n), np.zeros(n, bool)
    while True:
        probs = policy(obs)
        obs, reward, term, trunc, info = env.step(np.argmax(probs, axis=1))
        ret += reward
        cost += np.asarray(info.get("cost", 0.0))
        unsafe |= np.asarray(info.get("unsafe", False), bool)
        if np.all(term | trunc):
            break
    return {"value": float(ret.mean()), "se": float(ret.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "cost": float(cost.mean()), "p_unsafe": float(unsafe.mean()), "n": n}


def logged_glucose_policy(policy: Callable, log: list, *, hours: float) -> Callable:
    """Wrap a glucose-loop policy ``(state, now, results, rate) -> (rate, state, status)``: each decision is
    appended to ``log`` as (time h, observation as in the environment, rate U/h, status)."""
    def wrapped(state, now, results, current_rate):
        values = [m.value for m in sorted(results, key=lambda m: m.time)]
        latest = values[-1] if values else float("nan")
        previous = values[-2] if len(values) > 1 else latest
        rate, state, status = policy(state, now, results, current_rate)
        log.append((float(now), np.array([latest, previous, current_rate, min(now / hours, 1.0)]), float(rate),
                    status))
        return rate, state, status

    return wrapped
