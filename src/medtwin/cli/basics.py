"""``medtwin models``, ``simulate`` and ``demo``: parse -> request -> :func:`medtwin.workflows.run` -> render."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from medtwin.cli import edge, render
from medtwin.cli.edge import (PURPOSES, ProgressBar, check_out_file, check_out_folder, console, default_actor,
                              err_console, fail, input_file, parse_assignments, with_option)
from medtwin.errors import MedtwinError

__all__ = ["demo_command", "models_command", "register", "simulate_command"]


def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print the full descriptions as JSON."),
    name: Optional[str] = typer.Argument(None, help="Show one model only."),
) -> None:
    """List every library model with its parameters, units, compartments and outputs."""
    from medtwin.models import get_model, list_models

    try:
        names = [name] if name else list_models()
        described = [get_model(n).describe() for n in names]
    except MedtwinError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(described, indent=2) + "\n")
        return
    for info in described:
        table = Table(title=f"{info['name']} — {info['description']}", title_justify="left", show_lines=False)
        table.add_column("kind")
        table.add_column("name")
        table.add_column("unit")
        table.add_column("value / details")
        for c in info["compartments"]:
            table.add_row("compartment", f"{c['cmt']}: {c['name']}", c["unit"], c["description"])
        for p in info["parameters"]:
            table.add_row("parameter", p["name"], p["unit"], f"{p['value']:g}  ({p['description']})")
        for o in info["outputs"]:
            table.add_row("output", o["name"], o["unit"], o["description"])
        for cov in info["covariates"]:
            table.add_row("covariate", cov["name"], cov["unit"], "")
        console.print(table)
        if info["citation"]:
            console.print(f"  [dim]{info['citation']}[/]")


def simulate_command(
    model_name: str = typer.Argument(..., metavar="MODEL", help="Library model name (see `medtwin models`)."),
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="NONMEM-style dataset (CSV).",
                              callback=input_file("dataset")),
    params: Optional[Path] = typer.Option(None, "--params", exists=True, dir_okay=False,
                                          help="CSV with an ID column and one column per parameter.",
                                          callback=input_file("parameter table")),
    param: List[str] = typer.Option([], "--param", help="NAME=VALUE for every patient (repeatable; |VALUE| <= 1e9)."),
    out: Path = typer.Option(..., "--out",
                             help="Output CSV: ID, TIME and every model output per observation (not a folder; "
                                  "an existing file is replaced)."),
    method: str = typer.Option("auto", help="auto | exact | dopri5 | euler | heun | rk4"),
    rtol: float = typer.Option(1e-8, help="Relative tolerance (dopri5)."),
    atol: float = typer.Option(1e-10, help="Absolute tolerance (dopri5)."),
    dt: Optional[float] = typer.Option(None, help="Step (h) for fixed-step methods."),
    purpose: str = typer.Option("treatment", "--purpose", help="Why the patients' data are used (checked against "
                                "their consents): " + " | ".join(PURPOSES)),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
    open_data: Optional[str] = typer.Option(None, "--open-data", metavar="REASON",
                                            help="The data are not identifiable patient data (say why): "
                                                 "no consent check."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Simulate MODEL on every subject of a NONMEM-style dataset; the run is stored with signed provenance."""
    import numpy as np

    from medtwin import workflows
    from medtwin.io import dataset_simulation
    from medtwin.models import get_model

    actor = actor or default_actor()
    try:
        model = get_model(model_name)
        overrides = parse_assignments(param)
        check_out_file(out)
        stores = edge.open_stores()
        dataset = edge.read_dataset(stores, data, model, actor, purpose, open_data)
        edge.warm_block_kernel(model, len(dataset), method)
        table = (with_option("--params", params, dataset_simulation.read_parameter_table, params)
                 if params is not None else None)
        if table is not None:
            for key, value in overrides.items():
                table[key] = value
            parameters = table
        else:
            parameters = overrides or None
        settings = {"method": method, "rtol": rtol, "atol": atol, "dt": dt, "keep_states": False}
        request = workflows.SimulateDatasetRequest(model_name, dataset, parameters, settings,
                                                   purpose=None if open_data else purpose, open_data=open_data)
        # CSV written aside first, run stored, then the CSV moved into place: a refused write (consent) or a
        # failed store leaves neither a run without its output nor an output without its run.
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}.partial{out.suffix}")
        try:
            with ProgressBar(f"simulating {model.name}", enabled=not no_progress) as bar:
                trajectory, record = workflows.run(
                    request, stores, actor=actor, progress=bar,
                    before_record=lambda result, access: dataset_simulation.write_simulation(
                        result, partial, access=access, observations_only=True))
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    except (MedtwinError, typer.BadParameter) as exc:
        fail(exc)
    failed = [s for s in trajectory.statuses() if not s.ok]
    n_rows = int(np.sum(np.asarray(trajectory.extra["evid"]) == 0))
    console.print(f"wrote {n_rows} rows for {trajectory.n_patients} subjects to {out} "
                  f"(solver {trajectory.solver.method}, rtol {trajectory.solver.rtol:g}, atol {trajectory.solver.atol:g})")
    console.print(f"run {record.run_id} recorded with signed provenance "
                  f"(`medtwin provenance {record.run_id}`, `medtwin reproduce {record.run_id}`)")
    if failed:
        err_console.print(f"[yellow]warning:[/] {len(failed)} subject(s) failed: {failed[0].message}")


