"""Exact outputs of a linear model and their log-parameter derivatives in NumPy: the gradient path without JAX.

The same computation as :mod:`medtwin.core.jax_linear` — the same padded scan
steps (:func:`~medtwin.core.jax_linear.linear_steps`, built once at a reference
θ), the same scaled-and-squared Taylor matrix exponential of Van Loan's
augmented matrix (``jax_linear._expm_batch``, called with NumPy as its array
namespace: there is no third copy of it), the model's own arithmetic-only
matrix, initial-state and output functions — evaluated with NumPy in complex
arithmetic, so that one batched pass gives the outputs *and* their exact
derivatives by the complex step::

    ∂f/∂(log θ_k) = Im f(θ ∘ e^{i h e_k}) / h,      h = 1e-20,

which takes no difference of two evaluations (no cancellation): the derivative
is exact to rounding, like reverse-mode differentiation, for any step that is
small enough (here 20 orders of magnitude below the parameters' own scale).
This holds when every function of the model is analytic arithmetic (``+ − ×
/``, powers, exp/log of states and parameters), as the library's linear models
are; the matrix exponential's scaling exponent is chosen from ``|·|`` of the
complex matrix, which equals that of the real one to rounding.  A function that
is not analytic (``abs``, as the sigmoid Emax output uses to clip a negative
concentration) silently loses the imaginary part, so a caller checks each model
and patient once with :func:`complex_step_applies` (the derivatives against
central differences) and takes the JAX path when it fails.

A new process that personalizes a linear model through this path imports
neither JAX nor anything compiled: :func:`medtwin.infer.personalize.personalize`
takes it for the Laplace fit of every linear model (``benchmarks/startup.py``).

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> from medtwin.models import get_model
>>> m = get_model("pk1_iv")
>>> steps = linear_steps(m, Regimen.single(100.0), [10.0], np.array([2.0, 20.0]))
>>> f, d = outputs_and_log_derivatives(m, steps, np.array([2.0, 20.0]), np.array([0, 1]))
>>> float(np.round(f[0, 0], 6))                      # 100/20 · exp(-0.1 · 10)
1.839397
>>> (np.round(d[0, 0], 6) + 0.0).tolist()            # ∂C/∂log CL = −(CL t/V) C;  ∂C/∂log V = (CL t/V − 1) C
[-1.839397, 0.0]
"""

from __future__ import annotations

import numpy as np

from medtwin.core.jax_linear import _expm_batch, linear_steps
from medtwin.core.model import Model

__all__ = ["COMPLEX_STEP", "complex_step_applies", "linear_steps", "outputs_and_log_derivatives"]

#: Relative complex step of the log-parameters (the derivative does not depend on it while it is tiny).
COMPLEX_STEP = 1e-20


def _column(entry, batch: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(entry, dtype=complex), (batch,))


def _batched_outputs(model: Model, steps: dict, thetas: np.ndarray) -> np.ndarray:
    """Outputs (B, n_obs, n_outputs) for B parameter vectors ``thetas`` (B, n_parameters), real or complex.

    Step for step the arithmetic of ``jax_linear._build_outputs_function``: advance by e^{A dt} and the
    infusion term G(dt) r, read the observed states after the advance, then add the step's bolus.
    """
    n, batch = model.n_states, thetas.shape[0]
    p = thetas.T  # p[i] is parameter i of every vector: the model functions broadcast over the batch
    a = np.stack([np.stack([_column(e, batch) for e in row]) for row in model.linear_matrix(p)])  # (n, n, B)
    dt, rate = np.asarray(steps["dt"], float), np.asarray(steps["rate"], float)
    k = dt.shape[0]
    aug = np.zeros((batch, k, n + 1, n + 1), dtype=complex)
    aug[:, :, :n, :n] = np.moveaxis(a, -1, 0)[:, None]
    aug[:, :, :n, n] = rate[None]
    phi = _expm_batch(np, (aug * dt[None, :, None, None]).reshape(batch * k, n + 1, n + 1))
    phi = phi.reshape(batch, k, n + 1, n + 1)  # [[e^{A dt}, G(dt) r], [0, 1]] per vector and step
    f_index = np.asarray(steps["bolus_f"])
    factor = np.where(f_index >= 0, thetas[:, np.maximum(f_index, 0)], 1.0)
    amount = np.asarray(steps["bolus_amt"], float)[None] * factor  # (B, K)
    kick = np.zeros((batch, k, n), dtype=complex)
    kick[:, np.arange(k), np.asarray(steps["bolus_cmt"])] = amount
    x = np.stack([_column(e, batch) for e in model.init()(p)], axis=-1)  # (B, n)
    seen = np.empty((batch, k, n), dtype=complex)
    for j in range(k):
        x = np.einsum("bij,bj->bi", phi[:, j, :n, :n], x) + phi[:, j, :n, n]
        seen[:, j] = x
        x = x + kick[:, j]
    states = np.moveaxis(seen[:, np.asarray(steps["obs_step"])], -1, 0)  # (n, B, J)
    params = p[:, :, None]  # (n_parameters, B, 1)
    return np.stack([np.broadcast_to(np.asarray(o(states, params), dtype=complex), states.shape[1:])
                     for o in model.output_functions()], axis=-1)


