"""A population-fit report on disk: estimates, Ω, shrinkage, residuals, GOF and VPC plots, the fitted population.

:func:`write_fit_report` writes, into one folder,

========================  ===================================================================
``estimates.csv``         parameter, NONMEM name (THETA(k), OMEGA(i,j), SIGMA(k,k); IOV Ω as the block of the first
                          occasion), estimate,
                          unit, SE, RSE % (from the covariance step; empty when it failed or
                          was skipped), fixed
``omega.csv``             Ω (log-scale variances/covariances), one row and column per η
``shrinkage.csv``         η shrinkage 1 − SD(η̂)/ω per η and ε shrinkage 1 − SD(IWRES), in %
``residuals.csv``         :func:`medtwin.infer.diagnostics.residuals` (PRED, IPRED, CWRES, NPDE ...)
``gof.png``               :func:`medtwin.infer.diagnostics.plot_gof`
``vpc.png``               :func:`medtwin.infer.diagnostics.vpc` + ``plot_vpc``
``vpc.csv``               the VPC percentiles per time bin
``summary.json``          OFV, −2LL, convergence, covariance status, counts, wall times, seed
``fitted_population.yaml``  :func:`medtwin.io.population_file.save_population` of the fit
========================  ===================================================================

Plots use matplotlib's Agg canvas (no display is needed).  With inter-occasion variability only
``estimates.csv`` (Ω_IOV included), ``omega.csv``, ``shrinkage.csv`` (η), ``summary.json`` and
``fitted_population.yaml`` are written: residual diagnostics and the VPC do not take IOV yet.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from medtwin.errors import EstimationError
from medtwin.io.access import authorize
from medtwin.io.nonmem import dataset_data_classes
from medtwin.infer.diagnostics import plot_gof, plot_vpc, residuals, vpc
from medtwin.infer.foce import FitResult

__all__ = ["estimates_table", "omega_table", "shrinkage_table", "write_fit_report"]


def _sigma_names(residual) -> dict[str, str]:
    """σ component -> NONMEM name; combined error follows ``Y = F + F*EPS(1) + EPS(2)``."""
    if residual.model == "combined":
        return {"proportional": "SIGMA(1,1)", "additive": "SIGMA(2,2)"}
    return {residual.model: "SIGMA(1,1)"}


def estimates_table(fit_result: FitResult) -> pd.DataFrame:
    """Every θ (fixed ones too), Ω element and σ² with NONMEM names, units, SE and RSE %.

    Columns: ``parameter``, ``nonmem``, ``estimate``, ``unit``, ``SE``, ``RSE_percent``, ``fixed``.
    Units: θ in their declared units; Ω elements ``1`` (log-scale variances); σ² of a proportional error
    ``1`` (fraction²), of an additive error ``(<output unit>)^2``.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from medtwin.core.population import Population, Theta
    >>> from medtwin.core.observation import ResidualError
    >>> pop = Population(name="demo", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
    ...     Theta("TVV", 20.0, "L", lower=0, fixed=True)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL",),
    ...     omega=((0.1,),), residual=ResidualError("additive", additive=0.5))
    >>> fake = SimpleNamespace(population=pop, parameter_names=("THETA:TVCL", "OMEGA(1,1)", "SIGMA:additive"),
    ...     estimates=np.array([2.0, 0.1, 0.25]), se=np.array([0.2, 0.05, np.nan]))
    >>> estimates_table(fake)[["nonmem", "unit", "RSE_percent", "fixed"]].values.tolist()
    [['THETA(1)', 'L/h', 10.0, False], ['THETA(2)', 'L', nan, True], ['OMEGA(1,1)', '1', 50.0, False], ['SIGMA(1,1)', '(mg/L)^2', nan, False]]
    """
    population = fit_result.population
    se = dict(zip(fit_result.parameter_names, (float(v) for v in fit_result.se)))
    estimate = dict(zip(fit_result.parameter_names, (float(v) for v in fit_result.estimates)))
    rows = []

    def add(name, key, nonmem, value, unit, fixed=False):
        s = se.get(key, math.nan)
        rse = 100.0 * s / abs(value) if value != 0 and math.isfinite(s) else math.nan
        rows.append({"parameter": name, "nonmem": nonmem, "estimate": value, "unit": unit, "SE": s,
                     "RSE_percent": rse, "fixed": bool(fixed)})

    for k, t in enumerate(population.thetas, start=1):
        add(t.name, f"THETA:{t.name}", f"THETA({k})", estimate.get(f"THETA:{t.name}", float(t.value)), t.unit,
            t.fixed)
    omega = np.asarray(population.omega, dtype=float)
    for i, pi in enumerate(population.iiv):
        for j in range(i + 1):
            key = f"OMEGA({i + 1},{j + 1})"
            if i != j and omega[i, j] == 0.0 and key not in estimate:
                continue
            name = f"omega_{pi}" if i == j else f"omega_{pi}_{population.iiv[j]}"
            add(name, key, key, estimate.get(key, float(omega[i, j])), "1")
    if population.iov is not None:  # NONMEM: the IOV blocks follow the IIV ones ($OMEGA BLOCK(n) ... SAME)
        iov, first = np.asarray(population.iov.omega, dtype=float), len(population.iiv)
        for i, pi in enumerate(population.iov.parameters):
            for j in range(i + 1):
                key = f"OMEGA_IOV({i + 1},{j + 1})"
                if i != j and iov[i, j] == 0.0 and key not in estimate:
                    continue
                name = f"omega_iov_{pi}" if i == j else f"omega_iov_{pi}_{population.iov.parameters[j]}"
                add(name, key, f"OMEGA({first + i + 1},{first + j + 1}) (IOV, SAME per occasion)",
                    estimate.get(key, float(iov[i, j])), "1")
    residual = population.residual
    for component, nonmem in _sigma_names(residual).items():
        unit = "1" if component == "proportional" else f"({residual.unit})^2"
        add(f"sigma2_{component}", f"SIGMA:{component}", nonmem,
            estimate.get(f"SIGMA:{component}", residual.sigma2[component]), unit)
    return pd.DataFrame(rows)


def omega_table(fit_result: FitResult) -> pd.DataFrame:
    """Ω as a labelled square table (log-scale variances/covariances; index and columns: η parameters)."""
    population = fit_result.population
    names = list(population.iiv)
    frame = pd.DataFrame(np.asarray(population.omega, dtype=float), index=names, columns=names)
    frame.index.name = "parameter"
    return frame


def shrinkage_table(fit_result: FitResult) -> pd.DataFrame:
    """η and ε shrinkage in % (columns ``kind``, ``parameter``, ``nonmem``, ``omega``, ``sd_ebe``,
    ``shrinkage_percent``)."""
    population = fit_result.population
    eta = np.asarray(fit_result.eta, dtype=float)
    omega = np.asarray(population.omega, dtype=float)
    rows = []
    for k, p in enumerate(population.iiv):
        sd = float(np.std(eta[:, k], ddof=1)) if len(eta) > 1 else math.nan
        rows.append({"kind": "eta", "parameter": p, "nonmem": f"ETA({k + 1})", "omega": float(omega[k, k]),
                     "sd_ebe": sd, "shrinkage_percent": 100.0 * float(fit_result.eta_shrinkage[k])})
    rows.append({"kind": "epsilon", "parameter": population.residual.output, "nonmem": "EPS",
                 "omega": math.nan, "sd_ebe": math.nan, "shrinkage_percent": 100.0 * float(fit_result.eps_shrinkage)})
    return pd.DataFrame(rows)


def _summary(fit_result: FitResult, seed, vpc_samples, npde_samples) -> dict:
    return {"method": fit_result.population.estimation.get("method", "FOCEI"), "ofv": float(fit_result.ofv),
            "ofv_convention": "-2 log-likelihood without n*log(2*pi) (NONMEM)", "minus2ll": float(fit_result.minus2ll),
            "converged": bool(fit_result.converged), "message": fit_result.message,
            "covariance_status": fit_result.covariance_status, "covariance_method": fit_result.covariance_method,
            "covariance_message": fit_result.covariance_message, "n_subjects": len(fit_result.ids),
            "n_obs": int(fit_result.n_obs), "n_iterations": int(fit_result.n_iterations),
            "n_evaluations": int(fit_result.n_evaluations),
            "wall_time_s": {k: float(v) for k, v in fit_result.wall_time.items()}, "seed": seed,
            "vpc_samples": vpc_samples, "npde_samples": npde_samples, "model": fit_result.population.model,
            "population": fit_result.population.name}


def write_fit_report(fit_result: FitResult, dataset, out_dir, *, access, model=None, vpc_samples: int = 500,
                     npde_samples: int = 500, vpc_bins=8, seed: int | None = 0) -> dict[str, Path]:
    """Write the fit report (module table) into ``out_dir`` (created when absent; files are overwritten).

    Parameters
    ----------
    fit_result : FitResult
        From :func:`medtwin.infer.foce.fit_focei`.
    dataset : medtwin.io.nonmem.Dataset
        The data it was fitted to.
    out_dir : path
        Destination folder.
    access : DataAccess
        The residual table and plots hold every subject's data: a ``write`` is
        asked of the consent gate (see :mod:`medtwin.io.access`) before anything is written.
    model : Model, optional
        Defaults to the library model ``population.model``.
    vpc_samples, npde_samples : int
        Replicate datasets simulated for the VPC (>= 20) and for NPDE (>= 10).
    vpc_bins : int or sequence of float
        VPC time bins (see :func:`medtwin.infer.diagnostics.vpc`).
    seed : int or None
        Seed of both simulations (the VPC uses ``seed + 1`` when an int).

    Returns
    -------
    dict
        Name (``"estimates"``, ``"omega"``, ``"shrinkage"``, ``"residuals"``, ``"gof"``, ``"vpc"``,
        ``"vpc_table"``, ``"summary"``, ``"population"``) -> Path.

    Examples
    --------
    >>> import io, tempfile
    >>> from medtwin.core.population import Population, Theta
    >>> from medtwin.core.observation import ResidualError
    >>> from medtwin.infer import fit_focei
    >>> from medtwin.io.access import OpenData
    >>> from medtwin.io.nonmem import read_nonmem
    >>> rows = "ID TIME AMT DV\\n" + "".join(f"{i} 0 100 0\\n{i} 1 0 {a}\\n{i} 6 0 {b}\\n" for i, a, b in
    ...     [(1, 4.6, 2.9), (2, 5.5, 2.8), (3, 4.1, 2.0), (4, 5.2, 3.3), (5, 4.4, 2.5), (6, 5.0, 2.1)])
    >>> data = read_nonmem(io.StringIO(rows), access=OpenData("synthetic records"))
    >>> pop = Population(name="demo", model="pk1_iv", thetas=(Theta("TVCL", 2.0, "L/h", lower=0),
    ...     Theta("TVV", 20.0, "L", lower=0)), typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"),
    ...     omega=((0.1, 0.0), (0.0, 0.1)), residual=ResidualError("proportional", proportional=0.1))
    >>> fit = fit_focei(pop, data, covariance="none")
    >>> paths = write_fit_report(fit, data, tempfile.mkdtemp(), access=OpenData("synthetic records"),
    ...                          vpc_samples=50, npde_samples=50, vpc_bins=2)
    >>> sorted(paths)
    ['estimates', 'gof', 'omega', 'population', 'residuals', 'shrinkage', 'summary', 'vpc', 'vpc_table']
    >>> all(p.exists() for p in paths.values())
    True
    """
    from matplotlib.figure import Figure  # the Agg canvas: no pyplot, no display

    from medtwin.io.population_file import save_population

    if not isinstance(fit_result, FitResult):
        raise EstimationError(f"fit_result: expected a FitResult (fit_focei), got {type(fit_result).__name__}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise EstimationError(f"out_dir: expected a folder path, got {type(out_dir).__name__}")
    authorize(access, dataset.ids, dataset_data_classes(dataset), "write")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EstimationError(f"out_dir: cannot create {out}: {exc}") from None
    iov = fit_result.population.iov is not None  # residual diagnostics and VPC do not take IOV yet: left out
    paths = {name: out / file for name, file in (
        ("estimates", "estimates.csv"), ("omega", "omega.csv"), ("shrinkage", "shrinkage.csv"),
        ("residuals", "residuals.csv"), ("gof", "gof.png"), ("vpc", "vpc.png"), ("vpc_table", "vpc.csv"),
        ("summary", "summary.json"), ("population", "fitted_population.yaml"))}
    estimates_table(fit_result).to_csv(paths["estimates"], index=False, lineterminator="\n")
    omega_table(fit_result).to_csv(paths["omega"], lineterminator="\n")
    shrinkage_table(fit_result).to_csv(paths["shrinkage"], index=False, lineterminator="\n")
    paths["summary"].write_text(json.dumps(_summary(fit_result, seed, vpc_samples, npde_samples),
                                           indent=2) + "\n", encoding="utf-8")
    save_population(fit_result.population, paths["population"])
    if iov:
        return {k: v for k, v in paths.items() if k in ("estimates", "omega", "shrinkage", "summary", "population")}
    frame = residuals(fit_result, dataset, model=model, npde_samples=npde_samples, seed=seed)
    check = vpc(fit_result, dataset, model=model, n_sim=vpc_samples, bins=vpc_bins,
                seed=None if seed is None else seed + 1)
    frame.to_csv(paths["residuals"], index=False, lineterminator="\n")
    check.to_frame().to_csv(paths["vpc_table"], index=False, lineterminator="\n")
    plot_gof(frame, paths["gof"])
    fig = Figure(figsize=(8, 5))
    plot_vpc(check, fig.subplots())
    fig.tight_layout()
    fig.savefig(paths["vpc"], dpi=120)
    return paths
