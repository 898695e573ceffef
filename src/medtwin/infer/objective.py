"""The FOCE-with-interaction objective of a population on a NONMEM-style dataset.

For subject i with observations y_j, predictions f_j(η) (the library model,
:func:`medtwin.core.simulate.simulate`), residual variances
V_j = σ²_add + σ²_prop·f_j² and η ~ N(0, Ω), the conditional objective is ::

    O_i(η) = Σ_j [ (y_j − f_j)² / V_j + log V_j ] + ηᵀ Ω⁻¹ η

and its minimiser η̂_i is the empirical Bayes estimate (EBE).  The FOCEI
contribution to the objective function value (OFV) is ::

    OFV_i = O_i(η̂_i) + log det Ω + log det H_i,
    H_i   = Ω⁻¹ + Σ_j [ g_j g_jᵀ / V_j + ½ v_j v_jᵀ / V_j² ]

with g_j = ∂f_j/∂η and v_j = ∂V_j/∂η at η̂_i (Laplace's approximation with the
expected-information Hessian; the ½ v vᵀ term is the "interaction").  This is
−2·log-likelihood **without** the n·log(2π) constant, NONMEM's convention: it
reproduces NONMEM's per-subject objective of the pheno run (``pheno.phi``)
and its OFV 586.276 to about 1e-5.

Inter-occasion variability (IOV).  With ``population.iov`` the random
effects of subject i are r_i = (η_i, κ_i,0, …, κ_i,K−1): one κ per occasion
(:mod:`medtwin.infer.occasions`), each κ ~ N(0, Ω_IOV) with the same Ω_IOV
(NONMEM's ``$OMEGA BLOCK(n) SAME``), and the parameters of occasion k are
TV · exp(η + κ_k).  Everything above holds with η replaced by r and Ω by
blockdiag(Ω, Ω_IOV, …, Ω_IOV): the EBE is the joint minimiser over (η, κ) and
the Laplace term is over the whole vector, as NONMEM does.  K is the largest
number of occasions of a subject; κ's of occasions a subject does not have
carry no data, so their EBE is 0 and their log det Ω_IOV and log det Ω_IOV⁻¹
cancel.

Derivatives.  g is obtained by central differences of the numba-compiled
:func:`simulate` in log-parameter space (relative step 1e-4, truncation error
~1e-8), all subjects and all perturbations in one batched call: the model is the
one library definition, nothing is re-implemented, and any library model
(linear or not) works.  The EBEs are found for all subjects at once by Fisher
scoring (Newton steps with the expected-information Hessian H_i and the exact
gradient of O_i) with per-subject step halving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.core.population import Population
from medtwin.core.simulate import simulate
from medtwin.errors import EstimationError

#: Relative step of the central differences in log-parameter space.
ETA_STEP = 1e-4


@dataclass(frozen=True)
class InnerResult:
    """EBEs and everything the FOCEI objective needs, for B parameter sets × N subjects."""

    eta: np.ndarray        # (B, N, n_random): η, then κ of occasion 0, 1, … (IOV)
    ofv_subject: np.ndarray  # (B, N)
    conditional: np.ndarray  # O_i(η̂), (B, N)
    f: np.ndarray          # (B, M) individual predictions at η̂ (output unit)
    var: np.ndarray        # (B, M) residual variances
    iterations: int
    converged: np.ndarray  # (B, N) bool


class Problem:
    """A population, a library model and a dataset laid out once for repeated objective evaluations."""

    def __init__(self, population: Population, model, dataset):
        if population.model != model.name:
            raise EstimationError(f"FOCEI fit: the population is for model {population.model!r}, "
                                  f"got model {model.name!r}")
        if population.residual.output not in model.output_names:
            raise EstimationError(f"FOCEI fit: model {model.name} has no output {population.residual.output!r}")
        if not population.iiv:
            raise EstimationError("FOCEI fit: the population has no inter-individual variability (iiv)")
        unknown = set(population.typical) - set(model.parameter_names)
        if unknown:
            raise EstimationError(f"FOCEI fit: population parameters {sorted(unknown)} are not parameters of "
                                  f"{model.name} ({list(model.parameter_names)})")
        self.population, self.model, self.dataset = population, model, dataset
        subjects = dataset.subjects
        missing = [c for c in population.covariates if c not in dataset.covariate_names]
        if missing:
            raise EstimationError(f"FOCEI fit: covariate(s) {missing} are not dataset columns "
                                  f"({list(dataset.covariate_names)})")
        self.covariates = {c: np.array([s.covariates[c] for s in subjects], dtype=float)
                           for c in population.covariates}
        self.regimens = [s.regimen for s in subjects]
        self.times = [np.asarray(s.obs_times, dtype=float) for s in subjects]
        self.pre = [np.asarray(s.pre_dose, dtype=bool) for s in subjects]
        fitted, rows, seg = [], [], []
        offset = 0
        for i, s in enumerate(subjects):
            mask = (s.obs_evid == 0) & (s.obs_mdv == 0) & np.isfinite(s.obs_dv)
            rows.append(offset + np.flatnonzero(mask))
            seg.append(np.full(int(mask.sum()), i))
            fitted.append(s.obs_dv[mask])
            offset += len(s.obs_times)
        self.n_rows = offset
        self.rows = np.concatenate(rows).astype(int)
        self.seg = np.concatenate(seg).astype(int)
        self.y = np.concatenate(fitted).astype(float)
        if self.y.size == 0:
            raise EstimationError("FOCEI fit: the dataset has no observations (EVID 0, MDV 0, DV present)")
        self.n_subjects = len(subjects)
        self.n_obs = int(self.y.size)
        self.indicator = np.zeros((self.n_subjects, self.n_obs))
        self.indicator[self.seg, np.arange(self.n_obs)] = 1.0
        self.ids = dataset.ids
        names = model.parameter_names
        self.eta_columns = np.array([names.index(p) for p in population.iiv])
        self._layout_random_effects(population, dataset, names)
        self.base_log = np.log(np.maximum(model.typical_values(), 1e-300))
        self.output = population.residual.output
        self.n_simulations = 0

    def _layout_random_effects(self, population, dataset, names) -> None:
        """Random-effect vector r = (η, κ_0, …, κ_{K−1}): the column and occasions each element moves."""
        n_eta = len(population.iiv)
        self.n_eta = n_eta
        if population.iov is None:
            self.occasions, self.n_occasions, self.n_iov = None, 1, 0
            self.iov_columns = np.zeros(0, int)
        else:
            from medtwin.infer.occasions import subject_occasions

            self.occasions = subject_occasions(dataset, population.iov.occasion)
            self.n_occasions, self.n_iov = self.occasions.n_occasions, len(population.iov.parameters)
            self.iov_columns = np.array([names.index(p) for p in population.iov.parameters])
        k, n_iov = self.n_occasions, self.n_iov
        self.n_random = n_eta + k * n_iov
        self.effect_column = np.concatenate([self.eta_columns, np.tile(self.iov_columns, k)]).astype(int)
        self.effect_occasions = np.zeros((self.n_random, k), bool)
        self.effect_occasions[:n_eta] = True
        for occ in range(k):
            self.effect_occasions[n_eta + occ * n_iov:n_eta + (occ + 1) * n_iov, occ] = True
        # incidence (n_random, K, P): r_e moves log parameter effect_column[e] on its occasions
        self.incidence = np.zeros((self.n_random, k, len(names)))
        for e in range(self.n_random):
            self.incidence[e, self.effect_occasions[e], self.effect_column[e]] = 1.0

    def full_omega(self, omega: np.ndarray, omega_iov: np.ndarray | None = None) -> np.ndarray:
        """Covariance of r = (η, κ_0..κ_{K−1}): blockdiag(Ω, Ω_IOV, …, Ω_IOV), batched over leading axes."""
        omega = np.asarray(omega, dtype=float)
        if self.n_iov == 0:
            return omega
        lead = omega.shape[:-2]
        out = np.zeros(lead + (self.n_random, self.n_random))
        out[..., :self.n_eta, :self.n_eta] = omega
        for occ in range(self.n_occasions):
            lo = self.n_eta + occ * self.n_iov
            out[..., lo:lo + self.n_iov, lo:lo + self.n_iov] = omega_iov
        return out

    def random_log_parameters(self, log_typical: np.ndarray, r: np.ndarray) -> np.ndarray:
        """log parameters per occasion (..., N, K, P) from log_typical (..., N, P) and r (..., N, n_random)."""
        return log_typical[..., None, :] + np.einsum("...e,ekp->...kp", r, self.incidence)

    # ------------------------------------------------------------------ predictions
    def log_typical(self, theta: dict) -> np.ndarray:
        """log of the model parameter table at η = 0 for θ values ``theta``: (N, n_parameters)."""
        table = np.tile(self.base_log, (self.n_subjects, 1))
        typical = self.population.typical_parameters(self.covariates, theta)
        names = self.model.parameter_names
        with np.errstate(divide="ignore", invalid="ignore"):
            for p, value in typical.items():
                table[:, names.index(p)] = np.log(np.broadcast_to(value, (self.n_subjects,)))
        return table

    def predict(self, log_params: np.ndarray) -> np.ndarray:
        """Predictions at the fitted observations for log-parameter tables -> (B, M).

        ``log_params`` is (B, N, P), or (B, N, K, P) per occasion (IOV: the parameters of occasion k hold
        from its first record on, :mod:`medtwin.infer.occasions`).  One batched :func:`simulate` call; a
        failed patient or non-finite parameter gives NaN.
        """
        if log_params.ndim == 3:
            log_params = log_params[:, :, None, :]
        k = log_params.shape[0]
        flat = log_params.reshape(k * self.n_subjects, -1)
        out = np.full((k, self.n_obs), np.nan)
        good = np.all(np.isfinite(flat), axis=1) & np.all(np.abs(flat) < 700, axis=1)
        blocks = good.reshape(k, self.n_subjects).all(axis=1)
        if not blocks.any():
            return out
        use = np.flatnonzero(blocks)
        per_occasion = np.exp(log_params[use])  # (U, N, K', P)
        table = per_occasion[:, :, 0].reshape(len(use) * self.n_subjects, -1)
        bounds_ok = np.all(_within_bounds(self.model, per_occasion.reshape(-1, per_occasion.shape[-1]))
                           .reshape(len(use) * self.n_subjects, -1), axis=1)
        table = np.where(bounds_ok[:, None], table, self.model.typical_values()[None, :])
        changes = None
        if self.occasions is not None and len(self.occasions.change_times):
            active = self.occasions.active  # (N, C)
            changes = {}
            for col in self.iov_columns:
                values = np.take_along_axis(per_occasion[:, :, :, col], np.broadcast_to(active, (len(use),) + active.shape),
                                            axis=2).reshape(len(use) * self.n_subjects, -1)
                good_rows = bounds_ok[:, None] & np.isfinite(values)
                values = np.where(good_rows, values, table[:, [col]])
                changes[self.model.parameter_names[col]] = (self.occasions.change_times, values)
        trajectory = simulate(self.model, table, self.regimens * len(use), self.times * len(use),
                              pre_dose=self.pre * len(use), keep_states=False, parameter_changes=changes)
        self.n_simulations += 1
        values = np.asarray(trajectory.output(self.output), dtype=float).reshape(len(use), self.n_rows)
        values = values[:, self.rows]
        failed = (trajectory.status != 0) | ~bounds_ok
        seg_failed = failed.reshape(len(use), self.n_subjects)[:, self.seg]
        values[seg_failed] = np.nan
        out[use] = values
        return out

    # ------------------------------------------------------------------ the inner problem
    def _evaluate(self, log_typical, eta, omega_inv, add_var, prop_var):
        """O_i, its half-gradient, H_i, f and V at η for B parameter sets."""
        b, n, n_eta = eta.shape
        n_pert = 1 + 2 * n_eta
        base = self.random_log_parameters(log_typical, eta)  # (B, N, K, P)
        log_params = np.repeat(base[:, None], n_pert, axis=1)  # (B, n_pert, N, K, P)
        for k in range(n_eta):
            log_params[:, 1 + 2 * k] += ETA_STEP * self.incidence[k]
            log_params[:, 2 + 2 * k] -= ETA_STEP * self.incidence[k]
        f_all = self.predict(log_params.reshape((b * n_pert,) + base.shape[1:])).reshape(b, n_pert, self.n_obs)
        f = f_all[:, 0]
        g = np.stack([(f_all[:, 1 + 2 * k] - f_all[:, 2 + 2 * k]) / (2 * ETA_STEP) for k in range(n_eta)], axis=-1)
        var = add_var[:, None] + prop_var[:, None] * f * f
        dvar = 2.0 * prop_var[:, None, None] * f[..., None] * g
        r = self.y[None] - f
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # extreme trial θ: flagged bad below
            data = (r * r / var + np.log(var)) @ self.indicator.T
            prior_grad = np.einsum("bij,bnj->bni", omega_inv, eta)
            conditional = data + np.einsum("bni,bni->bn", eta, prior_grad)
            w_g = g * (r / var)[..., None]
            w_v = 0.5 * dvar * (1.0 / var - r * r / var**2)[..., None]
            grad = prior_grad + np.einsum("nm,bmi->bni", self.indicator, w_v - w_g)
            info = (np.einsum("bmi,bmj->bmij", g, g) / var[..., None, None]
                    + 0.5 * np.einsum("bmi,bmj->bmij", dvar, dvar) / (var**2)[..., None, None])
            hessian = omega_inv[:, None] + np.einsum("nm,bmij->bnij", self.indicator, info)
        bad = ~np.isfinite(conditional) | ~np.all(np.isfinite(hessian), axis=(2, 3))
        conditional = np.where(bad, np.inf, conditional)
        return conditional, grad, hessian, f, var

    def inner(self, log_typical, omega, add_var, prop_var, eta0, *, tol: float = 1e-9,
              max_iter: int = 100) -> InnerResult:
        """EBEs by Fisher scoring for B parameter sets at once, and the FOCEI OFV per subject.

        Parameters
        ----------
        log_typical : (B, N, P) array
            log model parameters at η = 0.
        omega : (B, n_random, n_random) array
            Covariance of the random effects per parameter set (positive definite): Ω, or
            :meth:`full_omega` with IOV.
        add_var, prop_var : (B,) arrays
            σ²_add ((output unit)²) and σ²_prop (fraction²).
        eta0 : (B, N, n_random) array
            Starting values (warm start).
        """
        omega_inv = np.linalg.inv(omega)
        eta = np.array(eta0, dtype=float)
        cond, grad, hess, f, var = self._evaluate(log_typical, eta, omega_inv, add_var, prop_var)
        if not np.all(np.isfinite(cond)):  # fall back to η = 0 where the warm start is not evaluable
            restart = ~np.isfinite(cond)
            eta[restart] = 0.0
            cond, grad, hess, f, var = self._evaluate(log_typical, eta, omega_inv, add_var, prop_var)
        scale = np.ones(cond.shape)
        converged = np.zeros(cond.shape, bool)
        iterations = 0
        for iterations in range(1, max_iter + 1):
            with np.errstate(invalid="ignore"):
                step = -np.linalg.solve(np.where(np.isfinite(hess), hess, np.eye(hess.shape[-1])),
                                        grad[..., None])[..., 0]
            step = np.where(np.isfinite(step), step, 0.0)
            size = np.max(np.abs(step), axis=-1)
            converged = size * scale < tol
            if converged.all():
                break
            trial = eta + (scale * ~converged)[..., None] * step
            t_cond, t_grad, t_hess, t_f, t_var = self._evaluate(log_typical, trial, omega_inv, add_var, prop_var)
            accept = (t_cond <= cond + 1e-12 * np.abs(cond)) & ~converged
            eta = np.where(accept[..., None], trial, eta)
            cond = np.where(accept, t_cond, cond)
            grad = np.where(accept[..., None], t_grad, grad)
            hess = np.where(accept[..., None, None], t_hess, hess)
            obs_accept = accept[:, self.seg]
            f = np.where(obs_accept, t_f, f)
            var = np.where(obs_accept, t_var, var)
            scale = np.where(accept, np.minimum(1.0, scale * 2.0), scale * 0.5)
            converged |= scale < 1e-8  # no further descent possible at this precision
        sign, logdet_h = np.linalg.slogdet(hess)
        _, logdet_omega = np.linalg.slogdet(omega)
        ofv = cond + logdet_omega[:, None] + np.where(sign > 0, logdet_h, np.inf)
        return InnerResult(eta, ofv, cond, f, var, iterations, converged)


def _within_bounds(model, table: np.ndarray) -> np.ndarray:
    ok = np.ones(len(table), bool)
    for j, par in enumerate(model.parameters):
        ok &= (table[:, j] >= par.lower) & (table[:, j] <= par.upper)
    return ok
