"""``medtwin recommend`` and ``medtwin closed-loop`` (registered on :data:`medtwin.cli.app`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from medtwin.cli import (_ACTOR, _COVARIATE, _DATA, _ID, _METHOD, _OPEN_DATA, _POP, _SEED, _TREATMENT, _default_actor,
                         _fail, _personalized, _print_posterior, app, console, err_console)
from medtwin.cli_edge import OutFolder, check_out_folder, check_patient_options
from medtwin.errors import MedtwinError

_TARGETS = "auc24 | trough | peak"


def parse_target(text: str):
    """``KIND:LOW-HIGH`` (e.g. ``auc24:400-600``, ``trough:10-20``) -> a target value (mg·h/L or mg/L)."""
    from medtwin.control.targets import AUC24Window, PeakWindow, TroughWindow
    from medtwin.errors import DataError

    from medtwin.io.textfile import parse_number

    kinds = {"auc24": AUC24Window, "trough": TroughWindow, "peak": PeakWindow}
    try:
        kind, bounds = text.split(":", 1)
        low, high = (parse_number(v) for v in bounds.split("-", 1))
    except ValueError:
        raise DataError(f"--target {text!r}: write KIND:LOW-HIGH with KIND one of {_TARGETS}, e.g. auc24:400-600") from None
    if kind not in kinds:
        raise DataError(f"--target {text!r}: unknown kind {kind!r}; use {_TARGETS}")
    if not 0.0 <= low < high <= 1e6:
        raise DataError(f"--target {text!r}: give 0 <= LOW < HIGH <= 1e6, e.g. auc24:400-600")
    return kinds[kind](low, high)


#: Largest --draws of ``recommend``: every candidate regimen is simulated for every draw.
MAX_RECOMMEND_DRAWS = 10_000

#: Exit status of ``recommend`` when no allowed regimen meets every constraint (the fallback is still shown).
EXIT_INFEASIBLE = 3


def parse_intervals(text: str) -> tuple[float, ...]:
    """``--intervals``: comma-separated dosing intervals in h, each in (0, 168]."""
    from medtwin.errors import DataError
    from medtwin.io.textfile import parse_number

    values = []
    for item in (v for v in text.split(",") if v.strip()):
        try:
            value = parse_number(item)
        except ValueError as exc:
            raise DataError(f"--intervals {text!r}: {exc}") from None
        if not 0.0 < value <= 168.0:
            raise DataError(f"--intervals {text!r}: every interval must be in (0, 168] h, got {value:g}")
        values.append(value)
    if not values:
        raise DataError(f"--intervals {text!r}: give at least one interval in h, e.g. 8,12,24")
    return tuple(values)


def dose_constraints(dose_step, max_dose, max_daily, max_rate, intervals, loading):
    """The DoseConstraints of ``recommend``'s options; every error names the option (--max-dose), not the field."""
    import re

    from medtwin.control.dosing import DoseConstraints
    from medtwin.errors import DataError

    for option, value in (("--dose-step", dose_step), ("--max-dose", max_dose), ("--max-daily", max_daily),
                          ("--max-rate", max_rate)):
        if not 0.0 < value <= 1e6:
            raise DataError(f"{option} must be in (0, 1e6] mg{'/h' if option == '--max-rate' else ''}, got {value:g}")
    if max_dose < dose_step:
        raise DataError(f"--max-dose {max_dose:g} mg is below --dose-step {dose_step:g} mg: no dose is allowed")
    fields = {"dose_step_mg": "--dose-step", "min_dose_mg": "the smallest dose (--dose-step)",
              "max_dose_mg": "--max-dose", "max_loading_mg": "--max-dose (loading)", "max_daily_mg": "--max-daily",
              "max_rate_mg_per_h": "--max-rate", "intervals_h": "--intervals"}
    try:
        return DoseConstraints(dose_step_mg=dose_step, min_dose_mg=dose_step, max_dose_mg=max_dose,
                               max_daily_mg=max_daily, max_rate_mg_per_h=max_rate, loading=loading,
                               intervals_h=parse_intervals(intervals), max_loading_mg=max_dose if loading else None)
    except DataError as exc:
        message = re.sub("|".join(sorted(fields, key=len, reverse=True)), lambda m: fields[m.group(0)], str(exc))
        raise DataError(message.replace("dose constraints: ", "")) from None


