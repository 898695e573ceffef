"""Off-policy evaluation with bootstrap intervals, effective sample sizes and support diagnostics.

Estimators of the expected return of a target policy ``pi`` from episodes
logged under a behaviour policy with known propensities ``b(a_t | s_t)``:

``pdis``  per-decision importance sampling (Precup D, Sutton RS, Singh S.
          Eligibility traces for off-policy policy evaluation. ICML 2000):
          ``mean_i sum_t gamma^t w_it r_it`` with ``w_it = prod_{k<=t} pi/b``.
``pdwis`` per-decision weighted importance sampling (Precup et al. 2000; Thomas PS. Safe reinforcement
          learning, PhD thesis 2015, ch. 3): ``sum_t gamma^t sum_i w_it r_it / sum_i w_it``; each step's
          weights are self-normalised, which removes the deficit of a heavy-tailed sample's mean weight
          (typically < 1 when the rare large ratios are missing) that biases PDIS downwards in practice.
``wis``   weighted (self-normalised) trajectory importance sampling:
          ``sum_i W_i G_i / sum_i W_i`` with ``W_i`` the whole-episode ratio.
``dr``    doubly robust (Jiang N, Li L. Doubly robust off-policy value
          evaluation for reinforcement learning. ICML 2016; Thomas PS,
          Brunskill E. ICML 2016): ``mean_i sum_t gamma^t [w_it (r_it - Q(s,a))
          + w_i,t-1 V(s_it)]`` with ``Q`` from FQE and ``V = sum_a pi Q``.
``fqe``   fitted Q evaluation (Le, Voloshin & Yue, ICML 2019):
          ``mean_i V(s_i0)``.

Every estimate comes with a percentile bootstrap interval over episodes
(FQE refitted in every replicate; DR then uses the refitted Q too; for these
two the basic bootstrap interval ``[2v - q_hi, 2v - q_lo]`` is given as well,
in ``details``: a resample repeats episodes, so it sees fewer distinct
state-action pairs than the data and its refitted values shift; the basic
interval corrects for that shift, the percentile one does not), the Kish
effective sample size ``(sum W)^2 / sum W^2`` of the
whole-episode ratios (FQE: the number of episodes, it uses no weights) and
warnings when the support is poor: small ESS, one episode carrying most of the
weight, target-policy mass on actions the behaviour policy (estimated from the
data) almost never takes, unknown propensities.

Examples
--------
>>> import numpy as np
>>> from medtwin.rl.data import Episodes
>>> rng = np.random.default_rng(0)
>>> a = rng.integers(0, 2, 2000)                                  # behaviour: uniform over 2 arms
>>> r = np.where(a == 1, 1.0, 0.0) + rng.normal(0, 0.1, 2000)    # arm 1 pays 1, arm 0 pays 0
>>> e = Episodes(episode=np.arange(2000), step=np.zeros(2000, int), obs=np.zeros((2000, 1)), action=a, reward=r,
...              next_obs=np.zeros((2000, 1)), terminated=np.ones(2000, bool), truncated=np.zeros(2000, bool),
...              propensity=np.full(2000, 0.5), n_actions=2)
>>> res = evaluate_policy(e, lambda obs: np.tile([0.2, 0.8], (len(obs), 1)), estimators=("wis",), n_boot=200,
...                       n_states=1)
>>> res["wis"].low < 0.8 < res["wis"].high
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from medtwin.errors import DataError
from medtwin.rl.data import Episodes
from medtwin.rl.fqi import BehaviourModel, TabularQ, TreeQ, fitted_q_evaluation

__all__ = ["OPEResult", "evaluate_policy", "support_diagnostics", "importance_weights", "ESTIMATORS"]

ESTIMATORS = ("pdis", "pdwis", "wis", "dr", "fqe")


@dataclass(frozen=True)
class OPEResult:
    """One estimator's estimate of a policy's value (return units) with its bootstrap interval.

    ``ess``: Kish effective sample size of the episode weights (FQE: the number of episodes);
    ``n_episodes``; ``level`` of the interval; ``n_boot`` replicates used; ``warnings`` on support.
    """

    estimator: str
    value: float
    low: float
    high: float
    ess: float
    n_episodes: int
    level: float
    n_boot: int
    warnings: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)

    def covers(self, value: float, se: float = 0.0) -> bool:
        """Whether ``value`` is in the interval; with ``se`` > 0 (the standard error of an independent
        estimate of it, e.g. a simulated mean), whether the interval of the *difference* estimate - value
        contains 0: ``|estimate - value| <= sqrt(h^2 + (z se)^2)``, ``h`` the interval's half-width on the
        side of ``value`` (asymmetric bootstrap intervals keep their sides) and ``z`` the normal quantile of
        ``level``.  Two independent errors add in quadrature; requiring the two intervals merely to overlap
        (``h + z se``) would be too lenient."""
        if not (se > 0):
            return bool(self.low <= value <= self.high)
        z = float(_norm_ppf(0.5 + self.level / 2))
        h = (self.value - self.low) if value <= self.value else (self.high - self.value)
        return bool(abs(self.value - value) <= np.hypot(h, z * se))

    @property
    def width(self) -> float:
        return float(self.high - self.low)


def _norm_ppf(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def importance_weights(data: Episodes, policy: Callable) -> dict:
    """Padded (N, T) arrays: ``rho`` per decision, cumulative ``w``, episode ratio ``W`` (N,), ``pi`` of the
    actions taken, and the padded data (``mask``, ``reward``, ...)."""
    if np.any(~np.isfinite(data.propensity)) or np.any(np.asarray(data.propensity) <= 0):
        raise DataError("importance sampling needs the behaviour propensity of every logged action (finite, > 0)")
    pad = data.padded()
    pi_all = policy(data.obs)
    pi_taken = pi_all[np.arange(len(data)), data.action]
    _, index = np.unique(data.episode, return_inverse=True)
    rho = np.ones(pad["mask"].shape)
    rho[index, data.step] = pi_taken / np.asarray(data.propensity, float)
    w = np.cumprod(rho, axis=1)
    pad.update(rho=rho, w=w, W=w[:, -1], pi_all=pi_all, index=index)
    return pad


def _kish(W) -> float:
    s2 = float(np.sum(np.square(W)))
    return float(np.sum(W)) ** 2 / s2 if s2 > 0 else 0.0


def support_diagnostics(data: Episodes, policy: Callable, *, behaviour: BehaviourModel | None = None,
                        threshold: float = 0.01, pad: dict | None = None) -> dict:
    """Support figures: Kish ESS, largest weight share, episodes with non-zero weight, and the share of
    the target policy's probability (at logged states) on actions with estimated ``b(a|s) < threshold``."""
    pad = pad if pad is not None else importance_weights(data, policy)
    W = pad["W"]
    if behaviour is None:
        behaviour = BehaviourModel(data.n_actions).fit(data)
    b = behaviour(data.obs)
    unsupported = float(np.mean(np.sum(np.where(b < threshold, pad["pi_all"], 0.0), axis=1)))
    total = float(np.sum(W))
    return {"ess": _kish(W), "n_episodes": int(len(W)),
            "max_weight_share": float(np.max(W) / total) if total > 0 else 1.0,
            "nonzero_weight_share": float(np.mean(W > 0)), "unsupported_mass": unsupported}


