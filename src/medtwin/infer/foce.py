"""Population maximum-likelihood fit by FOCE with interaction (FOCEI), NONMEM-comparable.

:func:`fit_focei` estimates θ, Ω and σ² of a :class:`~medtwin.core.population.Population`
from a NONMEM-style :class:`~medtwin.io.nonmem.Dataset` by minimising the FOCEI
objective function value of :mod:`medtwin.infer.objective`.

Objective convention.  OFV = −2·log-likelihood **without** the n·log(2π)
constant (NONMEM's convention); add ``n_obs·log(2π)`` for the full −2LL
(:attr:`FitResult.minus2ll`).

Method.  Outer problem: BFGS (scipy) over unconstrained parameters — θ
through log(θ − lower) or a logit when both bounds are finite, Ω through the
log-diagonal and off-diagonal of its Cholesky factor (elements that are zero in
the initial Ω stay zero: NONMEM's block structure), σ² through log σ².
Gradients: exact for linear models whose dose times and rates are not estimated
(:mod:`medtwin.infer.foce_exact`: JAX predictions, the EBEs' dependence by the
implicit-function theorem); otherwise, or with ``gradients="differences"``,
central differences, every perturbed parameter set evaluated in one batched
inner problem.  The EBEs are warm-started from the best point.

Covariance step.  R = ∂²OFV/∂ψ² and S = Σ_i ∇OFV_i ∇OFV_iᵀ (ψ = θ, Ω elements,
σ² in natural units) by central differences (of the exact gradient where it
is available, 2d evaluations; else second differences of the OFV); the covariance matrix is
R⁻¹ S R⁻¹ (NONMEM's default sandwich; with OFV = −2LL this is the usual
H⁻¹ B H⁻¹ of the log-likelihood) or 2 R⁻¹ with ``covariance="R"``.  When R is
not positive definite the step fails: standard errors are NaN and
:attr:`FitResult.covariance_status` / ``covariance_message`` say why.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import optimize

from medtwin.core.observation import ResidualError
from medtwin.core.population import Population
from medtwin.errors import EstimationError
from medtwin.infer.objective import Problem
from medtwin.infer.status import FitStatus

__all__ = ["FitResult", "fit_focei"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit_focei` (immutable).

    Attributes
    ----------
    population : Population
        The population with the estimates (θ, Ω, residual SDs) and an ``estimation`` record.
    theta : dict
        θ name -> estimate (units of each Theta).
    omega : ndarray
        Ω estimate (log-scale variances/covariances), order ``population.iiv``.
    sigma2 : dict
        Residual variances: ``additive`` ((output unit)²) and/or ``proportional`` (fraction²).
    ofv : float
        FOCEI objective function value, NONMEM convention (−2LL without n·log 2π).
    minus2ll : float
        ``ofv + n_obs·log(2π)``.
    parameter_names : tuple of str
        Names of the estimated parameters ψ (``THETA:TVCL``, ``OMEGA(1,1)``, ``SIGMA:proportional``).
    estimates : ndarray
        ψ in natural units, same order.
    se, rse : ndarray
        Standard errors and relative standard errors (SE/|ψ|) from the covariance step (NaN when it failed).
    covariance : ndarray or None
        Covariance matrix of ψ.
    covariance_method : str
        ``"R-1 S R-1"`` (sandwich) or ``"2 R-1"``.
    covariance_status : str
        ``"ok"``, ``"failed"`` or ``"skipped"``; ``covariance_message`` explains.
    eta : ndarray
        EBEs (n_subjects, n_eta), order ``population.iiv``; ``ids`` the subject IDs.
    eta_shrinkage : ndarray
        1 − SD(η̂_k)/ω_k per η (SD with ddof 1).
    eps_shrinkage : float
        1 − SD(IWRES).
    subject_ofv : ndarray
        Per-subject OFV contributions.
    ipred, iwres : ndarray
        Individual predictions and weighted residuals at the fitted observations.
    converged : bool
        Whether the optimiser reported success; ``message`` its words.
    n_iterations, n_evaluations : int
        Outer iterations and objective evaluations (each a batch of parameter sets).
    wall_time : dict
        Seconds: ``estimation``, ``covariance``.
    gradients : str
        How the gradients were computed: ``"exact"`` (JAX) or ``"differences"`` (central differences).
    omega_iov : ndarray or None
        Ω_IOV estimate (order ``population.iov.parameters``; names ``OMEGA_IOV(i,j)`` in
        ``parameter_names``), None without IOV.
    kappa : ndarray or None
        EBEs of the inter-occasion effects (n_subjects, K occasions, n_iov); 0 for occasions a subject
        does not have (:mod:`medtwin.infer.occasions`).
    """

    population: Population
    theta: Mapping[str, float]
    omega: np.ndarray
    sigma2: Mapping[str, float]
    ofv: float
    minus2ll: float
    parameter_names: tuple[str, ...]
    estimates: np.ndarray
    se: np.ndarray
    rse: np.ndarray
    covariance: np.ndarray | None
    covariance_method: str
    covariance_status: str
    covariance_message: str
    eta: np.ndarray
    ids: np.ndarray
    eta_shrinkage: np.ndarray
    eps_shrinkage: float
    subject_ofv: np.ndarray
    ipred: np.ndarray
    iwres: np.ndarray
    converged: bool
    message: str
    n_iterations: int
    n_evaluations: int
    n_obs: int
    wall_time: Mapping[str, float] = field(default_factory=dict)
    gradients: str = "differences"
    omega_iov: np.ndarray | None = None
    kappa: np.ndarray | None = None

    def standard_errors(self) -> dict[str, float]:
        """Parameter name -> SE (NaN when the covariance step failed)."""
        return dict(zip(self.parameter_names, (float(s) for s in self.se)))

    def provenance_content(self) -> dict:
        """Every estimate of the fit, for digests (see :func:`medtwin.governance.provenance.result_view`).

        Wall times are left out: they differ between identical runs.
        """
        arrays = {"estimates": self.estimates, "se": self.se, "omega": self.omega, "eta": self.eta,
                  "subject_ofv": self.subject_ofv, "ipred": self.ipred, "iwres": self.iwres}
        if self.covariance is not None:
            arrays["covariance"] = self.covariance
        if self.omega_iov is not None:
            arrays["omega_iov"], arrays["kappa"] = self.omega_iov, self.kappa
        content = {"parameter_names": list(self.parameter_names), "ofv": self.ofv, "converged": self.converged,
                   "covariance_status": self.covariance_status, "message": self.message,
                   "n_iterations": self.n_iterations, "n_evaluations": self.n_evaluations, **arrays}
        return {"content": content, "outputs": arrays,
                "solver": {"method": "FOCEI", "covariance": self.covariance_method, "gradients": self.gradients}}


