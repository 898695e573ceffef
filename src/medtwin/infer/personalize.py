"""Personalize one patient: population prior × the patient's data → a full posterior.

For the parameters with inter-individual variability, z = log P, the
population gives the prior z ~ N(m, C) (:meth:`Population.prior_for` with the
patient's covariates); the other parameters are fixed at their covariate-
adjusted typical values.  With the residual error model, the patient's
observations y give the posterior ::

    −log p(z | y) = ½ (z − m)ᵀ C⁻¹ (z − m) − Σ_j log p(y_j | f_j(z)) + const

(M3 terms for observations below the LLOQ).  Two methods:

``"laplace"``  (bedside)  the mode (MAP) by a trust-region Newton method with the
               exact gradient and Hessian, and the Gaussian N(ẑ, H⁻¹) around it.
``"nuts"``     (review)   NUTS (numpyro) on the same log density: 4 chains,
               R-hat and effective sample size reported (arviz).

Predictions f(z) come from the library model itself through a JAX path that
reverse-mode differentiates: the exact superposition solution for linear models
(:mod:`medtwin.core.jax_linear`), an adaptive ODE solve of the model's vector
field otherwise (:mod:`medtwin.core.jax_ode`: Michaelis–Menten PK, glucose–insulin
models).  Both scan over the same padded step arrays and the observations are
padded to a multiple of ``OBS_PAD``, so patients with similar data share one
compilation of the potential.  The Laplace fit of a linear model can skip JAX
altogether (``engine="auto"``, what the one-shot workflow operations use): the same potential in NumPy,
its gradient from the same arithmetic with complex-step derivatives
(:mod:`medtwin.core.linear_exact`, checked per patient against central
differences), the same posterior to rounding (mode 1e-13, covariance 1e-9
relative in the tests), and a new process that imports no JAX (issue 20).

Sequential updating (:meth:`Posterior.update`).  A Laplace posterior is a
Gaussian and becomes the next prior as it is: exact for a linear-Gaussian
model, equal to the batch fit to 1e-6 there.  A NUTS posterior keeps its
factorization (population prior × the likelihood of every batch of data so
far) and samples prior × old × new: the exact density of today's posterior
times tomorrow's likelihood, so the result equals a batch fit to sampling error.

Examples
--------
>>> import numpy as np
>>> from medtwin.core.events import Regimen
>>> from medtwin.io.population_file import load_population, shipped_population_path
>>> pop = load_population(shipped_population_path("vancomycin_goti2018"))
>>> data = PatientData(Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0),
...                    times=[11.5, 35.5], values=[9.0, 12.5], covariates={"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})
>>> post = personalize(pop, data, method="laplace")
>>> post.status, post.parameters
('converged', ('CL', 'V1', 'V2'))
"""

from __future__ import annotations

import math
import time as _time
from typing import Sequence

import numpy as np

from medtwin.core.compile_cache import cached
from medtwin.core.data import PatientData
from medtwin.core.events import Regimen
from medtwin.core.model import Model
from medtwin.core.observation import ResidualError
from medtwin.core.population import IndividualPrior, Population
from medtwin.errors import DataError, EstimationError
from medtwin.models import get_model
from medtwin.infer.status import FitStatus

__all__ = ["METHODS", "check_levels", "fd_hessian", "laplace_mode", "personalize"]

METHODS = ("laplace", "nuts")
#: Observations are padded to a multiple of this, so patients with similar data share one compilation.
OBS_PAD = 8
#: Step-size controller tolerances of the ODE predictions of a nonlinear model (relative; absolute, state units):
#: tight, because the Laplace Hessian is a central difference of the gradient (errors divided by its step).
ODE_RTOL, ODE_ATOL = 1e-10, 1e-12
#: A mode is accepted when the gradient norm of −log posterior (per unit of log-parameter) is below this.
GRADIENT_TOLERANCE = 1e-5


def _jax():
    import jax
    import jax.numpy as jnp

    # Float64 everywhere (DESIGN §6). numpyro's NUTS switches the process-wide flag too; doing it here
    # makes every evaluation of the potential double precision, however it is called.
    jax.config.update("jax_enable_x64", True)
    return jax, jnp