def plot_recommendation(recommendation, data, path: Path) -> None:
    """Predicted exposure with 90 % bands under the current and the recommended regimen, with the levels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.8))
    ax = fig.add_subplot()
    output = "C"
    for band, label, color in ((recommendation.current, "current regimen", "tab:gray"),
                               (recommendation.predicted, "recommended", "tab:blue")):
        if band is None:
            continue
        lo, hi = band.interval(output, 0.9)
        ax.fill_between(band.times, lo, hi, color=color, alpha=0.25, label=f"{label}: 90 %")
        ax.plot(band.times, band.median(output), color=color, lw=1.5, label=f"{label}: median")
    if data is not None:
        ax.plot(data.times, data.values, "ko", ms=4, label="measured levels")
    window = recommendation.target.get("window_h")
    if window:
        ax.axvspan(*window, color="green", alpha=0.08, label="evaluation window")
    unit = recommendation.predicted.units.get(output, "") if recommendation.predicted is not None else ""
    ax.set_xlabel("time (h)")
    ax.set_ylabel(f"{output} ({unit})")
    ax.set_title(recommendation.summary().splitlines()[0])
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _json_ready(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def recommendation_dict(recommendation) -> dict:
    """The recommendation's explanation as JSON-ready data (bands summarised by their quantiles elsewhere)."""
    return _json_ready({"kind": recommendation.kind, "status": recommendation.status, "action": recommendation.action,
                        "target": recommendation.target, "constraints": recommendation.constraints,
                        "active_constraints": recommendation.active_constraints,
                        "probabilities": recommendation.probabilities, "sensitivity": recommendation.sensitivity,
                        "runner_ups": recommendation.runner_ups, "message": recommendation.message,
                        "summary": recommendation.summary()})