class _Parametrisation:
    """Maps between the unconstrained vector x, natural ψ, and (θ, Ω, σ²) of a population."""

    def __init__(self, population: Population):
        self.population = population
        self.thetas = [t for t in population.thetas if not t.fixed]
        omega = self.combined(np.asarray(population.omega), population.iov.omega if population.iov else None)
        n = omega.shape[0]
        self.n_eta = n  # size of blockdiag(Ω, Ω_IOV): the estimated variance parameters
        self.n_iiv = len(population.iiv)
        self.pattern = [(i, j) for i in range(n) for j in range(i + 1) if i == j or omega[i, j] != 0.0]
        residual = population.residual
        self.sigma_names = list(residual.sigma2)
        self.names = ([f"THETA:{t.name}" for t in self.thetas] + [self._omega_name(i, j) for i, j in self.pattern]
                      + [f"SIGMA:{s}" for s in self.sigma_names])

    def combined(self, omega: np.ndarray, omega_iov: np.ndarray | None) -> np.ndarray:
        """blockdiag(Ω, Ω_IOV) (Ω alone without IOV)."""
        if omega_iov is None:
            return np.array(omega, dtype=float)
        n, m = omega.shape[0], omega_iov.shape[0]
        out = np.zeros((n + m, n + m))
        out[:n, :n], out[n:, n:] = omega, omega_iov
        return out

    def _omega_name(self, i: int, j: int) -> str:
        n = self.n_iiv
        return f"OMEGA({i + 1},{j + 1})" if i < n else f"OMEGA_IOV({i - n + 1},{j - n + 1})"

    def split(self, omega: np.ndarray):
        """(Ω, Ω_IOV or None) from the combined matrix."""
        n = self.n_iiv
        return omega[:n, :n], (omega[n:, n:] if omega.shape[0] > n else None)

    # natural ψ <-> (θ, Ω, σ²)
    def natural(self, theta: Mapping[str, float], omega: np.ndarray, sigma2: Mapping[str, float]) -> np.ndarray:
        return np.array([theta[t.name] for t in self.thetas] + [omega[i, j] for i, j in self.pattern]
                        + [sigma2[s] for s in self.sigma_names], dtype=float)

    def unpack(self, psi: np.ndarray):
        k = len(self.thetas)
        theta = {**self.population.theta_values(), **{t.name: float(v) for t, v in zip(self.thetas, psi[:k])}}
        omega = np.zeros((self.n_eta, self.n_eta))
        for (i, j), v in zip(self.pattern, psi[k:k + len(self.pattern)]):
            omega[i, j] = omega[j, i] = v
        sigma2 = dict(zip(self.sigma_names, (float(v) for v in psi[k + len(self.pattern):])))
        return theta, omega, sigma2

    # unconstrained x <-> natural ψ
    def to_x(self, psi: np.ndarray) -> np.ndarray:
        theta, omega, sigma2 = self.unpack(psi)
        x = [_to_free(theta[t.name], t.lower, t.upper) for t in self.thetas]
        chol = np.linalg.cholesky(omega)
        x += [math.log(chol[i, i]) if i == j else chol[i, j] for i, j in self.pattern]
        x += [math.log(sigma2[s]) for s in self.sigma_names]
        return np.array(x)

    def to_psi(self, x: np.ndarray) -> np.ndarray:
        k = len(self.thetas)
        thetas = [_from_free(v, t.lower, t.upper) for t, v in zip(self.thetas, x[:k])]
        chol = np.zeros((self.n_eta, self.n_eta))
        for (i, j), v in zip(self.pattern, x[k:k + len(self.pattern)]):
            chol[i, j] = math.exp(v) if i == j else v
        omega = chol @ chol.T
        sig = [math.exp(v) for v in x[k + len(self.pattern):]]
        return np.array(thetas + [omega[i, j] for i, j in self.pattern] + sig)


