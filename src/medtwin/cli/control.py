"""``medtwin recommend``, ``decide`` and ``closed-loop``: parse -> request -> :func:`medtwin.workflows.run` -> render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from medtwin.cli import edge, render
from medtwin.cli.edge import (ACTOR, COVARIATE, DATA, ID, METHOD, OPEN_DATA, POPS, SEED, SELECT, TREATMENT,
                              WEIGHTING, OutFolder, ProgressBar, check_patient_options, console, default_actor,
                              err_console, fail)
from medtwin.errors import MedtwinError

__all__ = ["EXIT_INFEASIBLE", "MAX_RECOMMEND_DRAWS", "closed_loop_command", "decide_command", "dose_constraints",
           "parse_intervals", "parse_target", "recommend_command", "register"]

_TARGETS = "auc24 | trough | peak"


def parse_target(text: str) -> dict:
    """``KIND:LOW-HIGH`` (e.g. ``auc24:400-600``, ``trough:10-20``) -> ``{"kind", "low", "high"}`` (mg·h/L or mg/L)."""
    from medtwin.errors import DataError
    from medtwin.io.textfile import parse_number

    kinds = ("auc24", "trough", "peak")
    try:
        kind, bounds = text.split(":", 1)
        low, high = (parse_number(v) for v in bounds.split("-", 1))
    except ValueError:
        raise DataError(f"--target {text!r}: write KIND:LOW-HIGH with KIND one of {_TARGETS}, e.g. auc24:400-600") from None
    if kind not in kinds:
        raise DataError(f"--target {text!r}: unknown kind {kind!r}; use {_TARGETS}")
    if not 0.0 <= low < high <= 1e6:
        raise DataError(f"--target {text!r}: give 0 <= LOW < HIGH <= 1e6, e.g. auc24:400-600")
    return {"kind": kind, "low": low, "high": high}


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


def recommend_command(
    population_files: List[str] = POPS,
    data: Path = DATA,
    patient_id: Optional[str] = ID,
    covariate: List[str] = COVARIATE,
    target: str = typer.Option("auc24:400-600", "--target", help=f"KIND:LOW-HIGH, KIND = {_TARGETS}."),
    toxic_auc: Optional[float] = typer.Option(None, "--toxic-auc", help="Toxic exposure: AUC24 above this "
                                              "(mg·h/L); 0 for none; default 600 with --objective pta, else 800."),
    epsilon: float = typer.Option(0.1, "--epsilon", min=0.0, max=1.0, help="Largest acceptable P(toxic)."),
    objective: str = typer.Option("window", "--objective", help="window (median inside the window with a margin, "
                                  "max P(target), both tails bounded; at steady state) | pta (max P(target)) | "
                                  "median (hit it at the median)"),
    dose_step: float = typer.Option(250.0, "--dose-step", help="Available strength step (mg)."),
    max_dose: float = typer.Option(3000.0, "--max-dose", help="Largest single dose (mg)."),
    max_daily: float = typer.Option(4500.0, "--max-daily", help="Largest daily dose (mg)."),
    intervals: str = typer.Option("6,8,12,24", "--intervals", help="Allowed dosing intervals (h), comma-separated."),
    max_rate: float = typer.Option(1000.0, "--max-rate", help="Largest infusion rate (mg/h)."),
    loading: bool = typer.Option(False, "--loading", help="Consider a loading dose."),
    draws: int = typer.Option(1000, "--draws", min=10, max=MAX_RECOMMEND_DRAWS,
                              help=f"Posterior draws (10-{MAX_RECOMMEND_DRAWS:,})."),
    method: str = METHOD,
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for recommendation.json and exposure.png."),
    purpose: str = TREATMENT,
    actor: Optional[str] = ACTOR,
    open_data: Optional[str] = OPEN_DATA,
    seed: int = SEED,
    weighting: Optional[str] = WEIGHTING,
    select_model: bool = SELECT,
) -> None:
    """Recommend a dose and interval for one patient: target, constraints, probabilities, bands, runner-ups
    (with several population files or a drug name: on the model-averaged posterior).

    Exit status 0 with a recommendation; 3 when no allowed regimen meets every constraint: the least-toxic
    fallback is then printed and written (status infeasible-fallback), clearly labelled, not a recommendation;
    2 for bad input."""
    from medtwin import workflows
    from medtwin.errors import DataError

    actor = actor or default_actor()
    outputs = OutFolder(out)
    try:
        wanted = parse_target(target)
        constraints = dose_constraints(dose_step, max_dose, max_daily, max_rate, intervals, loading)
        if toxic_auc is not None and not 0.0 <= toxic_auc <= 1e6:
            raise DataError(f"--toxic-auc must be in [0, 1e6] mg·h/L (0 for none), got {toxic_auc:g}")
        if objective not in ("window", "pta", "median"):
            raise DataError(f"--objective must be window, pta or median, not {objective!r}")
        if toxic_auc is None:
            toxic_auc = 600.0 if objective == "pta" else 800.0
        check_patient_options(method, covariate)
        outputs.check()
        stores = edge.open_stores()
        populations, patient = edge.read_patients(stores, population_files, data, patient_id, covariate, actor,
                                                  purpose, open_data)
        request = workflows.recommend_request(populations, patient, method=method, seed=seed, target=wanted,
                                              constraints=constraints, objective=objective,
                                              toxic_auc=toxic_auc or None, epsilon=epsilon, n_draws=draws,
                                              weighting=weighting, mode="select" if select_model else "average",
                                              sources=[f"--population {p}" for p in population_files],
                                              purpose=None if open_data else purpose, open_data=open_data)
        with ProgressBar(f"personalizing patient {patient.patient} ({method})") as bar:
            result, record = workflows.run(request, stores, actor=actor, progress=bar)
        if result.posterior is not None:
            edge.warn_posterior(result.posterior)
        recommendation = result.recommendation
        out.mkdir(parents=True, exist_ok=True)
        (out / "recommendation.json").write_text(json.dumps(render.recommendation_dict(recommendation), indent=2))
        render.plot_recommendation(recommendation, patient, out / "exposure.png")
        render.write_model_weights(result.posterior, out)
    except (MedtwinError, ValueError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    render.print_posterior(result.posterior)
    render.print_model_weights(result.posterior, out)
    decide_hint = (f"recommendation run {record.run_id} recorded with signed provenance (`medtwin decide "
                   f"{record.run_id} accept`, or modify/override with --reason)")
    if recommendation.feasible:
        console.print(recommendation.summary(), highlight=False)
        console.print(f"wrote {out / 'recommendation.json'} and {out / 'exposure.png'} (current vs recommended)")
        console.print(decide_hint, highlight=False)
        return
    err_console.print("FALLBACK, NOT A RECOMMENDATION: no allowed regimen meets every constraint; the least-toxic "
                      "candidate follows", highlight=False)
    err_console.print(recommendation.summary(), highlight=False)
    console.print(f"wrote the fallback to {out / 'recommendation.json'} (status {recommendation.status}) and "
                  f"{out / 'exposure.png'}")
    console.print(decide_hint, highlight=False)
    err_console.print(f"error: infeasible (exit status {EXIT_INFEASIBLE}): "
                      f"{recommendation.message or 'no candidate meets every constraint'} (options: --target, "
                      "--toxic-auc, --epsilon, --max-dose, --max-daily, --intervals, --max-rate)", highlight=False)
    raise typer.Exit(code=EXIT_INFEASIBLE)


def closed_loop_command(
    scenario: str = typer.Argument(..., help="vancomycin (AUC24 400-600, 5 days) | glucose (ICU, 4.4-8.0 mmol/L, "
                                             "72 h)"),
    patients: int = typer.Option(50, "--patients", min=1, max=10_000, help="Virtual patients (1-10,000)."),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for outcomes.csv, summary.csv and closed_loop.png."),
    seed: int = typer.Option(0, "--seed", help="Seed of the virtual cohort and the measurement noise."),
    truth: str = typer.Option("bergman_insulin", "--truth",
                              help="glucose only: model of the virtual patients (bergman_insulin | hovorka_icu | "
                                   "dalla_man_icu; the twin is ICING)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Simulate the whole loop on a virtual cohort: twin-guided vs standard of care; print and write the table."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from medtwin.scenarios.evaluation import evaluate_glucose, evaluate_vancomycin, plot_evaluation

    runners = {"vancomycin": evaluate_vancomycin,
               "glucose": lambda *args, **kw: evaluate_glucose(*args, truth=truth, **kw)}
    if scenario not in runners:
        fail(MedtwinError(f"unknown scenario {scenario!r}; use {' | '.join(runners)}"))
    outputs = OutFolder(out)
    try:
        outputs.check()
    except typer.BadParameter as exc:
        fail(exc)
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
        fail(exc)
    console.print(f"{scenario}: {patients} virtual patients{f' ({truth})' if scenario == 'glucose' else ''}, "
                  "twin-guided vs standard of care (paired)")
    typer.echo(evaluation.table())  # plain text: a wide table must not be re-wrapped by the terminal width
    console.print(f"wrote {out / 'outcomes.csv'}, {out / 'summary.csv'}, {out / 'closed_loop.png'}")


def decide_command(
    recommendation: str = typer.Argument(..., metavar="RECOMMENDATION_ID",
                                         help="The recorded recommendation (the run id `medtwin recommend` prints)."),
    choice: str = typer.Argument(..., metavar="CHOICE", help="accept | modify | override"),
    reason: str = typer.Option("", "--reason", help="Why (required to modify or override)."),
    dose: Optional[float] = typer.Option(None, "--dose", help="The dose given instead (mg): modify or override."),
    interval: Optional[float] = typer.Option(None, "--interval", help="The interval given instead (h): modify or "
                                             "override."),
    clinician: Optional[str] = typer.Option(None, "--clinician", help="Who decided (default: --actor)."),
    time: Optional[float] = typer.Option(None, "--time", help="When, h on the patient's clock (default: the last "
                                         "level the recommendation used)."),
    actor: Optional[str] = ACTOR,
) -> None:
    """Accept, modify or override a recorded recommendation, with a reason; stored with signed provenance and an
    audit entry (decision.record). A modified dose must respect the recommendation's hard constraints."""
    from medtwin import workflows

    actor = actor or default_actor()
    try:
        request = workflows.DecideRequest(recommendation, choice, clinician or actor, reason=reason, dose_mg=dose,
                                          interval_h=interval, time=time)
        decision, record = workflows.run(request, edge.open_stores(), actor=actor)
    except MedtwinError as exc:
        fail(exc)
    given = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in decision.given.items())
    console.print(f"decision {record.run_id}: {decision.choice} recommendation {recommendation} for patient "
                  f"{decision.patient} by {decision.clinician}; given {given}"
                  + (f"; reason: {decision.reason}" if decision.reason else ""), highlight=False)
    console.print("recorded with signed provenance (audit entry decision.record)")


def register(app: typer.Typer) -> None:
    """Add ``recommend``, ``decide`` and ``closed-loop`` to *app*."""
    app.command("recommend")(recommend_command)
    app.command("decide")(decide_command)
    app.command("closed-loop")(closed_loop_command)