# ------------------------------------------------------------------------------- clinical sanity
def _is_concentration(unit: str) -> bool:
    """True for a concentration unit (amount per volume: mg/L, ng/mL, mmol/L, mU/L ...): never below zero."""
    return unit.replace(" ", "").lower().endswith(("/l", "/ml", "/dl"))


def _first_dose_time(regimen: Regimen) -> float | None:
    """Time (h) of the first dose with an amount; None when the regimen holds a steady-state record (SS: the
    patient was dosed before it) or no dose at all is known to have come first."""
    if any(e.ss != 0 for e in regimen.events):
        return None
    doses = [e.time for e in regimen.expanded() if e.amount > 0 or e.rate > 0]  # a reset (EVID 3) gives nothing
    return min(doses) if doses else math.inf


def check_levels(model, data: PatientData, output: str) -> None:
    """Refuse observations the model cannot produce, naming the row: never fit them silently.

    * a negative concentration (a level cannot be below zero; a level below the
      limit of quantification is coded as BLQ, ``blq=True`` with its ``lloq``,
      and enters the M3 likelihood);
    * for a model without baseline (zero initial state), a nonzero level before
      the first dose (or at its time, recorded before it): the model predicts
      exactly 0 there, so the level means earlier doses are missing from the
      record (however large the additive residual error, which would otherwise
      absorb it and bias the fit).  Zero and BLQ levels there are fine.

    Raises
    ------
    DataError
        Naming the data row (or observation number), the time and the value.
    """
    unit = model.output(output).unit
    measured = ~data.blq
    if _is_concentration(unit):
        bad = np.flatnonzero(measured & (data.values < 0))
        if bad.size:
            k = bad[0]
            raise DataError(f"patient data: {data.where(k)}: {output} = {data.values[k]:g} {unit} is negative, and a "
                            "level cannot be below zero; code a level below the limit of quantification as BLQ "
                            "(with its LLOQ), not as a negative number")
    if model.initial_state is not None or model.init_build is not None:
        return
    first = _first_dose_time(data.regimen)
    if first is None:
        return
    before = (data.times < first) | ((data.times == first) & data.pre_dose)
    bad = np.flatnonzero(measured & before & (data.values != 0))
    if bad.size:
        k = bad[0]
        when = "with no dose recorded" if math.isinf(first) else f"before the first dose (t = {first:g} h)"
        raise DataError(f"patient data: {data.where(k)}: {output} = {data.values[k]:g} {unit} {when}, but model "
                        f"{model.name} has no baseline, so its level there is 0: add the earlier doses to the data, "
                        "or code the level as 0 or BLQ")


# ------------------------------------------------------------------------------- likelihood
def _theta_base(model, prior: IndividualPrior) -> tuple[np.ndarray, np.ndarray]:
    """Model θ at the prior's fixed values, and the positions of the z parameters in θ."""
    names = list(model.parameter_names)
    base = model.typical_values().copy()
    for p, v in prior.fixed.items():
        base[names.index(p)] = v
    return base, np.array([names.index(p) for p in prior.parameters], dtype=np.int64)