def _to_free(v, lo, hi):
    if math.isfinite(lo) and math.isfinite(hi):
        u = (v - lo) / (hi - lo)
        return math.log(u / (1 - u))
    if math.isfinite(lo):
        return math.log(v - lo)
    if math.isfinite(hi):
        return -math.log(hi - v)
    return v


def _from_free(x, lo, hi):
    x = float(np.clip(x, -700, 700))
    if math.isfinite(lo) and math.isfinite(hi):
        return lo + (hi - lo) / (1 + math.exp(-x))
    if math.isfinite(lo):
        return lo + math.exp(x)
    if math.isfinite(hi):
        return hi - math.exp(-x)
    return x


class _Objective:
    """Batched OFV evaluations with warm-started EBEs."""

    def __init__(self, problem: Problem, param: _Parametrisation, residual: ResidualError):
        self.problem, self.param, self.residual = problem, param, residual
        self.eta = np.zeros((problem.n_subjects, problem.n_random))
        self.best = math.inf
        self.n_evaluations = 0
        self.exact = None

    # ------------------------------------------------------------------ exact path (linear models)
    def exact_subject_gradients(self, psi: np.ndarray, *, tol: float = 1e-9):
        """Per-subject OFV (N,) and ∂OFV_i/∂ψ (N, d) by the exact path, or (None, None) outside the domain."""
        theta, omega, sigma2 = self.param.unpack(psi)
        if np.linalg.eigvalsh(omega).min() <= 0 or any(v <= 0 for v in sigma2.values()):
            return None, None
        add, prop = sigma2.get("additive", 0.0), sigma2.get("proportional", 0.0)
        log_typical = self.problem.log_typical(theta)
        if not np.all(np.isfinite(log_typical)):
            return None, None
        eta, ok = self.exact.ebe(log_typical, omega, add, prop, self.eta, tol=tol)
        self.n_evaluations += 1
        ofv, d_lt, d_omega, d_add, d_prop = self.exact.ofv_and_gradients(log_typical, omega, add, prop, eta)
        if not (ok.all() and np.all(np.isfinite(ofv))):
            return None, None
        if ofv.sum() < self.best:
            self.best, self.eta = float(ofv.sum()), eta.copy()
        grads = [np.einsum("np,np->n", d_lt, self._log_typical_derivative(theta, t.name))
                 for t in self.param.thetas]
        grads += [d_omega[:, i, i] if i == j else d_omega[:, i, j] + d_omega[:, j, i] for i, j in self.param.pattern]
        grads += [d_add if s == "additive" else d_prop for s in self.param.sigma_names]
        return ofv, np.stack(grads, axis=1)

    def _log_typical_derivative(self, theta: dict, name: str) -> np.ndarray:
        """∂ log TV / ∂θ_name (N, P): central differences of the covariate model (arithmetic, no simulation)."""
        h = 1e-6 * max(abs(theta[name]), 1e-8)
        up = self.problem.log_typical({**theta, name: theta[name] + h})
        down = self.problem.log_typical({**theta, name: theta[name] - h})
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(up) & np.isfinite(down), (up - down) / (2 * h), 0.0)

    def _exact_value_and_gradient(self, x: np.ndarray):
        psi = self.param.to_psi(x)
        ofv, grads = self.exact_subject_gradients(psi)
        if ofv is None:
            return math.inf, np.zeros(len(x))
        return float(ofv.sum()), _psi_jacobian(self.param, x).T @ grads.sum(axis=0)

    def at_psi(self, psis: np.ndarray, *, tol: float = 1e-9):
        """Per-subject OFV (B, N) and the inner result for natural parameter sets ψ (B, d)."""
        b = len(psis)
        logs, omegas, add, prop = [], [], np.zeros(b), np.zeros(b)
        valid = np.ones(b, bool)
        for k, psi in enumerate(psis):
            theta, omega, sigma2 = self.param.unpack(psi)
            if np.linalg.eigvalsh(omega).min() <= 0 or any(v <= 0 for v in sigma2.values()):
                valid[k] = False
                omega = np.eye(self.param.n_eta)
            logs.append(self.problem.log_typical(theta))
            omegas.append(self.problem.full_omega(*self.param.split(omega)))
            add[k] = sigma2.get("additive", 0.0)
            prop[k] = sigma2.get("proportional", 0.0)
        eta0 = np.broadcast_to(self.eta, (b,) + self.eta.shape)
        result = self.problem.inner(np.array(logs), np.array(omegas), add, prop, eta0, tol=tol)
        self.n_evaluations += 1
        ofv = np.where(valid[:, None], result.ofv_subject, np.inf)
        total = ofv.sum(axis=1)
        if np.isfinite(total[0]) and total[0] < self.best:
            self.best = float(total[0])
            self.eta = result.eta[0].copy()
        return ofv, result

    def value_and_gradient(self, x: np.ndarray, step: float = 1e-4):
        """OFV and its gradient in x: exact (:mod:`medtwin.infer.foce_exact`) when available, else central
        differences (one batch of 1 + 2d parameter sets)."""
        if self.exact is not None:
            return self._exact_value_and_gradient(x)
        d = len(x)
        points = [x] + [x + s * step * np.eye(d)[i] for i in range(d) for s in (1.0, -1.0)]
        psis = np.array([self.param.to_psi(p) for p in points])
        ofv, _ = self.at_psi(psis)
        total = ofv.sum(axis=1)
        if not np.isfinite(total[0]):
            return math.inf, np.zeros(d)
        grad = (total[1::2] - total[2::2]) / (2 * step)
        return float(total[0]), np.where(np.isfinite(grad), grad, 0.0)


