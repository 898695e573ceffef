"""Tabular Markov decision processes: exact dynamic programming, episode sampling, the ICU-Sepsis MDP.

A :class:`TabularMDP` holds the transition array ``P[s, a, s']``, the expected
reward ``r[s, a]`` (reward units per decision), the initial-state distribution
``d0[s]`` and a terminal mask.  :func:`policy_value` evaluates a stochastic
policy exactly (one linear solve), :func:`value_iteration` finds the optimal
values (optionally restricted to a per-state set of allowed actions), and
:func:`sample_episodes` draws logged episodes with the behaviour propensities.

:func:`icu_sepsis_mdp` reads the ICU-Sepsis benchmark MDP (Choudhary K,
Gupta D, Thomas PS. ICU-Sepsis: a benchmark MDP built from real medical data.
Reinforcement Learning Conference 2024, arXiv:2406.05646; PyPI ``icu-sepsis``
2.0.1) from the package's data file ``envs/assets/dynamics.npz`` directly
(``tx_mat``, ``r_mat``, ``d_0``, ``expert_policy``): importing ``icu_sepsis``
imports the retired ``gym`` package, which warns at import; the arrays are
the same.  Published values (gamma = 1): random policy ≈ 0.78, clinicians'
(expert) policy ≈ 0.78, optimal ≈ 0.88; :func:`policy_value` gives 0.7801,
0.7818 and :func:`value_iteration` 0.8751 (``tests/unit/test_rl_mdp.py``,
``benchmarks/rl.py``).

Examples
--------
>>> import numpy as np
>>> P = np.zeros((2, 2, 2)); P[0, 0, 1] = 1; P[0, 1, 0] = 0.5; P[0, 1, 1] = 0.5; P[1, :, 1] = 1
>>> r = np.array([[1.0, 3.0], [0.0, 0.0]])
>>> mdp = TabularMDP(P, r, np.array([1.0, 0.0]), np.array([False, True]), gamma=0.9)
>>> round(float(policy_value(mdp, np.array([[1.0, 0.0], [1.0, 0.0]]))), 6)   # one step, reward 1
1.0
>>> v = value_iteration(mdp).values   # V = 3 + 0.9 * 0.5 * V  ->  V = 3 / 0.55
>>> round(float(v[0]), 6)
5.454545
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import util as _importlib_util
from pathlib import Path

import numpy as np

from medtwin.errors import DataError
from medtwin.rl.data import Episodes

__all__ = ["TabularMDP", "ValueIterationResult", "policy_value", "state_values", "value_iteration",
           "greedy_policy", "sample_episodes", "icu_sepsis_mdp", "ICU_SEPSIS_PUBLISHED"]

#: Published values of the ICU-Sepsis paper (Choudhary, Gupta & Thomas 2024, Table 2; gamma = 1).
ICU_SEPSIS_PUBLISHED = {"random": 0.78, "clinician": 0.78, "optimal": 0.88}


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP.

    Parameters
    ----------
    P : ndarray, shape (S, A, S)
        Transition probabilities ``P[s, a, s']`` (rows sum to 1).
    r : ndarray, shape (S, A)
        Expected reward of taking ``a`` in ``s`` (reward units).
    d0 : ndarray, shape (S,)
        Initial-state distribution.
    terminal : ndarray of bool, shape (S,)
        Absorbing states with value 0 (episodes end on entering one).
    gamma : float
        Discount factor in (0, 1].
    reward_of_transition : ndarray, shape (S, A, S), optional
        ``R[s, a, s']`` when the reward depends on the next state (sampling uses it; ``r`` is its expectation).
    """

    P: np.ndarray
    r: np.ndarray
    d0: np.ndarray
    terminal: np.ndarray
    gamma: float = 1.0
    reward_of_transition: np.ndarray | None = None

    def __post_init__(self):
        S, A = np.shape(self.r)
        if np.shape(self.P) != (S, A, S) or np.shape(self.d0) != (S,) or np.shape(self.terminal) != (S,):
            raise DataError(f"tabular MDP: need P (S, A, S), r (S, A), d0 (S,), terminal (S,); got {np.shape(self.P)}, "
                            f"{np.shape(self.r)}, {np.shape(self.d0)}, {np.shape(self.terminal)}")
        if not np.allclose(self.P.sum(-1), 1.0, atol=1e-8) or np.any(self.P < 0):
            raise DataError("tabular MDP: each P[s, a, :] must be a probability distribution")
        if not (0.0 < self.gamma <= 1.0):
            raise DataError(f"tabular MDP: gamma must be in (0, 1], got {self.gamma}")

    @property
    def n_states(self) -> int:
        return int(self.r.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.r.shape[1])


