"""Exact FOCEI gradients for linear models: the objective of :mod:`medtwin.infer.objective` in JAX.

:func:`medtwin.infer.foce.fit_focei` minimises the FOCEI objective over θ, Ω
and σ².  The general path (:class:`~medtwin.infer.objective.Problem`) takes
∂f/∂η by central differences of the numba simulation, and the outer gradient
by central differences of the whole inner problem (1 + 2d parameter sets per
iteration).  For a linear model whose dose times and rates do not depend on
the estimated parameters (no estimated lag, rate or duration; no SS or reset records),
this module evaluates the same objective with the exact predictions of
:func:`medtwin.core.jax_linear.linear_predictor`:

* f and ∂f/∂(log parameters) exact, by forward-mode differentiation
  (``jax.jacfwd``) of the predictor, the only program compiled per schedule
  shape; second derivatives by central differences of that exact Jacobian
  (relative error about 1e-8);
* the EBEs η̂ by Fisher scoring (the expected-information H_i, as the general
  path), all subjects in one call;
* the gradient of OFV = Σ_i O_i(η̂_i) + log det Ω + log det H_i(η̂_i) in
  (log typical parameters, Ω, σ²) by reverse mode through the predictor's
  second-order Taylor polynomial at the point (same value, gradient and
  Hessian, which is all this gradient uses), with η̂'s dependence on the
  parameters by the implicit-function theorem: the objective is evaluated at
  η̃ = η̂ − K⁻¹ ∇_η O_i(η̂) (K the Hessian of O_i in η, held constant), whose
  value equals the one at η̂ to second order and whose derivative is
  −K⁻¹ ∂²O_i/∂η∂ψ, the implicit derivative of η̂.

θ enters through the covariate model of the population (plain numpy
arithmetic, no simulation), differentiated by central differences.  The
subjects' output times are padded to one length (extra outputs at the last
time, never fitted), so the predictor compiles once per schedule length
(powers of two steps: two programs for pheno).  Compiled programs are kept
on the model (one compilation per process; JAX's persistent cache, which the
command line switches on, keeps them across processes).

Measured (``benchmarks/fit.py``, 2-core machine): pheno warm 3.3-3.5 s
(estimation + covariance; NONMEM 0.51 s), differences 80 s; the first fit in
a process adds 10-30 s of compilation.
"""

from __future__ import annotations

import numpy as np

from medtwin.core.compile_cache import cached
from medtwin.core.jax_linear import linear_predictor
from medtwin.errors import MedtwinError

__all__ = ["ExactFocei", "exact_focei"]


def exact_focei(problem):
    """An :class:`ExactFocei` for ``problem`` (a :class:`~medtwin.infer.objective.Problem`), or None.

    None when the exact path does not apply: a nonlinear model, estimated dose times or rates (a lag,
    modelled rate or duration among the population's typical or random-effect parameters; fixed ones are
    fine: the schedule is built at the model's typical values), SS or reset records, inter-occasion variability.
    """
    model = problem.model
    if not model.is_linear or problem.population.iov is not None:  # IOV: parameter changes per occasion
        return None
    from medtwin.core.kernels import dose_parameter_index

    timing = dose_parameter_index(model)[1:]  # ALAG, R, D: the schedule depends on them
    varied = {model.parameter_names.index(p) for p in problem.population.typical} | set(problem.eta_columns.tolist())
    if varied & set(timing[timing >= 0].tolist()):
        return None
    try:
        return ExactFocei(problem)
    except MedtwinError:
        return None