def demo_command(
    out: Path = typer.Option(Path("medtwin-demo"), "--out",
                             help="New (or empty) folder for the CSV and PNG files."),
    n_patients: int = typer.Option(12, "--patients", min=1, max=10_000, help="Number of virtual patients "
                                   "(1-10,000)."),
    seed: int = typer.Option(2026, help="Random seed of the virtual ward."),
) -> None:
    """Vancomycin virtual ward on 1,000 mg q12h: concentration curves and AUC24 vs the 400–600 target."""
    from medtwin import workflows
    from medtwin.scenarios.demo import demo_table, plot_demo, run_vancomycin_demo

    try:
        check_out_folder(out)
        stores = edge.open_stores()
        with ProgressBar("simulating vancomycin") as bar:
            result = run_vancomycin_demo(n_patients=n_patients, seed=seed, progress=bar)
        virtual = f"virtual patients drawn by medtwin demo (seed {seed})"
        request = workflows.SimulateRequest(result.trajectory.model, result.parameters, result.regimen,
                                            result.trajectory.times, settings={"keep_states": False},
                                            open_data=virtual, seeds={"seed": seed})
        _, record = workflows.run(request, stores, actor=default_actor())
    except (MedtwinError, typer.BadParameter) as exc:
        fail(exc)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "vancomycin_demo.csv"
    conc_path = out / "vancomycin_concentrations.csv"
    png_path = out / "vancomycin_demo.png"
    demo_table(result).to_csv(csv_path, index=False)
    result.trajectory.to_frame().to_csv(conc_path, index=False)
    plot_demo(result, png_path)
    lo, hi = result.target
    table = Table(title="Vancomycin virtual ward (Goti 2018 model), last-24-h AUC", title_justify="left")
    for col in ("ID", "CrCl (mL/min)", "WT (kg)", "CL (L/h)", "AUC24 (mg·h/L)", f"in {lo:.0f}–{hi:.0f}"):
        table.add_column(col, justify="right")
    for i in range(len(result.auc24)):
        table.add_row(str(i + 1), f"{result.covariates['CRCL'][i]:.0f}", f"{result.covariates['WT'][i]:.0f}",
                      f"{result.parameters['CL'][i]:.2f}", f"{result.auc24[i]:.0f}",
                      "yes" if lo <= result.auc24[i] <= hi else "no")
    console.print(table)
    console.print(f"{100 * result.fraction_on_target:.0f} % of patients on target. Solver: "
                  f"{result.trajectory.solver.method}.")
    console.print(f"table:          {csv_path.resolve()}")
    console.print(f"concentrations: {conc_path.resolve()}")
    console.print(f"plot:           {png_path.resolve()}")
    console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce {record.run_id}`)")
    _twin_demo(stores, out, seed)


def _twin_demo(stores, out: Path, seed: int) -> None:
    """Part 2 of the demo: one patient's twin from two levels, a 48-h forecast and P(AUC24 on target)."""
    import numpy as np

    from medtwin import workflows
    from medtwin.scenarios.demo import run_twin_demo
    from medtwin.io.population_file import load_population, shipped_population_path

    try:
        with ProgressBar("personalizing the demo patient (first run compiles, ~10 s)") as bar:
            bar(0, 1)
            twin = run_twin_demo(seed)
            bar(1, 1)
    except MedtwinError as exc:
        fail(exc)
    d = twin.data
    console.print(f"\n[bold]Twin of patient {d.patient}[/] (CrCl {d.covariates['CRCL']:.0f} mL/min, "
                  f"{d.covariates['WT']:.0f} kg), 1,000 mg q12h; levels "
                  + ", ".join(f"{v:g} mg/L at {t:g} h" for t, v in zip(d.times, d.values)))
    render.print_posterior(twin.posterior)
    auc = twin.band.auc("C", *twin.auc_window)
    lo, hi = twin.target
    console.print(f"Forecast {twin.auc_window[0]:.0f}–{twin.auc_window[1]:.0f} h under the current regimen: "
                  f"AUC24 median {np.median(auc):.0f} mg·h/L (90 % {np.quantile(auc, 0.05):.0f}–"
                  f"{np.quantile(auc, 0.95):.0f}); [bold]P(AUC24 in {lo:.0f}–{hi:.0f}) = {twin.p_target:.2f}[/] "
                  f"(this virtual patient's true AUC24: {twin.true_auc24:.0f})")
    virtual = f"virtual patient drawn by medtwin demo (seed {seed})"
    population = load_population(shipped_population_path("vancomycin_goti2018"))
    request = workflows.ForecastRequest(population, d, method=twin.posterior.method, seed=seed, regimen=twin.regimen,
                                        times=twin.band.times, n_draws=twin.band.draws["C"].shape[0],
                                        open_data=virtual)
    try:
        _, record = workflows.run(request, stores, actor=default_actor())
    except MedtwinError as exc:
        fail(exc)
    console.print(f"twin forecast run {record.run_id} recorded (`medtwin reproduce {record.run_id}`)")
    twin.band.to_frame().to_csv(out / "twin_forecast.csv", index=False)
    render.plot_band(twin.posterior, twin.band, d, out / "twin_forecast.png", twin.auc_window)
    console.print(f"forecast:       {(out / 'twin_forecast.csv').resolve()}")
    console.print(f"plot:           {(out / 'twin_forecast.png').resolve()}")
    _demo_recommendation(stores, population, twin, out, seed, virtual)


def _demo_recommendation(stores, population, twin, out: Path, seed: int, virtual: str) -> None:
    """The last step of ``medtwin demo``: the twin's dose recommendation for the demo patient (a recorded run)."""
    from medtwin import workflows
    from medtwin.control.dosing import DoseConstraints

    lo, hi = twin.target
    try:
        constraints = DoseConstraints(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=3000.0, max_daily_mg=4500.0,
                                      intervals_h=(8.0, 12.0, 24.0, 36.0, 48.0), max_rate_mg_per_h=1000.0)
        request = workflows.RecommendRequest(population, twin.data, method=twin.posterior.method, seed=seed,
                                             target={"kind": "auc24", "low": float(lo), "high": float(hi)},
                                             constraints=constraints, objective="window", toxic_auc=800.0,
                                             epsilon=0.1, n_draws=1000, open_data=virtual)
        result, record = workflows.run(request, stores, actor=default_actor())
        recommendation = result.recommendation
        (out / "recommendation.json").write_text(json.dumps(render.recommendation_dict(recommendation), indent=2))
        render.plot_recommendation(recommendation, twin.data, out / "recommendation.png")
    except MedtwinError as exc:
        fail(exc)
    console.print("\n[bold]Recommendation[/] (at steady state: median AUC24 inside the target with a 10 % margin, "
                  "max P(AUC24 in target), P(AUC24 > 800) <= 0.10; 250 mg steps, <= 4,500 mg/day, <= 1,000 mg/h):")
    console.print(recommendation.summary(), highlight=False)
    console.print(f"recommendation: {(out / 'recommendation.png').resolve()} (current vs recommended), "
                  f"{(out / 'recommendation.json').resolve()}")
    console.print(f"recommendation run {record.run_id} recorded (`medtwin decide {record.run_id} accept`, or "
                  "modify/override with --reason)")


def register(app: typer.Typer) -> None:
    """Add ``models``, ``simulate`` and ``demo`` to *app*."""
    app.command("models")(models_command)
    app.command("simulate")(simulate_command)
    app.command("demo")(demo_command)