def _warnings(diag: dict) -> tuple[str, ...]:
    out = []
    n = diag["n_episodes"]
    if diag["ess"] < max(10.0, 0.05 * n):
        out.append(f"poor support: effective sample size {diag['ess']:.1f} of {n} episodes")
    if diag["nonzero_weight_share"] == 0:
        out.append("no support: no episode keeps a non-zero importance weight to its end (WIS undefined)")
    elif diag["max_weight_share"] > 0.3:
        out.append(f"poor support: one episode carries {100 * diag['max_weight_share']:.0f} % of the weight")
    if diag["unsupported_mass"] > 0.05:
        out.append(f"poor support: {100 * diag['unsupported_mass']:.0f} % of the target policy's probability is on "
                   "actions the behaviour policy takes with probability < 1 %")
    return tuple(out)


def _per_episode(pad: dict, gamma: float, q_sa=None, v_s=None) -> dict:
    mask = pad["mask"]
    disc = gamma ** np.arange(mask.shape[1])[None, :]
    r = np.where(mask, pad["reward"], 0.0)
    # "wm": an episode that has ended stays in an absorbing state with reward 0 and ratio 1, so its weight is
    # carried forward (w is a cumulative product over padded steps with rho = 1) and it still counts in the
    # later steps' normalisers; masking it out would normalise each step over the episodes still running only
    out = {"pdis": np.sum(disc * pad["w"] * r, axis=1), "G": np.sum(disc * r, axis=1), "W": pad["W"],
           "wr": disc * pad["w"] * r, "wm": pad["w"]}
    if q_sa is not None:
        w_prev = np.concatenate([np.ones((mask.shape[0], 1)), pad["w"][:, :-1]], axis=1)
        out["dr"] = np.sum(np.where(mask, disc * (pad["w"] * (r - q_sa) + w_prev * v_s), 0.0), axis=1)
    return out


