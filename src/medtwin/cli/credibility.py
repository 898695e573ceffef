"""``medtwin credibility MODEL --context-of-use COU.yaml --out report/``: a V&V 40 credibility report.

parse -> :class:`~medtwin.workflows.credibility.CredibilityRequest` -> :func:`medtwin.workflows.run` (every
check run now, the report signed and recorded) -> ``report/index.html`` (deterministic) and
``report/provenance.json`` (the signed record: run id, time, operator, digests, Ed25519 signature).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from medtwin.cli import edge
from medtwin.cli.edge import ACTOR, PURPOSES, OutFolder, console, default_actor, fail
from medtwin.errors import MedtwinError

__all__ = ["credibility_command", "register"]


def credibility_command(
    model_name: str = typer.Argument(..., metavar="MODEL", help="Library model the context of use is about."),
    context_of_use: Path = typer.Option(..., "--context-of-use", exists=True, dir_okay=False,
                                        help="Context-of-use file (YAML; shipped ones in medtwin/data/contexts; "
                                             "format in docs/credibility.md)."),
    out: Path = typer.Option(..., "--out", help="New (or empty) folder for index.html and provenance.json."),
    model_from: Optional[str] = typer.Option(None, "--model-from", metavar="MODULE:ATTRIBUTE",
                                             help="Test a user-defined implementation of MODEL instead of the "
                                                  "library's (its name must be MODEL)."),
    purpose: Optional[str] = typer.Option(None, "--purpose", help=" | ".join(PURPOSES) + " (comparator data "
                                          "that are consented patient data)"),
    open_data: Optional[str] = typer.Option("public comparator data sets (pharmpy teaching data)", "--open-data",
                                            metavar="REASON", help="The comparator data are not identifiable "
                                            "patient data (say why); default for the shipped contexts."),
    actor: Optional[str] = ACTOR,
) -> None:
    """Generate the credibility report of MODEL for a context of use (ASME V&V 40, FDA 2023 guidance)."""
    from medtwin import workflows
    from medtwin.credibility.context import load_context
    from medtwin.models import get_model
    from medtwin.workflows.credibility import CredibilityRequest

    actor = actor or default_actor()
    outputs = OutFolder(out)
    try:
        context = edge.with_option("--context-of-use", context_of_use, load_context, context_of_use)
        if context.model != model_name:
            raise typer.BadParameter(f"--context-of-use {context_of_use}: the context is for model "
                                     f"{context.model!r}, not {model_name!r}")
        model = edge.model_from(model_from) if model_from else get_model(model_name)
        if model.name != model_name:
            raise typer.BadParameter(f"--model-from: the model is called {model.name!r}, not {model_name!r}")
        outputs.check()
        stores = edge.open_stores()
        request = CredibilityRequest(model, context, purpose=purpose, open_data=None if purpose else open_data)
        report, record = workflows.run(request, stores, actor=actor)
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text(report.html, encoding="utf-8")
        (out / "provenance.json").write_text(json.dumps(record.as_dict(), indent=1, sort_keys=True) + "\n",
                                             encoding="utf-8")
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        fail(exc)
    for section, verdict in report.verdicts.items():
        console.print(f"{section:>14}: {verdict}", highlight=False)
    console.print(("credible for this context of use" if report.credible
                   else "credibility NOT established for this context of use") + f" (model risk {report.risk})")
    console.print(f"{'index.html':>16}: {out / 'index.html'}\n{'provenance.json':>16}: {out / 'provenance.json'}")
    console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce {record.run_id}`)")


def register(app: typer.Typer) -> None:
    """Add ``credibility`` to *app*."""
    app.command("credibility")(credibility_command)
