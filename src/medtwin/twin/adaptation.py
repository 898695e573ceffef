"""Continual adaptation of a patient's posterior: consolidation, rehearsal, forgetting and regime alarms.

A twin that follows one patient for days meets the stability–plasticity
dilemma: it must keep what earlier data taught it (stability) and still follow
the patient into a new regime — ICU to ward, IV to oral, a new drug
(plasticity).  Three strategies, immutable values, one update function
:func:`adapt` that takes a state and returns a new one (nothing is mutated):

``Consolidation``  the previous Laplace posterior N(φ_prev, Σ_prev) of φ = log P
                   becomes the prior of the next re-personalization: the
                   EWC/Laplace penalty ½(φ − φ_prev)ᵀ F (φ − φ_prev) with
                   F = Σ_prev⁻¹ (Fisher information of the data so far + the
                   population precision).  Plasticity: before each update the
                   covariance grows with the time Δt (h) since the last one,
                   Σ ← Σ · 2^(Δt / half_life) + q Ω Δt (information half-life,
                   process noise as a fraction q of the population Ω per hour),
                   bounded above by Ω in the Loewner order (eigenvalues of
                   Ω^-½ Σ Ω^-½ clipped at 1): forgetting never makes the twin
                   less certain than the population.  On a regime alarm the
                   covariance of the parameters the new therapy touches is
                   multiplied by ``alarm_inflation`` (same bound).
``Rehearsal``      re-personalize from the population prior on the new data
                   plus a bounded replay memory of at most ``memory_size``
                   past observations.  Selection rule: the budget is split
                   evenly between the regimes seen (remainder to the most
                   recent), and within a regime a greedy D-optimal subset is
                   kept — at each step the observation with the largest gain
                   log(1 + J_j S J_jᵀ / σ_j²) in the information about φ,
                   J_j = ∂f_j/∂φ at the current posterior mode, σ_j² its
                   residual variance, S the population covariance updated
                   (rank one) by the points already chosen.  This keeps the
                   most informative *and* mutually complementary points (a
                   peak and a trough, not two peaks), per regime, so that
                   knowledge of the old regime survives in the memory.
``Forgetting``     baseline: re-personalize from the population prior on the
                   most recent ``window`` observations only; no anchor, no
                   memory; on an alarm the window restarts at the change point.

Regime detection.  Before new data update the state, each observation is
predicted by the current belief (unscented transform of the Gaussian over φ
through the model: 2n + 1 sigma points, one batched ``simulate`` call) and
standardized, z = (y − ŷ) / sd with sd² = parameter variance + residual
variance.  A two-sided :class:`Cusum` on z (k = 0.5, h = 5: in-control average
run length ARL0 ≈ 470 observations by Siegmund's approximation, checked by
simulation in the tests) raises the alarm; its change-point estimate (the
start of the excursion) tags the observations of the new regime.

Examples
--------
>>> c = Cusum(k=0.5, h=5.0)
>>> state, alarms = c.init(), []
>>> for z in [0.1, -0.3, 2.5, 2.8, 3.1]:
...     state, alarm, s = c.update(state, z)
...     alarms.append(alarm)
>>> alarms
[False, False, False, False, True]
>>> round(Cusum(k=0.5, h=5.0).arl0(), 0)
469.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from medtwin.core.population import IndividualPrior, Population
from medtwin.assimilate.detectors import Cusum, CusumState, siegmund_arl  # noqa: F401  (re-exported)
from medtwin.assimilate.inflation import cap_covariance, inflate_covariance
from medtwin.errors import DataError
from medtwin.core.data import PatientData
from medtwin.infer.personalize import personalize
from medtwin.models import get_model

__all__ = ["Consolidation", "Rehearsal", "Forgetting", "Cusum", "CusumState", "Record", "OneStepInnovation",
           "AdaptationState", "adapt", "predictive", "cap_covariance", "siegmund_arl"]


# ----------------------------------------------------------------------------- state
@dataclass(frozen=True)
class Record:
    """One stored observation: time (h), value (output unit), regime index, NONMEM record flags."""

    time: float
    value: float
    regime: int
    pre_dose: bool = False
    blq: bool = False
    lloq: float = 0.0


@dataclass(frozen=True)
class OneStepInnovation:
    """One observation as the belief before it saw it: prediction, plug-in (mode) prediction, sd, z, CUSUM."""

    time: float
    value: float
    mean: float
    mode: float
    sd: float
    z: float
    statistic: float
    alarm: bool
    regime: int


@dataclass(frozen=True)
class AdaptationState:
    """Everything a strategy carries between updates (an immutable value).

    Attributes
    ----------
    posterior : Posterior or None
        The current Laplace posterior (None before the first data).
    memory : tuple of Record
        Rehearsal: the replay memory; Forgetting: the recent window; Consolidation: empty.
    time : float
        Time (h) of the last observation assimilated.
    regime : int
        Index of the current regime (0 at the start, +1 per alarm).
    triggers : tuple of float
        Change-point estimates (h) of every alarm.
    detector : CusumState or None
    innovations : tuple of OneStepInnovation
        Every observation's one-step-ahead prediction, in order.
    failures : int
        Updates whose Laplace fit failed (the previous posterior was kept).
    """

    posterior: object = None
    memory: tuple = ()
    time: float = 0.0
    regime: int = 0
    triggers: tuple = ()
    detector: CusumState | None = None
    innovations: tuple = ()
    failures: int = 0


@dataclass(frozen=True)
class Consolidation:
    """Laplace/EWC consolidation: the previous posterior is the next prior, with time-driven forgetting.

    Parameters
    ----------
    half_life : float or None
        Information half-life (h): Σ ← Σ·2^(Δt/half_life); None: no decay.
    process_noise : float
        q: Σ ← Σ + q·Ω·Δt (fraction of the population covariance per hour).
    alarm_inflation : float
        Factor on the variances of ``touched`` parameters when a regime alarm fires.
    touched : tuple of str or None
        Parameters a new regime may change (None: all).
    """

    half_life: float | None = None
    process_noise: float = 0.0
    alarm_inflation: float = 4.0
    touched: tuple | None = None
    name: str = "consolidation"

    def __post_init__(self):
        if self.half_life is not None and not self.half_life > 0:
            raise DataError(f"Consolidation: half_life must be > 0 h or None, got {self.half_life}")
        if self.process_noise < 0 or self.alarm_inflation < 1:
            raise DataError("Consolidation: need process_noise >= 0 and alarm_inflation >= 1")


@dataclass(frozen=True)
class Rehearsal:
    """Replay: population prior × (new data + at most ``memory_size`` remembered observations)."""

    memory_size: int = 8
    name: str = "rehearsal"

    def __post_init__(self):
        if int(self.memory_size) < 1:
            raise DataError(f"Rehearsal: memory_size must be >= 1, got {self.memory_size}")


@dataclass(frozen=True)
class Forgetting:
    """Pure forgetting: population prior × the last ``window`` observations (restarted at an alarm)."""

    window: int = 8
    reset_on_alarm: bool = True
    name: str = "forgetting"

    def __post_init__(self):
        if int(self.window) < 1:
            raise DataError(f"Forgetting: window must be >= 1, got {self.window}")


# ----------------------------------------------------------------------------- Gaussian helpers
def _base_prior(population: Population, data: PatientData) -> IndividualPrior:
    missing = [c for c in population.covariates if c not in data.covariates]
    if missing:
        raise DataError(f"adapt: covariate(s) {missing} needed by population {population.name} are missing")
    return population.prior_for({c: data.covariates[c] for c in population.covariates})


def _belief(state: AdaptationState, base: IndividualPrior) -> tuple[np.ndarray, np.ndarray]:
    if state.posterior is None:
        return np.asarray(base.log_mean, dtype=float), np.asarray(base.covariance, dtype=float)
    return np.asarray(state.posterior.mean, dtype=float), np.asarray(state.posterior.covariance, dtype=float)


def _table(model, base: IndividualPrior, z: np.ndarray) -> dict:
    """Model parameter table of log-parameter points ``z`` (m, n); values clipped into the model's domain."""
    table = {p: np.full(z.shape[0], v) for p, v in base.fixed.items()}
    bounds = {p.name: (p.lower, p.upper) for p in model.parameters}
    for k, p in enumerate(base.parameters):
        lo, hi = bounds[p]
        table[p] = np.clip(np.exp(z[:, k]), lo, hi)
    return table


