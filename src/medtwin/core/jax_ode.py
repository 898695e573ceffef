"""Differentiable outputs of any model (nonlinear included) in JAX, over the padded scan steps.

The nonlinear twin of :mod:`medtwin.core.jax_linear`: the same padded step
arrays (:func:`medtwin.core.jax_linear._steps`: ``dt``, ``rate``, ``bolus_cmt``,
``bolus_amt``, ``bolus_f``, ``obs_step``), the same ``f(theta, steps)``
signature, but each step integrates the model's own vector field
(:meth:`Model.rhs`) with the infusion rates running::

    dx/dt = f(t, x, θ) + r_k          over [t_k, t_k + dt_k]

by ``diffrax.diffeqsolve`` (Dormand–Prince 5(4), or the stiff Kvaerno 5 when
asked, with a PID step-size controller) inside one ``lax.scan``.  Then the
step's bolus is added (amount × F(θ) when the route has a bioavailability) and
the state is recorded for the outputs observed at that step (after advancing,
before the bolus: NONMEM record order, as in the linear path).

Because the schedule is data (arrays), not Python control flow, one jit
compilation serves every patient whose padded shapes agree: the step count is
padded to 16·2^k and the caller pads observations.  The default adjoint is
diffrax's ``RecursiveCheckpointAdjoint``, so reverse mode works as well as
forward mode; ``adjoint="forward"`` (``ForwardMode``) is much cheaper for a
few parameters but supports forward mode only.

A step whose integration fails (the per-step ``max_steps`` reached, or a
non-finite state) makes every later state NaN, never a wrong number; the
initial state is integrated in its place so that the failure costs no more
than a normal step.

Dose *times* (lag, modelled durations) and infusion rates are fixed at the
reference θ at which the steps were built; steady-state and reset records are
refused by :func:`~medtwin.core.jax_linear._steps` (use
:func:`medtwin.core.simulate.simulate`).

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> from medtwin.models import get_model
>>> m = get_model("pk1_iv_mm")
>>> pred = ode_predictor(m, Regimen.single(100.0), [2.0])
>>> y = pred.outputs(pred.theta({"VMAX": 1e-6, "V": 20.0}))   # elimination switched off: C = 100/20
>>> float(np.round(y[0, 0], 6))
5.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.core.compile_cache import cached
from medtwin.core.events import Regimen
from medtwin.core.model import Model
from medtwin.errors import ModelError, SimulationError

__all__ = ["ADJOINTS", "ATOL", "MAX_STEPS", "RTOL", "SOLVERS", "OdePredictor", "ode_outputs_function", "ode_predictor",
           "ode_steps"]

#: Default step-size controller tolerances (relative, absolute in state units) and steps per scan step.
RTOL, ATOL, MAX_STEPS = 1e-8, 1e-10, 4096
SOLVERS = ("dopri5", "kvaerno5")
ADJOINTS = ("reverse", "forward")


def _jax():
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SimulationError("the JAX ODE path needs jax and diffrax (dependencies of medtwin): "
                              "pip install jax diffrax") from exc
    return jax, jnp, diffrax


def ode_steps(model: Model, regimen: Regimen, times, reference, *, pre_dose=None) -> dict:
    """The padded scan steps of one patient (numpy arrays), plus ``t0``, the time (h) of the first step.

    ``t0`` matters only for a vector field that depends on time; it is read off
    the steps themselves (an observation at ``times[j]`` is reached after
    ``sum(dt[:obs_step[j] + 1])`` hours), so no second walk of the schedule is needed.
    """
    from medtwin.core.jax_linear import _steps

    times = np.asarray(times, dtype=float).reshape(-1)
    try:
        steps = _steps(model, regimen, times, pre_dose, np.asarray(reference, dtype=float))
    except SimulationError as exc:  # the message names the linear path, whose steps these are
        if "steady-state" not in str(exc):
            raise
        raise SimulationError(f"model {model.name}: steady-state (SS) and reset (EVID 3/4) records are not "
                              "supported by the JAX ODE path (personalize); use simulate()") from exc
    elapsed = np.cumsum(steps["dt"])
    t0 = float(times[0] - elapsed[steps["obs_step"][0]]) if times.size else 0.0
    return {**steps, "t0": np.float64(t0)}


def ode_outputs_function(model: Model, *, rtol: float = RTOL, atol: float = ATOL, max_steps: int = MAX_STEPS,
                         solver: str = "dopri5", adjoint: str = "reverse"):
    """``f(theta, steps) -> (J, n_outputs)``: pure JAX (jit-, grad-, vmap-able), cached on the model.

    Parameters
    ----------
    model : Model
        Any model with an arithmetic-only vector field (every library model).
    rtol, atol : float
        Step-size controller tolerances (relative; absolute in state units).
    max_steps : int
        Solver steps allowed per scan step; beyond it the outputs are NaN.
    solver : {"dopri5", "kvaerno5"}
        Explicit Dormand–Prince 5(4) (default) or the L-stable Kvaerno 5 for stiff models.
    adjoint : {"reverse", "forward"}
        ``"reverse"``: diffrax's ``RecursiveCheckpointAdjoint`` (reverse and forward mode work);
        ``"forward"``: ``ForwardMode`` (forward mode only — ``jax.jvp``/``jacfwd``), cheaper when few
        parameters vary: 3–15× per posterior gradient in ``benchmarks/personalize_ode.py`` (used by
        ``medtwin.infer.personalize``, which wraps it in a ``custom_jvp`` so reverse mode still works).

    Returns
    -------
    callable
        ``outputs(theta, steps)``: ``theta`` shape (n_parameters,), ``steps`` the
        dict of :func:`ode_steps` as JAX arrays; result shape (len(obs_step), n_outputs).
    """
    if solver not in SOLVERS:
        raise ModelError(f"solver must be one of {SOLVERS}, not {solver!r}")
    if adjoint not in ADJOINTS:
        raise ModelError(f"adjoint must be one of {ADJOINTS}, not {adjoint!r}")
    return cached(model, "jax-ode", (float(rtol), float(atol), int(max_steps), solver, adjoint),
                  lambda: _build_outputs(model, float(rtol), float(atol), int(max_steps), solver, adjoint))


def _build_outputs(model: Model, rtol: float, atol: float, max_steps: int, solver: str, adjoint: str):
    """The ``outputs(theta, steps)`` function of :func:`ode_outputs_function` (built once per model and options)."""
    jax, jnp, diffrax = _jax()
    rhs, init, output_functions = model.rhs(), model.init(), model.output_functions()
    n = model.n_states

    def field(t, y, args):
        theta, rate = args
        return jnp.stack(jnp.broadcast_arrays(*rhs(t, y, theta))).astype(jnp.float64) + rate

    term = diffrax.ODETerm(field)
    method = diffrax.Dopri5() if solver == "dopri5" else diffrax.Kvaerno5()
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    method_adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint == "reverse" else diffrax.ForwardMode()

    def outputs(theta, d):
        theta = jnp.asarray(theta, dtype=jnp.float64)
        x0 = jnp.stack(jnp.broadcast_arrays(*init(theta))).astype(jnp.float64)
        k = d["dt"].shape[0]
        amount = d["bolus_amt"] * jnp.where(d["bolus_f"] >= 0, theta[jnp.maximum(d["bolus_f"], 0)], 1.0)
        kick = jnp.zeros((k, n)).at[jnp.arange(k), d["bolus_cmt"]].add(amount)

        def step(carry, inputs):
            x, t, ok = carry
            dt, rate, b = inputs
            start = jnp.where(ok, x, x0)  # after a failure integrate a harmless state, then discard it
            sol = diffrax.diffeqsolve(term, method, t, t + dt, None, start, args=(theta, rate),
                                      stepsize_controller=controller, max_steps=max_steps,
                                      saveat=diffrax.SaveAt(t1=True), adjoint=method_adjoint, throw=False)
            end = sol.ys[-1]
            ok = ok & (sol.result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(end))
            x = jnp.where(ok, end, jnp.nan)
            return (x + b, t + dt, ok), x  # seen by an output at this step: after advancing, before the bolus

        t0 = jnp.asarray(d.get("t0", 0.0), dtype=jnp.float64)
        _, seen = jax.lax.scan(step, (x0, t0, jnp.bool_(True)), (d["dt"], d["rate"], kick))
        states = seen[d["obs_step"]]
        return jax.vmap(lambda xi: jnp.stack([jnp.asarray(o(xi, theta), dtype=jnp.float64)
                                              for o in output_functions]))(states)

    return outputs


@dataclass(frozen=True)
class OdePredictor:
    """A model, one patient's padded steps and the pure JAX map θ → outputs (n_times, n_outputs).

    ``data`` are the step arrays; ``function(theta, data)`` is the pure function
    (pass ``data`` as an argument to share one jit compilation across patients).
    """

    model: Model
    data: dict
    reference: np.ndarray
    rtol: float = RTOL
    atol: float = ATOL
    max_steps: int = MAX_STEPS
    solver: str = "dopri5"

    @property
    def function(self):
        return ode_outputs_function(self.model, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps,
                                    solver=self.solver)

    def outputs(self, theta):
        """Outputs at the requested times for θ in the model's parameter order (NaN where the solve failed)."""
        jax, jnp, _ = _jax()
        with jax.enable_x64(True):
            return jax.jit(self.function)(jnp.asarray(theta, dtype=jnp.float64), self.data)

    def theta(self, params=None) -> np.ndarray:
        """θ vector from a mapping (missing names take typical values), checked like ``simulate``."""
        from medtwin.core.model import parameter_matrix

        return parameter_matrix(self.model, params)[0]