def _check_policy(mdp: TabularMDP, policy) -> np.ndarray:
    pi = np.asarray(policy, dtype=float)
    if pi.shape != (mdp.n_states, mdp.n_actions) or np.any(pi < -1e-12) or not np.allclose(pi.sum(1), 1.0, atol=1e-8):
        raise DataError(f"policy must be an ({mdp.n_states}, {mdp.n_actions}) array of probabilities per state")
    return pi


def state_values(mdp: TabularMDP, policy) -> np.ndarray:
    """Exact values ``V_pi(s)`` of a stochastic policy ``pi[s, a]`` by one linear solve, shape (S,).

    Solves ``(I - gamma P_pi) V = r_pi`` with ``V = 0`` on terminal states; raises DataError when the system is
    singular (gamma = 1 and a policy that never terminates).
    """
    pi = _check_policy(mdp, policy)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.r)
    M = np.eye(mdp.n_states) - mdp.gamma * P_pi
    term = np.asarray(mdp.terminal, bool)
    M[term] = 0.0
    M[term, term] = 1.0
    r_pi = np.where(term, 0.0, r_pi)
    try:
        return np.linalg.solve(M, r_pi)
    except np.linalg.LinAlgError as exc:
        raise DataError(f"policy evaluation: singular system ({exc}); does the policy reach a terminal state?") from exc


def policy_value(mdp: TabularMDP, policy) -> float:
    """Exact expected return ``sum_s d0(s) V_pi(s)`` of ``policy`` (reward units)."""
    return float(np.asarray(mdp.d0) @ state_values(mdp, policy))


@dataclass(frozen=True)
class ValueIterationResult:
    """Optimal values ``values`` (S,), action values ``q`` (S, A), iterations and the final sup-norm change."""

    values: np.ndarray
    q: np.ndarray
    iterations: int
    residual: float
    status: str

    @property
    def value(self) -> np.ndarray:
        return self.values


def value_iteration(mdp: TabularMDP, *, allowed=None, tol: float = 1e-12, max_iter: int = 100_000
                    ) -> ValueIterationResult:
    """Optimal state and action values by value iteration (``allowed[s, a]`` restricts the maximisation).

    Status ``"converged"`` when the sup-norm change falls below ``tol``, else ``"max-iterations"``.
    """
    mask = np.ones_like(mdp.r, bool) if allowed is None else np.asarray(allowed, bool)
    term = np.asarray(mdp.terminal, bool)
    S, A = mdp.r.shape
    P = _flat_transitions(mdp)
    v = np.zeros(mdp.n_states)
    q = mdp.r.copy()
    residual = np.inf
    for k in range(1, max_iter + 1):
        q = mdp.r + mdp.gamma * (P @ v).reshape(S, A)
        q[term] = 0.0
        new = np.where(mask, q, -np.inf).max(1)
        new[term] = 0.0
        residual = float(np.max(np.abs(new - v)))
        v = new
        if residual < tol:
            return ValueIterationResult(v, q, k, residual, "converged")
    return ValueIterationResult(v, q, max_iter, residual, "max-iterations")


def _flat_transitions(mdp: TabularMDP):
    """P as an (S*A, S) matrix: scipy sparse when under a fifth of the entries are non-zero."""
    P = np.asarray(mdp.P).reshape(-1, mdp.n_states)
    if np.count_nonzero(P) < 0.2 * P.size:
        import scipy.sparse as sparse

        return sparse.csr_matrix(P)
    return P