@app.command("recommend")
def recommend_command(
    population_file: Path = _POP,
    data: Path = _DATA,
    patient_id: Optional[str] = _ID,
    covariate: List[str] = _COVARIATE,
    target: str = typer.Option("auc24:400-600", "--target", help=f"KIND:LOW-HIGH, KIND = {_TARGETS}."),
    toxic_auc: Optional[float] = typer.Option(600.0, "--toxic-auc", help="Toxic exposure: AUC24 above this "
                                              "(mg·h/L); 0 for none."),
    epsilon: float = typer.Option(0.1, "--epsilon", min=0.0, max=1.0, help="Largest acceptable P(toxic)."),
    objective: str = typer.Option("pta", "--objective", help="pta (max P(target)) | median (hit it at the median)"),
    dose_step: float = typer.Option(250.0, "--dose-step", help="Available strength step (mg)."),
    max_dose: float = typer.Option(3000.0, "--max-dose", help="Largest single dose (mg)."),
    max_daily: float = typer.Option(4500.0, "--max-daily", help="Largest daily dose (mg)."),
    intervals: str = typer.Option("6,8,12,24", "--intervals", help="Allowed dosing intervals (h), comma-separated."),
    max_rate: float = typer.Option(1000.0, "--max-rate", help="Largest infusion rate (mg/h)."),
    loading: bool = typer.Option(False, "--loading", help="Consider a loading dose."),
    draws: int = typer.Option(1000, "--draws", min=10, max=MAX_RECOMMEND_DRAWS,
                              help=f"Posterior draws (10-{MAX_RECOMMEND_DRAWS:,})."),
    method: str = _METHOD,
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for recommendation.json and exposure.png."),
    purpose: str = _TREATMENT,
    actor: Optional[str] = _ACTOR,
    open_data: Optional[str] = _OPEN_DATA,
    seed: int = _SEED,
) -> None:
    """Recommend a dose and interval for one patient: target, constraints, probabilities, bands, runner-ups.

    Exit status 0 with a recommendation; 3 when no allowed regimen meets every constraint: the least-toxic
    fallback is then printed and written (status infeasible-fallback), clearly labelled, not a recommendation;
    2 for bad input."""
    from medtwin.control.dosing import recommend_dose
    from medtwin.control.targets import AUC24Window, Threshold
    from medtwin.errors import DataError

    outputs = OutFolder(out)
    try:
        wanted = parse_target(target)
        constraints = dose_constraints(dose_step, max_dose, max_daily, max_rate, intervals, loading)
        if toxic_auc is not None and not 0.0 <= toxic_auc <= 1e6:
            raise DataError(f"--toxic-auc must be in [0, 1e6] mg·h/L (0 for none), got {toxic_auc:g}")
        if objective not in ("pta", "median"):
            raise DataError(f"--objective must be pta or median, not {objective!r}")
        check_patient_options(method, covariate)
        outputs.check()
        _, patient, posterior = _personalized(population_file, data, patient_id, covariate, method,
                                              actor or _default_actor(), purpose, open_data, seed)
        toxic = Threshold(AUC24Window(), above=toxic_auc) if toxic_auc else None
        recommendation = recommend_dose(posterior, wanted, constraints=constraints, objective=objective, toxic=toxic,
                                        max_toxic_probability=epsilon, history=patient.regimen, n_draws=draws,
                                        seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recommendation.json").write_text(json.dumps(recommendation_dict(recommendation), indent=2))
        plot_recommendation(recommendation, patient, out / "exposure.png")
    except (MedtwinError, ValueError, typer.BadParameter) as exc:
        outputs.discard()
        _fail(exc)
    _print_posterior(posterior)
    if recommendation.feasible:
        console.print(recommendation.summary(), highlight=False)
        console.print(f"wrote {out / 'recommendation.json'} and {out / 'exposure.png'} (current vs recommended)")
        return
    err_console.print("FALLBACK, NOT A RECOMMENDATION: no allowed regimen meets every constraint; the least-toxic "
                      "candidate follows", highlight=False)
    err_console.print(recommendation.summary(), highlight=False)
    console.print(f"wrote the fallback to {out / 'recommendation.json'} (status {recommendation.status}) and "
                  f"{out / 'exposure.png'}")
    err_console.print(f"error: infeasible (exit status {EXIT_INFEASIBLE}): "
                      f"{recommendation.message or 'no candidate meets every constraint'} (options: --target, "
                      "--toxic-auc, --epsilon, --max-dose, --max-daily, --intervals, --max-rate)", highlight=False)
    raise typer.Exit(code=EXIT_INFEASIBLE)


@app.command("closed-loop")
def closed_loop_command(
    scenario: str = typer.Argument(..., help="vancomycin (AUC24 400-600, 5 days) | glucose (ICU, 4.4-8.0 mmol/L, "
                                             "72 h)"),
    patients: int = typer.Option(50, "--patients", min=1, max=10_000, help="Virtual patients (1-10,000)."),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for outcomes.csv, summary.csv and closed_loop.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the virtual cohort and the measurement noise."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Simulate the whole loop on a virtual cohort: twin-guided vs standard of care; print and write the table."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from medtwin.scenarios.evaluation import evaluate_glucose, evaluate_vancomycin, plot_evaluation

    runners = {"vancomycin": evaluate_vancomycin, "glucose": evaluate_glucose}
    if scenario not in runners:
        _fail(MedtwinError(f"unknown scenario {scenario!r}; use {' | '.join(runners)}"))
    outputs = OutFolder(out)
    try:
        outputs.check()
    except typer.BadParameter as exc:
        _fail(exc)
    progress = Progress(TextColumn(f"closed loop: {scenario}"), BarColumn(), TextColumn("{task.completed}/{task.total}"
                        " patient-policies"), TimeElapsedColumn(), console=err_console, transient=True,
                        disable=no_progress)
    try:
        with progress:
            task = progress.add_task("loop", total=None)
            evaluation = runners[scenario](patients, seed=seed,
                                           progress=lambda done, total: progress.update(task, completed=done,
                                                                                        total=total))
        out.mkdir(parents=True, exist_ok=True)
        evaluation.frame.to_csv(out / "outcomes.csv", index=False)
        evaluation.summary.to_csv(out / "summary.csv")
        plot_evaluation(evaluation, out / "closed_loop.png")
    except MedtwinError as exc:
        outputs.discard()
        _fail(exc)
    console.print(f"{scenario}: {patients} virtual patients, twin-guided vs standard of care (paired)")
    typer.echo(evaluation.table())  # plain text: a wide table must not be re-wrapped by the terminal width
    console.print(f"wrote {out / 'outcomes.csv'}, {out / 'summary.csv'}, {out / 'closed_loop.png'}")


def demo_recommendation(twin, out: Path, seed: int = 0) -> None:
    """The last step of ``medtwin demo``: the twin's dose recommendation for the demo patient."""
    from medtwin.control.dosing import DoseConstraints, recommend_dose
    from medtwin.control.targets import AUC24Window, Threshold

    try:
        recommendation = recommend_dose(
            twin.posterior, AUC24Window(*twin.target),
            constraints=DoseConstraints(dose_step_mg=250.0, min_dose_mg=250.0, max_dose_mg=3000.0, max_daily_mg=4500.0,
                                        intervals_h=(8.0, 12.0, 24.0, 36.0, 48.0), max_rate_mg_per_h=1000.0),
            toxic=Threshold(AUC24Window(), above=twin.target[1]), max_toxic_probability=0.1,
            history=twin.data.regimen, n_draws=1000, seed=seed)
        (out / "recommendation.json").write_text(json.dumps(recommendation_dict(recommendation), indent=2))
        plot_recommendation(recommendation, twin.data, out / "recommendation.png")
    except MedtwinError as exc:
        _fail(exc)
    console.print("\n[bold]Recommendation[/] (maximise P(AUC24 in target) with P(AUC24 > "
                  f"{twin.target[1]:.0f}) <= 0.10; 250 mg steps, <= 4,500 mg/day, <= 1,000 mg/h):")
    console.print(recommendation.summary(), highlight=False)
    console.print(f"recommendation: {(out / 'recommendation.png').resolve()} (current vs recommended), "
                  f"{(out / 'recommendation.json').resolve()}")