class ExactFocei:
    """Batched FOCEI pieces for every subject of a linear-model problem (see the module docstring)."""

    def __init__(self, problem):
        import jax
        import jax.numpy as jnp

        self.problem = problem
        model = problem.model
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in problem.times])])
        n_obs = [int(np.sum(problem.seg == i)) for i in range(problem.n_subjects)]
        m_max, t_max = max(max(n_obs), 1), max(len(t) for t in problem.times)
        self.obs_idx = np.zeros((problem.n_subjects, m_max), np.int64)
        self.mask = np.zeros((problem.n_subjects, m_max), bool)
        self.y = np.ones((problem.n_subjects, m_max))
        for i in range(problem.n_subjects):
            local = problem.rows[problem.seg == i] - offsets[i]
            self.obs_idx[i, :len(local)] = local
            self.mask[i, :len(local)] = True
            self.y[i, :len(local)] = problem.y[problem.seg == i]
        datas = [self._data(i, t_max) for i in range(problem.n_subjects)]
        by_shape: dict = {}
        for i, d in enumerate(datas):
            by_shape.setdefault(tuple(np.shape(leaf) for leaf in jax.tree_util.tree_leaves(d)), []).append(i)
        self.groups = []
        with jax.enable_x64(True):
            for members in by_shape.values():  # one compilation per schedule length (powers of two)
                stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                                                 *[datas[i] for i in members])
                members = np.asarray(members)
                self.groups.append((members, stacked, self.obs_idx[members], self.mask[members], self.y[members]))
        column = model.output_names.index(problem.output)
        names = model.parameter_names
        varied = sorted({names.index(p) for p in problem.population.typical} | set(problem.eta_columns.tolist()))
        self.varied = np.asarray(varied)
        eta_pos = [varied.index(int(c)) for c in problem.eta_columns]
        def build():
            function = linear_predictor(model, problem.regimens[0], problem.times[0], pre_dose=problem.pre[0]).function
            return _compile(function, column, self.varied, np.asarray(eta_pos))

        # shared by every fit of this model (compiled once per process)
        self._compiled = cached(model, "focei-exact", (column, tuple(varied), tuple(eta_pos)), build)

    def _data(self, i, t_max):
        p = self.problem
        times, pre = np.asarray(p.times[i], float), np.asarray(p.pre[i], bool)
        pad = t_max - len(times)  # extra outputs at the last time (never fitted): one length for all subjects
        times = np.concatenate([times, np.full(pad, times[-1])])
        pre = np.concatenate([pre, np.full(pad, pre[-1])])
        return linear_predictor(p.model, p.regimens[i], times, pre_dose=pre).data

    def _predictions(self, lp):
        """Predictions (N, M) and their exact Jacobian in the varied log parameters (N, M, P_v) at ``lp`` (N, P)."""
        import jax

        n, m = self.mask.shape
        f, jac = np.zeros((n, m)), np.zeros((n, m, len(self.varied)))
        with jax.enable_x64(True):
            for members, data, obs_idx, _, _ in self.groups:
                out = self._compiled["predict"](lp[members][:, self.varied], lp[members], data, obs_idx)
                f[members], jac[members] = (np.asarray(o) for o in out)
        return f, jac

    def _taylor(self, log_typical, eta, second: bool):
        """lp0 (N, P), f (N, M), ∂f/∂lp_v (N, M, P_v) and, with ``second``, ∂²f/∂lp_v² (N, M, P_v, P_v).

        The second derivatives are central differences (step 1e-4 in log parameters) of the exact first
        derivatives: relative error about 1e-8.
        """
        lp0 = np.array(log_typical, dtype=float)
        lp0[:, self.problem.eta_columns] += eta
        f, jac = self._predictions(lp0)
        if not second:
            return lp0, f, jac, None
        hess = np.zeros(jac.shape + (len(self.varied),))
        for q, col in enumerate(self.varied):
            up, down = lp0.copy(), lp0.copy()
            up[:, col] += HESSIAN_STEP
            down[:, col] -= HESSIAN_STEP
            hess[..., q] = (self._predictions(up)[1] - self._predictions(down)[1]) / (2 * HESSIAN_STEP)
        return lp0, f, jac, 0.5 * (hess + np.swapaxes(hess, -1, -2))

    # ------------------------------------------------------------------ batched calls
    def scoring_parts(self, log_typical, eta, omega_inv, add_var, prop_var):
        """O_i, ½∇_η O_i, H_i (expected information) at η for all subjects: (N,), (N, e), (N, e, e)."""
        import jax

        lp0, f, jac, _ = self._taylor(log_typical, eta, second=False)
        with jax.enable_x64(True):
            out = self._compiled["parts"](f, jac, lp0[:, self.varied], eta, omega_inv, add_var, prop_var,
                                          self.mask, self.y)
        return tuple(np.asarray(o) for o in out)

    def ebe(self, log_typical, omega, add_var, prop_var, eta0, *, tol=1e-9, max_iter=100):
        """EBEs by Fisher scoring with per-subject step halving (as Problem.inner), from ``eta0`` (N, e)."""
        omega_inv = np.linalg.inv(omega)
        eta = np.array(eta0, dtype=float)
        cond, grad, hess = self.scoring_parts(log_typical, eta, omega_inv, add_var, prop_var)
        bad = ~np.isfinite(cond)
        if bad.any():
            eta[bad] = 0.0
            cond, grad, hess = self.scoring_parts(log_typical, eta, omega_inv, add_var, prop_var)
        scale = np.ones(len(eta))
        for _ in range(max_iter):
            with np.errstate(invalid="ignore"):
                ok_h = np.all(np.isfinite(hess), axis=(1, 2))
                step = -np.linalg.solve(np.where(ok_h[:, None, None], hess, np.eye(eta.shape[1])),
                                        grad[..., None])[..., 0]
            step = np.where(np.isfinite(step), step, 0.0)
            converged = (np.max(np.abs(step), axis=-1) * scale < tol) | (scale < 1e-8)
            if converged.all():
                break
            trial = eta + (scale * ~converged)[:, None] * step
            t_cond, t_grad, t_hess = self.scoring_parts(log_typical, trial, omega_inv, add_var, prop_var)
            accept = (t_cond <= cond + 1e-12 * np.abs(cond)) & ~converged
            eta = np.where(accept[:, None], trial, eta)
            cond = np.where(accept, t_cond, cond)
            grad = np.where(accept[:, None], t_grad, grad)
            hess = np.where(accept[:, None, None], t_hess, hess)
            scale = np.where(accept, np.minimum(1.0, scale * 2.0), scale * 0.5)
        return eta, np.isfinite(cond)

    def ofv_and_gradients(self, log_typical, omega, add_var, prop_var, eta_hat):
        """Per-subject OFV (N,) and its gradients in log_typical (N, P), Ω (N, e, e), σ²_add (N,), σ²_prop (N,)."""
        import jax

        lp0, f, jac, hess = self._taylor(log_typical, eta_hat, second=True)
        lp0_v = lp0[:, self.varied]
        with jax.enable_x64(True):
            out = self._compiled["ofv"](f, jac, hess, lp0_v, np.asarray(log_typical)[:, self.varied], eta_hat, omega,
                                        add_var, prop_var, self.mask, self.y)
        value, d_lt_v, d_omega, d_add, d_prop = (np.asarray(o) for o in out)
        d_lt = np.zeros(np.shape(log_typical))
        d_lt[:, self.varied] = d_lt_v
        return value, d_lt, d_omega, d_add, d_prop


