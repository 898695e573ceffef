"""When to draw the levels: a Bayesian c-optimal sampling design over one or several population priors.

A dose decision on an AUC target depends on the patient's clearance: at steady state AUC24 = daily dose / CL
for a linear model, so what the levels must pin down is log CL.  :func:`sampling_design` chooses the times of
``n_levels`` levels among candidate times by minimising the expected posterior variance of log CL,

    E_θ [ e_CLᵀ (J(θ)ᵀ R(θ)⁻¹ J(θ) + Ω⁻¹)⁻¹ e_CL ],

the linearised (Fisher-information) posterior covariance of the log parameters, averaged over draws θ from the
prior of every candidate population (equal weight per population: the model-averaged prior), where J is the
sensitivity of the concentrations at the chosen times to the log parameters (central finite differences) and
R the residual variance (the assay error the levels will be measured with).  This is the ED/Bayesian
c-optimality criterion for one parameter of interest (Atkinson, Donev & Tobias, Optimum Experimental Designs,
with SAS, OUP 2007, ch. 10 and 18; for sparse sampling in TDM: Tod & Rocchisani, J Pharmacokinet Biopharm
1996;24(5):455-473).  It needs no level: only the covariates, the doses already planned and the priors.

Examples
--------
>>> import numpy as np
>>> from medtwin.core.observation import ResidualError
>>> from medtwin.io.population_file import drug_populations
>>> from medtwin.core.events import Regimen
>>> day1 = Regimen.every(12.0, "h", 1000.0, "mg", n=2, duration=1.0)
>>> d = sampling_design(list(drug_populations("vancomycin")), {"CRCL": 80.0, "WT": 70.0, "DIAL": 0.0}, day1,
...                     np.arange(2.0, 24.0, 0.5), ResidualError("combined", 0.5, 0.1), n_draws=40)
>>> len(d.times), d.times[-1] >= 20.0
(2, True)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.simulate import simulate
from medtwin.errors import DataError
from medtwin.models import get_model

__all__ = ["SamplingDesign", "design_variance", "sampling_design"]


@dataclass(frozen=True)
class SamplingDesign:
    """The chosen level times (h), their expected posterior SD of log CL and that of every design evaluated."""

    times: tuple[float, ...]
    sd_log_cl: float
    table: tuple[tuple[tuple[float, ...], float], ...]  # (times, expected posterior SD of log CL), best first

    def sd_of(self, times) -> float:
        """The criterion (expected posterior SD of log CL) of the design ``times`` if it was evaluated."""
        key = tuple(round(float(t), 9) for t in sorted(times))
        for design, value in self.table:
            if tuple(round(t, 9) for t in design) == key:
                return value
        raise DataError(f"sampling design {key} was not among the candidates")


def _information(population, covariates, history: Regimen, times: np.ndarray, residual: ResidualError,
                 omega_scale: float, n_draws: int, rng, step: float = 1e-4):
    """Per prior draw: the information rows (n, T, p) of each time, Ω⁻¹ (p, p) and the index of CL."""
    prior = population.prior_for(covariates)
    names = list(prior.parameters)
    if "CL" not in names:
        raise DataError(f"sampling design: {population.name} has no IIV on CL")
    cov = np.asarray(prior.covariance, float) * float(omega_scale)
    z = rng.multivariate_normal(np.asarray(prior.log_mean, float), cov, size=int(n_draws))
    model = get_model(prior.model)
    fixed = {k: float(v) for k, v in prior.fixed.items()}
    p = len(names)
    shifts = np.concatenate([np.zeros((1, p)), step * np.eye(p), -step * np.eye(p)])  # (1 + 2p, p)
    zz = (z[:, None, :] + shifts[None, :, :]).reshape(-1, p)
    params = {**{k: np.full(len(zz), v) for k, v in fixed.items()},
              **{name: np.exp(zz[:, j]) for j, name in enumerate(names)}}
    out = np.asarray(simulate(model, params, history, times, keep_states=False).output(residual.output), float)
    out = out.reshape(len(z), 1 + 2 * p, len(times))
    jac = (out[:, 1:1 + p, :] - out[:, 1 + p:, :]) / (2.0 * step)               # (n, p, T): dC/dlogθ
    conc = np.maximum(out[:, 0, :], 0.0)
    var = residual.additive ** 2 + (residual.proportional * conc) ** 2              # (n, T)
    if residual.model == "additive":
        var = np.full_like(conc, residual.additive ** 2)
    elif residual.model == "proportional":
        var = np.maximum((residual.proportional * conc) ** 2, 1e-12)
    rows = np.swapaxes(jac, 1, 2) / np.sqrt(var)[:, :, None]                         # (n, T, p)
    return rows, np.linalg.inv(cov), names.index("CL")


def design_variance(rows: np.ndarray, omega_inv: np.ndarray, k: int, index: Sequence[int]) -> np.ndarray:
    """Per draw: the linearised posterior variance of log parameter ``k`` with levels at ``index`` (rows' axis 1)."""
    sub = rows[:, list(index), :]                                                    # (n, m, p)
    precision = np.einsum("nmi,nmj->nij", sub, sub) + omega_inv[None]
    return np.linalg.inv(precision)[:, k, k]


def sampling_design(populations: Sequence, covariates: Mapping[str, float], history: Regimen, candidate_times,
                    residual: ResidualError, *, n_levels: int = 2, omega_scale: float = 1.0, n_draws: int = 200,
                    seed: int = 0, fixed_times: Sequence[float] = ()) -> SamplingDesign:
    """The ``n_levels`` level times among ``candidate_times`` (h) minimising the expected posterior SD of log CL.

    Parameters
    ----------
    populations : sequence of Population
        The candidate priors (each weighted equally, as the model-averaged prior before any level).
    covariates : mapping
        The patient's covariates (units of the population files).
    history : Regimen
        The doses given before and during the sampling window (mg, h).
    candidate_times : array_like
        Times (h) a level may be drawn at.
    residual : ResidualError
        The error the levels are measured with (mg/L), e.g. the laboratory's assay error.
    n_levels : int
        How many levels the design places (all subsets of that size are evaluated).
    omega_scale : float
        Multiplies every prior's Ω (>= 1; a flattened prior, as the twin fits with).
    n_draws : int
        Prior draws per population.
    fixed_times : sequence of float
        Times (h) that must be in the design (they count towards ``n_levels``).

    Returns
    -------
    SamplingDesign
        Best first; the criterion is sqrt(mean over draws and populations of the posterior variance of log CL).
    """
    times = np.unique(np.concatenate([np.asarray(candidate_times, float), np.asarray(fixed_times, float)]))
    if times.size < n_levels or n_levels < 1 or not np.all(times > 0):
        raise DataError(f"sampling design: need at least n_levels ({n_levels}) positive candidate times")
    if not populations:
        raise DataError("sampling design: give at least one population")
    if not (np.isfinite(omega_scale) and omega_scale >= 1.0) or int(n_draws) < 2:
        raise DataError("sampling design: omega_scale >= 1 and n_draws >= 2")
    rng = np.random.default_rng([int(seed), 1996])
    parts = [_information(p, covariates, history, times, residual, omega_scale, n_draws, rng) for p in populations]
    fixed_index = [int(np.argmin(np.abs(times - t))) for t in fixed_times]
    free = [j for j in range(times.size) if j not in fixed_index]
    table = []
    for extra in itertools.combinations(free, int(n_levels) - len(fixed_index)):
        index = sorted(fixed_index + list(extra))
        var = np.mean([np.mean(design_variance(rows, omega_inv, k, index)) for rows, omega_inv, k in parts])
        table.append((tuple(float(times[j]) for j in index), float(np.sqrt(var))))
    table.sort(key=lambda row: (row[1], row[0]))
    return SamplingDesign(table[0][0], table[0][1], tuple(table))