def _psi_jacobian(param: _Parametrisation, x: np.ndarray) -> np.ndarray:
    """∂ψ/∂x (d, d) by central differences of the (arithmetic) parametrisation."""
    d = len(x)
    jac = np.zeros((d, d))
    for k in range(d):
        h = 1e-6 * max(1.0, abs(x[k]))
        e = np.zeros(d)
        e[k] = h
        jac[:, k] = (param.to_psi(x + e) - param.to_psi(x - e)) / (2 * h)
    return jac


def _exact_covariance_step(objective: _Objective, psi: np.ndarray, method: str):
    """R by central differences of the exact gradient (2d evaluations), S from the exact per-subject gradients."""
    d = len(psi)
    h = 1e-3 * np.maximum(np.abs(psi), 1e-3 * np.max(np.abs(psi)))
    _, grads = objective.exact_subject_gradients(psi, tol=1e-10)
    r = np.zeros((d, d))
    for i in range(d):
        step = np.zeros(d)
        step[i] = h[i]
        (_, up), (_, down) = (objective.exact_subject_gradients(psi + step, tol=1e-10),
                              objective.exact_subject_gradients(psi - step, tol=1e-10))
        if grads is None or up is None or down is None:
            return None, "failed", "the objective is not finite near the estimates (a parameter at a boundary?)"
        r[:, i] = (up.sum(axis=0) - down.sum(axis=0)) / (2 * h[i])
    return _sandwich(0.5 * (r + r.T), grads, method)