#: Step (log parameters) of the central differences of the exact Jacobian that give the second derivatives.
HESSIAN_STEP = 1e-4


def _compile(function, column: int, varied, eta_pos) -> dict:
    """The jitted, subject-vmapped functions for a model's output ``function`` (see :class:`ExactFocei`).

    Only the predictor (a scan of matrix exponentials) is compiled per schedule shape, differentiated
    once, forward (``predict``: f and ∂f/∂lp_v).  The FOCEI algebra (``parts``, ``ofv``) works on the
    predictor's Taylor polynomial in the log parameters at the point: same value, gradient and Hessian
    there, which is all the objective and its gradient use; it is differentiated (also in reverse mode,
    and through the implicit EBE derivative) cheaply, without the scan.
    """
    import jax
    import jax.numpy as jnp

    def f(lpv, lp, data, obs_idx):
        return function(jnp.exp(lp.at[varied].set(lpv)), data)[:, column][obs_idx]

    def predict(lpv, lp, data, obs_idx):
        return f(lpv, lp, data, obs_idx), jax.jacfwd(f)(lpv, lp, data, obs_idx)

    def polynomial(f0, jac, hess, lp0_v):
        def poly(lt_v, eta):
            d = lt_v.at[eta_pos].add(eta) - lp0_v
            out = f0 + jac @ d
            return out if hess is None else out + 0.5 * jnp.einsum("mpq,p,q->m", hess, d, d)

        return poly

    def pieces(poly, lt_v, eta, omega_inv, add, prop, mask, y):
        f = poly(lt_v, eta)
        g = jax.jacfwd(poly, argnums=1)(lt_v, eta)  # (M, e)
        var = add + prop * f * f
        safe = jnp.where(mask, var, 1.0)
        r = jnp.where(mask, y - f, 0.0)
        cond = jnp.sum(jnp.where(mask, r * r / safe + jnp.log(safe), 0.0)) + eta @ omega_inv @ eta
        dvar = 2.0 * prop * f[:, None] * g
        w = jnp.where(mask, 1.0, 0.0)[:, None, None]
        info = w * (g[:, :, None] * g[:, None, :] / safe[:, None, None]
                    + 0.5 * dvar[:, :, None] * dvar[:, None, :] / (safe**2)[:, None, None])
        return cond, omega_inv + jnp.sum(info, axis=0)

    def parts(f0, jac, lp0_v, eta, omega_inv, add, prop, mask, y):
        poly = polynomial(f0, jac, None, lp0_v)
        lt_v = lp0_v.at[eta_pos].add(-eta)

        def conditional(e):
            return pieces(poly, lt_v, e, omega_inv, add, prop, mask, y)[0]

        cond, hess = pieces(poly, lt_v, eta, omega_inv, add, prop, mask, y)
        half_grad = 0.5 * jax.grad(conditional)(eta)
        return cond, half_grad, hess  # H ≈ ½ ∇²O: the Fisher-scoring step is −H⁻¹ (½ ∇O)

    def ofv(lt_v, omega, add, prop, f0, jac, hess2, lp0_v, eta_hat, mask, y):
        poly = polynomial(f0, jac, hess2, lp0_v)
        omega_inv = jnp.linalg.inv(omega)

        def conditional(e, lt_v, omega_inv, add, prop):
            return pieces(poly, lt_v, e, omega_inv, add, prop, mask, y)[0]

        k = jax.lax.stop_gradient(jax.hessian(conditional)(eta_hat, lt_v, omega_inv, add, prop))
        eta = eta_hat - jnp.linalg.solve(k, jax.grad(conditional)(eta_hat, lt_v, omega_inv, add, prop))
        cond, hess = pieces(poly, lt_v, eta, omega_inv, add, prop, mask, y)
        return cond + jnp.linalg.slogdet(omega)[1] + jnp.linalg.slogdet(hess)[1]

    value_grad = jax.vmap(jax.value_and_grad(ofv, argnums=(0, 1, 2, 3)),
                          in_axes=(0, None, None, None, 0, 0, 0, 0, 0, 0, 0))

    @jax.jit
    def ofv_b(f0, jac, hess2, lp0_v, lt_v, eta_hat, omega, add, prop, mask, y):
        value, (d_lt, d_omega, d_add, d_prop) = value_grad(lt_v, omega, add, prop, f0, jac, hess2, lp0_v, eta_hat,
                                                           mask, y)
        return value, d_lt, d_omega, d_add, d_prop

    return {"predict": jax.jit(jax.vmap(predict)),
            "parts": jax.jit(jax.vmap(parts, in_axes=(0, 0, 0, 0, None, None, None, 0, 0))),
            "ofv": ofv_b}
