"""The ``medtwin runs``, ``provenance`` and ``reproduce`` commands: recorded runs, checked before they are shown or re-run.

Registered on :data:`medtwin.cli.app` when :mod:`medtwin.cli` is imported.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.table import Table

from medtwin.cli import _data_access, _default_actor, _fail, _open_stores, app, console, err_console
from medtwin.errors import MedtwinError


@app.command("runs")
def runs_command(limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many.")) -> None:
    """List the most recent recorded runs with their integrity check.

    Operation, operator and time come from each run's signed provenance record;
    the integrity column says ``ok`` or why the run cannot be trusted (bad
    signature, spec or columns differing from the signed record, malformed row).
    """
    try:
        stores = _open_stores()
        rows = stores.runs.list_checked([stores.key.public_key()], limit)
    except MedtwinError as exc:
        _fail(exc)
    table = Table(title=f"recorded runs ({len(rows)} shown, newest first)", title_justify="left")
    table.add_column("run id", no_wrap=True)
    for col in ("operation", "operator", "time (UTC)"):
        table.add_column(col)
    table.add_column("integrity", no_wrap=True, min_width=9)
    for row in rows:
        table.add_row(row.run_id, row.operation, row.operator, row.time,
                      "ok" if row.ok else f"[bold red]{row.status}[/]")
    console.print(table)
    bad = [row for row in rows if not row.ok]
    for row in bad:
        err_console.print(f"[bold red]{row.status}[/] run {row.run_id}: {'; '.join(row.problems)}",
                          highlight=False, soft_wrap=True)
    if bad:
        err_console.print(f"[bold red]warning:[/] {len(bad)} of the {len(rows)} runs shown fail their integrity "
                          "check", soft_wrap=True)


@app.command("provenance")
def provenance_command(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="A recorded run (see `medtwin runs`)."),
    fmt: str = typer.Option("prov-json", "--format", help="prov-json (W3C PROV-JSON) | fhir (FHIR R5 "
                            "Provenance) | json (medtwin's signed record)"),
    unverified: bool = typer.Option(False, "--unverified", help="Print the record even when its signature "
                                    "does not verify (the exit status is still 1)."),
) -> None:
    """Print the signed provenance of RUN_ID, after checking its signature.

    Exit status 1, with one line naming the problem and nothing printed, when the
    signature does not verify with this installation's key or the record is not
    RUN_ID's; 2 when the stored row is malformed or there is no such run.
    """
    from medtwin.governance.interchange import to_fhir_provenance, to_prov_json
    from medtwin.governance.provenance import verify

    formats = ("prov-json", "fhir", "json")
    if fmt not in formats:
        _fail(typer.BadParameter(f"--format must be one of {formats}, not {fmt!r}"))
    try:
        stores = _open_stores()
        record = stores.runs.get(run_id).record
    except MedtwinError as exc:
        _fail(exc)
    problem = None
    if record.run_id != run_id:
        problem = f"the stored record belongs to run {record.run_id}"
    elif not verify(record, stores.key.public_key()):
        problem = "its signature does not verify with this installation's key (altered, or signed elsewhere)"
    if problem and not unverified:
        err_console.print(f"[bold red]error:[/] provenance of run {run_id} not printed: {problem} "
                          "(--unverified prints it anyway)", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    if fmt == "prov-json":
        text = to_prov_json(record)
    elif fmt == "fhir":
        text = json.dumps(to_fhir_provenance(record), indent=2, sort_keys=True)
    else:
        text = json.dumps(record.as_dict(), indent=2, sort_keys=True)
    sys.stdout.write(text.rstrip("\n") + "\n")
    if problem:
        err_console.print(f"[bold red]UNVERIFIED:[/] provenance of run {run_id}: {problem}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(code=1)


@app.command("reproduce")
def reproduce_command(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="A recorded run (see `medtwin runs`)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who reproduces it (default: login name); the "
                                        "stored patient data are read for the run's own purpose."),
) -> None:
    """Re-execute RUN_ID from its stored inputs; exit 0 when bit-identical, 1 otherwise (with what differs).

    The run is checked first (signature, spec digest, columns): a run failing the
    check is not executed; one line says why, exit status 1.
    """
    from medtwin.governance.runs import RunIntegrityError
    from medtwin.workflows.engine import reproduce

    try:
        stores = _open_stores()
        keys = [stores.key.public_key()]
        spec = stores.runs.verified(run_id, keys).spec  # before the spec chooses how its data are read
        access = _data_access(stores, actor or _default_actor(), spec.purpose or "treatment", spec.open_data)
        report = reproduce(stores.runs, run_id, access=access, public_keys=keys)
    except RunIntegrityError as exc:
        err_console.print(f"[bold red]refused:[/] {exc}; not re-executed", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    except MedtwinError as exc:
        _fail(exc)
    (console if report.identical else err_console).print(report.summary(), highlight=False)
    if not (report.identical and report.signature_ok and report.inputs_ok):
        raise typer.Exit(code=1)
