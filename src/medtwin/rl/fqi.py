"""Fitted Q iteration (FQI), its behaviour-constrained variant, and fitted Q evaluation (FQE).

FQI (Ernst D, Geurts P, Wehenkel L. Tree-based batch mode reinforcement
learning. JMLR 2005;6:503-556) regresses ``r + gamma (1 - done) max_a' Q_k(s', a')``
on ``(s, a)`` again and again.  The function approximator is either

* :class:`TabularQ` — the exact per-(state, action) mean, for discrete
  observations (a state index), the natural "regressor" of a tabular MDP; or
* :class:`TreeQ` — a scikit-learn tree ensemble (``ExtraTreesRegressor`` by
  default, as in Ernst 2005; any regressor factory can be passed) on the
  observation and the one-hot action.

The **conservative variant** is the discrete batch-constrained rule of
Fujimoto S, Conti E, Ghavamzadeh M, Pineau J. Benchmarking batch deep
reinforcement learning algorithms. arXiv:1910.01708 (2019) (discrete BCQ): the
maximisation (in the targets and in the greedy policy) runs only over actions
with estimated behaviour probability ``pi_b(a|s) >= tau * max_a pi_b(a|s)``, so
the learned policy never leans on actions the data hardly contain; ``pi_b`` is
the count estimate (tabular) or a gradient-boosted classifier.

FQE (Le HM, Voloshin C, Yue Y. Batch policy learning under constraints. ICML
2019) is the same regression with ``sum_a' pi(a'|s') Q_k(s', a')`` in the
target: the value of a fixed target policy ``pi``.

Policies are callables ``obs (n, d) -> probabilities (n, A)``.

Examples
--------
>>> import numpy as np
>>> from medtwin.rl.data import Episodes
>>> # one-step bandit in state 0: action 1 pays 1, action 0 pays 0
>>> e = Episodes(episode=np.arange(4), step=np.zeros(4, int), obs=np.zeros((4, 1)), action=np.array([0, 1, 0, 1]),
...              reward=np.array([0., 1., 0., 1.]), next_obs=np.ones((4, 1)), terminated=np.ones(4, bool),
...              truncated=np.zeros(4, bool), propensity=np.full(4, 0.5), n_actions=2)
>>> q = fitted_q_iteration(e, TabularQ(n_states=2), n_iter=3)
>>> q.greedy_policy()(np.zeros((1, 1))).tolist()
[[0.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from medtwin.errors import DataError
from medtwin.rl.data import Episodes

__all__ = ["TabularQ", "TreeQ", "QFunction", "BehaviourModel", "fitted_q_iteration", "fitted_q_evaluation",
           "tabular_policy", "uniform_policy"]


def tabular_policy(pi) -> Callable:
    """A policy from an (S, A) probability table: obs (n, 1) state indices -> (n, A)."""
    table = np.asarray(pi, dtype=float)

    def policy(obs):
        return table[np.asarray(obs, float)[:, 0].astype(int)]

    policy.table = table
    return policy


def uniform_policy(n_actions: int) -> Callable:
    """The uniformly random policy over ``n_actions`` actions."""
    def policy(obs):
        return np.full((len(obs), n_actions), 1.0 / n_actions)

    return policy


@dataclass
class TabularQ:
    """Exact per-(state, action) weighted means; an unseen pair gets the mean of its state's seen pairs
    (the mean over all pairs when the state is unseen)."""

    n_states: int
    table: np.ndarray | None = None
    counts: np.ndarray | None = None

    def fit(self, obs, action, target, weight, n_actions: int) -> "TabularQ":
        s = np.asarray(obs, float)[:, 0].astype(int)
        key = s * n_actions + np.asarray(action)
        size = self.n_states * n_actions
        w = np.bincount(key, weights=weight, minlength=size)
        total = np.bincount(key, weights=weight * target, minlength=size)
        seen = (w > 0).reshape(self.n_states, n_actions)
        q = (total / np.where(w > 0, w, 1.0)).reshape(self.n_states, n_actions)
        self.table = _fill(q, seen)
        self.counts = w.reshape(self.n_states, n_actions)
        return self

    def predict_all(self, obs) -> np.ndarray:
        return self.table[np.asarray(obs, float)[:, 0].astype(int)]

    def fresh(self) -> "TabularQ":
        return TabularQ(self.n_states)

    def iterate(self, data: Episodes, weight, gamma: float, n_iter: int, tol: float, next_value: Callable) -> tuple:
        """The FQI/FQE loop on the empirical model (the exact tabular regression, done once as a sparse matrix).

        ``Q_{k+1}(s, a) = rbar(s, a) + gamma * sum_s' Phat(s' | s, a) (1 - done) V_k(s')`` with
        ``V_k = next_value(Q_k)``; identical to refitting the per-pair means on the targets every iteration.
        Returns (iterations, last sup-norm change).
        """
        import scipy.sparse as sparse

        A = data.n_actions
        s = data.obs[:, 0].astype(int)
        key = s * A + np.asarray(data.action)
        size = self.n_states * A
        w = np.asarray(weight, float)
        n = np.bincount(key, weights=w, minlength=size)
        inv = np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 0.0)
        rbar = np.bincount(key, weights=w * data.reward, minlength=size) * inv
        alive = ~(np.asarray(data.terminated, bool) | np.asarray(data.truncated, bool))
        M = sparse.csr_matrix((w * alive * inv[key], (key, data.next_obs[:, 0].astype(int))),
                              shape=(size, self.n_states))
        seen = (n > 0).reshape(self.n_states, A)
        self.counts = n.reshape(self.n_states, A)
        q = np.where(seen, rbar.reshape(self.n_states, A), np.nan)
        self.table = _fill(q, seen)
        residual = np.inf
        for k in range(1, n_iter + 1):
            q = (rbar + gamma * (M @ next_value(self.table))).reshape(self.n_states, A)
            new = _fill(np.where(seen, q, np.nan), seen)
            residual = float(np.max(np.abs(new - self.table)))
            self.table = new
            if residual < tol:
                break
        return k, residual


def _fill(q, seen):
    """Unseen pairs: the mean of the state's seen pairs, else the mean over all seen pairs."""
    overall = float(np.mean(q[seen])) if np.any(seen) else 0.0
    count = seen.sum(1)
    state_mean = np.where(count > 0, np.nansum(np.where(seen, q, 0.0), axis=1) / np.maximum(count, 1), overall)
    return np.where(seen, q, state_mean[:, None])


def _default_trees():
    from sklearn.ensemble import ExtraTreesRegressor

    return ExtraTreesRegressor(n_estimators=30, min_samples_leaf=10, max_features=1.0, n_jobs=1, random_state=0)


@dataclass
class TreeQ:
    """A scikit-learn regressor on [obs, one-hot(action)]; ``factory()`` builds a fresh one per iteration."""

    factory: Callable = _default_trees
    model: object = None
    n_actions: int = 0

    def fit(self, obs, action, target, weight, n_actions: int) -> "TreeQ":
        self.n_actions = n_actions
        x = np.hstack([obs, np.eye(n_actions)[action]])
        self.model = self.factory()
        self.model.fit(x, target, sample_weight=weight)
        return self

    def predict_all(self, obs) -> np.ndarray:
        obs = np.asarray(obs, float)
        n, A = len(obs), self.n_actions
        x = np.hstack([np.repeat(obs, A, axis=0), np.tile(np.eye(A), (n, 1))])
        return self.model.predict(x).reshape(n, A)

    def fresh(self) -> "TreeQ":
        return TreeQ(self.factory)


@dataclass
class BehaviourModel:
    """Estimated behaviour policy ``pi_b(a | obs)``: counts per state (``n_states`` given) or a classifier."""

    n_actions: int
    n_states: int | None = None
    table: np.ndarray | None = None
    model: object = None

    def fit(self, data: Episodes, weight=None) -> "BehaviourModel":
        w = np.ones(len(data)) if weight is None else np.asarray(weight, float)
        if self.n_states is not None:
            key = data.obs[:, 0].astype(int) * self.n_actions + data.action
            counts = np.bincount(key, weights=w, minlength=self.n_states * self.n_actions)
            counts = counts.reshape(self.n_states, self.n_actions)
            total = counts.sum(1, keepdims=True)
            self.table = np.where(total > 0, counts / np.where(total > 0, total, 1.0), 1.0 / self.n_actions)
        else:
            from sklearn.ensemble import HistGradientBoostingClassifier

            self.model = HistGradientBoostingClassifier(max_iter=60, learning_rate=0.1, random_state=0)
            self.model.fit(data.obs, data.action, sample_weight=w)
        return self

    def __call__(self, obs) -> np.ndarray:
        obs = np.asarray(obs, float)
        if self.table is not None:
            return self.table[obs[:, 0].astype(int)]
        p = np.zeros((len(obs), self.n_actions))
        if len(self.model.classes_) == 1:      # one logged action only (sklearn's probabilities then have 2 columns)
            p[:, self.model.classes_[0]] = 1.0
        else:
            p[:, self.model.classes_] = self.model.predict_proba(obs)
        return p


@dataclass
class QFunction:
    """A fitted Q function with the action set it maximises over.

    ``allowed(obs) -> (n, A) bool`` (all True for plain FQI, the batch-constrained set for the conservative
    variant); ``iterations``; ``residual`` the last sup-norm change of the targets.
    """

    regressor: object
    n_actions: int
    allowed: Callable | None = None
    iterations: int = 0
    residual: float = float("nan")
    penalty: np.ndarray | None = None

    def q(self, obs) -> np.ndarray:
        """Action values, shape (n, A)."""
        return self.regressor.predict_all(obs)

    def score(self, obs) -> np.ndarray:
        """What the greedy policy maximises: ``q`` less the count penalty (tabular pessimism), shape (n, A)."""
        q = self.q(obs)
        if self.penalty is not None:
            q = q - self.penalty[np.asarray(obs, float)[:, 0].astype(int)]
        return q

    def _mask(self, obs) -> np.ndarray:
        return np.ones((len(obs), self.n_actions), bool) if self.allowed is None else self.allowed(obs)

    def greedy_policy(self) -> Callable:
        """The deterministic policy ``argmax`` over the allowed actions: obs (n, d) -> one-hot (n, A)."""
        def policy(obs):
            obs = np.asarray(obs, float)
            q = np.where(self._mask(obs), self.score(obs), -np.inf)
            out = np.zeros(q.shape)
            out[np.arange(len(obs)), np.argmax(q, axis=1)] = 1.0
            return out

        return policy


def _done(data: Episodes) -> np.ndarray:
    return np.asarray(data.terminated, bool) | np.asarray(data.truncated, bool)


def _conservative_set(data, regressor, conservative, behaviour, w):
    if not 0 < conservative <= 1:
        raise DataError(f"fitted Q iteration: conservative threshold must be in (0, 1], got {conservative}")
    if behaviour is None:
        behaviour = BehaviourModel(data.n_actions, getattr(regressor, "n_states", None)).fit(data, w)
    tau = float(conservative)

    def allowed(obs):
        p = behaviour(obs)
        return p >= tau * p.max(axis=1, keepdims=True)

    allowed.behaviour = behaviour
    return allowed


def fitted_q_iteration(data: Episodes, regressor, *, n_iter: int = 50, gamma: float = 1.0,
                       conservative: float | None = None, pessimism: float = 0.0,
                       behaviour: BehaviourModel | None = None, weight=None, tol: float = 1e-9) -> QFunction:
    """Fitted Q iteration on logged transitions; ``conservative``/``pessimism`` give the conservative variant.

    Parameters
    ----------
    data : Episodes
    regressor : TabularQ or TreeQ
        The function approximator (refitted every iteration; the tabular one on its empirical model).
    n_iter : int
        Iterations (the horizon the values look ahead); stops early when the values change by < ``tol``.
    gamma : float
        Discount factor; episodes end at ``terminated`` or ``truncated`` (no bootstrapping past either).
    conservative : float in (0, 1], optional
        BCQ threshold tau: maximise only over actions with ``pi_b(a|s) >= tau max_a pi_b(a|s)``.
    pessimism : float
        Tabular only: maximise ``Q(s, a) - pessimism / sqrt(n(s, a))`` over seen pairs (a count-based lower
        confidence bound, Jin Y, Yang Z, Wang Z. Is pessimism provably efficient for offline RL? ICML 2021);
        unseen pairs are excluded.  0: plain FQI.
    behaviour : BehaviourModel, optional
        Estimated behaviour policy for ``conservative`` (fitted on ``data`` when not given).
    weight : ndarray, optional
        Per-transition weights (e.g. bootstrap multiplicities).
    """
    if n_iter < 1 or not (0 < gamma <= 1) or pessimism < 0:
        raise DataError("fitted Q iteration: n_iter >= 1, gamma in (0, 1] and pessimism >= 0 needed")
    A = data.n_actions
    w = np.ones(len(data)) if weight is None else np.asarray(weight, float)
    allowed = None if conservative is None else _conservative_set(data, regressor, conservative, behaviour, w)
    if pessimism and not isinstance(regressor, TabularQ):
        raise DataError("fitted Q iteration: the count-based pessimism needs a TabularQ")
    qf = QFunction(regressor, A, allowed)
    if isinstance(regressor, TabularQ):
        states = np.arange(regressor.n_states)[:, None].astype(float)
        mask = np.ones((regressor.n_states, A), bool) if allowed is None else allowed(states)
        counts = {}

        def next_value(table):
            if "n" not in counts:
                counts["n"] = regressor.counts
                counts["pen"] = pessimism / np.sqrt(np.maximum(regressor.counts, 1e-300))
                counts["ok"] = mask & ((regressor.counts > 0) if pessimism else True)
            v = np.where(counts["ok"], table - counts["pen"], -np.inf).max(axis=1)
            return np.where(np.isfinite(v), v, table.mean(axis=1))

        qf.iterations, qf.residual = regressor.iterate(data, w, gamma, n_iter, tol, next_value)
        if pessimism:
            ok = counts["ok"]

            def allowed_and_seen(obs, _ok=ok, _mask=mask):
                rows = np.asarray(obs, float)[:, 0].astype(int)
                out = _ok[rows]
                return np.where(out.any(axis=1, keepdims=True), out, _mask[rows])  # unseen state: the base set

            qf.allowed = allowed_and_seen
            qf.penalty = counts["pen"]
        return qf
    not_done = ~_done(data)
    nxt = data.next_obs[not_done]
    mask_next = qf._mask(nxt)
    return _fitted_iteration(qf, data, w, gamma, n_iter, tol, not_done,
                             lambda: np.where(mask_next, regressor.predict_all(nxt), -np.inf).max(axis=1))


def fitted_q_evaluation(data: Episodes, policy: Callable, regressor, *, n_iter: int = 50, gamma: float = 1.0,
                        weight=None, tol: float = 1e-7) -> QFunction:
    """Fitted Q evaluation of ``policy`` (obs -> (n, A) probabilities) on logged transitions.

    Returns the QFunction of ``policy``; its value is the mean over the episodes' first observations of
    ``sum_a pi(a|s0) Q(s0, a)`` (see :func:`medtwin.rl.ope.fqe`).
    """
    if n_iter < 1 or not (0 < gamma <= 1):
        raise DataError("fitted Q evaluation: n_iter >= 1 and gamma in (0, 1] needed")
    A = data.n_actions
    w = np.ones(len(data)) if weight is None else np.asarray(weight, float)
    qf = QFunction(regressor, A)
    if isinstance(regressor, TabularQ):
        pi_states = policy(np.arange(regressor.n_states)[:, None].astype(float))

        def next_value(table):
            return np.einsum("sa,sa->s", pi_states, table)

        qf.iterations, qf.residual = regressor.iterate(data, w, gamma, n_iter, tol, next_value)
        return qf
    not_done = ~_done(data)
    nxt = data.next_obs[not_done]
    pi_next = policy(nxt)
    return _fitted_iteration(qf, data, w, gamma, n_iter, tol, not_done,
                             lambda: np.einsum("na,na->n", pi_next, regressor.predict_all(nxt)))


def _fitted_iteration(qf: QFunction, data: Episodes, w, gamma, n_iter, tol, not_done, next_value) -> QFunction:
    """The fitted iteration shared by FQI and FQE: fit ``qf.regressor`` to reward + γ·next_value() (the
    value of the next states that are not terminal, under the fit just made) until the targets move less
    than ``tol``, then fit once more to the last targets."""
    regressor, A = qf.regressor, qf.n_actions
    target = np.asarray(data.reward, float).copy()
    for k in range(1, n_iter + 1):
        regressor.fit(data.obs, data.action, target, w, A)
        qf.iterations = k
        new = np.asarray(data.reward, float).copy()
        new[not_done] += gamma * next_value()
        qf.residual = float(np.max(np.abs(new - target)))
        target = new
        if qf.residual < tol:
            break
    regressor.fit(data.obs, data.action, target, w, A)
    return qf