def _outputs(model, base, z, regimen, times, pre_dose) -> np.ndarray:
    from medtwin.core.simulate import simulate

    times = np.asarray(times, dtype=float)
    pre = np.asarray(pre_dose, dtype=bool) if pre_dose is not None else np.zeros(times.size, bool)
    order = np.argsort(times, kind="stable")
    trajectory = simulate(model, _table(model, base, z), regimen, times[order], keep_states=False,
                          pre_dose=[pre[order]] * z.shape[0] if pre.any() else None)
    out = np.empty((z.shape[0], times.size))
    out[:, order] = np.asarray(trajectory.output(base.residual.output), dtype=float).reshape(z.shape[0], -1)
    return out


def predictive(model, base: IndividualPrior, mean, covariance, regimen, times, pre_dose=None):
    """Predictive mean, plug-in (mode) prediction and sd of the observed output at ``times`` (h).

    Unscented transform of N(mean, covariance) over log-parameters (2n + 1
    sigma points at ±√n·L, L the Cholesky factor; centre for the plug-in),
    plus the residual variance averaged over the sigma points.  Returns
    three arrays of shape (T,) in the output unit.
    """
    mean, cov = np.asarray(mean, dtype=float), np.asarray(covariance, dtype=float)
    n = mean.size
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    root = v * np.sqrt(np.maximum(w, 0.0))
    points = np.vstack([mean, mean + math.sqrt(n) * root.T, mean - math.sqrt(n) * root.T])
    f = _outputs(model, base, points, regimen, times, pre_dose)
    sigma = f[1:]
    mu = sigma.mean(axis=0)
    var = np.mean((sigma - mu) ** 2, axis=0) + np.mean(base.residual.variance(sigma), axis=0)
    return mu, f[0], np.sqrt(var)