def ode_predictor(model: Model, regimen: Regimen, times, params=None, *, pre_dose=None, rtol: float = RTOL,
                  atol: float = ATOL, max_steps: int = MAX_STEPS, solver: str = "dopri5") -> OdePredictor:
    """The differentiable ODE predictor of ``model`` (linear or not) for one patient.

    Parameters
    ----------
    model : Model
        Any well-posed model.
    regimen : Regimen
        The patient's doses (no steady-state or reset records).
    times : array_like
        Output times (h), shape (J,).
    params : mapping or array_like, optional
        Reference θ at which dose times (lag, modelled durations) and rates are fixed; typical values when omitted.
    pre_dose : bool array, optional
        Outputs recorded before a dose at the same time (NONMEM record order).
    rtol, atol, max_steps, solver
        See :func:`ode_outputs_function`.
    """
    if solver not in SOLVERS:
        raise ModelError(f"solver must be one of {SOLVERS}, not {solver!r}")
    model.require_well_posed()
    from medtwin.core.model import parameter_matrix

    reference = parameter_matrix(model, params)[0]
    steps = ode_steps(model, regimen, times, reference, pre_dose=pre_dose)
    jax, jnp, _ = _jax()
    with jax.enable_x64(True):
        data = {k: jnp.asarray(v) for k, v in steps.items()}
    return OdePredictor(model, data, reference, float(rtol), float(atol), int(max_steps), solver)
