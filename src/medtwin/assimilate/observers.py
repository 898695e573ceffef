"""State observers on any library model: extended and unscented Kalman filters, and a particle filter.

Every observer is an immutable strategy with three pure functions::

    belief = observer.init(mean, cov, time)              # or from a posterior (see medtwin.twin)
    belief = observer.predict(belief, t1, inputs)        # inputs: an InputSchedule (doses, infusions)
    belief, status, innovation = observer.update(belief, time, value, output, error)

``error`` is the output's :class:`~medtwin.core.observation.ResidualError`
(variance a² + b²·ŷ² at the predicted measurement).  ``status`` is ``"ok"`` or
``"numerical-failure"``; a failed update returns the belief it was given, so a
bad step never corrupts the twin.  The transition and the measurement come
from :class:`~medtwin.assimilate.statespace.StateSpace` (the model's own vector
field, parameters as log random walks).

* :class:`ExtendedKalmanFilter`: linearises the transition over each stretch
  (Jacobian by forward-mode differentiation through the RK4 integrator) and the
  measurement (gradient); Joseph-form covariance update.
* :class:`UnscentedKalmanFilter`: symmetric sigma points (α = 1, β = 2, κ = 0 by
  default: every weight is positive, so the predicted covariance stays
  positive semi-definite); exact for linear models.
* :class:`ParticleFilter`: bootstrap filter with systematic resampling when the
  effective sample size drops below ``resample_below``·N; states kept
  non-negative (amounts and concentrations); its random stream lives in the
  belief (see :class:`~medtwin.assimilate.beliefs.ParticleBelief`).

Examples
--------
>>> import numpy as np
>>> from medtwin.models import get_model
>>> from medtwin.core.events import Regimen
>>> from medtwin.core.observation import ResidualError
>>> from medtwin.core.inputs import input_schedule
>>> from medtwin.assimilate.statespace import StateSpace
>>> model = get_model("pk1_iv")
>>> space = StateSpace.build(model, {"CL": 2.0, "V": 20.0}, estimated=("CL",))
>>> ukf = UnscentedKalmanFilter(space)
>>> belief = ukf.init(space.initial_mean(), np.diag([1e-6, 0.3**2]), time=0.0)
>>> belief = ukf.predict(belief, 4.0, input_schedule(model, Regimen.single(500.0)))
>>> error = ResidualError("proportional", proportional=0.1, output="C")
>>> belief, status, innovation = ukf.update(belief, 4.0, 12.0, "C", error)
>>> status, round(innovation.predicted, 1)      # E[25 exp(-CL·4/V)] over CL's spread; 12 measured
('ok', 16.6)
>>> bool(np.exp(belief.mean[1]) > 2.0)          # so the clearance estimate goes up
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from medtwin.assimilate.beliefs import FAILED, OK, GaussianBelief, Innovation, ParticleBelief
from medtwin.core.inputs import InputSchedule
from medtwin.assimilate.statespace import StateSpace
from medtwin.core.observation import ResidualError
from medtwin.errors import DataError, ParameterError

LOG_2PI = math.log(2.0 * math.pi)
KNOWN_SD = 1e-12  # a state with sd <= KNOWN_SD·|mean| is known exactly (UnscentedKalmanFilter.sigma_points)


def _check_time(belief, time: float) -> None:
    if abs(float(time) - belief.time) > 1e-9:
        raise DataError(f"update at {time} h on a belief at {belief.time} h: predict to the measurement time first")


def _check_value(value: float, output: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise DataError(f"measurement of {output}: value {value!r} is not finite (screen the stream first)")
    return value


def _gaussian_loglik(y: float, mean: float, var: float) -> float:
    return -0.5 * (LOG_2PI + math.log(var) + (y - mean) ** 2 / var) if var > 0 else float("nan")


def _failed(belief, time, value, output):
    return belief, FAILED, Innovation(time, output, value, float("nan"), float("nan"), float("nan"))


@dataclass(frozen=True, eq=False)
class UnscentedKalmanFilter:
    """Unscented Kalman filter (Julier & Uhlmann 1997; Wan & van der Merwe 2000) on a state space.

    Parameters
    ----------
    space : StateSpace
    alpha, beta, kappa : float
        Sigma-point spread and weights (λ = α²(n+κ) − n).
    transition : {"jax", "numpy"}
        What advances and measures the sigma points: the state space's compiled
        JAX programs (:meth:`StateSpace.functions`, ≈ 0.2 ms per 5-min ICU update,
        but a process pays ≈ 1 s to import JAX and trace them) or the same RK4
        arithmetic in NumPy (:meth:`StateSpace.numpy_functions`, ≈ 0.9 ms per
        update, nothing to import or trace: what a one-shot replay of a recorded
        stream uses).  The two agree to ≈ 1e-9 relative, not bit for bit, so the
        choice is part of the twin's settings (saved with it).
    """

    space: StateSpace
    alpha: float = 1.0
    beta: float = 2.0
    kappa: float = 0.0
    transition: str = "jax"

    name = "ukf"

    def __post_init__(self):
        if self.transition not in ("jax", "numpy"):
            raise ParameterError(f"ukf: transition must be 'jax' or 'numpy', not {self.transition!r}")
        n = self.space.n
        if not (self.alpha > 0 and n + self._lambda > 0):
            raise ParameterError(f"ukf: alpha={self.alpha}, kappa={self.kappa} give no valid sigma points for n={n}")

    @property
    def _lambda(self) -> float:
        n = self.space.n
        return self.alpha**2 * (n + self.kappa) - n

    def _functions(self) -> dict:
        return self.space.numpy_functions() if self.transition == "numpy" else self.space.functions()

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance weights, each (2n+1,)."""
        n, lam = self.space.n, self._lambda
        wm = np.full(2 * n + 1, 1.0 / (2 * (n + lam)))
        wc = wm.copy()
        wm[0] = lam / (n + lam)
        wc[0] = wm[0] + 1.0 - self.alpha**2 + self.beta
        return wm, wc

    def sigma_points(self, mean: np.ndarray, cov: np.ndarray) -> np.ndarray | None:
        """(2n+1, n) sigma points, or None when ``cov`` is not positive semi-definite.

        A state whose variance is at most (``KNOWN_SD``·mean)², ``KNOWN_SD`` =
        1e-12, or slightly negative (rounding in an update's subtraction) is
        *known*: every point holds its mean, and its covariances with the other
        states (at most its sd times theirs) are dropped.  Such a state is, e.g.,
        gut glucose, which only the feed moves: every point carries the same
        value, and its variance is zero or the rounding of the weighted mean
        (of order (1e-16·mean)²).  The root of the other rows and columns is
        Cholesky's; where that fails (a singular block), the symmetric root
        D·V·diag(√λ) of the eigen-decomposition of the correlation matrix, D the
        sd's.  So the points do not depend on rounding residue, as a root of the
        whole matrix did: whether Cholesky failed, and where the
        eigen-decomposition put its error (≈ 1e-16 of the largest variance, in
        any direction, hence sd's of order 1e-7 in exactly known states), turned
        on it.
        """
        n = len(mean)
        scale = n + self._lambda
        scaled = scale * np.asarray(cov, dtype=float)
        if not np.isfinite(scaled).all():
            return None
        var = scaled.diagonal()
        lowest = var.min()
        if lowest < 0.0 and lowest < -1e-9 * max(1.0, float(np.abs(var).max())):
            return None
        free = np.flatnonzero(var > (KNOWN_SD * KNOWN_SD * scale) * np.square(mean))
        if len(free) == n:  # the usual case: no known state
            root = _psd_root(scaled)
            if root is None:
                return None
        else:
            root = np.zeros((n, n))
            if len(free):
                sub = _psd_root(scaled[free[:, None], free])
                if sub is None:
                    return None
                root[free[:, None], free] = sub
        return np.vstack([mean, mean + root.T, mean - root.T])

    def init(self, mean=None, cov=None, time: float = 0.0) -> GaussianBelief:
        """A Gaussian belief at ``time`` h (mean defaults to the state space's initial mean)."""
        return _gaussian_init(self.space, mean, cov, time)

    def predict(self, belief: GaussianBelief, t1: float, inputs: InputSchedule) -> GaussianBelief:
        """Propagate the sigma points through every dose and stretch up to ``t1`` h; add process noise."""
        if t1 == belief.time or not belief.healthy:
            return belief
        points = self.sigma_points(belief.mean, belief.cov)
        if points is None:
            return replace(belief, time=t1, healthy=False)
        points = _propagate(self.space, points, belief.time, t1, inputs, self._functions())
        wm, wc = self.weights()
        mean = points[0] + wm @ (points - points[0])  # = wm @ points; a state every point agrees on keeps its value
        d = points - mean
        cov = (wc[:, None] * d).T @ d + np.diag(self.space.process_variance(t1 - belief.time))
        healthy = bool(np.all(np.isfinite(mean)) and np.all(np.isfinite(cov)))
        return GaussianBelief(t1, mean, 0.5 * (cov + cov.T), belief.names, healthy)

    def output_moments(self, belief: GaussianBelief, output: str) -> tuple[float, float]:
        """Mean and sd of ``output`` under the belief, by the unscented transform (output unit)."""
        points = self.sigma_points(belief.mean, belief.cov)
        if points is None or not belief.healthy:
            return float("nan"), float("nan")
        wm, wc = self.weights()
        y = self.space.measure(points, output, self._functions())
        mean = float(wm @ y)
        return mean, float(np.sqrt(max(float(wc @ (y - mean) ** 2), 0.0)))

    def update(self, belief: GaussianBelief, time: float, value: float, output: str,
               error: ResidualError) -> tuple[GaussianBelief, str, Innovation]:
        """Condition on one measurement of ``output`` at ``time`` h (the belief must be at that time)."""
        _check_time(belief, time)
        value = _check_value(value, output)
        if not belief.healthy:
            return _failed(belief, time, value, output)
        points = self.sigma_points(belief.mean, belief.cov)
        if points is None:
            return _failed(belief, time, value, output)
        wm, wc = self.weights()
        y = self.space.measure(points, output, self._functions())
        y_mean = float(wm @ y)
        dy = y - y_mean
        variance = float(wc @ dy**2) + float(error.variance(y_mean))
        cross = (wc * dy) @ (points - belief.mean)
        return _kalman_step(belief, time, value, output, y_mean, variance, cross)


