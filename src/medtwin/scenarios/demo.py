"""The vancomycin demo: a virtual ward on a standard regimen, then one patient's twin.

This is the main job of ``medtwin demo``.  Part 1 (:func:`run_vancomycin_demo`):  Virtual patients get creatinine
clearance and weight from documented distributions, individual parameters from
the Goti 2018 typical values, covariate model and inter-individual variability,
and a standard regimen (1,000 mg every 12 h as 1-h infusions).  AUC over the
last 24 h of the run is compared with the 400–600 mg·h/L window.

Part 2 (:func:`run_twin_demo`): one virtual patient whose true parameters are
drawn from the population, two measured levels (a trough and a peak, with
residual error), the twin personalized on them (MAP + Laplace), the next 48 h
forecast under the current regimen with bands, and P(AUC24 in 400–600).

Examples
--------
>>> result = run_vancomycin_demo(n_patients=3, seed=1)
>>> result.auc24.shape
(3,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medtwin.core.events import Regimen
from medtwin.core.simulate import Trajectory, simulate
from medtwin.core.data import PatientData, PredictiveBand
from medtwin.infer.personalize import personalize
from medtwin.infer.posterior import Posterior, probability
from medtwin.models import get_model
from medtwin.models.vancomycin import AUC24_TARGET, IIV_OMEGA2
from medtwin.twin import Twin


@dataclass(frozen=True)
class DemoResult:
    """Covariates, parameters, trajectory and AUC24 of the virtual patients."""

    covariates: dict[str, np.ndarray]
    parameters: dict[str, np.ndarray]
    regimen: Regimen
    trajectory: Trajectory
    auc24: np.ndarray
    target: tuple[float, float]

    @property
    def fraction_on_target(self) -> float:
        lo, hi = self.target
        return float(np.mean((self.auc24 >= lo) & (self.auc24 <= hi)))


def virtual_ward(n_patients: int, seed: int) -> dict[str, np.ndarray]:
    """Covariates of ``n_patients`` adults.

    Creatinine clearance (mL/min) is log-normal with median 80 and 45 % CV,
    truncated to [15, 150] as in the source data; weight (kg) is normal 80 ± 15,
    truncated to [45, 150].  Illustrative distributions, close to the Goti 2018
    cohort (median 62 mL/min, 79 kg).
    """
    rng = np.random.default_rng(seed)
    crcl = np.clip(80.0 * np.exp(rng.normal(0.0, 0.43, n_patients)), 15.0, 150.0)
    weight = np.clip(rng.normal(80.0, 15.0, n_patients), 45.0, 150.0)
    return {"CRCL": crcl, "WT": weight}


def individual_parameters(covariates: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Typical values from the covariate model times log-normal IIV (Goti 2018 ω²)."""
    model = get_model("vancomycin_goti2018")
    typical = model.typical_parameters(covariates)
    rng = np.random.default_rng(seed + 1)
    n = len(next(iter(covariates.values())))
    out = {}
    for name, value in typical.items():
        omega2 = IIV_OMEGA2.get(name, 0.0)
        out[name] = np.broadcast_to(value, (n,)) * np.exp(rng.normal(0.0, np.sqrt(omega2), n))
    return out


def auc_trapezoid(times: np.ndarray, conc: np.ndarray, start: float, stop: float) -> np.ndarray:
    """AUC (mg·h/L) over [start, stop] by the trapezoid rule; conc shape (n_patients, n_times)."""
    mask = (times >= start) & (times <= stop)
    return np.trapezoid(conc[:, mask], times[mask], axis=1)


def run_vancomycin_demo(
    n_patients: int = 12, days: int = 3, dose_mg: float = 1000.0, interval_h: float = 12.0, seed: int = 2026,
    progress=None,
) -> DemoResult:
    """Simulate the virtual ward; AUC24 is taken over the last 24 h (a 0.05 h grid)."""
    covariates = virtual_ward(n_patients, seed)
    params = individual_parameters(covariates, seed)
    n_doses = int(days * 24 / interval_h)
    regimen = Regimen.every(interval_h, "h", dose_mg, "mg", n=n_doses, duration=1.0)
    horizon = days * 24.0
    times = np.round(np.arange(0.0, horizon + 1e-9, 0.05), 10)
    trajectory = simulate(get_model("vancomycin_goti2018"), params, regimen, times, keep_states=False,
                          progress=progress)
    auc24 = auc_trapezoid(times, trajectory.output("C"), horizon - 24.0, horizon)
    return DemoResult(covariates, params, regimen, trajectory, auc24, AUC24_TARGET)


