"""Differentiable rollouts of a library model under a piecewise-constant control input, for MPC.

A rollout maps a control sequence ``u`` (H,) in clinical units, held constant
over each of H steps of ``step_h`` hours and infused into one dose target, and
a batch of draws ``z`` (D, n) of the observer's augmented vector
``[states, log estimated parameters]`` (see
:mod:`medtwin.assimilate.statespace`) to one model output at the end of every
step, shape (D, H).  The vector field is the model's own ``model.rhs()`` (the
one definition shared with simulation, estimation and the observers),
integrated by classical RK4 with ``n_sub`` fixed sub-steps per control step, as
the observers do; JAX compiles it once and differentiates it (forward mode,
one tangent per control step) so that the optimiser gets exact gradients.

Known background inputs over the horizon (nutrition infusions, boluses) come
from the regimen through :func:`medtwin.core.inputs.input_schedule`,
averaged per step (so the infused amount of every step is exact); a bolus
inside a step is given at the step's start.  Optional process noise (one fixed
realisation per draw, added to z after each step, as the observer's random
walk) keeps the chance constraints honest about drifting parameters.

Examples
--------
>>> import numpy as np
>>> from medtwin.assimilate.statespace import StateSpace
>>> from medtwin.models import get_model
>>> space = StateSpace.build(get_model("pk1_iv"), {"CL": 2.0, "V": 20.0}, estimated=("CL",))
>>> f = rollout_functions(space, control=0, output="C", n_sub=4)
>>> z = np.array([[0.0, np.log(2.0)]])
>>> H = 3
>>> c = f["outputs"](np.full(H, 10.0), z, np.zeros((H, 1)), np.zeros((H, 1)), np.zeros((1, H, 2)),
...                  space.theta, 0.0, 1.0, 1.0)
>>> c.shape
(1, 3)
>>> bool(abs(c[0, -1] - 10.0 / 2.0 * (1 - np.exp(-0.1 * 3))) < 1e-7)   # R/CL (1 - exp(-CL t / V))
True
"""

from __future__ import annotations

import math

import numpy as np

from medtwin.core.compile_cache import cached
from medtwin.core.inputs import input_schedule
from medtwin.assimilate.statespace import StateSpace, jax_modules, jax_pieces
from medtwin.errors import DataError, SimulationError


def rollout_functions(space: StateSpace, *, control: int, output: str, n_sub: int) -> dict:
    """The jitted rollout functions for one (model, estimated set, control state, output, sub-steps).

    Parameters
    ----------
    space : StateSpace
    control : int
        Index (0-based) of the state the control input is infused into.
    output : str
        Name of the model output that is returned.
    n_sub : int
        RK4 sub-steps per control step.

    Returns
    -------
    dict
        ``outputs(u, z, rates, boluses, noise, theta, t0, step_h, scale) -> (D, H)``;
        ``jacobian(...) -> (outputs (D, H), d outputs / d u (D, H, H))``;
        ``shift_gradient(u, z, ..., ) -> (n,)``: gradient of the mean output (over draws and steps)
        with respect to a common shift of every draw's z.  Arguments: ``u`` (H,) clinical units,
        ``z`` (D, n), ``rates`` and ``boluses`` (H, n_states) model units, ``noise`` (D, H, n),
        ``theta`` (n_parameters,), ``t0`` and ``step_h`` in h, ``scale`` = model units per clinical unit.
        Compiled once and kept in the model's cache (shared by every controller of the same settings).
    """
    options = (space.estimated, int(control), output, int(n_sub))
    return cached(space.model, "mpc-rollout", options,
                  lambda: _compile(space, int(control), space.output_index(output), int(n_sub)))


