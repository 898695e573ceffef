"""Full hierarchical Bayes of a population model with NUTS (numpyro); R-hat and ESS from arviz.

:func:`fit_nuts` samples the joint posterior of the population parameters
(θ, Ω, residual SDs) and every subject's random effects η_i from a
NONMEM-style dataset.  The statistical model, for subject i and model
parameter P with inter-individual variability (IIV)::

    u_k            ~ Normal(m_k, s_k)                  θ_k = T_k(u_k)   (free θ only)
    ω_k            ~ HalfNormal(1)                     SD of η_k
    R_b            ~ LKJCholesky(size_b, 2)            correlation of each Ω block of size > 1
    z_i            ~ Normal(0, I)                      η_i = L z_i,  L = diag(ω) · blockdiag(R_b)
    σ_add, σ_prop  ~ HalfNormal(s)                     residual SDs (those the error model uses)
    P_i            = TV_P(θ, covariates_i) · exp(η_i,P)
    y_ij           ~ Normal(f_ij, σ_add² + σ_prop²·f_ij²)

(the *non-centred* parametrisation η = L z: NUTS sees no funnel between ω and
η).  T_k maps the real line onto θ_k's bounds (:class:`~medtwin.core.population.Theta`
``lower``/``upper``): θ = lower + e^u with a lower bound only (the usual
log θ for lower = 0; log(1 + θ) for a fractional effect with lower = −1),
upper − e^{−u} with an upper bound only, a scaled logistic with both, the
identity with none.  Default priors are weakly informative around the
population's initial values: m_k = T_k⁻¹(θ_k,init), s_k = 1 (for a positive θ:
log θ ~ N(log θ_init, 1), a factor e either way at one SD); the identity
case uses s_k = max(1, |θ_init|).  Thetas marked ``fixed`` stay fixed.
Ω's block structure is the population's: elements that are zero in the
initial Ω stay zero.  The residual SD prior scale s is 1 for a proportional
SD (a fraction) and max(1, 5·a_init) output units for an additive SD.  Every
default can be overridden (``priors``, see :func:`fit_nuts`).

Predictions come from the model itself through the exact, reverse-mode
differentiable superposition path (:mod:`medtwin.core.jax_linear`) for all
subjects at once: each subject's schedule is padded to common sizes (steps,
observations) and stacked once, and the pure output function is ``vmap``-ed
over subjects.  Parameters not in the population keep the model's typical
values; covariate effects are applied in JAX on the log scale.  Dose times
and infusion rates are fixed at each subject's covariate-adjusted typical
values at the initial estimates (they do not depend on θ for models without
estimated lag times or modelled durations).  Only linear models are
supported (:class:`~medtwin.errors.EstimationError` otherwise).

Diagnostics.  Four chains by default, run one after the other
(``chain_method="sequential"``: on this 2-core machine a vectorized gradient
over 4 chains cost about 7× one chain's, so vectorizing did not pay).
Every reported population quantity (θ, the Ω elements, σ²) gets its
posterior mean, SD, 5/50/95 % quantiles, rank-normalised split R-hat and
bulk/tail ESS (arviz).  ``status`` is ``"converged"`` when every R-hat of the
population quantities is below 1.01 and no transition diverged, otherwise
``"check-diagnostics"`` with a message saying which check failed; the largest
R-hat over the subjects' η is reported too.

Examples
--------
>>> import io
>>> from medtwin.core.observation import ResidualError
>>> from medtwin.core.population import Population, Theta
>>> from medtwin.io.access import OpenData
>>> from medtwin.io.nonmem import read_nonmem
>>> rows = "ID TIME AMT DV\\n" + "".join(
...     f"{i} 0 100 0\\n{i} 1 0 {c1}\\n{i} 6 0 {c2}\\n" for i, c1, c2 in
...     [(1, 4.6, 2.9), (2, 5.5, 2.8), (3, 4.1, 2.0), (4, 5.2, 3.3), (5, 4.4, 2.5), (6, 5.0, 2.1)])
>>> data = read_nonmem(io.StringIO(rows), access=OpenData("synthetic records"))
>>> pop = Population(name="demo", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
...     Theta("TVV", 20.0, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"),
...     omega=((0.1, 0.0), (0.0, 0.1)), residual=ResidualError("proportional", proportional=0.1))
>>> fit = fit_nuts(pop, data, chains=2, draws=100, warmup=100, seed=1)
>>> fit.parameter_names
('THETA:TVCL', 'THETA:TVV', 'OMEGA(1,1)', 'OMEGA(2,2)', 'SIGMA:proportional')
>>> 15.0 < fit.summary["THETA:TVV"]["q50"] < 22.0
True
>>> fit.to_population().theta("TVV").value == fit.summary["THETA:TVV"]["q50"]
True
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medtwin.core.observation import ResidualError
from medtwin.core.population import Population, check_covariance
from medtwin.errors import EstimationError, PopulationError
from medtwin.infer.status import FitStatus

__all__ = ["BayesFitResult", "fit_nuts"]

#: Observations per subject are padded to a multiple of this (as in :mod:`medtwin.infer.personalize`).
OBS_PAD = 8
#: Default prior settings (see the module docstring); ``priors`` overrides them.
LKJ_CONCENTRATION = 2.0
OMEGA_SD_SCALE = 1.0
#: R-hat threshold of ``status == "converged"``.
RHAT_OK = 1.01
#: Spread of the chains' starting points around the initial values (unconstrained scale).
INIT_JITTER = 0.05
_PRIOR_KEYS = ("omega_sd", "lkj", "sigma_additive", "sigma_proportional")
_PREDICTOR_KEYS = ("dt", "rate", "bolus_cmt", "bolus_amt", "bolus_f", "obs_step")


def _jax():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float64 everywhere (DESIGN §6), as in personalize
    return jax, jnp


# ------------------------------------------------------------------------------- theta transforms
def _to_free(value: float, lo: float, hi: float) -> float:
    """Unconstrained u of a bounded θ (inverse of :func:`_from_free`)."""
    if math.isfinite(lo) and math.isfinite(hi):
        q = (value - lo) / (hi - lo)
        return math.log(q / (1.0 - q))
    if math.isfinite(lo):
        return math.log(value - lo)
    if math.isfinite(hi):
        return -math.log(hi - value)
    return float(value)


def _from_free(xp, u, lo: float, hi: float):
    """θ = T(u) onto (lo, hi): numpy or jax.numpy (``xp``), elementwise."""
    if math.isfinite(lo) and math.isfinite(hi):
        return lo + (hi - lo) / (1.0 + xp.exp(-u))
    if math.isfinite(lo):
        return lo + xp.exp(u)
    if math.isfinite(hi):
        return hi - xp.exp(-u)
    return u


def _omega_blocks(omega: np.ndarray) -> list[list[int]]:
    """Connected blocks of Ω's non-zero pattern (NONMEM $OMEGA BLOCKs), each sorted."""
    n = omega.shape[0]
    seen, blocks = set(), []
    for start in range(n):
        if start in seen:
            continue
        stack, block = [start], set()
        while stack:
            i = stack.pop()
            if i in block:
                continue
            block.add(i)
            stack.extend(j for j in range(n) if j != i and omega[i, j] != 0.0 and j not in block)
        seen |= block
        blocks.append(sorted(block))
    return blocks