def _q_terms(data: Episodes, pad: dict, policy: Callable, qf) -> tuple:
    q = qf.q(data.obs)
    qsa = np.zeros(pad["mask"].shape)
    vs = np.zeros(pad["mask"].shape)
    qsa[pad["index"], data.step] = q[np.arange(len(data)), data.action]
    vs[pad["index"], data.step] = np.einsum("na,na->n", pad["pi_all"], q)
    return qsa, vs, vs[:, 0]


def _fit_fqe(data, policy, q_factory, gamma, n_iter, weight=None):
    return fitted_q_evaluation(data, policy, q_factory(), n_iter=n_iter, gamma=gamma, weight=weight)


def _pdwis(wr, wm) -> float:
    """Per-decision WIS from (N, T) discounted weighted rewards and cumulative weights (carried past the end).

    NaN when some step has no episode with weight left (as WIS, undefined: dropping that step's term would
    count its reward as 0)."""
    num, den = wr.sum(0), wm.sum(0)
    if np.any(den <= 0):
        return float("nan")
    return float(np.sum(num / den))


def _cross_fitted_dr(data: Episodes, pad: dict, policy, q_factory, gamma, n_iter, folds: int, seed: int):
    """Per-episode DR terms (N,) with the Q of each episode fitted by FQE on the *other* folds of episodes.

    With known propensities, DR with any Q that is independent of the episode is unbiased, so these terms
    are independent (given the folds' Q) and unbiased: the bootstrap over episodes needs no refit."""
    ids = data.episode_ids
    N = len(ids)
    fold = np.random.default_rng([seed, 7]).permutation(N) % folds
    qsa, vs = np.zeros(pad["mask"].shape), np.zeros(pad["mask"].shape)
    for k in range(folds):
        q_k = _fit_fqe(data.subset(ids[fold != k]), policy, q_factory, gamma, n_iter)
        qsa_k, vs_k, _ = _q_terms(data, pad, policy, q_k)
        qsa[fold == k], vs[fold == k] = qsa_k[fold == k], vs_k[fold == k]
    return _per_episode(pad, gamma, qsa, vs)["dr"]