def _covariance_step(objective: _Objective, psi: np.ndarray, method: str):
    """R, S by central differences at ψ; returns (covariance or None, status, message)."""
    d = len(psi)
    h = 1e-3 * np.maximum(np.abs(psi), 1e-3 * np.max(np.abs(psi)))
    points = [psi]
    for i in range(d):
        for s in (1, -1):
            points.append(psi + s * h[i] * np.eye(d)[i])
    pairs = [(i, j) for i in range(d) for j in range(i)]
    for i, j in pairs:
        for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            points.append(psi + si * h[i] * np.eye(d)[i] + sj * h[j] * np.eye(d)[j])
    ofv, _ = objective.at_psi(np.array(points), tol=1e-10)
    total = ofv.sum(axis=1)
    if not np.all(np.isfinite(total)):
        return None, FitStatus.FAILED, "the objective is not finite near the estimates (a parameter at a boundary?)"
    r = np.zeros((d, d))
    grads = np.zeros((ofv.shape[1], d))
    for i in range(d):
        plus, minus = 1 + 2 * i, 2 + 2 * i
        r[i, i] = (total[plus] - 2 * total[0] + total[minus]) / h[i] ** 2
        grads[:, i] = (ofv[plus] - ofv[minus]) / (2 * h[i])
    for k, (i, j) in enumerate(pairs):
        base = 1 + 2 * d + 4 * k
        pp, pm, mp, mm = total[base:base + 4]
        r[i, j] = r[j, i] = (pp - pm - mp + mm) / (4 * h[i] * h[j])
    return _sandwich(r, grads, method)


def _sandwich(r: np.ndarray, grads: np.ndarray, method: str):
    """Covariance from R (d, d) and per-subject gradients (N, d): R⁻¹SR⁻¹ or 2R⁻¹; None when R is not PD."""
    eig = np.linalg.eigvalsh(r)
    failure = (f"covariance step failed: the R matrix (Hessian of the OFV) is not positive definite "
               f"(eigenvalues {eig.min():.3g} .. {eig.max():.3g}); the estimates may be at a saddle point or a "
               f"parameter is not identifiable, so standard errors are not available")
    if not eig.min() > 1e-10 * eig.max():  # relative: a zero eigenvalue computes as ±1e-17·max
        return None, FitStatus.FAILED, failure
    try:
        r_inv = np.linalg.inv(r)
    except np.linalg.LinAlgError:
        return None, FitStatus.FAILED, failure
    if method == "R":
        return 2.0 * r_inv, FitStatus.OK, "covariance = 2 R^-1"
    s = grads.T @ grads
    return r_inv @ s @ r_inv, FitStatus.OK, "covariance = R^-1 S R^-1"