def greedy_policy(q, allowed=None) -> np.ndarray:
    """The deterministic policy ``argmax_a q[s, a]`` over allowed actions, as an (S, A) 0/1 array."""
    q = np.where(np.ones_like(q, bool) if allowed is None else np.asarray(allowed, bool), q, -np.inf)
    pi = np.zeros(q.shape)
    pi[np.arange(q.shape[0]), np.argmax(q, axis=1)] = 1.0
    return pi


def sample_episodes(mdp: TabularMDP, behaviour, n: int, *, seed: int = 0, max_steps: int = 500) -> Episodes:
    """``n`` episodes under the stochastic policy ``behaviour[s, a]``, all in parallel, with its propensities.

    Observations are the state index (float, one column).  Episodes end on entering a terminal state
    (``terminated``) or after ``max_steps`` decisions (``truncated``).
    """
    pi = _check_policy(mdp, behaviour)
    if n < 1:
        raise DataError(f"sample_episodes: n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    cum_p = np.cumsum(mdp.P, axis=-1)
    cum_pi = np.cumsum(pi, axis=-1)
    R = mdp.reward_of_transition
    term = np.asarray(mdp.terminal, bool)
    s = rng.choice(mdp.n_states, size=n, p=np.asarray(mdp.d0) / np.sum(mdp.d0))
    alive = ~term[s]
    rows = []
    for t in range(max_steps):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        ss = s[idx]
        a = np.minimum((rng.random(idx.size)[:, None] > cum_pi[ss]).sum(1), mdp.n_actions - 1)
        s2 = np.minimum((rng.random(idx.size)[:, None] > cum_p[ss, a]).sum(1), mdp.n_states - 1)
        reward = R[ss, a, s2] if R is not None else mdp.r[ss, a]
        done = term[s2]
        rows.append((idx, np.full(idx.size, t), ss, a, reward, s2, done, pi[ss, a]))
        s[idx] = s2
        alive[idx] = ~done
    cols = [np.concatenate(c) for c in zip(*rows)]
    order = np.lexsort((cols[1], cols[0]))
    ep, t, ss, a, reward, s2, done, prop = (c[order] for c in cols)
    last = np.r_[ep[1:] != ep[:-1], True]
    return Episodes(episode=ep, step=t, obs=ss[:, None].astype(float), action=a, reward=reward.astype(float),
                    next_obs=s2[:, None].astype(float), terminated=done, truncated=last & ~done, propensity=prop,
                    n_actions=mdp.n_actions, obs_names=("state",))


def _icu_sepsis_assets() -> Path:
    spec = _importlib_util.find_spec("icu_sepsis")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("ICU-Sepsis: the icu-sepsis package is not installed (pip install 'medtwin[test]')")
    path = Path(list(spec.submodule_search_locations)[0]) / "envs" / "assets" / "dynamics.npz"
    if not path.exists():
        raise DataError(f"ICU-Sepsis: {path} not found (icu-sepsis >= 2.0 ships it)")
    return path


def icu_sepsis_mdp() -> tuple[TabularMDP, np.ndarray]:
    """(the ICU-Sepsis MDP, the clinicians' policy ``expert_policy[s, a]``), read from the package's data file.

    716 states (713 patient states; 713 death, 714 survival, 715 the absorbing end), 25 actions (5 IV-fluid ×
    5 vasopressor levels), reward 1 on the transition into survival, gamma = 1.  The three terminal rows of
    the expert policy (undefined) are set uniform.
    """
    with np.load(_icu_sepsis_assets()) as data:
        P, R, d0, expert = (np.array(data[k], dtype=float) for k in ("tx_mat", "r_mat", "d_0", "expert_policy"))
    P = P / P.sum(-1, keepdims=True)
    terminal = np.zeros(P.shape[0], bool)
    terminal[[713, 714, 715]] = True
    sums = expert.sum(1, keepdims=True)
    expert = np.where(sums > 0, expert / np.where(sums > 0, sums, 1.0), 1.0 / P.shape[1])
    mdp = TabularMDP(P, np.einsum("sat,sat->sa", P, R), d0 / d0.sum(), terminal, gamma=1.0, reward_of_transition=R)
    return mdp, expert
