"""Exact, differentiable outputs of a linear model in JAX: the gradient path for estimation.

For a linear model dx/dt = A(θ) x + u(t) (every library PK model) the state is
a sum of responses to the doses (superposition)::

    x(t) = e^{A(t - t₀)} x₀(θ)
         + Σ_bolus   e^{A(t - t_b)} a_b F_b e_c                       (doses given before t)
         + Σ_infusion [G(t - t_s) − G(t - t_e)] R e_c,   G(τ) = ∫₀^τ e^{As} ds

with G(τ)·b read off the last column of expm([[A, b], [0, 0]]·τ) (Van Loan's
augmented matrix), and G(τ) = 0 for τ ≤ 0.  Which doses precede an output is
taken from the same segments the numba kernels step over
(:func:`medtwin.core.schedule.compile_schedule`, built once at a reference θ), so
record order at equal times (pre-dose samples, EVID semantics) is identical.
Outputs come from the model's own arithmetic-only output functions: there is
no second copy of the model.

The result is a pure JAX function of θ (jit-, grad- and vmap-able): reverse
mode works, which NUTS needs, unlike the diffrax path's forward-mode adjoint.
Dose *times* (lag, modelled durations) and infusion rates are fixed at the
reference θ; bolus amounts follow F(θ).  Steady-state and reset records are
refused here (use :func:`medtwin.core.simulate.simulate`).

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> from medtwin.models import get_model
>>> m = get_model("pk1_iv")
>>> pred = linear_predictor(m, Regimen.single(100.0), [10.0])
>>> theta = pred.theta({"CL": 2.0, "V": 20.0})
>>> float(np.round(pred.outputs(theta)[0, 0], 6))     # 100/20 · exp(-0.1 · 10)
1.839397
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.core.compile_cache import cached
from medtwin.core.events import Regimen
from medtwin.core.model import Model
from medtwin.core.schedule import compile_schedule, dose_parameter_index, scan_steps
from medtwin.errors import ModelError, SimulationError

__all__ = ["LinearPredictor", "linear_predictor", "linear_steps"]


def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SimulationError("the JAX gradient path needs jax (a dependency of medtwin): pip install jax") from exc
    return jax, jnp


#: Taylor degree and squaring budget of :func:`_expm_batch` (1-norm after scaling <= 1): handles
#: ||A||·Δt up to 2**24 (e.g. rate constants of 100 /h over 160,000 h); beyond that the result is NaN.
TAYLOR_DEGREE = 18
MAX_SQUARINGS = 24


def _steps(model: Model, regimen: Regimen, times, pre_dose, reference: np.ndarray, multiple: int = 16) -> dict:
    """The patient's padded scan steps (:func:`medtwin.core.schedule.scan_steps`) at θ = ``reference``.

    Keys ``dt``, ``rate``, ``bolus_cmt``, ``bolus_amt``, ``bolus_f``, ``obs_step`` (see there).
    """
    seg = compile_schedule(model, regimen, times, reference, pre_dose=pre_dose)
    return scan_steps(seg, dose_parameter_index(model)[0], multiple)


def _expm_batch(jnp, m):
    """expm of a batch of small matrices (K, d, d): scaling to 1-norm <= 1, Taylor, squaring.

    Fixed work (no data-dependent branches), so it vectorises and differentiates
    cheaply; truncation error < 1/19! ~ 8e-18 relative before squaring.  A
    matrix too large for the squaring budget gives NaN, never a wrong number.
    """
    norm = jnp.max(jnp.sum(jnp.abs(m), axis=-2), axis=-1)
    needed = jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300)))
    s = jnp.clip(needed, 0, MAX_SQUARINGS)
    x = m / (2.0 ** s)[:, None, None]
    eye = jnp.broadcast_to(jnp.eye(m.shape[-1]), m.shape)
    result, term = eye, eye
    for j in range(1, TAYLOR_DEGREE + 1):
        term = term @ x / j
        result = result + term
    for i in range(MAX_SQUARINGS):
        result = jnp.where((i < s)[:, None, None], result @ result, result)
    return jnp.where((needed <= MAX_SQUARINGS)[:, None, None], result, jnp.nan)


def _outputs_function(model: Model):
    """``f(theta, steps) -> (J, n_outputs)``, pure JAX, built once per model (:mod:`medtwin.core.compile_cache`)."""
    return cached(model, "jax-linear", (), lambda: _build_outputs_function(model))


def _build_outputs_function(model: Model):
    jax, jnp = _jax()
    matrix, init, output_functions = model.linear_matrix, model.init(), model.output_functions()
    n = model.n_states

    def outputs(theta, d):
        theta = jnp.asarray(theta, dtype=jnp.float64)
        a = jnp.stack([jnp.stack(jnp.broadcast_arrays(*row)) for row in matrix(theta)]).astype(jnp.float64)
        k = d["dt"].shape[0]
        aug = jnp.zeros((k, n + 1, n + 1)).at[:, :n, :n].set(a).at[:, :n, n].set(d["rate"])
        phi = _expm_batch(jnp, aug * d["dt"][:, None, None])  # [[e^{A dt}, G(dt) r], [0, 1]]
        amount = d["bolus_amt"] * jnp.where(d["bolus_f"] >= 0, theta[jnp.maximum(d["bolus_f"], 0)], 1.0)
        kick = jnp.zeros((k, n)).at[jnp.arange(k), d["bolus_cmt"]].add(amount)

        def step(x, inputs):
            p, b = inputs
            x = p[:n, :n] @ x + p[:n, n]
            return x + b, x  # states seen by an output at this step: after advancing, before this step's bolus

        x0 = jnp.stack(jnp.broadcast_arrays(*init(theta))).astype(jnp.float64)
        _, seen = jax.lax.scan(step, x0, (phi, kick))
        states = seen[d["obs_step"]]
        return jax.vmap(lambda xi: jnp.stack([jnp.asarray(o(xi, theta), dtype=jnp.float64)
                                              for o in output_functions]))(states)

    return outputs


@dataclass(frozen=True)
class LinearPredictor:
    """A model, one patient's schedule and the pure JAX map θ → outputs (n_times, n_outputs).

    ``data`` are the padded schedule arrays; ``function(theta, data)`` is the
    pure function (pass ``data`` as an argument to share one jit compilation
    across patients with similar schedules).
    """

    model: Model
    data: dict
    reference: np.ndarray

    @property
    def function(self):
        return _outputs_function(self.model)

    def outputs(self, theta):
        """Outputs at the requested times for θ in the model's parameter order."""
        jax, jnp = _jax()
        with jax.enable_x64(True):
            return self.function(jnp.asarray(theta, dtype=jnp.float64), self.data)

    def theta(self, params=None) -> np.ndarray:
        """θ vector from a mapping (missing names take typical values), checked like ``simulate``."""
        from medtwin.core.model import parameter_matrix  # the same parameter parsing and checks as simulate()

        return parameter_matrix(self.model, params)[0]