def _batch_arrays(model, prior: IndividualPrior, data: PatientData) -> dict:
    """One batch of data as NumPy arrays: predictor steps, observations (padded to ``OBS_PAD``) and masks."""
    from medtwin.core.jax_linear import linear_steps
    from medtwin.core.jax_ode import ode_steps
    from medtwin.core.model import parameter_matrix

    output = data.output or prior.residual.output
    if output not in model.output_names:
        raise EstimationError(f"personalize: model {model.name} has no output {output!r}")
    check_levels(model, data, output)
    j = data.n_observations
    size = max(OBS_PAD, -(-j // OBS_PAD) * OBS_PAD)
    base, _ = _theta_base(model, prior)
    if model.is_linear:
        steps = linear_steps(model, data.regimen, data.times, base, pre_dose=data.pre_dose)
    else:
        model.require_well_posed()
        steps = ode_steps(model, data.regimen, data.times, parameter_matrix(model, base)[0], pre_dose=data.pre_dose)
    # padded in numpy: an eager JAX scatter would compile a small program for every new observation count

    def padded(values, dtype):
        out = np.zeros(size, dtype)
        out[:j] = values
        return out

    steps = {k: np.asarray(v) for k, v in steps.items()}
    steps["obs_step"] = padded(steps["obs_step"], np.int64)
    return {"pred": steps, "y": padded(np.nan_to_num(data.values), np.float64), "blq": padded(data.blq, bool),
            "lloq": padded(0.0 if data.lloq is None else data.lloq, np.float64), "mask": padded(1.0, np.float64),
            "output": model.output_names.index(output)}


def _batch(model, prior: IndividualPrior, data: PatientData) -> dict:
    """One batch of data as JAX arguments (:func:`_batch_arrays` on the device)."""
    return _on_device(_batch_arrays(model, prior, data))


def _on_device(arrays: dict) -> dict:
    jax, jnp = _jax()
    with jax.enable_x64(True):
        return {"pred": {k: jnp.asarray(v) for k, v in arrays["pred"].items()},
                **{k: jnp.asarray(arrays[k]) for k in ("y", "blq", "lloq", "mask")},
                "output": jnp.int64(arrays["output"])}


def _potential(model, ode_adjoint: str = "forward"):
    """The jitted −log posterior ``U(z, args)`` and its value-and-gradient (cached on the model).

    Predictions: the exact superposition path for a linear model, the ODE scan
    (:mod:`medtwin.core.jax_ode`, tolerances ``ODE_RTOL``/``ODE_ATOL``) otherwise,
    differentiated by forward mode (``ode_adjoint="forward"``, the default) or
    through diffrax's checkpointed reverse mode (``"reverse"``, the benchmark baseline).
    """
    options = () if model.is_linear else ("ode", ODE_RTOL, ODE_ATOL, ode_adjoint)
    return cached(model, "personalize-potential", options, lambda: _build_potential(model, ode_adjoint))


def _build_potential(model: Model, ode_adjoint: str):
    """The jitted (potential, value_and_grad) pair of :func:`_potential`, built once per model and options."""
    jax, jnp = _jax()
    from medtwin.core.jax_linear import _outputs_function
    from medtwin.core.jax_ode import ode_outputs_function
    from medtwin.core.observation import m3_loglik, normal_loglik

    outputs = _outputs_function(model) if model.is_linear else \
        ode_outputs_function(model, rtol=ODE_RTOL, atol=ODE_ATOL, adjoint=ode_adjoint)

    def potential(z, args):
        theta = args["theta_base"].at[args["z_index"]].set(jnp.exp(z))
        r = z - args["mean"]
        total = 0.5 * r @ args["precision"] @ r
        for b in args["batches"]:
            used = b["mask"] > 0
            # padded records get a harmless prediction so that no NaN leaks into the gradient through `where`
            f = jnp.where(used, jnp.take(outputs(theta, b["pred"]), b["output"], axis=1), 1.0)
            var = args["add_var"] + args["prop_var"] * f * f
            ll = jnp.where(b["blq"], m3_loglik(b["lloq"], f, var), normal_loglik(b["y"], f, var))
            total = total - jnp.sum(jnp.where(used, ll, 0.0))
        return jnp.where(jnp.isfinite(total), total, jnp.inf)

    if not model.is_linear and ode_adjoint == "forward":
        potential = _forward_mode_derivative(jax, jnp, potential)
    return jax.jit(potential), jax.jit(jax.value_and_grad(potential))


def _forward_mode_derivative(jax, jnp, potential):
    """``potential`` whose derivative in z is taken by forward mode, in a form reverse mode accepts.

    The ODE predictions use diffrax's forward-mode adjoint (3–15× cheaper per
    gradient than its checkpointed reverse mode for 1–2 parameters,
    ``benchmarks/personalize_ode.py``); the
    ``custom_jvp`` rule pushes the n basis directions of z through in one
    vectorized pass and returns the linear map dz ↦ ∇U·dz, which JAX can
    transpose, so ``jax.grad`` (MAP, NUTS) works.  Derivatives with respect to
    ``args`` (data, prior) are not provided: they are treated as constants.
    """

    @jax.custom_jvp
    def u(z, args):
        return potential(z, args)

    @u.defjvp
    def u_jvp(primals, tangents):
        z, args = primals
        dz = tangents[0]
        basis = jnp.eye(z.shape[0], dtype=z.dtype)
        values, grad = jax.vmap(lambda t: jax.jvp(lambda w: potential(w, args), (z,), (t,)))(basis)
        return values[0], jnp.dot(grad, dz)

    return u


def _args(model, prior: IndividualPrior, mean, covariance, batches: Sequence[dict]) -> dict:
    jax, jnp = _jax()
    base, index = _theta_base(model, prior)
    err: ResidualError = prior.residual
    with jax.enable_x64(True):
        return {"theta_base": jnp.asarray(base), "z_index": jnp.asarray(index),
                "mean": jnp.asarray(mean, dtype=jnp.float64),
                "precision": jnp.asarray(np.linalg.inv(np.asarray(covariance, dtype=float))),
                "add_var": jnp.float64(err.additive ** 2), "prop_var": jnp.float64(err.proportional ** 2),
                "batches": list(batches)}


def _check(model, population: Population | None, prior: IndividualPrior) -> None:
    if not prior.parameters:
        raise EstimationError("personalize: the population has no parameter with inter-individual variability")


# ------------------------------------------------------------------------------- estimation
def laplace_mode(value_grad, hessian, start, *, gtol: float = 1e-8, max_iter: int = 200):
    """Minimise a −log density (trust-region Newton with exact gradient and Hessian); the Hessian at the mode.

    ``value_grad(z) -> (float, (n,))`` and ``hessian(z) -> (n, n)``; returns
    the scipy result and the Hessian at its ``x``.  The Laplace approximation
    of the density is N(x, H⁻¹).
    """
    from scipy.optimize import minimize

    res = minimize(value_grad, np.asarray(start, dtype=float), jac=True, hess=hessian, method="trust-exact",
                   options={"gtol": gtol, "maxiter": max_iter})
    return res, hessian(res.x)


def fd_hessian(gradient, z, rel_step: float = 1e-5) -> np.ndarray:
    """Hessian by central differences of an exact gradient (2n gradient calls), symmetrised.

    With an exact (autodiff) gradient the error is O(h²) truncation plus
    O(ε/h) rounding: about 1e-9 relative here, at a fraction of the cost of
    compiling a second-order autodiff Hessian of the ODE solution.
    """
    z = np.asarray(z, dtype=float)
    n = z.size
    h = rel_step * np.maximum(1.0, np.abs(z))
    out = np.empty((n, n))
    for k in range(n):
        step = np.zeros(n)
        step[k] = h[k]
        out[:, k] = (gradient(z + step) - gradient(z - step)) / (2 * h[k])
    return 0.5 * (out + out.T)


def _jax_value_grad(model, args):
    """``fun(z) -> (U, ∇U)`` through the jitted potential of :func:`_potential` (any model)."""
    jax, jnp = _jax()
    _, value_grad = _potential(model)

    def fun(z):
        v, g = value_grad(jnp.asarray(z), args)
        return float(v), np.asarray(g, dtype=float)

    return fun


def _linear_value_grad(model, prior: IndividualPrior, batches: Sequence[dict], mean, covariance):
    """``fun(z) -> (U, ∇U)`` of a linear model in NumPy, without JAX: the potential of :func:`_build_potential`.

    The same −log posterior as the JAX path, term by term: the predictions and their derivatives come from
    :func:`medtwin.core.linear_exact.outputs_and_log_derivatives` (exact to rounding), the likelihood's
    derivative in the prediction f is written out (``var = add + prop·f²``)::

        normal:  ∂ℓ/∂f = r/var + (r²/var − 1)/(2 var) · ∂var/∂f,         r = y − f
        M3:      ∂ℓ/∂f = φ(w)/Φ(w) · ∂w/∂f,   w = (LLOQ − f)/√var,   ∂w/∂f = −1/√var − (LLOQ − f)·prop·f/var^{3/2}

    ``batches`` are :func:`_batch_arrays`; a non-finite total is +inf, as in the JAX path.
    """
    from scipy.special import log_ndtr

    from medtwin.core.linear_exact import outputs_and_log_derivatives
    from medtwin.core.observation import LOG_2PI, normal_loglik

    base, index = _theta_base(model, prior)
    err: ResidualError = prior.residual
    add_var, prop_var = err.additive ** 2, err.proportional ** 2
    precision = np.linalg.inv(np.asarray(covariance, dtype=float))
    symmetric = 0.5 * (precision + precision.T)
    mean = np.asarray(mean, dtype=float)

    def fun(z):
        z = np.asarray(z, dtype=float)
        theta = base.copy()
        theta[index] = np.exp(z)
        r = z - mean
        total, grad = 0.5 * r @ precision @ r, symmetric @ r
        for b in batches:
            used = b["mask"] > 0
            outputs, derivatives = outputs_and_log_derivatives(model, b["pred"], theta, index)
            f = np.where(used, outputs[:, b["output"]], 1.0)
            var = add_var + prop_var * f * f
            dvar = 2.0 * prop_var * f
            with np.errstate(all="ignore"):
                resid = b["y"] - f
                normal = normal_loglik(b["y"], f, var), resid / var + (resid * resid / var - 1.0) / (2 * var) * dvar
                w = (b["lloq"] - f) / np.sqrt(var)
                log_cdf = log_ndtr(w)
                mills = np.exp(-0.5 * w * w - 0.5 * LOG_2PI - log_cdf)
                m3 = log_cdf, mills * (-1.0 / np.sqrt(var) - (b["lloq"] - f) * prop_var * f / var ** 1.5)
            ll = np.where(b["blq"], m3[0], normal[0])
            dll = np.where(used, np.where(b["blq"], m3[1], normal[1]), 0.0)
            total = total - np.sum(np.where(used, ll, 0.0))
            grad = grad - derivatives[:, b["output"], :].T @ dll
        return (float(total) if np.isfinite(total) else np.inf), grad

    return fun


def _complex_step_holds(model, prior: IndividualPrior, batches: Sequence[dict], z) -> bool:
    """The NumPy path's derivatives hold for this model and data at ``z`` (the prior mean): every batch passes
    :func:`medtwin.core.linear_exact.complex_step_applies`; else the Laplace fit takes the JAX path."""
    from medtwin.core.linear_exact import complex_step_applies

    base, index = _theta_base(model, prior)
    theta = base.copy()
    theta[index] = np.exp(np.asarray(z, dtype=float))
    return all(complex_step_applies(model, b["pred"], theta, index) for b in batches)


#: Engines of the Laplace fit: ``"numpy"`` (linear models only: :func:`_linear_value_grad`), ``"jax"`` (any);
#: ``"auto"``: NumPy for a linear model whose derivatives pass :func:`_complex_step_holds`, JAX otherwise.
ENGINES = ("auto", "numpy", "jax")


def _mode(fun, start):
    """Mode and Hessian (central differences of the exact gradient) of −log posterior ``fun``."""
    return laplace_mode(fun, lambda z: fd_hessian(lambda x: fun(x)[1], z), start)


def _map(model, args, start):
    """Mode and Hessian of a patient's −log posterior (:func:`laplace_mode` on the jitted potential)."""
    return _mode(_jax_value_grad(model, args), start)


def _laplace(model, prior, data_batches, mean, covariance, engine: str = "jax"):
    """The Laplace posterior; ``engine`` one of :data:`ENGINES` (the same posterior to rounding, 1e-9 relative)."""
    from medtwin.infer.posterior import Posterior

    if engine not in ENGINES or (engine == "numpy" and not model.is_linear):
        raise DataError(f"personalize: engine {engine!r} is not one of {ENGINES} (numpy: linear models only)")
    arrays = [_batch_arrays(model, prior, d) for d in data_batches] if model.is_linear else None
    if engine == "numpy" or (engine == "auto" and arrays is not None and _complex_step_holds(model, prior, arrays,
                                                                                               mean)):
        fun = _linear_value_grad(model, prior, arrays, mean, covariance)
    else:
        arrays = arrays or [_batch_arrays(model, prior, d) for d in data_batches]
        fun = _jax_value_grad(model, _args(model, prior, mean, covariance, [_on_device(a) for a in arrays]))
    res, h = _mode(fun, mean)
    eig = np.linalg.eigvalsh(0.5 * (h + h.T))
    if not np.isfinite(res.fun) or eig.min() <= 0:
        status, message = FitStatus.FAILED, (f"no proper mode: objective {res.fun}, smallest Hessian eigenvalue "
                                     f"{eig.min():.3g} ({res.message})")
        cov = np.full_like(h, np.nan)
    else:
        # trust-exact may stop with "a bad approximation caused failure to predict improvement" when the
        # remaining change is below rounding: a vanishing gradient is what a mode is, so judge by it.
        gradient = float(np.linalg.norm(res.jac))
        status = FitStatus.CONVERGED if res.success or gradient < GRADIENT_TOLERANCE else FitStatus.NOT_CONVERGED
        message = str(res.message) if res.success else f"{res.message} (gradient norm {gradient:.2g})"
        cov = np.linalg.inv(0.5 * (h + h.T))
    return Posterior(model=model, prior=prior, method="laplace", parameters=prior.parameters,
                     mean=np.asarray(res.x), covariance=cov, draws=None, data=tuple(data_batches),
                     prior_mean=np.asarray(mean), prior_covariance=np.asarray(covariance),
                     status=status, message=message,
                     diagnostics={"iterations": int(res.nit), "objective": float(res.fun),
                                  "gradient_norm": float(np.linalg.norm(res.jac))})


def _nuts_program(model, chains: int, warmup: int, draws: int):
    """The jitted NUTS sampler ``(keys (chains, 2), starts (chains, n), args) -> (draws (chains, draws, n), diverging)``.

    numpyro's NUTS kernel (step size and diagonal mass matrix adapted during
    ``warmup``, target acceptance 0.85, vectorized chains) driven by one
    ``lax.scan``: the patient's data are arguments, not constants, so every
    patient whose padded shapes agree reuses one compilation (cached on the model
    per chains/warmup/draws; JAX's persistent cache can keep it across processes).
    """
    return cached(model, "personalize-nuts", (chains, warmup, draws),
                  lambda: _build_nuts_program(model, chains, warmup, draws))


def _build_nuts_program(model: Model, chains: int, warmup: int, draws: int):
    """The jitted, chain-vmapped NUTS program of :func:`_nuts_program` (built once per model and sizes)."""
    from numpyro.infer.hmc import hmc

    jax, jnp = _jax()
    value, _ = _potential(model)
    init_kernel, sample_kernel = hmc(potential_fn_gen=lambda args: (lambda z: value(z, args)), algo="NUTS")

    def one_chain(rng_key, start, args):
        state = init_kernel(start, warmup, target_accept_prob=0.85, model_args=(args,), rng_key=rng_key)

        def step(state, _):
            state = sample_kernel(state, model_args=(args,))
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, None, length=warmup + draws)
        return z[warmup:], diverging[warmup:]

    return jax.jit(jax.vmap(one_chain, in_axes=(0, 0, None)))


def _nuts(model, prior, data_batches, mean, covariance, *, chains: int, draws: int, warmup: int, seed: int,
          progress: bool = False):
    """NUTS posterior (``progress`` is accepted for compatibility: the sampler runs as one compiled program)."""
    import numpyro

    from medtwin.infer.posterior import Posterior, convergence

    jax, jnp = _jax()
    args = _args(model, prior, mean, covariance, [_batch(model, prior, d) for d in data_batches])
    res, h = _map(model, args, mean)  # start the chains at the mode, spread by the Laplace covariance
    rng = np.random.default_rng(seed)
    try:
        spread = np.linalg.cholesky(np.linalg.inv(0.5 * (h + h.T)))
    except np.linalg.LinAlgError:
        spread = np.linalg.cholesky(np.asarray(covariance))
    start = res.x + rng.standard_normal((chains, len(mean))) @ spread.T * 0.5
    numpyro.enable_x64()
    program = _nuts_program(model, int(chains), int(warmup), int(draws))
    t0 = _time.perf_counter()
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.PRNGKey(seed), chains)
        samples, diverging = program(keys, jnp.asarray(start), args)
        samples = np.asarray(samples)
        divergent = int(np.asarray(diverging).sum())
    elapsed = _time.perf_counter() - t0
    rhat, ess = convergence(samples)
    ok = bool(np.all(rhat < 1.01)) and divergent == 0
    flat = samples.reshape(-1, samples.shape[-1])
    return Posterior(model=model, prior=prior, method="nuts", parameters=prior.parameters,
                     mean=flat.mean(axis=0), covariance=np.cov(flat, rowvar=False).reshape(len(mean), len(mean)),
                     draws=samples, data=tuple(data_batches), prior_mean=np.asarray(mean),
                     prior_covariance=np.asarray(covariance),
                     status=FitStatus.CONVERGED if ok else FitStatus.CHECK_DIAGNOSTICS,
                     message=f"max R-hat {rhat.max():.4f}, min bulk ESS {ess.min():.0f}, {divergent} divergent",
                     diagnostics={"rhat": rhat, "ess": ess, "divergent": divergent, "chains": chains,
                                  "draws": draws, "warmup": warmup, "seed": seed, "seconds": elapsed})


