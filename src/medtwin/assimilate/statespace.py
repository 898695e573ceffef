"""A library model seen as a stochastic state-space system, for the observers.

The observers (:mod:`medtwin.assimilate.observers`) track the augmented vector

    z = [x (model states, model units), log θ_e (the estimated parameters)]

where the estimated parameters are slowly drifting states (a random walk in log
space), so that, e.g., insulin sensitivity can be tracked hour by hour.  The
deterministic part of the transition is the model's own vector field (the one
definition shared with simulation and estimation) plus the regimen's inputs;
it is integrated by classical RK4 with a fixed number of sub-steps per stretch
(``ceil(Δt / max_step)``), compiled once by JAX and vectorised over sigma
points or particles.  A fixed-step scheme keeps a replay bit-for-bit
repeatable and the cost of one update predictable, which an adaptive step
controller inside a filter would not; ``max_step`` is chosen from the
Jacobian at the reference point so that the step resolves the fastest mode
(|λ|·h ≤ 0.5, local error of order (|λ|h)⁵/120 per step).

Noise model (discrete, first order in Δt, stated so a reference filter can use
the same): over a stretch of Δt hours the process noise added to z is
N(0, diag(q)·Δt) with ``q = [state_noise, parameter_drift]`` (units²/h and
(log units)²/h).

Examples
--------
>>> from medtwin.models import get_model
>>> space = StateSpace.build(get_model("pk1_iv"), {"CL": 2.0, "V": 20.0}, estimated=("CL",),
...                          parameter_drift={"CL": 0.01})
>>> space.names
('CENTRAL', 'log CL')
>>> import numpy as np
>>> z1 = space.advance(np.array([[100.0, np.log(2.0)]]), 0.0, 10.0, np.zeros(1))
>>> round(float(z1[0, 0]), 4)   # 100 exp(-0.1 * 10)
36.7879
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from medtwin.core.compile_cache import cached
from medtwin.core.model import Model
from medtwin.errors import ModelError, ParameterError


def jax_modules():
    """(jax, jax.numpy) with float64 enabled (DESIGN §6)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    return jax, jnp


@dataclass(frozen=True, eq=False)
class StateSpace:
    """A model, its fixed parameters, which parameters drift, and the noise levels.

    Use :meth:`build`.  Attributes
    ----------
    model : Model
    theta : ndarray, shape (n_parameters,)
        Values of every parameter (model units); for estimated ones, the reference value.
    estimated : tuple of str
        Parameters carried in the state as log values.
    state_noise : ndarray, shape (n_states,)
        Process-noise variance per hour of each state ((state unit)²/h).
    parameter_drift : ndarray, shape (n_estimated,)
        Random-walk variance per hour of each log parameter (1/h).
    max_step : float
        Largest RK4 step (h).
    """

    model: Model
    theta: np.ndarray
    estimated: tuple[str, ...]
    state_noise: np.ndarray
    parameter_drift: np.ndarray
    max_step: float
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, model: Model, parameters: Mapping[str, float] | None = None, *, estimated=(),
              state_noise: Mapping[str, float] | None = None, parameter_drift: Mapping[str, float] | None = None,
              max_step: float | None = None) -> "StateSpace":
        """Build and validate a state space (names are checked against the model, every error names the field)."""
        from medtwin.core.model import parameter_matrix  # the same parameter parsing and checks as simulate()

        model.require_well_posed()
        theta = parameter_matrix(model, dict(parameters or {}))[0]
        estimated = tuple(estimated)
        for name in estimated:
            par = model.parameter(name)
            if par.transform != "log" and par.lower <= 0:
                raise ParameterError(f"estimated parameter {name}: tracked in log space, needs a positive domain")
        if len(set(estimated)) != len(estimated):
            raise ParameterError(f"estimated parameters must be distinct, got {list(estimated)}")
        q_x = _vector(state_noise, model.state_names, "state_noise")
        q_p = _vector(parameter_drift, estimated, "parameter_drift")
        step = _default_step(model, theta) if max_step is None else float(max_step)
        if not (math.isfinite(step) and step > 0):
            raise ParameterError(f"max_step must be a positive number of hours, got {max_step!r}")
        theta.flags.writeable = False
        return cls(model, theta, estimated, q_x, q_p, step)

    # ------------------------------------------------------------------ layout
    @property
    def n_states(self) -> int:
        return self.model.n_states

    @property
    def n(self) -> int:
        """Length of the augmented vector z."""
        return self.model.n_states + len(self.estimated)

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.state_names + tuple(f"log {name}" for name in self.estimated)

    @property
    def estimated_index(self) -> np.ndarray:
        names = self.model.parameter_names
        return np.array([names.index(e) for e in self.estimated], dtype=int)

    def process_variance(self, dt: float) -> np.ndarray:
        """Diagonal of the process-noise covariance over ``dt`` hours, shape (n,)."""
        return np.concatenate([self.state_noise, self.parameter_drift]) * max(float(dt), 0.0)

    def initial_mean(self) -> np.ndarray:
        """z at the model's initial state and the reference parameters, shape (n,)."""
        x0 = np.array([float(v) for v in np.broadcast_arrays(*self.model.init()(tuple(self.theta)))])
        return np.concatenate([x0, np.log(self.theta[self.estimated_index])])

    def parameters_of(self, z: np.ndarray) -> np.ndarray:
        """Full parameter vectors (m, n_parameters) for a batch of z (m, n)."""
        z = np.atleast_2d(z)
        theta = np.repeat(self.theta[None, :], len(z), axis=0)
        theta[:, self.estimated_index] = np.exp(z[:, self.n_states:])
        return theta

    # ------------------------------------------------------------------ compiled parts
    def functions(self) -> dict:
        """The jitted pieces: advance, advance_jac, measure, reset.

        They depend only on the model and on which parameters are estimated
        (parameter values and noise levels are arguments), so they are kept in
        the model's cache and shared by every twin of the same model: a cohort
        of twins compiles once.
        """
        if "functions" not in self._cache:
            self._cache["functions"] = cached(self.model, "assimilate-functions", self.estimated,
                                              lambda: _compile(self))
        return self._cache["functions"]

    def numpy_functions(self) -> dict:
        """advance, reset and measure for a small batch in numpy, without JAX (see :func:`_numpy_functions`).

        The same signatures, RK4 scheme and arithmetic as :meth:`functions`
        (equal to it within rounding: tested to 1e-12 relative); a new process
        that tracks a few sigma points need not import JAX and trace its
        programs (≈ 1.3 s CPU).  Not shared through the compile cache: there is
        nothing to compile.
        """
        if "numpy" not in self._cache:
            self._cache["numpy"] = _numpy_functions(self)
        return self._cache["numpy"]

    def substeps(self, t0: float, t1: float) -> int:
        return max(1, int(math.ceil((t1 - t0) / self.max_step - 1e-9)))

    def advance(self, z: np.ndarray, t0: float, t1: float, rates: np.ndarray) -> np.ndarray:
        """Integrate a batch z (m, n) from t0 to t1 h at constant infusion ``rates`` (n_states,)."""
        if t1 <= t0:
            return np.array(z, dtype=float)
        f = self.functions()
        return np.asarray(f["advance"](z, float(t0), float(t1), np.asarray(rates, float), self.theta,
                                       self.substeps(t0, t1)))

    def measure(self, z: np.ndarray, output: str, functions: dict | None = None) -> np.ndarray:
        """Model output ``output`` for a batch z (m, n), shape (m,) (``functions``: default :meth:`functions`)."""
        f = self.functions() if functions is None else functions
        return np.asarray(f["measure"][self.output_index(output)](z, self.theta))

    def output_index(self, output: str) -> int:
        try:
            return self.model.output_names.index(output)
        except ValueError:
            raise ModelError(f"model {self.model.name} has no output {output!r}; it has "
                             f"{list(self.model.output_names)}") from None


