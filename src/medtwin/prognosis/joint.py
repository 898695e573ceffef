"""Joint model of a longitudinal biomarker and an event time (shared random effects, as R's JM / JMbayes2).

Longitudinal sub-model (linear mixed model, biomarker units), for subject i at time t (any time unit)::

    y_i(t) = m_i(t) + ε,   m_i(t) = β0 + β1·t + β_w'w_i + β_wt'w_i·t + b_i0 + b_i1·t,   ε ~ N(0, σ²),
    b_i ~ N(0, D) (random intercept and slope, D full 2×2)

Event sub-model (relative risk, piecewise-constant baseline on K intervals, JM's ``piecewise-PH``)::

    h_i(t) = λ_k(t) · exp(γ'v_i + α·m_i(t) + α_s·m_i'(t))

with α the association of the current value and α_s (optional) that of the slope.  Because m_i is linear in
t on each baseline interval, the cumulative hazard given b_i is exact (exponential integrals), so the only
numerical integral is over the random effects.  It is done with the exact factorisation

    p(y_i, T_i, δ_i) = p(y_i) · ∫ p(T_i, δ_i | b) N(b; μ_i, Σ_i) db

where p(y_i) and N(μ_i, Σ_i) = p(b | y_i) are the closed-form LMM marginal and posterior, and the integral
is a Gauss–Hermite rule centred and scaled by (μ_i, Σ_i) (the pseudo-adaptive rule of Rizopoulos D, Fast
fitting of joint models for longitudinal and event time data using a pseudo-adaptive Gaussian quadrature
rule, Comput Stat Data Anal 2012;56:491–501, doi:10.1016/j.csda.2011.09.007).  Parameters are found by
maximum likelihood (JAX gradients, BFGS then Newton), standard errors from the inverse observed information
(central differences of the exact JAX gradient: a JAX Hessian took 20 s to compile, this 2p gradient calls).

:class:`DynamicPredictor` gives P(event in (t, t+Δ] | survived to t, measurements so far) for one patient
and is updated one measurement at a time (``observe``), for the live twin; :func:`dynamic_probabilities`
evaluates many subjects at a landmark, and :func:`landmark_metrics` scores them (AUC, Brier, calibration).

Examples
--------
>>> data = simulate_joint(JointParameters.example(), n_subjects=60, seed=1)
>>> data.n_subjects, bool(data.mask.sum() > 60)
(60, True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from medtwin.errors import DataError, EstimationError
from medtwin.prognosis.hazards import fd_hessian, newton_minimize

jax.config.update("jax_enable_x64", True)

__all__ = ["JointData", "JointParameters", "JointFit", "JointPosterior", "joint_data", "fit_joint", "fit_joint_nuts",
           "default_breaks",
           "simulate_joint"]


@dataclass(frozen=True)
class JointData:
    """Padded per-subject arrays for a joint model.

    ``y``, ``t_obs``, ``mask`` (N, M): measurements, their times and which are real; ``w_long`` (N, p_w)
    baseline covariates of the longitudinal mean (each enters with a main effect and a time interaction);
    ``w_surv`` (N, p_v) covariates of the hazard; ``time`` (N,) event or censoring times; ``event`` (N,).
    """

    y: np.ndarray
    t_obs: np.ndarray
    mask: np.ndarray
    w_long: np.ndarray
    w_surv: np.ndarray
    time: np.ndarray
    event: np.ndarray

    @property
    def n_subjects(self) -> int:
        return int(self.time.shape[0])

    def truncate(self, t: float) -> JointData:
        """The data as known at time t: measurements after t masked out (times and events unchanged)."""
        return replace(self, mask=self.mask & (self.t_obs <= t))


def joint_data(subject, t_obs, y, time, event, *, w_long=None, w_surv=None, pad_to: int | None = None) -> JointData:
    """Build :class:`JointData` from long-format arrays (one row per measurement).

    Parameters
    ----------
    subject : array_like, shape (r,)
        Subject id per measurement row.
    t_obs, y : array_like, shape (r,)
        Measurement time and value.
    time, event : array_like, shape (r,) or (N,)
        Event/censoring time and indicator, per row (constant within subject) or per subject in the order of
        ``np.unique(subject)``.
    w_long, w_surv : array_like, shape (r, p) or (N, p), optional
        Baseline covariates (constant within subject), per row or per subject.
    pad_to : int, optional
        Pad the measurement axis to this width (same shapes reuse one compiled likelihood).

    Returns
    -------
    JointData
    """
    subject = np.asarray(subject)
    ids, first, inverse = np.unique(subject, return_index=True, return_inverse=True)
    n, r = len(ids), len(subject)
    t_obs, y = np.asarray(t_obs, float), np.asarray(y, float)
    if t_obs.shape != (r,) or y.shape != (r,) or not np.all(np.isfinite(y)) or not np.all(np.isfinite(t_obs)):
        raise DataError("joint_data: t_obs and y must be finite 1-D arrays, one per subject row")

    def per_subject(a, name, width=None):
        if a is None:
            return np.zeros((n, 0))
        a = np.asarray(a, float)
        a = a.reshape(a.shape[0], -1) if width is None else a
        if a.shape[0] == r and r != n:
            a = a[first]
        if a.shape[0] != n:
            raise DataError(f"joint_data: {name} needs one row per measurement or per subject")
        return a

    time = per_subject(time, "time")[:, 0]
    event = per_subject(event, "event")[:, 0]
    if np.any(time <= 0) or not np.all(np.isin(event, (0.0, 1.0))):
        raise DataError("joint_data: times must be > 0 and events 0/1")
    counts = np.bincount(inverse, minlength=n)
    m = int(counts.max()) if pad_to is None else int(pad_to)
    if m < counts.max():
        raise DataError(f"joint_data: pad_to={pad_to} is below the most measurements of a subject ({counts.max()})")
    yy, tt, mask = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m), bool)
    order = np.lexsort((t_obs, inverse))
    pos = np.arange(r) - np.repeat(np.cumsum(counts) - counts, counts)
    yy[inverse[order], pos] = y[order]
    tt[inverse[order], pos] = t_obs[order]
    mask[inverse[order], pos] = True
    return JointData(yy, tt, mask, per_subject(w_long, "w_long"), per_subject(w_surv, "w_surv"), time, event)


@dataclass(frozen=True)
class JointParameters:
    """Joint-model parameters on their natural scales.

    ``beta`` (2 + 2·p_w,): intercept, slope, covariate main effects, covariate × time; ``sigma`` residual SD;
    ``D`` (2, 2) random-effects covariance; ``gamma`` (p_v,); ``alpha`` current-value association;
    ``alpha_slope`` slope association (None: not in the model); ``breaks`` (K−1,) and ``rates`` (K,) baseline.
    """

    beta: np.ndarray
    sigma: float
    D: np.ndarray
    gamma: np.ndarray
    alpha: float
    alpha_slope: float | None
    breaks: np.ndarray
    rates: np.ndarray

    @staticmethod
    def example() -> JointParameters:
        """A moderate setting used by tests and the benchmark (one binary covariate, time in years)."""
        return JointParameters(beta=np.array([2.0, 0.3, -0.2, -0.1]), sigma=0.4,
                               D=np.array([[0.5, 0.05], [0.05, 0.04]]), gamma=np.array([0.4]), alpha=0.8,
                               alpha_slope=None, breaks=np.array([2.0, 4.0]), rates=np.array([0.02, 0.03, 0.04]))

    def to_vector(self) -> np.ndarray:
        """Unconstrained vector: beta, log sigma, log L11, L21, log L22, gamma, alpha, [alpha_s], log rates."""
        chol = np.linalg.cholesky(self.D)
        tail = [] if self.alpha_slope is None else [self.alpha_slope]
        return np.concatenate([self.beta, [np.log(self.sigma), np.log(chol[0, 0]), chol[1, 0], np.log(chol[1, 1])],
                               self.gamma, [self.alpha], tail, np.log(self.rates)])


def _unpack(theta, p_beta, p_v, slope, k):
    beta = theta[:p_beta]
    i = p_beta
    log_sigma, l11, l21, l22 = theta[i], jnp.exp(theta[i + 1]), theta[i + 2], jnp.exp(theta[i + 3])
    chol = jnp.array([[l11, 0.0], [l21, l22]])
    i += 4
    gamma = theta[i:i + p_v]
    i += p_v
    alpha = theta[i]
    alpha_s = theta[i + 1] if slope else 0.0
    i += 2 if slope else 1
    return beta, log_sigma, chol, gamma, alpha, alpha_s, theta[i:i + k]


def _exprel(x):
    """expm1(x)/x, stable at 0."""
    small = jnp.abs(x) < 1e-6
    xs = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 + 0.5 * x, jnp.expm1(xs) / xs)


class _Spec:
    """Static shape information and the JAX pieces of the likelihood."""

    def __init__(self, p_w, p_v, slope, breaks, n_gh):
        self.p_w, self.p_v, self.slope = p_w, p_v, slope
        self.p_beta = 2 + 2 * p_w
        self.breaks = np.asarray(breaks, float)
        self.k = len(self.breaks) + 1
        z, w = np.polynomial.hermite.hermgauss(n_gh)
        zz = np.stack(np.meshgrid(z, z, indexing="ij"), -1).reshape(-1, 2)
        self.nodes = jnp.asarray(np.sqrt(2.0) * zz)
        self.log_w = jnp.asarray(np.log(np.outer(w, w).ravel() / np.pi))
        self.lo = jnp.asarray(np.concatenate([[0.0], self.breaks]))
        self.hi = jnp.asarray(np.concatenate([self.breaks, [np.inf]]))

    def key(self):
        return (self.p_w, self.p_v, self.slope, tuple(float(b) for b in self.breaks), int(np.sqrt(self.nodes.shape[0])))

    def n_params(self):
        return self.p_beta + 4 + self.p_v + (2 if self.slope else 1) + self.k

    def unpack(self, theta):
        return _unpack(theta, self.p_beta, self.p_v, self.slope, self.k)

    def posterior_b(self, theta, y, tt, mask, wl):
        """LMM marginal log p(y_i) and the Gaussian p(b | y_i) = N(mu, chol chol') for one subject."""
        beta, log_sigma, chol_d, *_ = self.unpack(theta)
        x = jnp.concatenate([jnp.ones_like(tt)[:, None], tt[:, None], jnp.broadcast_to(wl, (tt.shape[0], self.p_w)),
                             wl[None, :] * tt[:, None]], axis=1)
        z = jnp.stack([jnp.ones_like(tt), tt], 1) * mask[:, None]
        r = (y - x @ beta) * mask
        s2 = jnp.exp(2 * log_sigma)
        # 2x2 algebra written out: linalg custom calls under vmap cost seconds of compilation
        d11 = chol_d[0, 0] ** 2
        d12 = chol_d[0, 0] * chol_d[1, 0]
        d22 = chol_d[1, 0] ** 2 + chol_d[1, 1] ** 2
        det_d = (chol_d[0, 0] * chol_d[1, 1]) ** 2
        ztz = z.T @ z / s2
        a = d22 / det_d + ztz[0, 0]
        b = -d12 / det_d + ztz[0, 1]
        c = d11 / det_d + ztz[1, 1]
        det_p = a * c - b * b
        v = z.T @ r / s2
        mu = jnp.stack([c * v[0] - b * v[1], a * v[1] - b * v[0]]) / det_p
        n = mask.sum()
        quad = r @ r / s2 - (mu[0] * v[0] + mu[1] * v[1])
        ll_y = -0.5 * (n * (jnp.log(2 * jnp.pi) + 2 * log_sigma) + jnp.log(det_d) + jnp.log(det_p) + quad)
        # posterior covariance prec^-1 = [[c, -b], [-b, a]] / det_p and its Cholesky factor
        q11 = jnp.sqrt(c / det_p)
        q21 = -b / det_p / q11
        q22 = jnp.sqrt(jnp.maximum(a / det_p - q21 ** 2, 1e-300))
        chol_post = jnp.stack([jnp.stack([q11, 0.0 * q11]), jnp.stack([q21, q22])])
        return ll_y, mu, chol_post

    def log_hazard_terms(self, theta, b, wl, wv):
        """Per random-effect node b (G, 2): the log-hazard k + c·t (without the baseline) as (k, c)."""
        beta, _, _, gamma, alpha, alpha_s, _ = self.unpack(theta)
        pw = self.p_w
        b0 = beta[0] + wl @ beta[2:2 + pw] + b[:, 0]
        b1 = beta[1] + wl @ beta[2 + pw:] + b[:, 1]
        k = wv @ gamma + alpha * b0 + alpha_s * b1
        return k, alpha * b1

    def cumhaz(self, theta, k, c, t):
        """H(t | b) for nodes (G,) at time t (scalar): Σ_p λ_p ∫ exp(k + c s) ds over piece p ∩ [0, t]."""
        log_rates = self.unpack(theta)[-1]
        a = jnp.minimum(self.lo, t)
        bnd = jnp.minimum(self.hi, t)
        length = bnd - a
        integ = jnp.exp(k[:, None] + c[:, None] * a[None, :]) * length[None, :] * _exprel(c[:, None] * length[None, :])
        return jnp.sum(jnp.exp(log_rates)[None, :] * integ, axis=1)

    def log_baseline(self, theta, t):
        return self.unpack(theta)[-1][jnp.searchsorted(jnp.asarray(self.breaks), t, side="right")]

    def subject_loglik(self, theta, y, tt, mask, wl, wv, time, event):
        ll_y, mu, chol = self.posterior_b(theta, y, tt, mask, wl)
        b = mu[None, :] + self.nodes @ chol.T
        k, c = self.log_hazard_terms(theta, b, wl, wv)
        log_surv = -self.cumhaz(theta, k, c, time)
        log_event = event * (self.log_baseline(theta, time) + k + c * time)
        return ll_y + jax.scipy.special.logsumexp(self.log_w + log_event + log_surv)


@dataclass(frozen=True)
class JointFit:
    """A fitted joint model: ``params`` (natural scales), ``theta`` and ``cov`` (unconstrained vector and its
    inverse observed information), ``names`` of the vector entries, ``loglik``, ``converged``."""

    params: JointParameters
    theta: np.ndarray
    cov: np.ndarray
    names: tuple[str, ...]
    loglik: float
    converged: bool
    n_gh: int

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    def table(self) -> dict:
        """{name: (estimate, se)} on the unconstrained scale (alpha, beta, gamma are on their natural scale)."""
        return {n: (float(v), float(s)) for n, v, s in zip(self.names, self.theta, self.se)}

    def spec(self) -> _Spec:
        return _Spec(len(self.params.beta) // 2 - 1, len(self.params.gamma), self.params.alpha_slope is not None,
                     self.params.breaks, self.n_gh)


@functools.lru_cache(maxsize=16)
def _compiled(key):
    """Jitted (value and gradient, Hessian) of the negative log-likelihood for one model structure.

    Cached by structure, with the data as arguments, so refits on data of the same shapes (the replicate
    study, bootstrap, cross-validation) reuse one compilation.
    """
    p_w, p_v, slope, breaks, n_gh = key
    spec = _Spec(p_w, p_v, slope, np.asarray(breaks), n_gh)
    per_subject = jax.vmap(spec.subject_loglik, in_axes=(None, 0, 0, 0, 0, 0, 0, 0))

    def negll(theta, *args):
        return -jnp.sum(per_subject(theta, *args))

    vg = jax.jit(jax.value_and_grad(negll))

    hess = functools.partial(fd_hessian, vg)
    return vg, hess


def _names(p_w, p_v, slope, k):
    return tuple(["beta0", "beta_time"] + [f"beta_w{j}" for j in range(p_w)] + [f"beta_w{j}_time" for j in range(p_w)]
                 + ["log_sigma", "log_L11", "L21", "log_L22"] + [f"gamma{j}" for j in range(p_v)] + ["alpha"]
                 + (["alpha_slope"] if slope else []) + [f"log_rate{j}" for j in range(k)])


def _arrays(data: JointData):
    return tuple(jnp.asarray(a) for a in (data.y, data.t_obs, data.mask.astype(float), data.w_long, data.w_surv,
                                          data.time, data.event))


def _from_theta(spec: _Spec, theta) -> JointParameters:
    beta, log_sigma, chol, gamma, alpha, alpha_s, log_rates = (np.asarray(v) for v in spec.unpack(jnp.asarray(theta)))
    return JointParameters(beta, float(np.exp(log_sigma)), chol @ chol.T, gamma, float(alpha),
                           float(alpha_s) if spec.slope else None, spec.breaks, np.exp(log_rates))


def default_breaks(data: JointData, n_intervals: int = 7) -> np.ndarray:
    """Interior cut points at quantiles of the observed event times (JM's piecewise-PH default: 7 intervals)."""
    ev = data.time[data.event == 1]
    if ev.size < n_intervals:
        raise EstimationError(f"default_breaks: {ev.size} events are too few for {n_intervals} intervals")
    return np.unique(np.quantile(ev, np.linspace(0, 1, n_intervals + 1)[1:-1]))


def fit_joint(data: JointData, *, breaks=None, slope_association: bool = False, n_gh: int = 9,
              init: JointParameters | None = None, tol: float = 1e-6) -> JointFit:
    """Maximum-likelihood fit of the joint model.

    Parameters
    ----------
    data : JointData
    breaks : array_like, optional
        Interior cut points of the piecewise-constant baseline (default :func:`default_breaks`).
    slope_association : bool
        Also link the hazard to the slope m_i'(t).
    n_gh : int
        Gauss–Hermite points per random-effect dimension (n_gh² nodes).
    init : JointParameters, optional
        Starting values (default: OLS for β, a constant hazard, no association).
    tol : float
        Gradient max-norm at convergence.

    Returns
    -------
    JointFit
    """
    if not isinstance(data, JointData):
        raise DataError("fit_joint: data must be JointData (see joint_data)")
    breaks = default_breaks(data) if breaks is None else np.asarray(breaks, float)
    spec = _Spec(data.w_long.shape[1], data.w_surv.shape[1], slope_association, breaks, n_gh)
    theta0 = _start(data, spec) if init is None else init.to_vector()
    if theta0.shape[0] != spec.n_params():
        raise DataError(f"fit_joint: init has {theta0.shape[0]} parameters, the model {spec.n_params()}")
    args = _arrays(data)
    vg_all, hess_all = _compiled(spec.key())

    def vg(theta):
        return vg_all(theta, *args)

    def hess(theta):
        return hess_all(theta, *args)

    res = optimize.minimize(lambda th: tuple(np.asarray(v) for v in vg(jnp.asarray(th))), theta0, jac=True,
                            method="BFGS", options={"gtol": 1e-4, "maxiter": 2000})
    theta, _, converged = newton_minimize(vg, hess, res.x, tol=tol, max_iter=50)
    info = np.asarray(hess(jnp.asarray(theta)))
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full_like(info, np.nan)
    return JointFit(_from_theta(spec, theta), theta, cov, _names(spec.p_w, spec.p_v, spec.slope, spec.k),
                    -float(vg(jnp.asarray(theta))[0]), bool(converged and np.all(np.isfinite(cov))), n_gh)


def _start(data: JointData, spec: _Spec) -> np.ndarray:
    m = data.mask
    tt, yy = data.t_obs[m], data.y[m]
    wl = np.repeat(data.w_long, m.sum(1), axis=0)
    x = np.column_stack([np.ones_like(tt), tt, wl, wl * tt[:, None]])
    beta, *_ = np.linalg.lstsq(x, yy, rcond=None)
    resid = yy - x @ beta
    sd = float(np.std(resid))
    rate = data.event.sum() / data.time.sum()
    return np.concatenate([beta, [np.log(sd / 2), np.log(sd), 0.0, np.log(0.1 * sd)], np.zeros(spec.p_v),
                           [0.0], [0.0] if spec.slope else [], np.full(spec.k, np.log(rate))])


def simulate_joint(params: JointParameters, n_subjects: int, *, seed: int = 0, visit_every: float = 0.5,
                   censor_range=(2.0, 10.0), treated_fraction: float = 0.5, pad_to: int | None = None) -> JointData:
    """Simulate joint-model data: one binary covariate (in both sub-models), visits every ``visit_every``.

    Event times invert the exact cumulative hazard piece by piece; censoring is uniform on ``censor_range``.

    Parameters
    ----------
    params : JointParameters
        With one longitudinal covariate (len(beta) == 4) and one hazard covariate.
    n_subjects : int
    seed : int
    visit_every : float
        Measurement spacing (time units), from 0 to the subject's event/censoring time.

    Returns
    -------
    JointData
    """
    if len(params.beta) != 4 or len(params.gamma) != 1:
        raise DataError("simulate_joint: expects one covariate in each sub-model (beta of 4, gamma of 1)")
    rng = np.random.default_rng(seed)
    w = (rng.random(n_subjects) < treated_fraction).astype(float)
    b = rng.multivariate_normal(np.zeros(2), params.D, n_subjects)
    b0 = params.beta[0] + params.beta[2] * w + b[:, 0]
    b1 = params.beta[1] + params.beta[3] * w + b[:, 1]
    a_s = 0.0 if params.alpha_slope is None else params.alpha_slope
    k = params.gamma[0] * w + params.alpha * b0 + a_s * b1
    c = params.alpha * b1
    lo = np.concatenate([[0.0], params.breaks])
    hi = np.concatenate([params.breaks, [np.inf]])
    target = rng.exponential(1.0, n_subjects)
    t_event = np.full(n_subjects, np.inf)
    for i in range(n_subjects):
        cum = 0.0
        for a, bnd, lam in zip(lo, hi, params.rates):
            scale = lam * np.exp(k[i])
            if abs(c[i]) < 1e-12:
                piece = scale * (bnd - a)
            else:
                piece = scale * (np.exp(c[i] * bnd) - np.exp(c[i] * a)) / c[i] if np.isfinite(bnd) else (
                    np.inf if c[i] > 0 else -scale * np.exp(c[i] * a) / c[i])
            if cum + piece >= target[i]:
                r = target[i] - cum
                t_event[i] = a + r / scale if abs(c[i]) < 1e-12 else np.log(np.exp(c[i] * a) + r * c[i] / scale) / c[i]
                break
            cum += piece
    censor = rng.uniform(*censor_range, n_subjects)
    time = np.minimum(t_event, censor)
    event = (t_event <= censor).astype(float)
    rows_id, rows_t, rows_y = [], [], []
    for i in range(n_subjects):
        ts = np.arange(0.0, time[i], visit_every)
        rows_id.append(np.full(ts.size, i))
        rows_t.append(ts)
        rows_y.append(b0[i] + b1[i] * ts + params.sigma * rng.standard_normal(ts.size))
    return joint_data(np.concatenate(rows_id), np.concatenate(rows_t), np.concatenate(rows_y), time, event,
                      w_long=w[:, None], w_surv=w[:, None], pad_to=pad_to)


@dataclass(frozen=True)
class JointPosterior:
    """NUTS draws of the joint model's unconstrained vector: ``draws`` (chains·samples, P), ``names``,
    ``r_hat`` and ``ess`` per parameter (arviz), ``divergences``."""

    draws: np.ndarray
    names: tuple[str, ...]
    r_hat: np.ndarray
    ess: np.ndarray
    divergences: int

    def summary(self) -> dict:
        """{name: (posterior mean, posterior SD)}."""
        return {n: (float(m), float(s)) for n, m, s in zip(self.names, self.draws.mean(0), self.draws.std(0))}


def fit_joint_nuts(data: JointData, *, breaks=None, slope_association: bool = False, n_gh: int = 9,
                   prior_sd: float = 10.0, num_warmup: int = 500, num_samples: int = 500, num_chains: int = 2,
                   init: JointFit | None = None, seed: int = 0) -> JointPosterior:
    """NUTS (numpyro) on the same marginal likelihood as :func:`fit_joint`, with independent N(0, prior_sd²)
    priors on the unconstrained vector (β, log σ, Cholesky of D with log diagonal, γ, α, log rates).

    Parameters
    ----------
    data, breaks, slope_association, n_gh
        As in :func:`fit_joint`.
    prior_sd : float
        Prior SD on every unconstrained parameter (weak for data on a unit scale).
    num_warmup, num_samples, num_chains : int
    init : JointFit, optional
        Start the chains at this ML fit (default: the ML fit is computed first).
    seed : int

    Returns
    -------
    JointPosterior
    """
    import arviz as az
    from numpyro.infer import MCMC, NUTS

    if init is None:
        init = fit_joint(data, breaks=breaks, slope_association=slope_association, n_gh=n_gh)
    spec = init.spec()
    args = _arrays(data)
    vg_all, _ = _compiled(spec.key())

    def potential(theta):
        return vg_all(theta, *args)[0] + 0.5 * jnp.sum((theta / prior_sd) ** 2)

    mcmc = MCMC(NUTS(potential_fn=potential), num_warmup=num_warmup, num_samples=num_samples,
                num_chains=num_chains, chain_method="sequential", progress_bar=False)
    start = jnp.tile(jnp.asarray(init.theta), (num_chains, 1))
    mcmc.run(jax.random.PRNGKey(seed), init_params=start, extra_fields=("diverging",))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))  # (chains, samples, P)
    idata = az.convert_to_dataset({"theta": draws})
    r_hat = np.asarray(az.rhat(idata)["theta"])
    ess = np.asarray(az.ess(idata)["theta"])
    div = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    return JointPosterior(draws.reshape(-1, draws.shape[-1]), init.names, r_hat, ess, div)