def plot_demo(result: DemoResult, path) -> None:
    """Concentration–time curves and AUC24 per patient with the target window shaded (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = result.trajectory
    times = tr.time[: tr.shape[1]]
    conc = tr.output("C")
    lo, hi = result.target
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    on_target = (result.auc24 >= lo) & (result.auc24 <= hi)
    for i in range(conc.shape[0]):
        ax1.plot(times, conc[i], lw=1.0, color="tab:green" if on_target[i] else "tab:red", alpha=0.8)
    ax1.axvspan(times[-1] - 24.0, times[-1], color="0.9", zorder=0, label="AUC24 window")
    ax1.set_xlabel("time (h)")
    ax1.set_ylabel("vancomycin concentration (mg/L)")
    ax1.set_title(f"{conc.shape[0]} virtual patients, {result.regimen.events[0].amount:.0f} mg "
                  f"q{result.regimen.events[0].ii:.0f}h (1-h infusion)")
    ax1.legend(loc="upper left")
    order = np.argsort(result.auc24)
    ax2.axhspan(lo, hi, color="tab:green", alpha=0.15, label=f"target {lo:.0f}–{hi:.0f} mg·h/L")
    ax2.scatter(np.arange(len(order)), result.auc24[order], c=np.where(on_target[order], "tab:green", "tab:red"))
    ax2.set_xlabel("patient (sorted by AUC24)")
    ax2.set_ylabel("AUC24, last 24 h (mg·h/L)")
    ax2.set_title(f"{100 * result.fraction_on_target:.0f} % on target")
    ax2.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def demo_table(result: DemoResult):
    """One row per patient: ID, covariates (units in the names), parameters, AUC24, on-target flag."""
    import pandas as pd

    lo, hi = result.target
    data = {"ID": np.arange(1, len(result.auc24) + 1), "CRCL_mL_min": result.covariates["CRCL"],
            "WT_kg": result.covariates["WT"]}
    data.update({f"{k}": v for k, v in result.parameters.items()})
    data["AUC24_mg_h_L"] = result.auc24
    data["on_target"] = (result.auc24 >= lo) & (result.auc24 <= hi)
    return pd.DataFrame(data)


@dataclass(frozen=True)
class TwinDemoResult:
    """One virtual patient's twin: truth, data, posterior, 48-h forecast and target attainment.

    ``twin`` is the :class:`medtwin.twin.Twin` value itself (model + posterior + the doses given); ``posterior``
    is ``twin.posterior`` and ``band`` its forecast under the current regimen carried on.
    """

    covariates: dict[str, float]
    true_parameters: dict[str, float]
    data: PatientData
    posterior: Posterior
    regimen: Regimen
    band: PredictiveBand
    true_concentration: np.ndarray
    auc_window: tuple[float, float]
    p_target: float
    true_auc24: float
    target: tuple[float, float]
    twin: Any = None


def run_twin_demo(seed: int = 2026, *, n_draws: int = 2000, horizon_h: float = 48.0) -> TwinDemoResult:
    """Personalize a virtual vancomycin patient from two levels and forecast the next ``horizon_h`` hours.

    The patient (CrCl 45 mL/min, 82 kg) gets 1,000 mg q12h as 1-h infusions;
    levels are drawn at 35.5 h (trough before the 4th dose) and 38 h (1 h
    after its infusion) from the patient's true parameters (drawn from the
    Goti 2018 IIV) plus the model's residual error.  AUC24 is the last 24 h
    of the forecast window, in mg·h/L.
    """
    from medtwin.io.population_file import load_population, shipped_population_path

    population = load_population(shipped_population_path("vancomycin_goti2018"))
    rng = np.random.default_rng(seed)
    covariates = {"CRCL": 45.0, "WT": 82.0, "DIAL": 0.0}
    eta = rng.multivariate_normal(np.zeros(len(population.iiv)), population.omega)
    truth = {k: float(v) for k, v in population.individual_parameters(covariates, eta).items()}
    given = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)
    times, pre = np.array([35.5, 38.0]), np.array([True, False])
    model = get_model(population.model)
    f = np.asarray(simulate(model, truth, given, times, pre_dose=[pre]).output("C")).reshape(-1)
    err = population.residual
    levels = np.round(f + np.sqrt(err.variance(f)) * rng.standard_normal(f.size), 1)
    data = PatientData(given, times, levels, covariates, pre_dose=pre, patient="demo-1")
    twin = Twin.from_posterior(personalize(population, data, method="laplace", model=model))
    start = twin.time
    end = start + horizon_h
    regimen = given.continued(end)
    grid = np.round(np.arange(0.0, end + 1e-9, 0.1), 10)
    band = twin.forecast(Regimen(regimen.events[len(given.events):]), times=grid, n_draws=n_draws, seed=seed)
    window = (end - 24.0, end)
    true_c = simulate(model, truth, regimen, grid).output("C")[0]
    mask = (grid >= window[0]) & (grid <= window[1])
    true_auc = float(np.trapezoid(true_c[mask], grid[mask]))
    p = probability(band.auc("C", *window), *AUC24_TARGET)
    return TwinDemoResult(covariates, truth, data, twin.posterior, regimen, band, true_c, window, p, true_auc,
                          AUC24_TARGET, twin)
