"""``medtwin evaluate``: a dosing policy on hidden virtual patients from truth models the twin was not built from.

Calls :func:`medtwin.scenarios.robustness.evaluate` (label dosing on day 1, a peak and a trough with assay
error, one decision at 24 h; outcomes judged on the TRUE steady-state AUC24) and writes ``rows.csv`` (one row
per patient and policy), ``summary.csv`` (attainment, safety, calibration, paired statistics vs label) and
``evaluation.png``.  Like ``closed-loop`` it is a simulation study on virtual patients: nothing is read from
or written to the stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from medtwin.cli.edge import OutFolder, ProgressBar, console, fail
from medtwin.errors import DataError, MedtwinError

__all__ = ["evaluate_command", "parse_policy", "register"]

DEFAULT_TRUTHS = ("roberts2011", "revilla2010")
DEFAULT_POLICIES = ("label", "twin")


def parse_policy(spec: str):
    """``label`` or ``twin[:OBJECTIVE[:AIM]]`` -> (kind, objective, aim); a DataError naming --policy otherwise.

    Examples
    --------
    >>> parse_policy("twin:pta:window")
    ('twin', 'pta', 'window')
    >>> parse_policy("twin")
    ('twin', 'window', 'steady-state')
    """
    from medtwin.control.dosing import AIMS, OBJECTIVES

    parts = spec.split(":")
    if parts[0] == "label" and len(parts) == 1:
        return ("label", None, None)
    if parts[0] != "twin" or len(parts) > 3:
        raise DataError(f"--policy {spec!r}: use label or twin[:OBJECTIVE[:AIM]], e.g. twin:pta:window")
    objective = parts[1] if len(parts) > 1 else "window"
    aim = parts[2] if len(parts) > 2 else "steady-state"
    if objective not in OBJECTIVES:
        raise DataError(f"--policy {spec!r}: objective must be one of {', '.join(OBJECTIVES)}")
    if aim not in AIMS:
        raise DataError(f"--policy {spec!r}: aim must be one of {', '.join(AIMS)}")
    return ("twin", objective, aim)


def _priors(priors):
    """One prior (a shipped name or a file), or a list: several --prior, or a drug name (its shipped priors)."""
    from medtwin.io.population_file import drug_populations, shipped_populations

    if len(priors) > 1:
        return list(priors)
    (prior,) = priors
    if prior.endswith((".yaml", ".yml", ".json")) or prior in shipped_populations():
        return prior
    return drug_populations(prior)  # a drug: model averaging over its shipped priors (DataError names the drugs)


def _policies(specs, priors, draws, seed) -> dict:
    from medtwin.scenarios.robustness import label_policy, twin_policy

    prior = _priors(priors)
    out = {}
    for spec in specs:
        kind, objective, aim = parse_policy(spec)
        out[spec] = label_policy if kind == "label" else twin_policy(prior, objective=objective, aim=aim,
                                                                     n_draws=draws, seed=seed)
    if "label" not in out:
        out["label"] = label_policy  # the paired reference
    return out


def evaluate_command(
    truth: List[str] = typer.Option(list(DEFAULT_TRUTHS), "--truth",
                                    help="Truth model: roberts2011 | revilla2010 | a population file (YAML/JSON); "
                                         "repeatable (default: both published ones)."),
    policy: List[str] = typer.Option(list(DEFAULT_POLICIES), "--policy",
                                     help="label | twin[:OBJECTIVE[:AIM]] with OBJECTIVE window|pta|median and AIM "
                                          "steady-state|window; repeatable (label is always added)."),
    prior: List[str] = typer.Option(["vancomycin_goti2018"], "--prior",
                                    help="The twin's prior: a shipped population name or file; repeatable (model "
                                         "averaging), or a drug (e.g. vancomycin: averaging over its shipped "
                                         "priors)."),
    patients: int = typer.Option(30, "--patients", min=1, max=10_000, help="Hidden patients in all (1-10,000)."),
    draws: int = typer.Option(1000, "--draws", min=10, max=20_000, help="Posterior draws per recommendation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the patients, the levels and the draws."),
    out: Path = typer.Option(..., "--out", help="New (or empty) folder for rows.csv, summary.csv, evaluation.png."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Run dosing policies on hidden virtual patients; print attainment, safety, calibration, paired statistics."""
    from medtwin.scenarios.robustness import evaluate, plot
    from medtwin.scenarios.truth import truth_model

    outputs = OutFolder(out)
    try:
        outputs.check()
        truths = [truth_model(t) for t in truth]
        if patients < len(truths):
            raise DataError(f"--patients {patients}: need at least one patient per truth model ({len(truths)})")
        policies = _policies(policy, prior, draws, seed)
    except (typer.BadParameter, MedtwinError) as exc:
        fail(exc)
    try:
        with ProgressBar("evaluate", enabled=not no_progress, unit="patient-policies") as bar:
            result = evaluate(truths, policies, n_patients=patients, seed=seed, progress=bar)
        out.mkdir(parents=True, exist_ok=True)
        result.frame.to_csv(out / "rows.csv", index=False)
        result.summary.to_csv(out / "summary.csv")
        plot(result, out / "evaluation.png")
    except MedtwinError as exc:
        outputs.discard()
        fail(exc)
    console.print(f"evaluate: {patients} hidden patients from {', '.join(t.name for t in truths)}; "
                  "outcomes on the TRUE steady-state AUC24 (target 400-600 mg·h/L)", highlight=False)
    typer.echo(result.table())
    console.print(f"wrote {out / 'rows.csv'}, {out / 'summary.csv'}, {out / 'evaluation.png'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to *app*."""
    app.command("evaluate")(evaluate_command)