@dataclass(frozen=True, eq=False)
class ExtendedKalmanFilter:
    """Extended Kalman filter: first-order linearisation of the transition and the measurement."""

    space: StateSpace

    name = "ekf"

    def init(self, mean=None, cov=None, time: float = 0.0) -> GaussianBelief:
        return _gaussian_init(self.space, mean, cov, time)

    def predict(self, belief: GaussianBelief, t1: float, inputs: InputSchedule) -> GaussianBelief:
        """Propagate the mean through the model and the covariance through its Jacobian, P ← J P Jᵀ + Q."""
        if t1 == belief.time or not belief.healthy:
            return belief
        space, f = self.space, self.space.functions()
        z, cov = belief.mean.copy(), belief.cov.copy()
        n_x = space.n_states
        for piece in inputs.pieces(belief.time, t1):
            if piece.reset:
                z = np.asarray(f["reset"](z[None, :], space.theta))[0]
                cov[:n_x, :] = 0.0
                cov[:, :n_x] = 0.0
            z[:n_x] += piece.bolus
            if piece.end > piece.start:
                z_new, jac = f["advance_jac"](z, piece.start, piece.end, piece.rates, space.theta,
                                              space.substeps(piece.start, piece.end))
                z, jac = np.array(z_new), np.asarray(jac)
                cov = jac @ cov @ jac.T
        cov = cov + np.diag(space.process_variance(t1 - belief.time))
        healthy = bool(np.all(np.isfinite(z)) and np.all(np.isfinite(cov)))
        return GaussianBelief(t1, z, 0.5 * (cov + cov.T), belief.names, healthy)

    def output_moments(self, belief: GaussianBelief, output: str) -> tuple[float, float]:
        """Mean and sd of ``output`` under the belief, linearised at the mean (output unit)."""
        y, grad = self.space.functions()["measure_grad"][self.space.output_index(output)](belief.mean, self.space.theta)
        grad = np.asarray(grad)
        return float(y), float(np.sqrt(max(float(grad @ belief.cov @ grad), 0.0)))

    def update(self, belief: GaussianBelief, time: float, value: float, output: str,
               error: ResidualError) -> tuple[GaussianBelief, str, Innovation]:
        _check_time(belief, time)
        value = _check_value(value, output)
        if not belief.healthy:
            return _failed(belief, time, value, output)
        k = self.space.output_index(output)
        y_mean, grad = self.space.functions()["measure_grad"][k](belief.mean, self.space.theta)
        y_mean, grad = float(y_mean), np.asarray(grad)
        r = float(error.variance(y_mean))
        cross = belief.cov @ grad
        variance = float(grad @ cross) + r
        return _kalman_step(belief, time, value, output, y_mean, variance, cross, joseph=(grad, r))