def fit_focei(population: Population, dataset, model=None, *, covariance: str = "sandwich",
              max_iterations: int = 200, gtol: float = 1e-3, gradients: str = "auto") -> FitResult:
    """Fit ``population`` to ``dataset`` by FOCE with interaction (maximum likelihood).

    Parameters
    ----------
    population : Population
        Structure and initial values; Thetas with ``fixed=True`` stay fixed; Ω elements that are zero
        stay zero.  With ``population.iov`` the IOV Ω is estimated too (κ per occasion, joint EBEs over
        (η, κ), :mod:`medtwin.infer.objective`; central-difference gradients).
    dataset : medtwin.io.nonmem.Dataset
        The records (doses, observations with EVID 0 and MDV 0 are fitted); the population's covariates
        must be columns (first-record value per subject).
    model : Model, optional
        Defaults to the library model ``population.model``.
    covariance : {"sandwich", "R", "none"}
        R⁻¹SR⁻¹ (NONMEM's default), 2R⁻¹, or skip the covariance step.
    max_iterations : int
        BFGS iterations.
    gtol : float
        BFGS gradient tolerance (OFV units per unit of the unconstrained parameters).  When a variance of Ω (or
        Ω_IOV) ends below ``COLLAPSE_FRACTION`` (1e-3) of its initial value, BFGS runs once more with it reset
        to its initial value and the better of both results is kept (its log-Cholesky gradient vanishes there).
    gradients : {"auto", "exact", "differences"}
        ``exact``: the JAX path of :mod:`medtwin.infer.foce_exact` (linear models whose dose times and
        rates do not depend on the parameters; EstimationError otherwise); ``differences``: central
        differences of the numba simulation (any model); ``auto``: exact where it applies.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import io
    >>> from medtwin.core.population import Population, Theta
    >>> from medtwin.core.observation import ResidualError
    >>> from medtwin.io.access import OpenData
    >>> from medtwin.io.nonmem import read_nonmem
    >>> rows = "ID TIME AMT DV\\n" + "".join(
    ...     f"{i} 0 100 0\\n{i} 1 0 {c1}\\n{i} 6 0 {c2}\\n" for i, c1, c2 in
    ...     [(1, 4.6, 2.9), (2, 5.5, 2.8), (3, 4.1, 2.0), (4, 5.2, 3.3), (5, 4.4, 2.5), (6, 5.0, 2.1)])
    >>> data = read_nonmem(io.StringIO(rows), access=OpenData("synthetic records"))
    >>> pop = Population(name="demo", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
    ...     Theta("TVV", 20.0, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"),
    ...     omega=((0.1, 0.0), (0.0, 0.1)), residual=ResidualError("proportional", proportional=0.1))
    >>> fit = fit_focei(pop, data, covariance="none", gradients="differences")  # "exact": compiles (~40 s) first
    >>> fit.converged, round(fit.theta["TVV"], 0)
    (True, 18.0)
    """
    from medtwin.models import get_model

    if covariance not in ("sandwich", "R", "none"):
        raise EstimationError(f"covariance must be 'sandwich', 'R' or 'none', got {covariance!r}")
    model = model or get_model(population.model)
    problem = Problem(population, model, dataset)
    param = _Parametrisation(population)
    objective = _Objective(problem, param, population.residual)
    start = time.perf_counter()
    if gradients not in ("auto", "exact", "differences"):
        raise EstimationError(f"gradients must be 'auto', 'exact' or 'differences', got {gradients!r}")
    if gradients != "differences":
        from medtwin.infer.foce_exact import exact_focei

        objective.exact = exact_focei(problem)
        if objective.exact is None and gradients == "exact":
            raise EstimationError(f"FOCEI fit: exact gradients need a linear model whose dose times and rates do "
                                  f"not depend on its parameters, without SS or reset records or IOV ({model.name})")
    psi0 = param.natural(population.theta_values(),
                         param.combined(np.asarray(population.omega), population.iov.omega if population.iov else None),
                         population.residual.sigma2)
    x0 = param.to_x(psi0)
    initial, _ = objective.value_and_gradient(x0)
    if not math.isfinite(initial):
        raise EstimationError("FOCEI fit: the objective is not finite at the initial estimates "
                              "(check the initial values, the units and the dataset)")
    result = optimize.minimize(objective.value_and_gradient, x0, jac=True, method="BFGS",
                               options={"maxiter": max_iterations, "gtol": gtol})
    result = _restart_collapsed(objective, param, psi0, result, {"maxiter": max_iterations, "gtol": gtol})
    psi = param.to_psi(result.x)
    ofv_subject, inner = objective.at_psi(psi[None], tol=1e-10)
    estimation_time = time.perf_counter() - start
    start = time.perf_counter()
    if covariance == "none":
        cov, status, message = None, FitStatus.SKIPPED, "covariance step not requested"
    else:
        step = _exact_covariance_step if objective.exact is not None else _covariance_step
        cov, status, message = step(objective, psi, "R" if covariance == "R" else "sandwich")
    covariance_time = time.perf_counter() - start
    return _result(population, problem, param, psi, ofv_subject[0], inner, result, cov, status, message,
                   covariance, objective.n_evaluations, {"estimation": estimation_time, "covariance": covariance_time},
                   "exact" if objective.exact is not None else "differences")


