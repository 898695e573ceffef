"""``medtwin trial SPEC.yaml``: run an in-silico trial as a recorded run; tables, CSV, forest plot, summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medtwin.cli import edge
from medtwin.cli.edge import OutFolder, console, default_actor, fail
from medtwin.errors import MedtwinError

__all__ = ["register", "trial_command"]


def _load(spec_arg: str):
    from medtwin.trials.spec import load_trial_spec, shipped_trial_path, shipped_trials

    path = Path(spec_arg)
    if not path.exists() and spec_arg in shipped_trials():
        path = shipped_trial_path(spec_arg)
    if not path.exists():
        raise MedtwinError(f"{spec_arg}: no such trial spec file (shipped: {shipped_trials()})")
    return load_trial_spec(path)


def trial_command(
    spec_file: str = typer.Argument(..., metavar="SPEC", help="Trial spec YAML (docs/trials.md), or the name of a "
                                    "shipped one (vancomycin_twin_vs_label, glucose_mpc_vs_protocol)."),
    patients: Optional[int] = typer.Option(None, "--patients", help="Cohort size (default: the spec's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Trial seed (default: the spec's)."),
    out: Path = typer.Option(Path("trial-out"), "--out", help="New (or empty) output folder: patients.csv, "
                             "ate.csv, strata.csv, forest.png, summary.json, provenance.json."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS|local",
                                            help="Run the chunks on Dask (a scheduler address, or 'local' for a "
                                                 "LocalCluster); default in-process."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Run the trial, print the ATE and stratum tables, write the outputs, record the run (signed)."""
    from medtwin import workflows
    from medtwin.trials.analysis import forest_plot
    from medtwin.trials.summary import summarise_trial
    from medtwin.trials.workflow import TrialRequest

    outputs = OutFolder(out)
    summary = {}
    try:
        outputs.check()
        spec = _load(spec_file).with_patients(patients).with_seed(seed)
        request = TrialRequest(spec, scheduler=scheduler)

        def write(result, access):  # every output is written before the run is recorded
            out.mkdir(parents=True, exist_ok=True)
            result.table.to_csv(out / "patients.csv", index=False)
            found = summarise_trial(spec, result)
            found.ate.to_csv(out / "ate.csv", index_label="endpoint")
            found.strata.to_csv(out / "strata.csv", index=False)
            endpoint = spec.primary["endpoint"]
            forest_plot(found.strata, out / "forest.png", title=f"{spec.name}: {endpoint}, "
                        f"{spec.primary['treatment']} − {spec.primary['control']}")
            if found.cate_effects is not None:
                found.cate_effects.to_csv(out / "cate.csv", index=False)
            summary.update(found.as_dict())
            (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))

        with edge.ProgressBar(f"trial {spec.name}", enabled=not no_progress) as bar:
            result, record = workflows.run(request, edge.open_stores(), actor=actor or default_actor(),
                                           progress=bar, before_record=write)
        (out / "provenance.json").write_text(json.dumps(record.as_dict(), indent=2, sort_keys=True))
    except (MedtwinError, OSError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    _render(spec, result, summary, record, out)


def _render(spec, result, summary, record, out: Path) -> None:
    from rich.table import Table

    console.print(f"trial {spec.name}: {spec.patients} patients (seed {spec.seed}), inclusion acceptance rate "
                  f"{result.acceptance_rate:.3f}, statuses {result.status_counts()}")
    t = Table(title=f"ATE {spec.primary['treatment']} − {spec.primary['control']} (95 % CI)")
    for col in ("endpoint", "unit", spec.primary["treatment"], spec.primary["control"], "ATE", "95 % CI"):
        t.add_column(col)
    for name, row in summary["ate"].items():
        t.add_row(name, row["unit"], f"{row['mean_treated']:.4g}", f"{row['mean_control']:.4g}",
                  f"{row['estimate']:+.4g}", f"[{row['low']:+.4g}, {row['high']:+.4g}]")
    console.print(t)
    s = Table(title=f"{spec.primary['endpoint']} by baseline strata")
    for col in ("variable", "stratum", "n", "ATE", "95 % CI"):
        s.add_column(col)
    for row in summary["strata"]:
        s.add_row(row["variable"], row["stratum"], f"{row['n_treated']}/{row['n_control']}", f"{row['estimate']:+.4g}",
                  f"[{row['low']:+.4g}, {row['high']:+.4g}]")
    console.print(s)
    if "cate" in summary:
        console.print("CATE (LinearDRLearner): " + ", ".join(
            f"{r['term']} {r['estimate']:+.3g} [{r['low']:+.3g}, {r['high']:+.3g}]" for r in summary["cate"]),
            highlight=False)
    console.print(f"wrote {out}/patients.csv, ate.csv, strata.csv, forest.png, summary.json, provenance.json "
                  f"(run {record.run_id}, signed; `medtwin reproduce {record.run_id}`)")


def register(app: typer.Typer) -> None:
    """Add ``trial`` to *app*."""
    app.command("trial")(trial_command)
