"""Diagnostics of a population fit: residuals (PRED, IPRED, WRES, CWRES, NPDE), VPC and goodness-of-fit plots.

For subject i with fitted observations y_i (n_i values, EVID 0, MDV 0), the
population model of :mod:`medtwin.infer.objective` gives predictions f_i(η)
(the library model through :func:`~medtwin.core.simulate.simulate`) and
residual variances V_i(η) = σ²_add + σ²_prop·f_i(η)².  With G_i = ∂f_i/∂η
(central differences in log-parameter space, step
:data:`~medtwin.infer.objective.ETA_STEP`, all subjects and perturbations in
one batched call):

=========  ======================================================================
PRED       f_i(0): population prediction (η = 0)
IPRED      f_i(η̂_i): individual prediction at the EBE
RES        y − PRED;  IRES = y − IPRED;  IWRES = IRES / √V(η̂)
WRES       FO:  C_i^{-1/2} (y_i − f_i(0)),  C_i = G_i(0) Ω G_i(0)ᵀ + diag V_i(0)
CWRES      FOCE (Hooker, Staatz & Karlsson, Pharm Res 2007;24:2187-2197):
           C_i^{-1/2} (y_i − [f_i(η̂) − G_i(η̂) η̂]),
           C_i = G_i(η̂) Ω G_i(η̂)ᵀ + diag V_i(η̂)   (interaction: V at η̂)
NPDE       normalised prediction distribution errors (Brendel et al., Pharm Res
           2006;23:2036-2049; Comets, Brendel & Mentré, Comput Methods Programs
           Biomed 2008;90:154-166), see below
=========  ======================================================================

C^{-1/2} is the inverse of the symmetric (eigen-decomposition) square root, as
NONMEM computes its weighted residuals; with it CWRES reproduces NONMEM's
``CWRES`` table item of the pheno run (``pheno.tab``) to about 1e-3.

NPDE.  K replicate datasets are simulated from the population model (η ~ N(0, Ω),
ε ~ N(0, V)) on the dataset's own doses, times and covariates, one batched
simulation per block of replicates.  Per subject, with E_i and V_i the mean and
covariance of the simulated y_i, observed and simulated vectors are
decorrelated by the Cholesky factor L_i of V_i (Comets 2008:
y* = L_i⁻¹ (y − E_i)), pde = fraction of the K decorrelated simulations below
the decorrelated observation (0 and 1 set to 1/K and 1 − 1/K) and
npde = Φ⁻¹(pde).  Under the model npde ~ N(0, 1), independent.

Units: ID as in the dataset; TIME in h; DV, PRED, IPRED, RES, IRES in the
residual error's output unit (``frame.attrs["dv_unit"]``, e.g. mg/L); WRES,
IWRES, CWRES and NPDE are dimensionless.

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
>>> frame = residuals(pop, data, npde_samples=200, seed=1)
>>> list(frame.columns)
['ID', 'TIME', 'DV', 'PRED', 'IPRED', 'RES', 'IRES', 'WRES', 'IWRES', 'CWRES', 'NPDE', 'ROW']
>>> frame.shape, frame.attrs["dv_unit"]
((12, 12), 'mg/L')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from medtwin.core.population import Population
from medtwin.errors import DataError, EstimationError
from medtwin.infer.foce import FitResult
from medtwin.infer.objective import ETA_STEP, Problem

__all__ = ["GOF_COLUMNS", "VPCResult", "plot_gof", "plot_vpc", "residuals", "vpc"]

#: Columns :func:`plot_gof` needs.
GOF_COLUMNS = ("TIME", "DV", "PRED", "IPRED", "CWRES", "NPDE")

#: Patients per batched simulation when simulating replicate datasets.
_PATIENTS_PER_CALL = 50_000


# ---------------------------------------------------------------------------- set-up
@dataclass(frozen=True)
class _Setup:
    population: Population
    problem: Problem
    eta: np.ndarray  # (N, n_eta) EBEs


def _setup(fit_result, dataset, model) -> _Setup:
    """The fitted population, the objective's data layout and the EBEs (estimated for a bare Population)."""
    from medtwin.models import get_model

    if isinstance(fit_result, FitResult):
        population = fit_result.population
    elif isinstance(fit_result, Population):
        population = fit_result
    else:
        raise EstimationError(f"fit_result: expected a FitResult (fit_focei) or a Population, "
                              f"got {type(fit_result).__name__}")
    if not hasattr(dataset, "subjects") or not hasattr(dataset, "ids"):
        raise EstimationError(f"dataset: expected a medtwin.io.nonmem.Dataset, got {type(dataset).__name__}")
    if population.iov is not None:
        raise EstimationError("population.iov: residual diagnostics and VPCs with inter-occasion variability are "
                              "not supported yet (the fit itself is: fit_focei, fit_nuts)")
    problem = Problem(population, model or get_model(population.model), dataset)
    if isinstance(fit_result, FitResult):
        ids = np.asarray(fit_result.ids, dtype=float)
        if ids.shape != problem.ids.shape or not np.array_equal(ids, np.asarray(problem.ids, dtype=float)):
            raise EstimationError("dataset: its subject IDs differ from the fit's (fit_result.ids); pass the "
                                  "dataset the population was fitted to")
        if fit_result.n_obs != problem.n_obs:
            raise EstimationError(f"dataset: {problem.n_obs} fitted observations, the fit had {fit_result.n_obs}")
        eta = np.asarray(fit_result.eta, dtype=float)
    else:
        eta = _ebes(problem, population)
    return _Setup(population, problem, eta)