def _inflate(strategy: Consolidation, covariance, omega, dt: float) -> np.ndarray:
    sigma = np.asarray(covariance, dtype=float)
    if dt > 0:
        if strategy.half_life is not None:
            sigma = inflate_covariance(sigma, 2.0 ** (dt / strategy.half_life))
        sigma = sigma + strategy.process_noise * dt * np.asarray(omega)
    return cap_covariance(sigma, omega)


def _alarm_inflate(strategy: Consolidation, covariance, omega, parameters) -> np.ndarray:
    touched = parameters if strategy.touched is None else strategy.touched
    unknown = set(touched) - set(parameters)
    if unknown:
        raise DataError(f"Consolidation.touched: unknown parameter(s) {sorted(unknown)}; have {list(parameters)}")
    indices = [k for k, p in enumerate(parameters) if p in touched]
    return inflate_covariance(covariance, strategy.alarm_inflation, indices=indices, cap=omega)


# ----------------------------------------------------------------------------- memory
def _records(data: PatientData, regimes: Sequence[int]) -> tuple:
    lloq = data.lloq if data.lloq is not None else np.zeros(data.n_observations)
    return tuple(Record(float(t), float(y), int(r), bool(p), bool(b), float(l))
                 for t, y, r, p, b, l in zip(data.times, data.values, regimes, data.pre_dose, data.blq, lloq))


def _as_data(records: Sequence[Record], template: PatientData) -> PatientData:
    records = sorted(records, key=lambda r: r.time)
    blq = [r.blq for r in records]
    return PatientData(template.regimen, [r.time for r in records], [r.value for r in records],
                       template.covariates, template.output, blq=blq,
                       lloq=[r.lloq for r in records] if any(blq) else None,
                       pre_dose=[r.pre_dose for r in records], patient=template.patient)