def personalize(population: Population, data: PatientData | Sequence[PatientData], *, method: str = "laplace",
                model=None, prior: IndividualPrior | None = None, chains: int = 4, draws: int = 1000,
                warmup: int = 1000, seed: int = 0, progress: bool = False, engine: str = "jax"):
    """The posterior of one patient's parameters from a population prior and the patient's data.

    Parameters
    ----------
    population : Population
        The population model (its model name, covariate model, Ω and residual error).
    data : PatientData or sequence of PatientData
        The patient's data; several batches are one likelihood (their doses must agree).
    method : {"laplace", "nuts"}
        MAP + Laplace approximation (bedside), or NUTS sampling (review).
    model : Model, optional
        The library model (default: ``get_model(population.model)``).
    prior : IndividualPrior, optional
        Override the prior (default: ``population.prior_for(covariates)``).
    chains, draws, warmup, seed : int
        NUTS settings.
    progress : bool
        Accepted for compatibility and ignored: NUTS runs as one compiled program
        (reused by every patient with the same padded shapes), without a progress bar.
    engine : {"jax", "auto", "numpy"}
        What evaluates the Laplace fit's potential and gradient (:data:`ENGINES`; the
        same posterior to rounding, not bit for bit): the compiled JAX program
        (default: ≈ 17 ms per warm vancomycin fit, but a process pays ≈ 1 s to import
        JAX and trace it), or, for a linear model, NumPy (``"auto"`` where the
        complex-step check holds: ≈ 70 ms per fit, nothing to import or trace; what
        the one-shot ``personalize``/``forecast``/``recommend`` operations of
        :mod:`medtwin.workflows` use).

    Returns
    -------
    Posterior
        See :class:`medtwin.infer.posterior.Posterior`.
    """
    if method not in METHODS:
        raise DataError(f"method must be one of {METHODS}, not {method!r}")
    if engine not in ENGINES:
        raise DataError(f"personalize: engine must be one of {ENGINES}, not {engine!r}")
    batches = [data] if isinstance(data, PatientData) else list(data)
    if not batches or not all(isinstance(b, PatientData) for b in batches):
        raise DataError("data must be a PatientData or a non-empty sequence of them")
    model = model if model is not None else get_model(population.model)
    if prior is None:
        covariates = batches[-1].covariates
        missing = [c for c in population.covariates if c not in covariates]
        if missing:
            raise DataError(f"patient data: covariate(s) {missing} needed by population {population.name} are missing")
        prior = population.prior_for({c: covariates[c] for c in population.covariates})
    _check(model, population, prior)
    mean, covariance = np.asarray(prior.log_mean, dtype=float), np.asarray(prior.covariance, dtype=float)
    if method == "laplace":
        return _laplace(model, prior, batches, mean, covariance, engine=engine)
    return _nuts(model, prior, batches, mean, covariance, chains=chains, draws=draws, warmup=warmup, seed=seed,
                 progress=progress)