def _psd_root(scaled: np.ndarray) -> np.ndarray | None:
    """A root L (L·Lᵀ = ``scaled``): Cholesky's, else the correlation eigen-root; None if not PSD."""
    try:
        return np.linalg.cholesky(scaled)
    except np.linalg.LinAlgError:
        pass
    sd = np.sqrt(np.diag(scaled))  # every variance > 0 (UnscentedKalmanFilter.sigma_points)
    corr = scaled / np.outer(sd, sd)
    values, vectors = np.linalg.eigh(0.5 * (corr + corr.T))
    if not np.all(np.isfinite(values)) or values.min() < -1e-9 * max(1.0, float(np.abs(values).max())):
        return None
    return sd[:, None] * (vectors * np.sqrt(np.clip(values, 0.0, None)))


def _gaussian_init(space: StateSpace, mean, cov, time) -> GaussianBelief:
    mean = space.initial_mean() if mean is None else np.asarray(mean, dtype=float)
    cov = np.zeros((space.n, space.n)) if cov is None else np.asarray(cov, dtype=float)
    if mean.shape != (space.n,) or cov.shape != (space.n, space.n):
        raise DataError(f"initial belief: mean must be ({space.n},) and cov ({space.n}, {space.n}) for {space.names}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise DataError("initial belief: mean and covariance must be finite")
    if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(0.5 * (cov + cov.T)).min() < -1e-12 * max(1.0, abs(cov).max()):
        raise DataError("initial belief: covariance must be symmetric positive semi-definite")
    return GaussianBelief(float(time), mean, cov, space.names)


def _propagate(space: StateSpace, z: np.ndarray, t0: float, t1: float, inputs: InputSchedule,
               functions: dict | None = None) -> np.ndarray:
    """A batch of z (m, n) through the doses, resets and stretches of [t0, t1) (default: the JAX functions)."""
    f = space.functions() if functions is None else functions
    z = np.array(z, dtype=float)
    for piece in inputs.pieces(t0, t1):
        if piece.reset:
            z = np.array(f["reset"](z, space.theta))
        z[:, : space.n_states] += piece.bolus
        if piece.end > piece.start:
            z = np.array(f["advance"](z, piece.start, piece.end, piece.rates, space.theta,
                                      space.substeps(piece.start, piece.end)))
    return z


def _kalman_step(belief, time, value, output, y_mean, variance, cross, joseph=None):
    """The linear-Gaussian update shared by the EKF and the UKF (scalar measurement)."""
    innovation = Innovation(float(time), output, value, y_mean, variance, _gaussian_loglik(value, y_mean, variance))
    if not (math.isfinite(variance) and variance > 0 and np.all(np.isfinite(cross))):
        return belief, FAILED, innovation
    gain = cross / variance
    mean = belief.mean + gain * (value - y_mean)
    if joseph is None:
        cov = belief.cov - np.outer(gain, gain) * variance
    else:
        grad, r = joseph
        a = np.eye(len(mean)) - np.outer(gain, grad)
        cov = a @ belief.cov @ a.T + r * np.outer(gain, gain)
    cov = 0.5 * (cov + cov.T)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        return belief, FAILED, innovation
    return GaussianBelief(belief.time, mean, cov, belief.names), OK, innovation


@dataclass(frozen=True, eq=False)
class ParticleFilter:
    """Bootstrap particle filter (Gordon, Salmond & Smith 1993) with systematic resampling.

    Parameters
    ----------
    space : StateSpace
    n_particles : int
    resample_below : float
        Resample when the effective sample size falls below this fraction of N.
    nonnegative : bool
        Clip model states at zero after the process noise (amounts, concentrations).
    """

    space: StateSpace
    n_particles: int = 2000
    resample_below: float = 0.5
    nonnegative: bool = True

    name = "particle"

    def __post_init__(self):
        if self.n_particles < 2:
            raise ParameterError(f"particle filter: n_particles must be >= 2, got {self.n_particles}")
        if not 0.0 < self.resample_below <= 1.0:
            raise ParameterError(f"particle filter: resample_below must be in (0, 1], got {self.resample_below}")

    def init(self, mean=None, cov=None, time: float = 0.0, seed: int = 0) -> ParticleBelief:
        """Particles drawn from N(mean, cov) with the random stream ``seed``."""
        start = _gaussian_init(self.space, mean, cov, time)
        rng = np.random.default_rng([int(seed), 0])
        particles = start.sample(self.n_particles, rng)
        particles = self._clip(particles)
        return ParticleBelief(start.time, particles, np.full(self.n_particles, -math.log(self.n_particles)),
                              start.names, int(seed), 1)

    def _clip(self, particles: np.ndarray) -> np.ndarray:
        if self.nonnegative:
            particles[:, : self.space.n_states] = np.maximum(particles[:, : self.space.n_states], 0.0)
        return particles

    def predict(self, belief: ParticleBelief, t1: float, inputs: InputSchedule) -> ParticleBelief:
        """Move every particle through the model and add the process noise of [t, t1)."""
        if t1 == belief.time or not belief.healthy:
            return belief
        particles = _propagate(self.space, belief.particles, belief.time, t1, inputs)
        sd = np.sqrt(self.space.process_variance(t1 - belief.time))
        rng, counter = belief.rng()
        if np.any(sd > 0):
            particles = particles + rng.standard_normal(particles.shape) * sd
        particles = self._clip(particles)
        healthy = bool(np.any(np.all(np.isfinite(particles), axis=1)))
        log_w = np.where(np.all(np.isfinite(particles), axis=1), belief.log_weights, -np.inf)
        particles = np.where(np.isfinite(particles), particles, 0.0)
        return replace(belief, time=t1, particles=particles, log_weights=_normalise(log_w) if healthy else log_w,
                       counter=counter, healthy=healthy)

    def output_moments(self, belief: ParticleBelief, output: str) -> tuple[float, float]:
        """Weighted mean and sd of ``output`` over the particles (output unit)."""
        y, w = self.space.measure(belief.particles, output), belief.weights
        mean = float(w @ y)
        return mean, float(np.sqrt(max(float(w @ (y - mean) ** 2), 0.0)))

    def update(self, belief: ParticleBelief, time: float, value: float, output: str,
               error: ResidualError) -> tuple[ParticleBelief, str, Innovation]:
        """Reweight by the measurement likelihood; resample when the ESS is low."""
        _check_time(belief, time)
        value = _check_value(value, output)
        if not belief.healthy:
            return _failed(belief, time, value, output)
        y = self.space.measure(belief.particles, output)
        var = np.asarray(error.variance(y), dtype=float) * np.ones_like(y)
        w = belief.weights
        y_mean = float(w @ y)
        variance = float(w @ (y - y_mean) ** 2 + w @ var)
        loglik_i = -0.5 * (LOG_2PI + np.log(var) + (value - y) ** 2 / var)
        loglik_i = np.where(np.isfinite(loglik_i), loglik_i, -np.inf)
        combined = belief.log_weights + loglik_i
        evidence = _logsumexp(combined)
        innovation = Innovation(float(time), output, value, y_mean, variance, float(evidence))
        if not math.isfinite(evidence):
            return belief, FAILED, innovation
        log_w = combined - evidence
        new = replace(belief, log_weights=log_w)
        if new.ess < self.resample_below * self.n_particles:
            rng, counter = new.rng()
            index = systematic_resample(new.weights, rng)
            new = replace(new, particles=new.particles[index],
                          log_weights=np.full(self.n_particles, -math.log(self.n_particles)), counter=counter)
        return new, OK, innovation


def _logsumexp(a: np.ndarray) -> float:
    top = np.max(a)
    if not math.isfinite(top):
        return float(top)
    return float(top + math.log(np.sum(np.exp(a - top))))


def _normalise(log_w: np.ndarray) -> np.ndarray:
    return log_w - _logsumexp(log_w)


def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a systematic resample (Kitagawa 1996): one uniform, N evenly spaced pointers.

    Examples
    --------
    >>> systematic_resample(np.array([0.5, 0.5, 0.0, 0.0]), np.random.default_rng(0)).tolist()
    [0, 0, 1, 1]
    """
    n = len(weights)
    positions = (rng.random() + np.arange(n)) / n
    cumulative = np.cumsum(weights)
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, positions, side="right").clip(0, n - 1)


OBSERVERS = {"ukf": UnscentedKalmanFilter, "ekf": ExtendedKalmanFilter, "particle": ParticleFilter}