# ------------------------------------------------------------------------------- the problem laid out once
@dataclass(frozen=True)
class _Spec:
    """Everything the numpyro model needs, as plain arrays and static structure."""

    population: Population
    model: Any
    free: tuple[int, ...]                 # positions in population.thetas of sampled thetas
    bounds: tuple[tuple[float, float], ...]
    prior_mean: np.ndarray
    prior_sd: np.ndarray
    theta_init: np.ndarray                # all thetas (natural units)
    blocks: tuple[tuple[int, ...], ...]
    omega_scale: float
    lkj: float
    sigma_names: tuple[str, ...]          # "additive", "proportional" as the error model uses them
    sigma_scale: tuple[float, ...]
    typical_columns: np.ndarray           # model-parameter column of each population typical parameter
    typical_theta: np.ndarray             # theta position of each typical parameter
    iiv_columns: np.ndarray
    effects: tuple                        # (typical index, form, feature (N,), ("theta", k) | ("fixed", c))
    base_log: np.ndarray                  # log model typical values (n_params,)
    batch: dict                           # stacked predictor data + y, mask (numpy)
    output: int
    ids: np.ndarray
    n_obs: int
    subject_of: np.ndarray | None = None  # IOV: subject (row of z) of each predictor row (subject × occasion)
    occasion_of: np.ndarray | None = None
    iov_columns: np.ndarray | None = None
    n_occasions: int = 1

    @property
    def n_subjects(self) -> int:
        return len(self.ids)


def _feature(effect, x: np.ndarray) -> np.ndarray:
    """The covariate part of an effect (numpy, once): log(x/ref), x − ref, or the 0/1 condition."""
    if effect.clip is not None:
        x = np.clip(x, *effect.clip)
    if effect.form == "power":
        if np.any(x <= 0):
            raise EstimationError(f"effects.{effect.parameter}.{effect.covariate}: covariate {effect.covariate} "
                                  "must be > 0 for a power effect")
        return np.log(x / effect.reference)
    if effect.form in ("exponential", "linear"):
        return x - effect.reference
    op, level = effect.condition
    return {"==": x == level, "!=": x != level, "<": x < level, "<=": x <= level, ">": x > level,
            ">=": x >= level}[op].astype(float)