def _compile(space: StateSpace, control: int, out_index: int, n_sub: int) -> dict:
    jax, jnp = jax_modules()
    n_x = space.n_states
    out_fn = space.model.output_functions()[out_index]
    params, _, rk4 = jax_pieces(space)  # the observers' own parameter mapping, vector field and RK4

    def integrate(t, x, p, r, h):
        return rk4(t, x, p, r, h, n_sub)

    def output(x, p):
        return jnp.asarray(out_fn(x, p), dtype=jnp.float64)

    def one(u, z, rates, boluses, noise, theta, t0, step_h, scale):
        def step(carry, inputs):
            z, t = carry
            u_k, r_k, b_k, n_k = inputs
            p = params(z, theta)
            x = integrate(t, z[:n_x] + b_k, p, r_k.at[control].add(u_k * scale), step_h / n_sub)
            return (jnp.concatenate([x, z[n_x:]]) + n_k, t + step_h), output(x, p)

        _, ys = jax.lax.scan(step, (z, t0), (u, rates, boluses, noise))
        return ys

    def one_with_jacobian(u, z, rates, boluses, noise, theta, t0, step_h, scale):
        # Forward sensitivities exploiting causality and linear entry of the control: per step, the Jacobian
        # of the RK4 step map with respect to (x, u_k) (n_x + 1 tangents), then S_k = A_k S_{k-1} + g_k e_k^T,
        # dy_k/du = c_k^T S_k.  n_x + 1 tangents instead of H.
        horizon = u.shape[0]

        def step(carry, inputs):
            z, t, sens = carry
            k, u_k, r_k, b_k, n_k = inputs
            p = params(z, theta)

            def step_map(w):
                return integrate(t, w[:n_x], p, r_k.at[control].add((u_k + w[n_x]) * scale), step_h / n_sub)

            w0 = jnp.concatenate([z[:n_x] + b_k, jnp.zeros(1)])
            jac, x = jax.jacfwd(lambda w: (step_map(w), step_map(w)), has_aux=True)(w0)
            sens = jac[:, :n_x] @ sens
            sens = sens.at[:, k].add(jac[:, n_x])
            y, c = output(x, p), jax.grad(output)(x, p)
            return (jnp.concatenate([x, z[n_x:]]) + n_k, t + step_h, sens), (y, c @ sens)

        init = (z, t0, jnp.zeros((n_x, horizon)))
        _, (ys, rows) = jax.lax.scan(step, init, (jnp.arange(horizon), u, rates, boluses, noise))
        return ys, rows

    axes = (None, 0, None, None, 0, None, None, None, None)
    batch = jax.vmap(one, in_axes=axes)
    batch_jac = jax.vmap(one_with_jacobian, in_axes=axes)

    def outputs(u, z, rates, boluses, noise, theta, t0, step_h, scale):
        return batch(u, z, rates, boluses, noise, theta, t0, step_h, scale)

    def jacobian(u, z, rates, boluses, noise, theta, t0, step_h, scale):
        return batch_jac(u, z, rates, boluses, noise, theta, t0, step_h, scale)

    def shift_gradient(u, z, rates, boluses, noise, theta, t0, step_h, scale):
        fun = lambda s: jnp.mean(batch(u, z + s, rates, boluses, noise, theta, t0, step_h, scale))  # noqa: E731
        return jax.jacfwd(fun)(jnp.zeros(z.shape[1]))

    return {"outputs": jax.jit(outputs), "jacobian": jax.jit(jacobian), "shift_gradient": jax.jit(shift_gradient)}


def background_inputs(space: StateSpace, regimen, t0: float, step_h: float, horizon: int,
                      control: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Known inputs per control step from a regimen (or an :class:`InputSchedule`).

    Parameters
    ----------
    space : StateSpace
    regimen : Regimen or InputSchedule or None
        The known inputs (model units); ``None``: none.
    t0, step_h : float
        Start of the horizon and step length, h.
    horizon : int
        Number of steps H.
    control : int, optional
        State index whose background inputs are dropped (the controller decides that input).

    Returns
    -------
    rates : ndarray, shape (H, n_states)
        Mean infusion rate over each step (model units/h): the infused amount of each step is exact.
    boluses : ndarray, shape (H, n_states)
        Bolus amounts given inside each step, applied at the step's start.

    Examples
    --------
    >>> from medtwin.scenarios.glucose_patients import icu_regimen
    >>> from medtwin.assimilate.statespace import StateSpace
    >>> from medtwin.models import get_model
    >>> space = StateSpace.build(get_model("icing"), estimated=("SI",))
    >>> rates, boluses = background_inputs(space, icu_regimen(2, insulin_u_per_h=1.0, enteral_g_per_h=1.80156),
    ...                                    1.5, 0.25, 4, control=1)
    >>> rates[:, :3].tolist()   # insulin (CMT 2) dropped; enteral 10 mmol/h until 2 h
    [[0.0, 0.0, 10.0], [0.0, 0.0, 10.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    n = space.n_states
    rates = np.zeros((horizon, n))
    boluses = np.zeros((horizon, n))
    if regimen is None:
        return rates, boluses
    schedule = regimen if hasattr(regimen, "pieces") else input_schedule(space.model, regimen, space.theta)
    for k in range(horizon):
        a, b = t0 + k * step_h, t0 + (k + 1) * step_h
        for piece in schedule.pieces(a, b):
            if piece.reset:
                raise SimulationError(f"a reset event at {piece.start:g} h lies inside the MPC horizon; "
                                      "the controller cannot plan across a reset")
            rates[k] += piece.rates * (piece.end - piece.start) / step_h
            boluses[k] += piece.bolus
    if control is not None:
        rates[:, control] = 0.0
        boluses[:, control] = 0.0
    if not (np.all(np.isfinite(rates)) and np.all(np.isfinite(boluses))):
        raise DataError("background inputs over the MPC horizon are not finite")
    return rates, boluses


def substeps(step_h: float, max_step: float) -> int:
    """RK4 sub-steps per control step: ceil(step_h / max_step)."""
    return max(1, int(math.ceil(step_h / max_step - 1e-9)))
