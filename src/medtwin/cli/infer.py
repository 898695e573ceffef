"""``medtwin fit``, ``personalize`` and ``forecast``: parse -> request -> :func:`medtwin.workflows.run` -> render."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.table import Table

from medtwin.cli import edge, render
from medtwin.cli.edge import (ACTOR, COVARIATE, DATA, ID, METHOD, OPEN_DATA, POP, POPS, PURPOSES, SEED, SELECT,
                              TREATMENT, WEIGHTING,
                              OutFolder, ProgressBar, check_covariates, check_patient_options, console,
                              default_actor, err_console, fail, input_file, with_option)
from medtwin.errors import MedtwinError

__all__ = ["MAX_FORECAST_HOURS", "fit_command", "forecast_command", "personalize_command", "register"]

#: Longest forecast (h): 30 days on a 0.1-h grid with 1,000 draws is about 60 MB per output.
MAX_FORECAST_HOURS = 720.0


def fit_command(
    model_name: str = typer.Argument(..., metavar="MODEL", help="Library model (must match the population)."),
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="NONMEM-style dataset (CSV).",
                              callback=input_file("dataset")),
    population_file: Path = POP,
    method: str = typer.Option("foce", "--method", help="foce (FOCE with interaction, ML) | nuts (hierarchical "
                               "Bayes)"),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for the estimates, diagnostics and plots."),
    purpose: str = typer.Option("model-training", "--purpose", help=" | ".join(PURPOSES)),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
    open_data: Optional[str] = typer.Option(None, "--open-data", metavar="REASON",
                                            help="The data are not identifiable patient data (say why)."),
    seed: int = typer.Option(0, help="Seed for NPDE/VPC simulations and NUTS."),
    chains: int = typer.Option(4, "--chains", min=1, max=64, help="NUTS: number of chains (1-64)."),
    draws: int = typer.Option(1000, "--draws", min=10, max=100_000, help="NUTS: draws per chain after warm-up "
                              "(10-100,000)."),
    warmup: int = typer.Option(1000, "--warmup", min=10, max=100_000, help="NUTS: warm-up iterations per chain "
                               "(10-100,000)."),
) -> None:
    """Fit a population model to a dataset: estimates with SE/RSE, shrinkage, GOF and VPC plots (FOCEI),
    or the hierarchical Bayes posterior with R-hat and ESS (NUTS)."""
    from medtwin.io.population_file import load_population
    from medtwin.models import get_model

    if method not in ("foce", "nuts"):
        fail(typer.BadParameter(f"--method must be foce or nuts, not {method!r}"))
    actor = actor or default_actor()
    outputs = OutFolder(out)
    try:
        population = with_option("--population", population_file, load_population, population_file)
        if population.model != model_name:
            raise typer.BadParameter(f"the population is for model {population.model!r}, not {model_name!r}")
        outputs.check()
        stores = edge.open_stores()
        dataset = edge.read_dataset(stores, data, get_model(model_name), actor, purpose, open_data)
        check_covariates(population, dataset.covariate_names, data)
        out.mkdir(parents=True, exist_ok=True)
        if method == "foce":
            paths, record = _fit_foce(stores, population, dataset, out, seed, actor, purpose, open_data)
            console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce "
                          f"{record.run_id}`)")
        else:
            paths = _fit_nuts(population, dataset, out, seed, chains, draws, warmup)
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    for name, path in paths.items():
        console.print(f"{name:>22}: {path}")


def _fit_foce(stores, population, dataset, out: Path, seed: int, actor: str, purpose: str, open_data):
    from medtwin import workflows
    from medtwin.io.fit_report import write_fit_report

    request = workflows.FitRequest(population, dataset, purpose=None if open_data else purpose, open_data=open_data)
    written = {}

    def report(fit, access):  # the table and the diagnostics come before the run is recorded
        _print_fit(fit)
        with ProgressBar("diagnostics (CWRES, NPDE, VPC)") as diag:
            diag(0, 1)
            written.update(write_fit_report(fit, dataset, out, access=access, seed=seed))
            diag(1, 1)

    with ProgressBar("FOCEI estimation + covariance step") as bar:  # closed when the fit is done
        _, record = workflows.run(request, stores, actor=actor, progress=bar, before_record=report)
    return written, record


def _print_fit(fit) -> None:
    state = "converged" if fit.converged else "NOT converged"
    table = Table(title=f"FOCEI: OFV {fit.ofv:.3f} (NONMEM convention), {state}, covariance step "
                        f"{fit.covariance_status}", title_justify="left")
    for col in ("parameter", "estimate", "SE", "RSE %"):
        table.add_column(col, justify="right")
    for name, est, se, rse in zip(fit.parameter_names, fit.estimates, fit.se, fit.rse):
        table.add_row(name, f"{est:.6g}", f"{se:.3g}", f"{100 * rse:.1f}")
    console.print(table)
    if fit.covariance_status != "ok":
        err_console.print(f"[yellow]covariance step {fit.covariance_status}:[/] {fit.covariance_message}")


def _fit_nuts(population, dataset, out: Path, seed: int, chains: int, draws: int, warmup: int) -> dict:
    """Hierarchical NUTS (not a recorded run: its result has no provenance digest yet)."""
    from medtwin.infer.hierarchical import fit_nuts
    from medtwin.io.population_file import save_population

    result = fit_nuts(population, dataset, seed=seed, chains=chains, draws=draws, warmup=warmup, progress=True)
    summary = result.summary_frame()
    summary.to_csv(out / "posterior_summary.csv", index_label="parameter")
    save_population(result.to_population(), out / "fitted_population.yaml")
    console.print(summary.to_string())
    console.print(f"status: {result.status} ({result.message})")
    return {"posterior_summary.csv": out / "posterior_summary.csv",
            "fitted_population.yaml": out / "fitted_population.yaml"}


def personalize_command(
    population_file: Path = POP,
    data: Path = DATA,
    patient_id: Optional[str] = ID,
    covariate: List[str] = COVARIATE,
    method: str = METHOD,
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for posterior.csv, fit.csv and fit.png."),
    purpose: str = TREATMENT,
    actor: Optional[str] = ACTOR,
    open_data: Optional[str] = OPEN_DATA,
    seed: int = SEED,
) -> None:
    """Personalize one patient: the posterior of their parameters and the individual fit with bands."""
    import numpy as np

    from medtwin import workflows

    actor = actor or default_actor()
    outputs = OutFolder(out)
    try:
        check_patient_options(method, covariate)
        outputs.check()
        stores = edge.open_stores()
        population, patient = edge.read_patient(stores, population_file, data, patient_id, covariate, actor,
                                                purpose, open_data)
        request = workflows.PersonalizeRequest(population, patient, method=method, seed=seed,
                                               purpose=None if open_data else purpose, open_data=open_data)
        with ProgressBar(f"personalizing patient {patient.patient} ({method})") as bar:
            posterior, record = workflows.run(request, stores, actor=actor, progress=bar)
        edge.warn_posterior(posterior)
        out.mkdir(parents=True, exist_ok=True)
        grid = np.round(np.arange(0.0, float(patient.times.max()) + 12.0 + 1e-9, 0.1), 10)
        band = posterior.predict(patient.regimen, grid, seed=seed)
        posterior.summary().to_csv(out / "posterior.csv", index=False)
        band.to_frame().to_csv(out / "fit.csv", index=False)
        render.plot_band(posterior, band, patient, out / "fit.png", None)
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    render.print_posterior(posterior)
    for name in ("posterior.csv", "fit.csv", "fit.png"):
        console.print(f"{name:>14}: {out / name}")
    console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce {record.run_id}`)")


def forecast_command(
    population_files: List[str] = POPS,
    data: Path = DATA,
    patient_id: Optional[str] = ID,
    covariate: List[str] = COVARIATE,
    hours: float = typer.Option(48.0, "--hours", min=1.0, max=MAX_FORECAST_HOURS,
                                help=f"Forecast horizon after the last level (h, 1-{MAX_FORECAST_HOURS:g})."),
    method: str = METHOD,
    auc_target: Tuple[float, float] = typer.Option((400.0, 600.0), "--auc-target",
                                                   help="AUC24 window (mg·h/L) over the last 24 h."),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for forecast.csv and forecast.png."),
    purpose: str = TREATMENT,
    actor: Optional[str] = ACTOR,
    open_data: Optional[str] = OPEN_DATA,
    seed: int = SEED,
    weighting: Optional[str] = WEIGHTING,
    select_model: bool = SELECT,
) -> None:
    """Forecast a patient under the current regimen (continued) with bands and target probabilities; with
    several population files (or a drug name) on the model-averaged posterior."""
    import numpy as np

    from medtwin import workflows

    actor = actor or default_actor()
    outputs = OutFolder(out)
    try:
        if not 0.0 <= auc_target[0] < auc_target[1] <= 1e6:
            raise typer.BadParameter(f"--auc-target {auc_target[0]:g} {auc_target[1]:g}: give LOW HIGH with "
                                     "0 <= LOW < HIGH <= 1e6 (mg·h/L)")
        check_patient_options(method, covariate)
        outputs.check()
        stores = edge.open_stores()
        populations, patient = edge.read_patients(stores, population_files, data, patient_id, covariate, actor,
                                                  purpose, open_data)
        request = workflows.forecast_request(populations, patient, hours, method=method, seed=seed,
                                             auc_target=tuple(auc_target), weighting=weighting,
                                             mode="select" if select_model else "average",
                                             sources=[f"--population {p}" for p in population_files],
                                             purpose=None if open_data else purpose, open_data=open_data)
        with ProgressBar(f"personalizing patient {patient.patient} ({method})") as bar:
            forecast, record = workflows.run(request, stores, actor=actor, progress=bar)
        edge.warn_posterior(forecast.posterior)
        out.mkdir(parents=True, exist_ok=True)
        forecast.band.to_frame().to_csv(out / "forecast.csv", index=False)
        render.write_model_weights(forecast.posterior, out)
        render.plot_band(forecast.posterior, forecast.band, patient, out / "forecast.png", forecast.exposure.window)
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    render.print_posterior(forecast.posterior)
    render.print_model_weights(forecast.posterior, out)
    e = forecast.exposure
    (lo, hi), (tlo, thi) = e.auc_target, e.trough_range
    console.print(f"AUC24 over {e.window[0]:.1f}–{e.window[1]:.1f} h: median {np.median(e.auc):.0f} {e.unit}·h "
                  f"(90 % {np.quantile(e.auc, 0.05):.0f}–{np.quantile(e.auc, 0.95):.0f}); "
                  f"P(AUC24 in {lo:g}–{hi:g}) = {e.p_auc:.2f}")
    console.print(f"Cmin over the same 24 h: median {np.median(e.trough):.3g} {e.unit}; "
                  f"P(Cmin in {tlo:g}–{thi:g} {e.unit}) = {e.p_trough:.2f}")
    console.print(f"forecast.csv: {out / 'forecast.csv'}\nforecast.png: {out / 'forecast.png'}")
    console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce {record.run_id}`)")


def register(app: typer.Typer) -> None:
    """Add ``fit``, ``personalize`` and ``forecast`` to *app*."""
    app.command("fit")(fit_command)
    app.command("personalize")(personalize_command)
    app.command("forecast")(forecast_command)