def _stack(datas: list[dict], n_obs: list[int], y: list[np.ndarray]) -> dict:
    """Pad every subject's predictor data to common sizes and stack along a leading subject axis."""
    steps = max(int(d["dt"].shape[0]) for d in datas)
    obs = max(OBS_PAD, -(-max(n_obs) // OBS_PAD) * OBS_PAD)
    n = len(datas)
    n_states = int(datas[0]["rate"].shape[1])
    out = {"dt": np.zeros((n, steps)), "rate": np.zeros((n, steps, n_states)),
           "bolus_cmt": np.zeros((n, steps), np.int64), "bolus_amt": np.zeros((n, steps)),
           "bolus_f": np.full((n, steps), -1, np.int64), "obs_step": np.zeros((n, obs), np.int64),
           "y": np.zeros((n, obs)), "mask": np.zeros((n, obs), bool)}
    for i, d in enumerate(datas):
        k = int(d["dt"].shape[0])
        for name in ("dt", "rate", "bolus_cmt", "bolus_amt", "bolus_f"):
            out[name][i, :k] = np.asarray(d[name])
        j = n_obs[i]
        out["obs_step"][i, :j] = np.asarray(d["obs_step"])
        out["y"][i, :j] = y[i]
        out["mask"][i, :j] = True
    return out


def _subjects(population: Population, model, dataset, reference: np.ndarray):
    """Predictor data (observed records only) per subject, or per subject × occasion with IOV.

    Returns the data, observation counts, DVs and the (subject, occasion) of each row.
    """
    from medtwin.core.jax_linear import linear_predictor
    from medtwin.infer.occasions import occasion_parts, subject_occasions

    occasions = None if population.iov is None else subject_occasions(dataset, population.iov.occasion)
    datas, n_obs, ys, rows = [], [], [], []
    for i, s in enumerate(dataset.subjects):
        keep = (np.asarray(s.obs_evid) == 0) & (np.asarray(s.obs_mdv) == 0) & np.isfinite(np.asarray(s.obs_dv, float))
        if not keep.any():
            continue
        parts = [(0, s.regimen, keep)] if population.iov is None else \
            occasion_parts(model, dataset, population.iov.occasion, i, keep, reference[i], occasions)
        for occ, regimen, obs in parts:
            pred = linear_predictor(model, regimen, np.asarray(s.obs_times, float)[obs], reference[i],
                                    pre_dose=np.asarray(s.pre_dose, bool)[obs])
            datas.append(pred.data)
            n_obs.append(int(obs.sum()))
            ys.append(np.asarray(s.obs_dv, float)[obs])
            rows.append((i, occ))
    return datas, n_obs, ys, rows


def _check_inputs(population, dataset, model, chains, draws, warmup, seed):
    if not isinstance(population, Population):
        raise EstimationError(f"population: expected a Population, got {type(population).__name__}")
    if not hasattr(dataset, "subjects"):
        raise EstimationError(f"dataset: expected a medtwin.io.nonmem.Dataset, got {type(dataset).__name__}")
    for name, value, least in (("chains", chains, 1), ("draws", draws, 1), ("warmup", warmup, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise EstimationError(f"{name}: must be an integer >= {least}, got {value!r}")
    if population.iov is not None and np.count_nonzero(population.iov.omega - np.diag(np.diag(population.iov.omega))):
        raise EstimationError("population.iov.omega: fit_nuts samples a diagonal IOV Ω (independent κ); "
                              "correlated IOV is FOCEI only")
    if not population.iiv:
        raise EstimationError("population.iiv: the population has no inter-individual variability")
    if population.model != model.name:
        raise EstimationError(f"model: the population is for {population.model!r}, got {model.name!r}")
    if not model.is_linear:
        raise EstimationError(f"model: {model.name} is not linear; fit_nuts needs the exact JAX linear path")
    if population.residual.output not in model.output_names:
        raise EstimationError(f"population.residual.output: model {model.name} has no output "
                              f"{population.residual.output!r}")
    unknown = set(population.typical) - set(model.parameter_names)
    if unknown:
        raise EstimationError(f"population.typical: {sorted(unknown)} are not parameters of {model.name}")
    missing = [c for c in population.covariates if c not in dataset.covariate_names]
    if missing:
        raise EstimationError(f"dataset: covariate(s) {missing} needed by the population are not columns")


def _theta_priors(population: Population, priors: Mapping):
    """Sampled thetas, their bounds and Normal(m, s) priors on the unconstrained scale."""
    names = [t.name for t in population.thetas]
    free, bounds, means, sds = [], [], [], []
    for k, t in enumerate(population.thetas):
        choice = priors.get(t.name)
        if t.fixed or (isinstance(choice, str) and choice == "fixed"):
            continue
        lo, hi = float(t.lower), float(t.upper)
        unbounded = not (math.isfinite(lo) or math.isfinite(hi))
        mean = _to_free(float(t.value), lo, hi)
        sd = max(1.0, abs(float(t.value))) if unbounded else 1.0
        if choice is not None:
            try:
                mean, sd = (float(v) for v in choice)
            except (TypeError, ValueError):
                raise EstimationError(f"priors.{t.name}: expected (mean, sd) on the unconstrained scale or "
                                      f"'fixed', got {choice!r}") from None
            if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
                raise EstimationError(f"priors.{t.name}: need a finite mean and sd > 0, got ({mean}, {sd})")
        free.append(k)
        bounds.append((lo, hi))
        means.append(mean)
        sds.append(sd)
    unknown = set(priors) - set(names) - set(_PRIOR_KEYS)
    if unknown:
        raise EstimationError(f"priors.{min(unknown)}: not a theta or a prior setting "
                              f"(thetas {names}; settings {list(_PRIOR_KEYS)})")
    return tuple(free), tuple(bounds), np.array(means, float), np.array(sds, float)


def _positive_setting(priors: Mapping, key: str, default: float) -> float:
    value = priors.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise EstimationError(f"priors.{key}: must be a finite number > 0, got {value!r}")
    return float(value)


def _spec(population: Population, dataset, model, priors: Mapping) -> _Spec:
    free, bounds, means, sds = _theta_priors(population, priors)
    theta_names = [t.name for t in population.thetas]
    covariates = {c: np.array([s.covariates[c] for s in dataset.subjects], float) for c in population.covariates}
    for c, v in covariates.items():
        if not np.all(np.isfinite(v)):
            raise EstimationError(f"dataset: covariate {c} has non-finite values")
    names = list(model.parameter_names)
    n_subjects = len(dataset.subjects)
    reference = np.tile(model.typical_values(), (n_subjects, 1))
    for p, v in population.typical_parameters(covariates).items():
        reference[:, names.index(p)] = np.broadcast_to(v, (n_subjects,))
    datas, n_obs, ys, rows = _subjects(population, model, dataset, reference)
    if not datas:
        raise EstimationError("dataset: no observations (EVID 0, MDV 0, DV present)")
    used = sorted({i for i, _ in rows})
    subject_of = np.searchsorted(used, [i for i, _ in rows])  # row of z of each predictor row
    typical = list(population.typical)
    effects = []
    for e in population.effects:
        coefficient = ("theta", theta_names.index(e.theta)) if isinstance(e.theta, str) else ("fixed", float(e.theta))
        effects.append((typical.index(e.parameter), e.form,
                        _feature(e, covariates[e.covariate][used][subject_of]), coefficient))
    residual = population.residual
    sigma_names = tuple(residual.sigma2)
    scales = {"additive": max(1.0, 5.0 * residual.additive), "proportional": 1.0}
    sigma_scale = tuple(_positive_setting(priors, f"sigma_{s}", scales[s]) for s in sigma_names)
    omega = np.asarray(population.omega, float)
    return _Spec(population=population, model=model, free=free, bounds=bounds, prior_mean=means, prior_sd=sds,
                 theta_init=np.array([t.value for t in population.thetas], float),
                 blocks=tuple(tuple(b) for b in _omega_blocks(omega)),
                 omega_scale=_positive_setting(priors, "omega_sd", OMEGA_SD_SCALE),
                 lkj=_positive_setting(priors, "lkj", LKJ_CONCENTRATION), sigma_names=sigma_names,
                 sigma_scale=sigma_scale, typical_columns=np.array([names.index(p) for p in typical]),
                 typical_theta=np.array([theta_names.index(population.typical[p]) for p in typical]),
                 iiv_columns=np.array([names.index(p) for p in population.iiv]), effects=tuple(effects),
                 base_log=np.log(np.maximum(model.typical_values(), 1e-300)), batch=_stack(datas, n_obs, ys),
                 output=model.output_names.index(residual.output), ids=np.asarray(dataset.ids)[used],
                 n_obs=int(sum(n_obs)), subject_of=subject_of, occasion_of=np.array([k for _, k in rows]),
                 iov_columns=None if population.iov is None else
                 np.array([names.index(p) for p in population.iov.parameters]),
                 n_occasions=1 + max(k for _, k in rows))


# ------------------------------------------------------------------------------- the numpyro model
def _cholesky_factor(xp, spec: _Spec, omega_sd, corr: Mapping[int, Any]):
    """L = diag(ω) · blockdiag(R_b): Ω = L Lᵀ (numpy or jax.numpy; leading batch axes allowed)."""
    n = len(spec.population.iiv)
    shape = tuple(np.shape(omega_sd)[:-1]) + (n, n)
    if xp is np:
        chol = np.zeros(shape)
    else:
        chol = xp.zeros(shape)
    for b, block in enumerate(spec.blocks):
        idx = np.array(block)
        sub = corr[b] if len(block) > 1 else xp.ones(shape[:-2] + (1, 1))
        if xp is np:
            chol[..., idx[:, None], idx[None, :]] = sub
        else:
            chol = chol.at[..., idx[:, None], idx[None, :]].set(sub)
    return omega_sd[..., :, None] * chol


def _thetas(xp, spec: _Spec, u):
    """All θ (natural units) from the sampled unconstrained u (leading batch axes allowed)."""
    columns = [None] * len(spec.theta_init)
    batch = np.shape(u)[:-1]
    for k, value in enumerate(spec.theta_init):
        columns[k] = xp.full(batch, value) if batch else xp.asarray(value)
    for j, (k, (lo, hi)) in enumerate(zip(spec.free, spec.bounds)):
        columns[k] = _from_free(xp, u[..., j], lo, hi)
    return xp.stack(columns, axis=-1)


def _log_typical(jnp, spec: _Spec, theta):
    """log TV (N, n_typical) and a flag: False where a factor or typical value is not positive."""
    ok = jnp.all(theta[spec.typical_theta] > 0)
    logs = [jnp.log(jnp.where(theta[k] > 0, theta[k], 1.0)) + jnp.zeros(spec.batch["y"].shape[0])
            for k in spec.typical_theta]
    for index, form, x, (kind, c) in spec.effects:
        coef = theta[c] if kind == "theta" else c
        if form in ("power", "exponential"):
            logs[index] = logs[index] + coef * x
            continue
        arg = 1.0 + coef * x  # linear: x = covariate − ref; categorical: x = the 0/1 condition
        ok = ok & jnp.all(arg > 0)
        logs[index] = logs[index] + jnp.log(jnp.where(arg > 0, arg, 1.0))
    return jnp.stack(logs, axis=-1), ok


def _batched_predictions(model, data: Mapping):
    """θ table (N, n_params) -> outputs (N, J, n_outputs) for the stacked subjects, with a forward-mode VJP.

    The values are :func:`medtwin.core.jax_linear._outputs_function` ``vmap``-ed over subjects.  The
    gradient is assembled from per-subject Jacobians by forward mode (one tangent per model parameter,
    a handful for PK models) instead of reverse mode through the scan and the fixed-work matrix
    exponentials: measured about twice as fast per gradient here, and a smaller program to compile.
    ``data`` are concrete arrays (closed over, not differentiated).
    """
    jax, jnp = _jax()
    from medtwin.core.jax_linear import _outputs_function

    outputs = _outputs_function(model)

    def value_and_jacobian(theta, d):
        push = lambda v: jax.jvp(lambda t: outputs(t, d), (theta,), (v,))
        return jax.vmap(push, out_axes=(None, -1))(jnp.eye(theta.shape[0], dtype=theta.dtype))

    @jax.custom_vjp
    def predict(theta_table):
        return jax.vmap(outputs)(theta_table, data)

    def forward(theta_table):
        f, jac = jax.vmap(value_and_jacobian)(theta_table, data)  # (N, J, n_out), (N, J, n_out, n_params)
        return f, jac

    def backward(jac, cotangent):
        return (jnp.einsum("njop,njo->np", jac, cotangent),)

    predict.defvjp(forward, backward)
    return predict


def _numpyro_model(spec: _Spec, batch: Mapping, predict=None):
    import numpyro
    import numpyro.distributions as dist

    _, jnp = _jax()
    if predict is None:
        predict = _batched_predictions(spec.model, {k: jnp.asarray(spec.batch[k]) for k in _PREDICTOR_KEYS})
    n_subjects, n_eta = spec.n_subjects, len(spec.population.iiv)
    u = numpyro.sample("theta_free", dist.Normal(jnp.asarray(spec.prior_mean), jnp.asarray(spec.prior_sd)).to_event(1)) \
        if spec.free else jnp.zeros(0)
    theta = _thetas(jnp, spec, u)
    omega_sd = numpyro.sample("omega_sd", dist.HalfNormal(spec.omega_scale * jnp.ones(n_eta)).to_event(1))
    corr = {b: numpyro.sample(f"corr_{b}", dist.LKJCholesky(len(block), spec.lkj))
            for b, block in enumerate(spec.blocks) if len(block) > 1}
    chol = _cholesky_factor(jnp, spec, omega_sd, corr)
    z = numpyro.sample("z", dist.Normal(jnp.zeros((n_subjects, n_eta)), 1.0).to_event(2))
    sigma = {s: numpyro.sample(f"sigma_{s}", dist.HalfNormal(scale)) for s, scale in zip(spec.sigma_names,
                                                                                         spec.sigma_scale)}
    log_tv, ok = _log_typical(jnp, spec, theta)
    log_p = jnp.broadcast_to(jnp.asarray(spec.base_log), (batch["y"].shape[0], len(spec.base_log)))
    log_p = log_p.at[:, spec.typical_columns].set(log_tv)
    eta = z @ chol.T
    log_p = log_p.at[:, spec.iiv_columns].add(eta if spec.iov_columns is None else eta[spec.subject_of])
    if spec.iov_columns is not None:  # κ = ω_IOV · w per subject and occasion (non-centred)
        n_iov = len(spec.iov_columns)
        iov_sd = numpyro.sample("omega_iov_sd", dist.HalfNormal(spec.omega_scale * jnp.ones(n_iov)).to_event(1))
        w = numpyro.sample("z_iov", dist.Normal(jnp.zeros((n_subjects, spec.n_occasions, n_iov)), 1.0).to_event(3))
        log_p = log_p.at[:, spec.iov_columns].add(w[spec.subject_of, spec.occasion_of] * iov_sd)
    f = predict(jnp.exp(log_p))[..., spec.output]
    mask = batch["mask"]
    f = jnp.where(mask, f, 1.0)  # padded records: a harmless prediction keeps NaN out of the gradient
    var = sigma.get("additive", 0.0) ** 2 + sigma.get("proportional", 0.0) ** 2 * f * f
    from medtwin.core.observation import normal_loglik

    ll = jnp.sum(jnp.where(mask, normal_loglik(batch["y"], f, jnp.where(mask, var, 1.0)), 0.0))
    numpyro.factor("loglik", jnp.where(ok & jnp.isfinite(ll), ll, -jnp.inf))


# ------------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class BayesFitResult:
    """The outcome of :func:`fit_nuts` (immutable).

    Attributes
    ----------
    initial : Population
        The population the fit started from (structure and initial values).
    parameter_names : tuple of str
        Reported quantities, NONMEM-style: ``THETA:<name>`` (units of each Theta), ``OMEGA(i,j)``
        (Ω elements, log-scale variances/covariances, 1-based in ``iiv`` order) and ``SIGMA:<component>``
        (residual variances: fraction² or (output unit)²).
    draws : ndarray, shape (chains, draws, n_parameters)
        Posterior draws of those quantities.
    summary : dict
        Name -> ``{"mean", "sd", "q5", "q50", "q95", "rhat", "ess_bulk", "ess_tail"}``.
    eta_mean, eta_sd : ndarray, shape (n_subjects, n_eta)
        Posterior mean and SD of each subject's η (order ``initial.iiv``); ``ids`` the subject IDs.
    divergences : int
        Divergent transitions after warmup, all chains.
    max_rhat_eta : float
        Largest R-hat over the subjects' η (not part of ``status``).
    status : str
        ``"converged"`` (every R-hat < 1.01 and no divergence) or ``"check-diagnostics"``; ``message`` says why.
    settings : dict
        chains, draws, warmup, seed, target_accept and the priors used.
    wall_time : dict
        Seconds: ``total`` (JIT compilation, warmup and sampling in one compiled loop).
    n_obs : int
        Observations fitted.
    n_gradients : int
        Leapfrog steps (gradient evaluations) of the kept draws, all chains.
    """

    initial: Population
    parameter_names: tuple[str, ...]
    draws: np.ndarray
    summary: Mapping[str, Mapping[str, float]]
    eta_mean: np.ndarray
    eta_sd: np.ndarray
    ids: np.ndarray
    divergences: int
    max_rhat_eta: float
    status: str
    message: str
    settings: Mapping[str, Any]
    wall_time: Mapping[str, float] = field(default_factory=dict)
    n_obs: int = 0
    n_gradients: int = 0

    @property
    def rhat(self) -> np.ndarray:
        """R-hat per reported quantity, order ``parameter_names``."""
        return np.array([self.summary[n]["rhat"] for n in self.parameter_names])

    @property
    def ess_bulk(self) -> np.ndarray:
        """Bulk effective sample size per reported quantity."""
        return np.array([self.summary[n]["ess_bulk"] for n in self.parameter_names])

    def summary_frame(self):
        """The summary as a pandas DataFrame, one row per reported quantity."""
        import pandas as pd

        return pd.DataFrame.from_dict({n: dict(self.summary[n]) for n in self.parameter_names}, orient="index")

    def to_population(self) -> Population:
        """The population at the posterior medians (θ, Ω elements, residual SDs) with an estimation record.

        When the element-wise median Ω is not positive definite, the posterior mean Ω is used (said in
        ``estimation["omega_summary"]``).
        """
        med = {n: self.summary[n]["q50"] for n in self.parameter_names}
        theta = {n.split(":", 1)[1]: v for n, v in med.items() if n.startswith("THETA:")}
        n_eta = len(self.initial.iiv)
        omega, mean_omega = np.zeros((n_eta, n_eta)), np.zeros((n_eta, n_eta))
        for n, v in med.items():
            if n.startswith("OMEGA("):
                i, j = (int(x) - 1 for x in n[6:-1].split(","))
                omega[i, j] = omega[j, i] = v
                mean_omega[i, j] = mean_omega[j, i] = self.summary[n]["mean"]
        how = "posterior median"
        try:
            check_covariance(omega, "omega", n_eta)
        except PopulationError:
            omega, how = mean_omega, "posterior mean (the element-wise median is not positive definite)"
        r = self.initial.residual
        residual = ResidualError(r.model, math.sqrt(med.get("SIGMA:additive", 0.0)),
                                 math.sqrt(med.get("SIGMA:proportional", 0.0)), r.output, r.unit)
        estimation = {"method": "NUTS (numpyro), full hierarchical Bayes", "software": "medtwin.infer.hierarchical",
                      "summary": "posterior median", "omega_summary": how, "status": str(self.status),
                      "max_rhat": float(np.max(self.rhat)), "min_ess_bulk": float(np.min(self.ess_bulk)),
                      "divergences": int(self.divergences), "n_obs": int(self.n_obs),
                      "n_subjects": len(self.ids),
                      **{k: self.settings[k] for k in ("chains", "draws", "warmup", "seed")}}
        iov_omega = None
        if self.initial.iov is not None:
            iov_omega = np.diag([med[f"OMEGA_IOV({a + 1},{a + 1})"] for a in range(len(self.initial.iov.parameters))])
        return self.initial.with_values(theta=theta, omega=omega, residual=residual, estimation=estimation,
                                        iov_omega=iov_omega)


def _quantities(spec: _Spec, samples: Mapping[str, np.ndarray]):
    """Reported names, draws (C, D, P) and η draws (C, D, N, n_eta) from numpyro's constrained samples."""
    names, columns = [], []
    if spec.free:
        theta = _thetas(np, spec, np.asarray(samples["theta_free"]))
        for k in spec.free:
            names.append(f"THETA:{spec.population.thetas[k].name}")
            columns.append(theta[..., k])
    corr = {b: np.asarray(samples[f"corr_{b}"]) for b, block in enumerate(spec.blocks) if len(block) > 1}
    chol = _cholesky_factor(np, spec, np.asarray(samples["omega_sd"]), corr)
    omega = chol @ np.swapaxes(chol, -1, -2)
    for block in spec.blocks:
        for a, i in enumerate(block):
            for j in block[:a + 1]:
                names.append(f"OMEGA({i + 1},{j + 1})" if i >= j else f"OMEGA({j + 1},{i + 1})")
                columns.append(omega[..., i, j])
    order = sorted(range(len(spec.free), len(names)), key=lambda c: tuple(int(x) for x in names[c][6:-1].split(",")))
    names = names[:len(spec.free)] + [names[c] for c in order]
    columns = columns[:len(spec.free)] + [columns[c] for c in order]
    if spec.iov_columns is not None:
        for a in range(len(spec.iov_columns)):
            names.append(f"OMEGA_IOV({a + 1},{a + 1})")
            columns.append(np.asarray(samples["omega_iov_sd"])[..., a] ** 2)
    for s in spec.sigma_names:
        names.append(f"SIGMA:{s}")
        columns.append(np.asarray(samples[f"sigma_{s}"]) ** 2)
    eta = np.einsum("cdij,cdnj->cdni", chol, np.asarray(samples["z"]))
    return tuple(names), np.stack(columns, axis=-1), eta


def _diagnostics(draws: np.ndarray, eta: np.ndarray):
    """R-hat, bulk and tail ESS per quantity (arviz) and the largest R-hat over η."""
    import arviz as az

    ds = az.convert_to_dataset({"q": draws})
    rhat = np.asarray(az.rhat(ds, method="rank")["q"].values)
    bulk = np.asarray(az.ess(ds, method="bulk")["q"].values)
    tail = np.asarray(az.ess(ds, method="tail")["q"].values)
    flat_eta = eta.reshape(eta.shape[0], eta.shape[1], -1)
    eta_rhat = np.asarray(az.rhat(az.convert_to_dataset({"eta": flat_eta}), method="rank")["eta"].values)
    return rhat, bulk, tail, float(np.nanmax(eta_rhat))


# ------------------------------------------------------------------------------- initial values
def _init_values(spec: _Spec, init, chains: int, seed: int) -> dict:
    """Unconstrained starting points (one per chain, jittered) at the initial population or a fit."""
    from numpyro.distributions import biject_to, constraints

    _, jnp = _jax()
    start = spec.population
    eta = None
    if init is not None:
        if isinstance(init, Population):
            start = init
        elif hasattr(init, "population") and hasattr(init, "eta"):
            start, eta = init.population, (np.asarray(init.eta, float), np.asarray(init.ids))
        else:
            raise EstimationError(f"init: expected a Population or a FitResult, got {type(init).__name__}")
        if start.iiv != spec.population.iiv or [t.name for t in start.thetas] != \
                [t.name for t in spec.population.thetas] or start.residual.model != spec.population.residual.model:
            raise EstimationError("init: its thetas, iiv and residual model must match the population's")
    values = start.theta_values()
    u = []
    for k, (lo, hi) in zip(spec.free, spec.bounds):
        name = spec.population.thetas[k].name
        if not lo < values[name] < hi:
            raise EstimationError(f"init.thetas.{name}: {values[name]} must lie strictly inside ({lo}, {hi})")
        u.append(_to_free(values[name], lo, hi))
    omega = np.asarray(start.omega, float)
    sd = np.sqrt(np.diag(omega))
    point = {"omega_sd": np.log(sd)}
    if spec.free:
        point["theta_free"] = np.array(u)
    corr = {}
    for b, block in enumerate(spec.blocks):
        if len(block) > 1:
            block = list(block)
            sub = omega[np.ix_(block, block)] / np.outer(sd[block], sd[block])
            corr[b] = np.linalg.cholesky(sub)
            point[f"corr_{b}"] = np.asarray(biject_to(constraints.corr_cholesky).inv(jnp.asarray(corr[b])))
    z = np.zeros((len(spec.ids), len(sd)))
    if eta is not None:
        chol = _cholesky_factor(np, spec, sd, corr)
        lookup = {i: k for k, i in enumerate(eta[1].tolist())}
        for n, subject in enumerate(spec.ids.tolist()):
            if subject in lookup:
                z[n] = np.linalg.solve(chol, eta[0][lookup[subject]])
    point["z"] = z
    if spec.iov_columns is not None:
        iov = start.iov if start.iov is not None else spec.population.iov
        point["omega_iov_sd"] = np.log(np.sqrt(np.diag(np.asarray(iov.omega, float))))
        point["z_iov"] = np.zeros((len(spec.ids), spec.n_occasions, len(spec.iov_columns)))
    sigma = {"additive": start.residual.additive, "proportional": start.residual.proportional}
    for s in spec.sigma_names:
        point[f"sigma_{s}"] = np.log(sigma[s])
    rng = np.random.default_rng(seed)
    out = {k: v[None] + INIT_JITTER * rng.standard_normal((chains,) + np.shape(v)) for k, v in point.items()}
    return {k: jnp.asarray(v[0] if chains == 1 else v) for k, v in out.items()}  # numpyro: no chain axis for 1


# ------------------------------------------------------------------------------- the fit
def fit_nuts(population: Population, dataset, *, model=None, priors: Mapping | None = None, init=None,
             chains: int = 4, draws: int = 1000, warmup: int = 1000, seed: int = 0, target_accept: float = 0.85,
             chain_method: str = "sequential", progress: bool = False) -> BayesFitResult:
    """Sample the full hierarchical posterior of ``population`` on ``dataset`` with NUTS (see the module docstring).

    Parameters
    ----------
    population : Population
        Structure, bounds and initial values (the priors are centred on them); a linear model.  With
        ``iov`` (diagonal Ω_IOV): κ = ω_IOV · w per subject and occasion (non-centred, w ~ N(0, 1),
        ω_IOV ~ HalfNormal like ω; reported as ``OMEGA_IOV(a,a)``); each occasion is predicted from its
        own doses, so occasions must not carry drug over (EstimationError otherwise, checked at the
        typical values).
    dataset : medtwin.io.nonmem.Dataset
        Doses and observations (EVID 0, MDV 0, DV present are fitted; subjects without any are skipped);
        the population's covariates must be columns (first-record value per subject).
    model : Model, optional
        Defaults to the library model ``population.model``.
    priors : mapping, optional
        Overrides: theta name -> ``(mean, sd)`` of its Normal prior on the unconstrained scale (log θ for
        a positive θ) or ``"fixed"``; ``"omega_sd"`` the HalfNormal scale of the ω (default 1);
        ``"lkj"`` the LKJ concentration of Ω blocks (default 2); ``"sigma_additive"`` /
        ``"sigma_proportional"`` the HalfNormal scales of the residual SDs.
    init : Population or FitResult, optional
        Where the chains start (a FOCEI :class:`~medtwin.infer.foce.FitResult` also gives the η);
        default the population's initial values with η = 0.  Chains are jittered by 0.05 around it
        on the unconstrained scale.
    chains, draws, warmup : int
        NUTS chains (run vectorised on one device), kept draws per chain, warmup (adaptation) iterations.
    seed : int
        Random seed (jitter and sampler).
    target_accept : float
        NUTS target acceptance probability, in (0, 1).
    chain_method : {"vectorized", "sequential"}
        How numpyro runs the chains on one device: ``vmap``-ed together, or one after the other.
    progress : bool
        numpyro's progress bar.

    Returns
    -------
    BayesFitResult
    """
    from numpyro.infer import MCMC, NUTS

    from medtwin.models import get_model

    if not isinstance(population, Population):
        raise EstimationError(f"population: expected a Population, got {type(population).__name__}")
    model = model if model is not None else get_model(population.model)
    _check_inputs(population, dataset, model, chains, draws, warmup, seed)
    if not (isinstance(target_accept, float) and 0.0 < target_accept < 1.0):
        raise EstimationError(f"target_accept: must be a float in (0, 1), got {target_accept!r}")
    if chain_method not in ("vectorized", "sequential"):
        raise EstimationError(f"chain_method: must be 'vectorized' or 'sequential', got {chain_method!r}")
    if priors is not None and not isinstance(priors, Mapping):
        raise EstimationError(f"priors: expected a mapping, got {type(priors).__name__}")
    spec = _spec(population, dataset, model, dict(priors or {}))
    jax, jnp = _jax()
    init_params = _init_values(spec, init, chains, seed)
    batch = {k: jnp.asarray(spec.batch[k]) for k in ("y", "mask")}
    predict = _batched_predictions(spec.model, {k: jnp.asarray(spec.batch[k]) for k in _PREDICTOR_KEYS})
    kernel = NUTS(lambda b: _numpyro_model(spec, b, predict), target_accept_prob=target_accept)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method=chain_method,
                progress_bar=progress)
    t0 = _time.perf_counter()
    # one run (warmup and sampling in one compiled loop: a separate warmup() call would compile twice)
    mcmc.run(jax.random.PRNGKey(seed), batch, init_params=init_params, extra_fields=("diverging", "num_steps"))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields()
    divergences = int(np.asarray(extra["diverging"]).sum())
    gradients = int(np.asarray(extra["num_steps"]).sum())
    t1 = _time.perf_counter()
    names, quantity_draws, eta = _quantities(spec, samples)
    rhat, bulk, tail, eta_rhat = _diagnostics(quantity_draws, eta)
    q5, q50, q95 = np.quantile(quantity_draws.reshape(-1, len(names)), (0.05, 0.5, 0.95), axis=0)
    flat = quantity_draws.reshape(-1, len(names))
    summary = {n: {"mean": float(flat[:, k].mean()), "sd": float(flat[:, k].std(ddof=1)), "q5": float(q5[k]),
                   "q50": float(q50[k]), "q95": float(q95[k]), "rhat": float(rhat[k]),
                   "ess_bulk": float(bulk[k]), "ess_tail": float(tail[k])} for k, n in enumerate(names)}
    problems = []
    if not np.all(rhat < RHAT_OK):
        worst = int(np.argmax(rhat))
        problems.append(f"R-hat {rhat[worst]:.4f} >= {RHAT_OK} for {names[worst]}")
    if divergences:
        problems.append(f"{divergences} divergent transitions")
    message = (f"max R-hat {rhat.max():.4f} (η: {eta_rhat:.4f}), min bulk ESS {bulk.min():.0f}, min tail ESS "
               f"{tail.min():.0f}, {divergences} divergent")
    if problems:
        message = "check: " + "; ".join(problems) + " — run longer chains or reparametrise. " + message
    eta_flat = eta.reshape((-1,) + eta.shape[2:])
    settings = {"chains": int(chains), "draws": int(draws), "warmup": int(warmup), "seed": int(seed),
                "target_accept": float(target_accept), "chain_method": chain_method, "priors": _prior_record(spec)}
    return BayesFitResult(initial=population, parameter_names=names, draws=quantity_draws, summary=summary,
                          eta_mean=eta_flat.mean(axis=0), eta_sd=eta_flat.std(axis=0, ddof=1), ids=spec.ids,
                          divergences=divergences, max_rhat_eta=eta_rhat,
                          status=FitStatus.CHECK_DIAGNOSTICS if problems else FitStatus.CONVERGED, message=message,
                          settings=settings, wall_time={"total": t1 - t0}, n_obs=spec.n_obs,
                          n_gradients=gradients)


def _prior_record(spec: _Spec) -> dict:
    """The priors actually used, as plain values (for reports and the estimation record)."""
    out = {}
    for j, k in enumerate(spec.free):
        lo, hi = spec.bounds[j]
        scale = ("logit" if math.isfinite(lo) and math.isfinite(hi) else f"log(theta - {lo})" if math.isfinite(lo)
                 else f"-log({hi} - theta)" if math.isfinite(hi) else "identity")
        out[spec.population.thetas[k].name] = {"normal": [float(spec.prior_mean[j]), float(spec.prior_sd[j])],
                                               "scale": scale}
    out["omega_sd"] = {"half_normal": spec.omega_scale}
    if any(len(b) > 1 for b in spec.blocks):
        out["lkj"] = spec.lkj
    for s, scale in zip(spec.sigma_names, spec.sigma_scale):
        out[f"sigma_{s}"] = {"half_normal": scale}
    return out