def _vector(values: Mapping[str, float] | None, names, field_name: str) -> np.ndarray:
    values = dict(values or {})
    unknown = set(values) - set(names)
    if unknown:
        raise ParameterError(f"{field_name}: unknown name(s) {sorted(unknown)}; expected some of {list(names)}")
    out = np.array([float(values.get(name, 0.0)) for name in names])
    bad = [n for n, v in zip(names, out) if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ParameterError(f"{field_name}: variance of {bad[0]} must be finite and >= 0, got {values[bad[0]]!r}")
    out.flags.writeable = False
    return out


def _default_step(model: Model, theta: np.ndarray) -> float:
    """0.5 / ‖∂f/∂x‖∞ at the reference parameters and a unit-scale state, capped at 0.25 h."""
    rhs = model.rhs()
    n = model.n_states
    x = np.ones(n)
    norm = 0.0
    for x_ref in (x, np.array([float(v) for v in np.broadcast_arrays(*model.init()(tuple(theta)))])):
        base = np.array(np.broadcast_arrays(*rhs(0.0, tuple(x_ref), tuple(theta))), dtype=float)
        jac = np.zeros((n, n))
        for j in range(n):
            h = 1e-6 * max(abs(x_ref[j]), 1.0)
            xp = x_ref.copy()
            xp[j] += h
            jac[:, j] = (np.array(np.broadcast_arrays(*rhs(0.0, tuple(xp), tuple(theta))), dtype=float) - base) / h
        norm = max(norm, float(np.max(np.sum(np.abs(jac), axis=1))))
    return min(0.25, 0.5 / norm) if norm > 0 else 0.25


def rk4_steps(field, t0, x, h, n, fori_loop=None):
    """``n`` classical RK4 steps of ``h`` hours from ``t0``: the one scheme of the JAX and the numpy functions.

    Parameters
    ----------
    field : callable
        ``field(t, x)``, dx/dt at time t (h) in the array type of ``x`` (a JAX
        array per point, or numpy rows ``x[i]`` of shape (m,) for a batch).
    t0, h : float
        Start and step (h).
    x : array
        The state at ``t0``.
    n : int
        Number of steps.
    fori_loop : callable, optional
        ``jax.lax.fori_loop`` inside a JAX program (one traced step, differentiable
        forward); default a Python loop.  The arithmetic is the same either way.
    """
    def step(i, x):
        t = t0 + i * h
        k1 = field(t, x)
        k2 = field(t + h / 2, x + h / 2 * k1)
        k3 = field(t + h / 2, x + h / 2 * k2)
        k4 = field(t + h, x + h * k3)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    if fori_loop is not None:
        return fori_loop(0, n, step, x)
    for i in range(n):
        x = step(i, x)
    return x


def jax_pieces(space: StateSpace):
    """The pieces every JAX integration of a state space shares (observers here, the MPC rollout in control/).

    Returns ``(params, field, rk4)``: ``params(z, theta)`` the full parameter vector for z;
    ``field(t, x, p, rates)`` the model's own vector field plus infusion rates; ``rk4(t0, x, p, rates, h, n)``
    ``n`` classical RK4 steps of ``h`` hours from ``t0`` (a ``fori_loop``, differentiable forward).
    """
    jax, jnp = jax_modules()
    n_x, rhs = space.n_states, space.model.rhs()
    est = jnp.asarray(space.estimated_index)
    has_est = len(space.estimated) > 0

    def params(z, theta):
        return theta.at[est].set(jnp.exp(z[n_x:])) if has_est else theta

    def field(t, x, p, rates):
        return jnp.stack(jnp.broadcast_arrays(*rhs(t, x, p))).astype(jnp.float64) + rates

    def rk4(t0, x, p, rates, h, n):
        return rk4_steps(lambda t, v: field(t, v, p, rates), t0, x, h, n, jax.lax.fori_loop)

    return params, field, rk4


def _compile(space: StateSpace) -> dict:
    jax, jnp = jax_modules()
    model, n_x = space.model, space.n_states
    init = model.init()
    outputs = model.output_functions()
    params, _, rk4 = jax_pieces(space)

    def advance_one(z, t0, t1, rates, theta, n_sub):
        x = rk4(t0, z[:n_x], params(z, theta), rates, (t1 - t0) / n_sub, n_sub)
        return jnp.concatenate([x, z[n_x:]])

    def advance_jac_one(z, t0, t1, rates, theta, n_sub):
        fun = lambda v: advance_one(v, t0, t1, rates, theta, n_sub)  # noqa: E731
        return fun(z), jax.jacfwd(fun)(z)

    def reset_one(z, theta):
        x0 = jnp.stack(jnp.broadcast_arrays(*init(params(z, theta)))).astype(jnp.float64)
        return jnp.concatenate([x0, z[n_x:]])

    def measure_for(k):
        def one(z, theta):
            return jnp.asarray(outputs[k](z[:n_x], params(z, theta)), dtype=jnp.float64)
        return one

    batch = (0, None, None, None, None, None)
    measures = [measure_for(k) for k in range(len(outputs))]
    return {
        "advance": jax.jit(jax.vmap(advance_one, in_axes=batch)),
        "advance_jac": jax.jit(advance_jac_one),
        "reset": jax.jit(jax.vmap(reset_one, in_axes=(0, None))),
        "measure": [jax.jit(jax.vmap(m, in_axes=(0, None))) for m in measures],
        "measure_grad": [jax.jit(jax.value_and_grad(m)) for m in measures],
        "measure_one": measures,
    }


def _numpy_functions(space: StateSpace) -> dict:
    """advance, reset and measure of :func:`_compile` over a batch z (m, n) in numpy.

    The batch runs along the last axis: the model's functions receive the
    states and parameters as rows (x[i] and p[j] of shape (m,)), so every
    operation is the elementwise one the vmapped JAX program does per point, in
    the same order (the same :func:`rk4_steps`).
    """
    model, n_x = space.model, space.n_states
    rhs, init, outputs = model.rhs(), model.init(), model.output_functions()
    est = space.estimated_index

    def params(z, theta):  # (n_parameters, m)
        p = np.repeat(np.asarray(theta, float)[:, None], z.shape[0], axis=1)
        p[est] = np.exp(z[:, n_x:].T)
        return p

    def rows(values, m):
        return np.array(np.broadcast_arrays(*values, np.zeros(m)), dtype=np.float64)[:-1]

    def advance(z, t0, t1, rates, theta, n_sub):
        z = np.asarray(z, dtype=float)
        m, p, h = z.shape[0], params(z, theta), (t1 - t0) / n_sub
        r = np.asarray(rates, float)[:, None]

        def field(t, x):
            return rows(rhs(t, x, p), m) + r

        x = rk4_steps(field, t0, z[:, :n_x].T, h, n_sub)
        return np.concatenate([x.T, z[:, n_x:]], axis=1)

    def reset(z, theta):
        z = np.asarray(z, dtype=float)
        return np.concatenate([rows(init(params(z, theta)), z.shape[0]).T, z[:, n_x:]], axis=1)

    def measure_for(k):
        def measure(z, theta):
            z = np.asarray(z, dtype=float)
            return rows((outputs[k](z[:, :n_x].T, params(z, theta)),), z.shape[0])[0]
        return measure

    return {"advance": advance, "reset": reset, "measure": [measure_for(k) for k in range(len(outputs))]}