#: A variance below this fraction of its initial value has "collapsed": in the log-Cholesky coordinates its
#: gradient is ω²·∂OFV/∂ω² ≈ 0, so BFGS stops there even where raising it lowers the OFV (found on the NONMEM
#: iov.mod run: Ω_IOV fell to 1e-8 at OFV 689.88 while NONMEM's optimum, 688.58, has Ω_IOV ≈ 0.3).
COLLAPSE_FRACTION = 1e-3


def _restart_collapsed(objective: _Objective, param: _Parametrisation, psi0: np.ndarray, result, options: dict):
    """BFGS once more when variances collapsed: from ``result`` with each collapsed variance back at its initial
    value (and its covariances 0); the result with the lower OFV is returned (iterations of both counted)."""
    theta, omega, sigma2 = param.unpack(param.to_psi(result.x))
    initial = param.unpack(psi0)[1]
    collapsed = np.flatnonzero(np.diag(omega) < COLLAPSE_FRACTION * np.diag(initial))
    if not collapsed.size or not np.isfinite(result.fun):
        return result
    for i in collapsed:
        omega[i, :] = omega[:, i] = 0.0
        omega[i, i] = initial[i, i]
    again = optimize.minimize(objective.value_and_gradient, param.to_x(param.natural(theta, omega, sigma2)),
                              jac=True, method="BFGS", options=options)
    names = ", ".join(param._omega_name(int(i), int(i)) for i in collapsed)
    better = again if again.fun < result.fun else result
    better.message = (f"{better.message} (a restart with the collapsed variance(s) {names} at their initial values "
                      f"ended at OFV {again.fun:.4f}, the first run at {result.fun:.4f})")
    better.nit = int(result.nit) + int(again.nit)
    return better


def _result(population, problem, param, psi, subject_ofv, inner, opt, cov, status, message, covariance, n_eval,
            wall, gradients) -> FitResult:
    theta, omega_c, sigma2 = param.unpack(psi)
    omega, omega_iov = param.split(omega_c)
    residual = population.residual
    new_residual = ResidualError(residual.model, math.sqrt(sigma2.get("additive", 0.0)),
                                 math.sqrt(sigma2.get("proportional", 0.0)), residual.output, residual.unit)
    ofv = float(np.sum(subject_ofv))
    estimation: dict[str, Any] = {"method": "FOCEI", "software": "medtwin.infer.foce", "ofv": ofv,
                                  "ofv_convention": "-2 log-likelihood without n*log(2*pi) (NONMEM)",
                                  "n_subjects": problem.n_subjects, "n_obs": problem.n_obs}
    fitted = population.with_values(theta=theta, omega=omega, residual=new_residual, estimation=estimation,
                                    iov_omega=omega_iov)
    if cov is not None:
        se = np.sqrt(np.where(np.diag(cov) >= 0, np.diag(cov), np.nan))
    else:
        se = np.full(len(psi), np.nan)
    eta = inner.eta[0][:, :problem.n_eta]
    kappa = (inner.eta[0][:, problem.n_eta:].reshape(problem.n_subjects, problem.n_occasions, problem.n_iov)
             if omega_iov is not None else None)
    omega_sd = np.sqrt(np.diag(omega))
    shrink = 1.0 - np.std(eta, axis=0, ddof=1) / omega_sd if len(eta) > 1 else np.full(len(omega_sd), np.nan)
    ipred, var = inner.f[0], inner.var[0]
    iwres = (problem.y - ipred) / np.sqrt(var)
    return FitResult(
        population=fitted, theta={t.name: theta[t.name] for t in population.thetas}, omega=omega, sigma2=sigma2,
        ofv=ofv, minus2ll=ofv + problem.n_obs * _LOG_2PI, parameter_names=tuple(param.names), estimates=psi,
        se=se, rse=se / np.abs(psi), covariance=cov,
        covariance_method="2 R-1" if covariance == "R" else "R-1 S R-1", covariance_status=status,
        covariance_message=message, eta=eta, ids=problem.ids, eta_shrinkage=shrink,
        eps_shrinkage=float(1.0 - np.std(iwres, ddof=1)), subject_ofv=np.asarray(subject_ofv), ipred=ipred,
        iwres=iwres, converged=bool(opt.success), message=str(opt.message), n_iterations=int(opt.nit),
        n_evaluations=n_eval, n_obs=problem.n_obs, wall_time=wall, gradients=gradients, omega_iov=omega_iov,
        kappa=kappa)