def linear_predictor(model: Model, regimen: Regimen, times, params=None, *, pre_dose=None) -> LinearPredictor:
    """The differentiable exact predictor of a linear ``model`` for one patient.

    Parameters
    ----------
    model : Model
        A linear model (``model.is_linear``).
    regimen : Regimen
        The patient's doses.
    times : array_like
        Output times (h).
    params : mapping, optional
        Reference θ at which dose times (lag, modelled durations) and rates are
        fixed; typical values when omitted.
    pre_dose : bool array, optional
        Outputs recorded before a dose at the same time (NONMEM record order).
    """
    reference, steps = _reference_steps(model, regimen, times, params, pre_dose)
    jax, jnp = _jax()
    with jax.enable_x64(True):
        data = {k: jnp.asarray(v) for k, v in steps.items()}
    return LinearPredictor(model, data, reference)


def _reference_steps(model: Model, regimen: Regimen, times, params, pre_dose) -> tuple[np.ndarray, dict]:
    if not model.is_linear:
        raise ModelError(f"model {model.name} is not linear: use the diffrax path (medtwin.core.jax_solve)")
    model.require_well_posed()
    from medtwin.core.model import parameter_matrix  # the same parameter parsing and checks as simulate()

    reference = parameter_matrix(model, params)[0]
    return reference, _steps(model, regimen, times, pre_dose, reference)


def linear_steps(model: Model, regimen: Regimen, times, params=None, *, pre_dose=None) -> dict:
    """The padded scan steps of :func:`linear_predictor` as NumPy arrays (no JAX imported).

    Same arguments and checks as :func:`linear_predictor`; the keys are those of
    :func:`medtwin.core.schedule.scan_steps`.  The NumPy path
    (:mod:`medtwin.core.linear_exact`) evaluates them.
    """
    return _reference_steps(model, regimen, times, params, pre_dose)[1]