def _ebes(problem: Problem, population: Population) -> np.ndarray:
    """Empirical Bayes estimates at the population's values (the FOCEI inner problem)."""
    sigma2 = population.residual.sigma2
    omega = np.asarray(population.omega, dtype=float)
    inner = problem.inner(problem.log_typical(population.theta_values())[None], omega[None],
                          np.array([sigma2.get("additive", 0.0)]), np.array([sigma2.get("proportional", 0.0)]),
                          np.zeros((1, problem.n_subjects, omega.shape[0])), tol=1e-10)
    return inner.eta[0]


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise EstimationError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- linearisation
def _predictions(setup: _Setup):
    """PRED, IPRED (M,) and G at η = 0 and at η̂ (M, n_eta), in ONE batched simulation."""
    problem, eta = setup.problem, setup.eta
    n_eta = eta.shape[1]
    base = problem.log_typical(setup.population.theta_values())  # (N, P)
    centres = (np.zeros_like(eta), eta)
    blocks = []
    for centre in centres:
        for k in range(-1, n_eta):
            for sign in ((0.0,) if k < 0 else (1.0, -1.0)):
                table = base.copy()
                table[:, problem.eta_columns] += centre
                if k >= 0:
                    table[:, problem.eta_columns[k]] += sign * ETA_STEP
                blocks.append(table)
    f = problem.predict(np.array(blocks))  # (2 (1 + 2 n_eta), M)
    per = 1 + 2 * n_eta
    out = []
    for c in range(2):
        block = f[c * per:(c + 1) * per]
        g = np.stack([(block[1 + 2 * k] - block[2 + 2 * k]) / (2 * ETA_STEP) for k in range(n_eta)], axis=-1)
        out.append((block[0], g))
    (pred, g0), (ipred, g1) = out
    return pred, g0, ipred, g1


def _inverse_sqrt(c: np.ndarray) -> np.ndarray:
    """C^{-1/2} by the symmetric eigen-decomposition (NaN when C is not positive definite)."""
    values, vectors = np.linalg.eigh(c)
    if not values.min() > 0:
        return np.full_like(c, np.nan)
    return (vectors / np.sqrt(values)) @ vectors.T


def _weighted(problem: Problem, residual: np.ndarray, g: np.ndarray, omega: np.ndarray,
              var: np.ndarray) -> np.ndarray:
    """Per subject C^{-1/2} r with C = G Ω Gᵀ + diag(var): the (C)WRES of residuals ``r`` (M,)."""
    out = np.full(problem.n_obs, np.nan)
    for i in range(problem.n_subjects):
        idx = np.flatnonzero(problem.seg == i)
        if idx.size == 0:
            continue
        gi = g[idx]
        c = gi @ omega @ gi.T + np.diag(var[idx])
        if np.all(np.isfinite(c)) and np.all(np.isfinite(residual[idx])):
            out[idx] = _inverse_sqrt(c) @ residual[idx]
    return out