def evaluate_policy(data: Episodes, policy: Callable, *, estimators: Sequence[str] = ESTIMATORS,
                    q_factory: Callable | None = None, gamma: float = 1.0, n_iter: int = 100, n_boot: int = 200,
                    n_boot_fqe: int | None = None, level: float = 0.95, seed: int = 0,
                    behaviour: BehaviourModel | None = None, n_states: int | None = None,
                    cross_fit: int = 0) -> dict:
    """Estimate ``policy``'s value with each of ``estimators``; returns {name: OPEResult}.

    Parameters
    ----------
    data : Episodes
        Logged episodes with behaviour propensities.
    policy : callable
        obs (n, d) -> action probabilities (n, A).
    q_factory : callable, optional
        Fresh Q regressor for FQE/DR: ``TabularQ(n_states)`` when ``n_states`` is given, else ``TreeQ()``.
    n_boot : int
        Bootstrap replicates over episodes for the weighting estimators (cheap).
    n_boot_fqe : int, optional
        Replicates that refit FQE (DR and FQE intervals); default ``n_boot``.
    level : float
        Interval coverage, e.g. 0.95.
    behaviour : BehaviourModel, optional
        Estimated behaviour policy for the support diagnostic (fitted on ``data`` when not given).
    cross_fit : int
        ``K >= 2``: DR uses K-fold cross-fitted FQE (each episode's Q fitted on the other folds; unbiased
        with known propensities), and its interval is the bootstrap of the per-episode DR terms with
        ``n_boot`` replicates (no refits; ``n_boot_fqe`` then only serves FQE).  0: DR with the Q fitted on
        all of ``data`` and refitted per replicate, as FQE.
    """
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad or not (0 < level < 1) or n_boot < 10:
        raise DataError(f"evaluate_policy: estimators from {ESTIMATORS}, 0 < level < 1, n_boot >= 10 (got {bad})")
    if q_factory is None:
        q_factory = (lambda: TabularQ(n_states)) if n_states is not None else TreeQ
    pad = importance_weights(data, policy)
    behaviour = behaviour or BehaviourModel(data.n_actions, n_states).fit(data)
    diag = support_diagnostics(data, policy, behaviour=behaviour, pad=pad)
    warn = _warnings(diag)
    need_q = any(e in ("dr", "fqe") for e in estimators)
    terms = {}
    if need_q:
        qf = _fit_fqe(data, policy, q_factory, gamma, n_iter)
        qsa, vs, v0 = _q_terms(data, pad, policy, qf)
        terms = _per_episode(pad, gamma, qsa, vs)
        terms["fqe"] = v0
    else:
        terms = _per_episode(pad, gamma)
    N = pad["mask"].shape[0]
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    results = {}
    point = {"pdis": float(np.mean(terms["pdis"])),
             "wis": float(np.sum(terms["W"] * terms["G"]) / np.sum(terms["W"])) if np.sum(terms["W"]) > 0 else np.nan}
    point["pdwis"] = _pdwis(terms["wr"], terms["wm"])
    boots = {"pdis": [], "pdwis": [], "wis": [], "dr": [], "fqe": []}
    for _ in range(n_boot):
        idx = rng.integers(0, N, N)
        boots["pdis"].append(np.mean(terms["pdis"][idx]))
        boots["pdwis"].append(_pdwis(terms["wr"][idx], terms["wm"][idx]))
        sw = np.sum(terms["W"][idx])
        boots["wis"].append(np.sum(terms["W"][idx] * terms["G"][idx]) / sw if sw > 0 else np.nan)
    if need_q and cross_fit >= 2 and "dr" in estimators:
        terms["dr"] = _cross_fitted_dr(data, pad, policy, q_factory, gamma, n_iter, cross_fit, seed)
    if need_q:
        point["dr"], point["fqe"] = float(np.mean(terms["dr"])), float(np.mean(terms["fqe"]))
        for _ in range(n_boot if n_boot_fqe is None else n_boot_fqe):
            idx = rng.integers(0, N, N)
            reps = np.bincount(idx, minlength=N)
            weight = reps[pad["index"]].astype(float)
            q_b = _fit_fqe(data, policy, q_factory, gamma, n_iter, weight)
            qsa, vs, v0 = _q_terms(data, pad, policy, q_b)
            per = _per_episode(pad, gamma, qsa, vs)
            if cross_fit < 2:
                boots["dr"].append(np.sum(reps * per["dr"]) / N)
            boots["fqe"].append(np.sum(reps * v0) / N)
        if cross_fit >= 2:
            boots["dr"] = [np.mean(terms["dr"][rng.integers(0, N, N)]) for _ in range(n_boot)]
    for name in estimators:
        b = np.asarray(boots[name], float)
        b = b[np.isfinite(b)]
        lo, hi = (np.quantile(b, [alpha, 1 - alpha]) if len(b) else (np.nan, np.nan))
        extra = () if len(b) == len(boots[name]) else (f"{len(boots[name]) - len(b)} bootstrap replicates "
                                                        "had zero total weight",)
        ess = float(N) if name == "fqe" else diag["ess"]
        details = dict(diag)
        if name in ("dr", "fqe") and len(b):   # basic (pivotal) interval: corrects the refit bootstrap's shift
            details.update(basic_low=float(2 * point[name] - hi), basic_high=float(2 * point[name] - lo),
                           bootstrap_mean=float(np.mean(b)))
        results[name] = OPEResult(name, point[name], float(lo), float(hi), ess, N, level, len(b),
                                  (warn if name != "fqe" else tuple(w for w in warn if "probability" in w)) + extra,
                                  details)
    return results
