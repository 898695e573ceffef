"""JAX + diffrax solution of one patient, differentiable in θ, from the same model definition.

The numba kernels are the fast path for simulation and cohorts; this module is
the gradient path (MAP estimation, NUTS, MPC in later layers).  The model's
arithmetic-only vector field and outputs run on JAX arrays unchanged; the
NONMEM event schedule (lag, F, infusions, resets) is compiled once into the
same segments the kernels step over (:mod:`medtwin.core.schedule`), at a
reference θ, and each segment is integrated by ``diffrax.diffeqsolve`` (Dormand–Prince 5(4) with a
PID step-size controller).

Gradients flow through the vector field, the initial state, the outputs and the
bolus amounts (so through F for boluses); event *times* (lag, modelled
durations) are fixed at the reference θ.  Steady-state records are not
supported here (use :func:`medtwin.core.simulate.simulate`).

JAX is imported on first use (a dependency of medtwin); float64 is
enabled for the duration of each call.

Examples
--------
>>> import numpy as np
>>> from medtwin.models import get_model
>>> from medtwin.core.events import Regimen
>>> solver = diffrax_solver(get_model("pk1_iv"), Regimen.single(100.0), [10.0], {"CL": 2.0, "V": 20.0})
>>> float(np.round(solver.outputs(solver.reference)[0, 0], 6))
1.839397
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from medtwin.core import kernels
from medtwin.core.compile_cache import cached
from medtwin.core.events import Regimen
from medtwin.core.model import Model
from medtwin.core.schedule import compile_schedule, dose_parameter_index
from medtwin.errors import SimulationError


def _jax():
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SimulationError("the diffrax path needs jax and diffrax (dependencies of medtwin): pip install jax diffrax") from exc
    return jax, jnp, diffrax


@dataclass(frozen=True)
class DiffraxSolver:
    """A differentiable map θ → outputs at the requested times for one patient.

    Attributes
    ----------
    outputs : callable
        ``outputs(theta) -> array (n_times, n_outputs)``; ``theta`` is a JAX or
        numpy vector in the model's parameter order.  Works under ``jax.jacfwd``.
    reference : numpy.ndarray
        The θ at which the event schedule was built, shape (n_parameters,).
    rtol, atol : float
        Step-size controller tolerances.
    """

    outputs: Callable
    reference: np.ndarray
    rtol: float
    atol: float

    def jacobian(self, theta=None):
        """∂outputs/∂θ, shape (n_times, n_outputs, n_parameters), by forward-mode autodiff through the solver."""
        jax, jnp, _ = _jax()
        with jax.enable_x64(True):
            theta = jnp.asarray(self.reference if theta is None else theta, dtype=jnp.float64)
            return np.asarray(jax.jacfwd(self.outputs)(theta))


def _compiled_parts(model: Model, rtol: float, atol: float, max_steps: int):
    """The jitted interval integrator and start-state function, built once per model and tolerances."""
    return cached(model, "diffrax", (rtol, atol, max_steps), lambda: _build_parts(model, rtol, atol, max_steps))


def _build_parts(model: Model, rtol: float, atol: float, max_steps: int):
    jax, jnp, diffrax = _jax()
    rhs, init = model.rhs(), model.init()

    def field(t, y, args):
        theta, rates = args
        return jnp.stack(jnp.broadcast_arrays(*rhs(t, y, theta))) + rates

    term = diffrax.ODETerm(field)
    solver = diffrax.Dopri5()
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    @jax.jit  # one compilation for every interval: times and rates are traced values
    def advance(y, t0, t1, theta, rates):
        sol = diffrax.diffeqsolve(term, solver, t0, t1, None, y, args=(theta, rates), stepsize_controller=controller,
                                  max_steps=max_steps, saveat=diffrax.SaveAt(t1=True), adjoint=diffrax.ForwardMode())
        return sol.ys[-1]

    def start_state(theta):
        return jnp.stack(jnp.broadcast_arrays(*init(theta))).astype(jnp.float64)

    return advance, start_state


def diffrax_solver(model: Model, regimen: Regimen, times, params=None, *, pre_dose=None, rtol: float = 1e-8,
                   atol: float = 1e-10, max_steps: int = 100_000) -> DiffraxSolver:
    """Build the differentiable solver of ``model`` for one patient's regimen and output times (h).

    ``params`` is a mapping (missing names take typical values) or a vector in
    the model's parameter order; ``pre_dose`` flags outputs taken before doses
    at the same time (NONMEM record order).
    """
    model.require_well_posed()
    jax, jnp, _ = _jax()
    from medtwin.core.model import parameter_matrix  # the same parameter parsing and checks as simulate()

    reference = parameter_matrix(model, params)[0]
    times = np.asarray(times, dtype=float)
    seg = compile_schedule(model, regimen, times, reference, pre_dose=pre_dose)
    if len(seg.ss_segment):
        raise SimulationError("steady-state (SS) records are not supported by the diffrax path; use simulate()")
    advance, start_state = _compiled_parts(model, float(rtol), float(atol), int(max_steps))
    output_functions = model.output_functions()
    f_index = dose_parameter_index(model)[0]
    reads = [([], []) for _ in range(seg.n_segments)]  # per segment: (pre-dose, post-dose) observations
    for o in seg.obs_order:
        reads[seg.obs_segment[o]][0 if seg.obs_pre[o] else 1].append(int(o))

    def outputs(theta):
        theta = jnp.asarray(theta, dtype=jnp.float64)
        y = start_state(theta)
        rows = [None] * len(times)

        def read(state, which):
            for o in which:
                rows[o] = jnp.stack([jnp.asarray(f(state, theta), dtype=jnp.float64) for f in output_functions])

        for k in range(seg.n_segments):
            if seg.reset[k]:
                y = start_state(theta)
            read(y, reads[k][0])
            for c in np.flatnonzero(seg.bolus[k]):
                y = y.at[c].add(seg.bolus_dose[k, c] * (theta[f_index[c]] if f_index[c] >= 0 else 1.0))
            read(y, reads[k][1])
            if seg.end[k] > seg.start[k]:
                y = advance(y, jnp.float64(seg.start[k]), jnp.float64(seg.end[k]), theta, jnp.asarray(seg.rates[k]))
        return jnp.stack(rows) if rows else jnp.zeros((0, len(output_functions)))

    def outputs_x64(theta):
        with jax.enable_x64(True):
            return outputs(theta)

    return DiffraxSolver(outputs=outputs_x64, reference=reference, rtol=rtol, atol=atol)


def simulate_diffrax(model: Model, table: np.ndarray, regimens, time_list, pre_list, *, rtol: float, atol: float,
                     max_steps: int, progress=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-patient outputs (list of (n_times, n_outputs) arrays) and statuses, patient by patient."""
    results, status = [], np.zeros(len(table), np.int64)
    for i, (theta, regimen, times, pre) in enumerate(zip(table, regimens, time_list, pre_list)):
        solver = diffrax_solver(model, regimen, times, theta, pre_dose=pre, rtol=rtol, atol=atol, max_steps=max_steps)
        try:
            values = np.asarray(solver.outputs(theta), dtype=float).reshape(len(times), len(model.outputs))
        except Exception as exc:  # diffrax raises (equinox runtime error) when max_steps is reached
            if "max_steps" not in str(exc) and "maximum number of solver steps" not in str(exc):
                raise
            values = np.full((len(times), len(model.outputs)), np.nan)
            status[i] = kernels.ST_MAX_STEPS
        if not np.all(np.isfinite(values)) and status[i] == 0:
            status[i] = kernels.ST_NON_FINITE
        results.append(values)
        if progress is not None:
            progress(i + 1, len(table))
    return results, status