# ---------------------------------------------------------------------------- simulation
def _simulate_replicates(setup: _Setup, n_rep: int, rng: np.random.Generator) -> np.ndarray:
    """(n_rep, M) observations simulated from the population (IIV + residual error) on the dataset's design.

    One batched :func:`~medtwin.core.simulate.simulate` call per block of replicates; a failed simulation gives NaN.
    """
    problem, population = setup.problem, setup.population
    omega = np.asarray(population.omega, dtype=float)
    chol = np.linalg.cholesky(omega)
    base = problem.log_typical(population.theta_values())
    sigma2 = population.residual.sigma2
    add, prop = sigma2.get("additive", 0.0), sigma2.get("proportional", 0.0)
    block = max(1, _PATIENTS_PER_CALL // max(problem.n_subjects, 1))
    out = np.empty((n_rep, problem.n_obs))
    for start in range(0, n_rep, block):
        k = min(block, n_rep - start)
        eta = rng.standard_normal((k, problem.n_subjects, omega.shape[0])) @ chol.T
        tables = np.repeat(base[None], k, axis=0)
        tables[:, :, problem.eta_columns] += eta
        f = problem.predict(tables)
        eps = rng.standard_normal(f.shape)
        out[start:start + k] = f + np.sqrt(add + prop * f * f) * eps
    return out


def _npde(problem: Problem, y: np.ndarray, y_sim: np.ndarray) -> np.ndarray:
    """Decorrelated npde (Comets 2008, Cholesky) per observation from K simulated replicates (K, M)."""
    out = np.full(problem.n_obs, np.nan)
    for i in range(problem.n_subjects):
        idx = np.flatnonzero(problem.seg == i)
        if idx.size == 0:
            continue
        sims = y_sim[:, idx]
        sims = sims[np.all(np.isfinite(sims), axis=1)]
        k = len(sims)
        if k <= idx.size:
            continue
        mean = sims.mean(axis=0)
        cov = np.atleast_2d(np.cov(sims, rowvar=False))
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            continue
        obs_star = np.linalg.solve(chol, y[idx] - mean)
        sim_star = np.linalg.solve(chol, (sims - mean).T).T
        pde = np.mean(sim_star < obs_star, axis=0)
        pde = np.clip(pde, 1.0 / k, 1.0 - 1.0 / k)
        out[idx] = special.ndtri(pde)
    return out


# ---------------------------------------------------------------------------- residuals
def residuals(fit_result, dataset, *, model=None, npde_samples: int = 500, seed: int | None = 0) -> pd.DataFrame:
    """Per-observation PRED, IPRED, RES, IRES, WRES, IWRES, CWRES and NPDE of a population fit.

    Parameters
    ----------
    fit_result : FitResult or Population
        A :func:`~medtwin.infer.foce.fit_focei` result (its population and EBEs are used), or a Population
        (e.g. published estimates): its EBEs are then estimated (the FOCEI inner problem).
    dataset : medtwin.io.nonmem.Dataset
        The data the population was fitted to; the fitted records are EVID 0, MDV 0 with a DV.
    model : Model, optional
        Defaults to the library model ``population.model``.
    npde_samples : int
        K, the replicate datasets simulated for NPDE (>= 10; 0 skips NPDE: the column is NaN).
    seed : int or None
        Seed of the NPDE simulations (numpy ``default_rng``).

    Returns
    -------
    pandas.DataFrame
        One row per fitted observation, in dataset order: ``ID``, ``TIME`` (h), ``DV``, ``PRED``, ``IPRED``,
        ``RES`` = DV − PRED, ``IRES`` = DV − IPRED (output unit, ``attrs["dv_unit"]``), ``WRES``, ``IWRES``,
        ``CWRES``, ``NPDE`` (dimensionless), ``ROW`` (1-based data row).  ``attrs`` holds ``dv_unit``,
        ``time_unit``, ``output``, ``npde_samples`` and ``seed``.

    Raises
    ------
    EstimationError
        A bad argument (the message starts with its name) or a dataset that does not match the fit.

    Examples
    --------
    See the module docstring.
    """
    if npde_samples != 0:
        _check_count(npde_samples, "npde_samples", 10)
    setup = _setup(fit_result, dataset, model)
    problem, population = setup.problem, setup.population
    omega = np.asarray(population.omega, dtype=float)
    residual = population.residual
    sigma2 = residual.sigma2
    add, prop = sigma2.get("additive", 0.0), sigma2.get("proportional", 0.0)
    pred, g0, ipred, g1 = _predictions(setup)
    y = problem.y
    var_pred = add + prop * pred * pred
    var_ipred = add + prop * ipred * ipred
    eta_obs = setup.eta[problem.seg]  # (M, n_eta)
    linearised = ipred - np.einsum("mk,mk->m", g1, eta_obs)
    cwres = _weighted(problem, y - linearised, g1, omega, var_ipred)
    wres = _weighted(problem, y - pred, g0, omega, var_pred)
    if npde_samples:
        rng = np.random.default_rng(seed)
        npde = _npde(problem, y, _simulate_replicates(setup, npde_samples, rng))
    else:
        npde = np.full(problem.n_obs, np.nan)
    times = np.concatenate(problem.times)[problem.rows]
    rows = np.concatenate([s.obs_row for s in dataset.subjects])[problem.rows]
    ids = np.asarray(problem.ids)[problem.seg]
    frame = pd.DataFrame({
        "ID": ids, "TIME": times, "DV": y, "PRED": pred, "IPRED": ipred, "RES": y - pred, "IRES": y - ipred,
        "WRES": wres, "IWRES": (y - ipred) / np.sqrt(var_ipred), "CWRES": cwres, "NPDE": npde,
        "ROW": rows.astype(int)})
    frame.attrs.update({"dv_unit": residual.unit, "time_unit": "h", "output": residual.output,
                        "npde_samples": int(npde_samples), "seed": seed})
    return frame


# ---------------------------------------------------------------------------- VPC
@dataclass(frozen=True)
class VPCResult:
    """A visual predictive check (from :func:`vpc`).

    Attributes
    ----------
    bin_edges : ndarray (n_bins + 1,)
        Time bin edges, h (bins are [lo, hi), the last one closed).
    bin_time : ndarray (n_bins,)
        Median observation time in each bin, h (where the percentiles are drawn).
    n_obs : ndarray (n_bins,)
        Observations per bin.
    quantiles : tuple of float
        The percentiles compared, as fractions.
    observed : ndarray (n_bins, n_q)
        Percentiles of the observed DV per bin (output unit).
    simulated_median, simulated_lower, simulated_upper : ndarray (n_bins, n_q)
        Median and ``ci`` interval, across the simulated replicates, of each replicate's percentile.
    ci : float
        Coverage of the simulated interval (0.9: the 5th and 95th percentiles of the replicates).
    time, dv : ndarray (M,)
        The observations (h, output unit), for the scatter.
    n_sim : int
        Replicate datasets.
    seed : int or None
        Seed of the simulation.
    dv_unit, output : str
        Unit and name of the observed output.
    """

    bin_edges: np.ndarray
    bin_time: np.ndarray
    n_obs: np.ndarray
    quantiles: tuple[float, ...]
    observed: np.ndarray
    simulated_median: np.ndarray
    simulated_lower: np.ndarray
    simulated_upper: np.ndarray
    ci: float
    time: np.ndarray
    dv: np.ndarray
    n_sim: int
    seed: int | None
    dv_unit: str = "mg/L"
    output: str = "C"

    def inside(self) -> np.ndarray:
        """(n_bins, n_q) bool: observed percentile within the simulated interval."""
        return (self.observed >= self.simulated_lower) & (self.observed <= self.simulated_upper)

    def to_frame(self) -> pd.DataFrame:
        """Long table: bin, time (h), n_obs, quantile, observed, sim_median, sim_lower, sim_upper."""
        rows = []
        for b in range(len(self.bin_time)):
            for j, q in enumerate(self.quantiles):
                rows.append({"bin": b, "bin_lower": self.bin_edges[b], "bin_upper": self.bin_edges[b + 1],
                             "time": self.bin_time[b], "n_obs": int(self.n_obs[b]), "quantile": q,
                             "observed": self.observed[b, j], "sim_median": self.simulated_median[b, j],
                             "sim_lower": self.simulated_lower[b, j], "sim_upper": self.simulated_upper[b, j]})
        return pd.DataFrame(rows)


def _bin_edges(times: np.ndarray, bins) -> np.ndarray:
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise EstimationError(f"bins: the number of bins must be >= 1, got {bins}")
        edges = np.unique(np.quantile(times, np.linspace(0.0, 1.0, int(bins) + 1)))
        if edges.size < 2:
            edges = np.array([times.min(), times.max() + 1.0])
        return edges
    try:
        edges = np.asarray(bins, dtype=float)
    except (TypeError, ValueError):
        raise EstimationError(f"bins: expected a number of bins or a sequence of edges (h), got {bins!r}") from None
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise EstimationError(f"bins: edges must be >= 2 finite, strictly increasing times (h), got {bins!r}")
    if times.min() < edges[0] or times.max() > edges[-1]:
        raise EstimationError(f"bins: edges [{edges[0]}, {edges[-1]}] h do not cover the observation times "
                              f"[{times.min()}, {times.max()}] h")
    return edges


def _check_quantiles(quantiles) -> tuple[float, ...]:
    try:
        q = tuple(float(v) for v in quantiles)
    except (TypeError, ValueError):
        raise EstimationError(f"quantiles: expected fractions in (0, 1), got {quantiles!r}") from None
    if not q or any(not 0.0 < v < 1.0 for v in q) or bool(np.any(np.diff(q) <= 0)):
        raise EstimationError(f"quantiles: must be strictly increasing fractions in (0, 1), got {quantiles!r}")
    return q


def vpc(fit_result, dataset, *, model=None, n_sim: int = 500, bins: int | Sequence[float] = 8,
        quantiles: Sequence[float] = (0.05, 0.5, 0.95), ci: float = 0.90, seed: int | None = 0) -> VPCResult:
    """Visual predictive check: observed percentiles per time bin vs those of datasets simulated from the fit.

    Each replicate re-uses the dataset's doses, observation times and covariates; η ~ N(0, Ω) and the
    residual error are drawn anew (one batched simulation per block of replicates).

    Parameters
    ----------
    fit_result : FitResult or Population
        The fitted population (only the population is used).
    dataset : medtwin.io.nonmem.Dataset
        The observed data.
    model : Model, optional
        Defaults to the library model ``population.model``.
    n_sim : int
        Replicate datasets (>= 20).
    bins : int or sequence of float
        Number of equal-count bins over the observation times, or bin edges in h covering every observation.
    quantiles : sequence of float
        Percentiles compared, as strictly increasing fractions in (0, 1).
    ci : float
        Coverage of the interval of the simulated percentiles, in (0, 1).
    seed : int or None
        Seed (numpy ``default_rng``).

    Returns
    -------
    VPCResult

    Examples
    --------
    >>> import io
    >>> from medtwin.core.population import Population, Theta
    >>> from medtwin.core.observation import ResidualError
    >>> from medtwin.io.access import OpenData
    >>> from medtwin.io.nonmem import read_nonmem
    >>> rows = "ID TIME AMT DV\\n" + "".join(f"{i} 0 100 0\\n{i} 1 0 {a}\\n{i} 6 0 {b}\\n" for i, a, b in
    ...     [(1, 4.6, 2.9), (2, 5.5, 2.8), (3, 4.1, 2.0), (4, 5.2, 3.3)])
    >>> data = read_nonmem(io.StringIO(rows), access=OpenData("synthetic records"))
    >>> pop = Population(name="demo", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
    ...     Theta("TVV", 20.0, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"),
    ...     omega=((0.1, 0.0), (0.0, 0.1)), residual=ResidualError("proportional", proportional=0.1))
    >>> result = vpc(pop, data, n_sim=100, bins=[0, 3, 7], seed=2)
    >>> result.observed.shape, bool(result.inside()[:, 1].all())
    ((2, 3), True)
    """
    n_sim = _check_count(n_sim, "n_sim", 20)
    q = _check_quantiles(quantiles)
    if not (isinstance(ci, (int, float)) and 0.0 < ci < 1.0):
        raise EstimationError(f"ci: must be a fraction in (0, 1), got {ci!r}")
    if isinstance(fit_result, FitResult):
        population = fit_result.population
    elif isinstance(fit_result, Population):
        population = fit_result
    else:
        raise EstimationError(f"fit_result: expected a FitResult (fit_focei) or a Population, "
                              f"got {type(fit_result).__name__}")
    from medtwin.models import get_model

    if not hasattr(dataset, "subjects"):
        raise EstimationError(f"dataset: expected a medtwin.io.nonmem.Dataset, got {type(dataset).__name__}")
    if population.iov is not None:
        raise EstimationError("population.iov: residual diagnostics and VPCs with inter-occasion variability are "
                              "not supported yet (the fit itself is: fit_focei, fit_nuts)")
    problem = Problem(population, model or get_model(population.model), dataset)
    setup = _Setup(population, problem, np.zeros((problem.n_subjects, len(population.iiv))))
    times = np.concatenate(problem.times)[problem.rows]
    edges = _bin_edges(times, bins)
    y_sim = _simulate_replicates(setup, n_sim, np.random.default_rng(seed))
    which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
    n_b, n_q = len(edges) - 1, len(q)
    observed, med, lo, hi = (np.full((n_b, n_q), np.nan) for _ in range(4))
    bin_time, n_obs = np.full(n_b, np.nan), np.zeros(n_b, int)
    for b in range(n_b):  # an empty bin keeps NaN
        mask = which == b
        if not mask.any():
            continue
        bin_time[b], n_obs[b] = np.median(times[mask]), mask.sum()
        observed[b] = np.quantile(problem.y[mask], q)
        per_rep = np.nanquantile(y_sim[:, mask], q, axis=1).T  # (n_sim, n_q)
        med[b] = np.nanmedian(per_rep, axis=0)
        lo[b], hi[b] = np.nanquantile(per_rep, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return VPCResult(bin_edges=edges, bin_time=bin_time, n_obs=n_obs, quantiles=q, observed=observed,
                     simulated_median=med, simulated_lower=lo, simulated_upper=hi, ci=float(ci), time=times,
                     dv=problem.y.copy(), n_sim=n_sim, seed=seed, dv_unit=population.residual.unit,
                     output=population.residual.output)


def plot_vpc(vpc_result: VPCResult, ax=None, *, log_y: bool = False):
    """Draw a VPC: observations, observed percentiles (lines) and simulated percentile intervals (bands).

    Parameters
    ----------
    vpc_result : VPCResult
        From :func:`vpc`.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when omitted.
    log_y : bool
        Logarithmic concentration axis.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> r = VPCResult(np.array([0.0, 2.0, 8.0]), np.array([1.0, 6.0]), np.array([4, 4]), (0.05, 0.5, 0.95),
    ...               np.ones((2, 3)), np.ones((2, 3)), np.zeros((2, 3)), 2 * np.ones((2, 3)), 0.9,
    ...               np.array([1.0, 6.0]), np.array([1.0, 1.0]), 100, 0)
    >>> plot_vpc(r).get_xlabel()
    'time (h)'
    """
    if not isinstance(vpc_result, VPCResult):
        raise EstimationError(f"vpc_result: expected a VPCResult (from vpc), got {type(vpc_result).__name__}")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    x = vpc_result.bin_time
    ax.scatter(vpc_result.time, vpc_result.dv, s=8, color="0.55", alpha=0.6, label="observations", zorder=1)
    colours = ["tab:blue", "tab:red", "tab:blue"] if len(vpc_result.quantiles) == 3 else \
        [plt.cm.viridis(v) for v in np.linspace(0, 1, len(vpc_result.quantiles))]
    pct = round(100 * vpc_result.ci)
    for j, q in enumerate(vpc_result.quantiles):
        label = f"{100 * q:g}th percentile"
        ax.fill_between(x, vpc_result.simulated_lower[:, j], vpc_result.simulated_upper[:, j],
                        color=colours[j], alpha=0.2, label=f"simulated {label}: {pct} % CI", zorder=0)
        ax.plot(x, vpc_result.simulated_median[:, j], color=colours[j], ls="--", lw=1)
        ax.plot(x, vpc_result.observed[:, j], color=colours[j], lw=2, marker="o", ms=3, label=f"observed {label}")
    for edge in vpc_result.bin_edges:
        ax.axvline(edge, color="0.85", lw=0.5, zorder=0)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{vpc_result.output} ({vpc_result.dv_unit})")
    ax.set_title(f"VPC ({vpc_result.n_sim} simulated datasets)")
    ax.legend(fontsize=7, loc="best")
    return ax


# ---------------------------------------------------------------------------- goodness of fit
def plot_gof(residual_frame: pd.DataFrame, path_or_fig, *, dv_unit: str | None = None, dpi: int = 120):
    """Goodness-of-fit panel: DV vs PRED, DV vs IPRED, CWRES vs TIME, CWRES vs PRED, NPDE vs TIME, NPDE QQ plot.

    Parameters
    ----------
    residual_frame : pandas.DataFrame
        From :func:`residuals` (needs :data:`GOF_COLUMNS`).
    path_or_fig : path or matplotlib Figure
        A file path (the PNG is written and the path returned) or a Figure to draw into (returned).
    dv_unit : str, optional
        Unit of DV/PRED/IPRED in the axis labels; defaults to ``residual_frame.attrs["dv_unit"]``.
    dpi : int
        Resolution of a written file.

    Returns
    -------
    pathlib.Path or matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd
    >>> from matplotlib.figure import Figure
    >>> f = pd.DataFrame({c: np.linspace(1, 2, 5) for c in GOF_COLUMNS})
    >>> len(plot_gof(f, Figure()).axes)
    6
    """
    from pathlib import Path

    from matplotlib.figure import Figure

    if not isinstance(residual_frame, pd.DataFrame):
        raise DataError(f"residual_frame: expected a pandas DataFrame from residuals(), "
                        f"got {type(residual_frame).__name__}")
    missing = [c for c in GOF_COLUMNS if c not in residual_frame.columns]
    if missing:
        raise DataError(f"residual_frame: missing column(s) {missing} (needs {list(GOF_COLUMNS)})")
    if isinstance(path_or_fig, Figure):
        fig, path = path_or_fig, None
    elif isinstance(path_or_fig, (str, os.PathLike)):
        fig, path = Figure(figsize=(13, 8)), Path(path_or_fig)
    else:
        raise DataError(f"path_or_fig: expected a file path or a matplotlib Figure, got {type(path_or_fig).__name__}")
    unit = dv_unit or residual_frame.attrs.get("dv_unit", "mg/L")
    time_unit = residual_frame.attrs.get("time_unit", "h")
    f = residual_frame
    axes = fig.subplots(2, 3).ravel()
    for ax, x in zip(axes[:2], ("PRED", "IPRED")):
        ax.scatter(f[x], f["DV"], s=10, alpha=0.6)
        both = np.concatenate([f[x].to_numpy(float), f["DV"].to_numpy(float)])
        both = both[np.isfinite(both)]
        if both.size:
            lim = (float(both.min()), float(both.max()))
            ax.plot(lim, lim, color="k", lw=1)
        ax.set_xlabel(f"{x} ({unit})")
        ax.set_ylabel(f"DV ({unit})")
        ax.set_title(f"DV vs {x}")
    panels = ((axes[2], "TIME", f"time ({time_unit})", "CWRES"), (axes[3], "PRED", f"PRED ({unit})", "CWRES"),
              (axes[4], "TIME", f"time ({time_unit})", "NPDE"))
    for ax, x, xlabel, y in panels:
        ax.scatter(f[x], f[y], s=10, alpha=0.6)
        ax.axhline(0.0, color="k", lw=1)
        for level in (-1.96, 1.96):
            ax.axhline(level, color="k", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{y} (dimensionless)")
        ax.set_title(f"{y} vs {x}")
    npde = np.sort(f["NPDE"].to_numpy(float))
    npde = npde[np.isfinite(npde)]
    ax = axes[5]
    if npde.size:
        theoretical = special.ndtri((np.arange(1, npde.size + 1) - 0.5) / npde.size)
        ax.scatter(theoretical, npde, s=10, alpha=0.6)
        ax.plot(theoretical, theoretical, color="k", lw=1)
    ax.set_xlabel("N(0, 1) quantile (dimensionless)")
    ax.set_ylabel("NPDE (dimensionless)")
    ax.set_title("NPDE QQ plot")
    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=dpi)
    return path