def outputs_and_log_derivatives(model: Model, steps: dict, theta, index) -> tuple[np.ndarray, np.ndarray]:
    """A linear model's outputs at one θ and their derivatives with respect to log θ[index].

    Parameters
    ----------
    model : Model
        A linear model (``model.is_linear``).
    steps : dict
        The patient's scan steps (:func:`~medtwin.core.jax_linear.linear_steps`; NumPy arrays).
    theta : array_like, shape (n_parameters,)
        Parameters in the model's order and declared units.
    index : array_like of int, shape (m,)
        Positions in θ of the parameters to differentiate by (as log-parameters).

    Returns
    -------
    f : ndarray, shape (n_obs, n_outputs)
        Outputs at the observation times (output units), as the JAX path computes them.
    d : ndarray, shape (n_obs, n_outputs, m)
        ∂f/∂(log θ[index]) (output units per unit of log-parameter), exact to rounding (complex step).
    """
    theta = np.asarray(theta, dtype=float)
    index = np.asarray(index, dtype=np.int64)
    thetas = np.repeat(theta.astype(complex)[None], index.size + 1, axis=0)
    thetas[np.arange(1, index.size + 1), index] *= np.exp(1j * COMPLEX_STEP)
    out = _batched_outputs(model, steps, thetas)
    return out[0].real.copy(), np.moveaxis(out[1:].imag, 0, -1) / COMPLEX_STEP


#: Log-step (relative) and tolerance of :func:`complex_step_applies`'s central differences.
CHECK_STEP, CHECK_TOLERANCE = 1e-6, 1e-6


def complex_step_applies(model: Model, steps: dict, theta, index) -> bool:
    """True when the complex-step derivatives of :func:`outputs_and_log_derivatives` hold for this model.

    Compares them at ``theta`` with central differences of the real outputs (log-step
    :data:`CHECK_STEP`): they must agree within :data:`CHECK_TOLERANCE` × (largest |output| + largest
    |derivative|) of each output, which central differences meet with four orders of magnitude to spare
    (truncation ~1e-13, rounding ~1e-10 relative), while a non-analytic function (``abs``) or a NaN fails by
    far.  Catches what the model's code does, not where: call it at the point of interest (the prior mean).

    Examples
    --------
    >>> import numpy as np
    >>> from medtwin.core.events import Regimen
    >>> from medtwin.models import get_model
    >>> m, theta = get_model("pk1_iv_sigmoid_emax"), get_model("pk1_iv_sigmoid_emax").typical_values()
    >>> steps = linear_steps(m, Regimen.single(100.0), [1.0, 5.0], theta)
    >>> complex_step_applies(get_model("pk1_iv"), linear_steps(get_model("pk1_iv"), Regimen.single(100.0), [1.0],
    ...                      np.array([2.0, 20.0])), np.array([2.0, 20.0]), np.array([0, 1]))
    True
    >>> complex_step_applies(m, steps, theta, np.arange(theta.size))   # its output clips C with abs()
    False
    """
    theta = np.asarray(theta, dtype=float)
    index = np.asarray(index, dtype=np.int64)
    f, d = outputs_and_log_derivatives(model, steps, theta, index)
    thetas = np.repeat(theta[None], 2 * index.size, axis=0)
    rows = np.arange(index.size)
    thetas[2 * rows, index] *= np.exp(CHECK_STEP)
    thetas[2 * rows + 1, index] *= np.exp(-CHECK_STEP)
    with np.errstate(all="ignore"):
        out = _batched_outputs(model, steps, thetas).real
        central = np.moveaxis((out[0::2] - out[1::2]) / (2 * CHECK_STEP), 0, -1)  # (J, n_outputs, m)
        scale = np.max(np.abs(f), axis=0) + np.max(np.abs(d), axis=(0, 2))  # per output
        error = np.max(np.abs(central - d), axis=(0, 2))
    return bool(np.all(np.isfinite(f)) and np.all(np.isfinite(d)) and np.all(error <= CHECK_TOLERANCE * scale))