def _jacobian(model, base, mean, records, regimen, step: float = 1e-4) -> np.ndarray:
    """∂f/∂φ (J, n) at ``mean`` by central differences (one batched simulate of 2n + 1 points)."""
    n = mean.size
    points = np.vstack([mean, mean + step * np.eye(n), mean - step * np.eye(n)])
    f = _outputs(model, base, points, regimen, [r.time for r in records], [r.pre_dose for r in records])
    return ((f[1:n + 1] - f[n + 1:]) / (2 * step)).T, f[0]


def _greedy(jac, var, budget: int, cov0) -> list[int]:
    """Greedy D-optimal subset: indices of ``budget`` rows of ``jac`` (see the module docstring)."""
    s, chosen = np.array(cov0, dtype=float), []
    free = list(range(jac.shape[0]))
    for _ in range(min(budget, len(free))):
        gains = [math.log1p(float(jac[j] @ s @ jac[j]) / var[j]) for j in free]
        j = free.pop(int(np.argmax(gains)))
        chosen.append(j)
        sj = s @ jac[j]
        s = s - np.outer(sj, sj) / (var[j] + float(jac[j] @ sj))
    return chosen


def _allocate(counts: dict, size: int) -> dict:
    """Budget per regime: even split, remainder and unused budget to the most recent regimes first."""
    regimes = sorted(counts, reverse=True)
    budget = {r: 0 for r in regimes}
    left = size
    while left > 0 and any(budget[r] < counts[r] for r in regimes):
        open_ = [r for r in regimes if budget[r] < counts[r]]
        share, extra = divmod(left, len(open_))
        for i, r in enumerate(open_):
            give = min(counts[r] - budget[r], share + (1 if i < extra else 0))
            budget[r] += give
            left -= give
    return budget


def _select_memory(model, base, mean, records, regimen, size: int) -> tuple:
    if len(records) <= size:
        return tuple(sorted(records, key=lambda r: r.time))
    jac, f = _jacobian(model, base, np.asarray(mean, dtype=float), records, regimen)
    var = np.asarray(base.residual.variance(f), dtype=float)
    counts: dict = {}
    for r in records:
        counts[r.regime] = counts.get(r.regime, 0) + 1
    kept = []
    for regime, budget in _allocate(counts, size).items():
        idx = [i for i, r in enumerate(records) if r.regime == regime]
        kept += [idx[j] for j in _greedy(jac[idx], var[idx], budget, base.covariance)]
    return tuple(sorted((records[i] for i in kept), key=lambda r: r.time))


# ----------------------------------------------------------------------------- the update
def _detect(detector, state: AdaptationState, data: PatientData, mean, cov, model, base):
    """Innovations of the new observations, the detector over them, and the change-point estimates."""
    mu, mode, sd = predictive(model, base, mean, cov, data.regimen, data.times, data.pre_dose)
    det = state.detector if state.detector is not None else (detector.init() if detector else None)
    onsets, out = [], []
    for j, t in enumerate(data.times):
        z = float("nan") if data.blq[j] else float((data.values[j] - mu[j]) / sd[j])
        alarm, statistic = False, float("nan")
        if detector is not None and math.isfinite(z):
            previous = det
            det, alarm, statistic = detector.update(det, z, float(t))
            if alarm:
                onsets.append(detector.onset_of(previous, z, float(t)))
        out.append((float(t), float(data.values[j]), float(mu[j]), float(mode[j]), float(sd[j]), z, statistic,
                    alarm))
    regime = lambda t: state.regime + sum(1 for o in onsets if o <= t)  # noqa: E731
    innovations = tuple(OneStepInnovation(*row, regime=regime(row[0])) for row in out)
    return det, onsets, innovations, regime


def _fit(population, model, data: PatientData, prior: IndividualPrior | None = None):
    """A Laplace posterior, or None when the fit has no proper mode."""
    post = personalize(population, data, model=model, prior=prior)
    return post if post.status != "failed" and np.all(np.isfinite(post.covariance)) else None


def _retag(records, regime_of) -> tuple:
    return tuple(replace(r, regime=max(r.regime, regime_of(r.time))) for r in records)


def adapt(strategy, state: AdaptationState, new_data: PatientData, population: Population, model=None, *,
          detector: Cusum | None = Cusum()) -> AdaptationState:
    """Assimilate one batch of new observations with a continual-adaptation strategy.

    Parameters
    ----------
    strategy : Consolidation, Rehearsal or Forgetting
    state : AdaptationState
        The state after the previous batch (``AdaptationState()`` at the start).
    new_data : PatientData
        The new observations; its regimen holds every dose so far (a superset
        of the earlier batches' regimens), and is used to predict remembered
        observations too.
    population : Population
        The population prior (linear library model, as :func:`personalize` needs).
    model : Model, optional
        The population's model object (default: the library model ``population.model`` names).
    detector : Cusum or None
        Regime-change detector on standardized innovations (None: no alarms).

    Returns
    -------
    AdaptationState
        A new state; ``state`` is not modified.  A batch without observations
        returns ``state`` itself.

    Examples
    --------
    >>> from medtwin.scenarios.continual import IvOralSwitch
    >>> sc = IvOralSwitch()
    >>> batches, _ = sc.stream(sc.true_parameters(np.random.default_rng(0)), np.random.default_rng(1))
    >>> s = adapt(Consolidation(), AdaptationState(), batches[0], sc.population())  # doctest: +SKIP
    >>> s.posterior.status  # doctest: +SKIP
    'converged'
    """
    if not isinstance(strategy, (Consolidation, Rehearsal, Forgetting)):
        raise DataError(f"adapt: unknown strategy {type(strategy).__name__}")
    if not isinstance(state, AdaptationState) or not isinstance(new_data, PatientData):
        raise DataError("adapt: state must be an AdaptationState and new_data a PatientData")
    if new_data.n_observations == 0:
        return state
    model = model if model is not None else get_model(population.model)
    base = _base_prior(population, new_data)
    mean, cov = _belief(state, base)
    t_new = float(np.max(new_data.times))
    if isinstance(strategy, Consolidation):
        cov = _inflate(strategy, cov, base.covariance, t_new - state.time)
    det, onsets, innovations, regime_of = _detect(detector, state, new_data, mean, cov, model, base)
    common = dict(time=max(state.time, t_new), regime=state.regime + len(onsets),
                  triggers=state.triggers + tuple(onsets), detector=det, innovations=state.innovations + innovations)
    new_records = _records(new_data, [i.regime for i in innovations])
    if isinstance(strategy, Consolidation):
        if onsets:
            cov = _alarm_inflate(strategy, cov, base.covariance, base.parameters)
        mean_ro, cov_ro = np.array(mean), np.array(cov)
        mean_ro.flags.writeable = cov_ro.flags.writeable = False
        post = _fit(population, model, new_data, replace(base, log_mean=mean_ro, covariance=cov_ro))
        memory = ()
    elif isinstance(strategy, Rehearsal):
        pool = _retag(state.memory, regime_of) + new_records
        post = _fit(population, model, _as_data(pool, new_data))
        anchor = post.mean if post is not None else mean
        memory = _select_memory(model, base, anchor, pool, new_data.regimen, int(strategy.memory_size))
    else:
        pool = _retag(state.memory, regime_of) + new_records
        if onsets and strategy.reset_on_alarm:
            pool = tuple(r for r in pool if r.time >= max(onsets))
        pool = tuple(sorted(pool, key=lambda r: r.time))[-int(strategy.window):]
        post = _fit(population, model, _as_data(pool, new_data))
        memory = pool
    return replace(state, posterior=post if post is not None else state.posterior, memory=memory,
                   failures=state.failures + (post is None), **common)
