"""``medtwin runs``, ``provenance``, ``reproduce`` (recorded runs, checked before they are shown or re-run),
``audit verify|show`` and ``consent add|show|withdraw``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from medtwin.cli import edge
from medtwin.cli.edge import console, default_actor, err_console, fail, input_file
from medtwin.errors import MedtwinError

__all__ = ["audit_app", "consent_app", "provenance_command", "register", "reproduce_command", "runs_command"]


def runs_command(limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many.")) -> None:
    """List the most recent recorded runs with their integrity check.

    Operation, operator and time come from each run's signed provenance record;
    the integrity column says ``ok`` or why the run cannot be trusted (bad
    signature, spec or columns differing from the signed record, malformed row).
    """
    try:
        stores = edge.open_stores()
        rows = stores.runs.list_checked([stores.key.public_key()], limit)
    except MedtwinError as exc:
        fail(exc)
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
        fail(typer.BadParameter(f"--format must be one of {formats}, not {fmt!r}"))
    try:
        stores = edge.open_stores()
        record = stores.runs.get(run_id).record
    except MedtwinError as exc:
        fail(exc)
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


def reproduce_command(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="A recorded run (see `medtwin runs`)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who reproduces it (default: login name); the "
                                        "stored patient data are read for the run's own purpose."),
    model_from: Optional[List[str]] = typer.Option(
        None, "--model-from", metavar="MODULE:ATTRIBUTE",
        help="A user-defined model the run was made with (not a library model), imported from a module on "
             "the Python path or a .py file; its digest must be the recorded one. Repeatable."),
) -> None:
    """Re-execute RUN_ID from its stored inputs; exit 0 when bit-identical, 1 otherwise (with what differs).

    The run is checked first (signature, spec digest, columns): a run failing the
    check is not executed; one line says why, exit status 1.  A run made on a
    user-defined model needs that model (``--model-from``); a different definition
    is refused (exit status 2).
    """
    from medtwin import workflows
    from medtwin.errors import ModelDigestError, ModelError
    from medtwin.governance.runs import RunIntegrityError

    try:
        models = [edge.model_from(reference) for reference in model_from or ()]
        from medtwin.trials.workflow import TrialRequest

        report = workflows.reproduce_run(edge.open_stores(), run_id, actor=actor or default_actor(),
                                         model=models or None, requests={"trial": TrialRequest})
    except RunIntegrityError as exc:
        err_console.print(f"[bold red]refused:[/] {exc}; not re-executed", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)
    except ModelError as exc:
        if isinstance(exc, ModelDigestError) or "not a library model" not in str(exc):
            fail(exc)
        fail(ModelError(f"{exc} -- on the command line: --model-from MODULE:ATTRIBUTE"))
    except MedtwinError as exc:
        fail(exc)
    (console if report.identical else err_console).print(report.summary(), highlight=False)
    if not (report.identical and report.signature_ok and report.inputs_ok):
        raise typer.Exit(code=1)


audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained, signed audit log.")


@audit_app.command("verify")
def audit_verify_command(
    key: List[Path] = typer.Option([], "--key", exists=True, dir_okay=False,
                                   help="Extra Ed25519 public key (PEM) of another signer; repeatable."),
) -> None:
    """Check the whole chain, every signature and the signed head checkpoint (entries removed from the end);
    name the first bad entry. Exit status 1 when broken."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        log, own = edge.open_audit_log()
        keys = [own.public_key()] + [load_pem_public_key(path.read_bytes()) for path in key]
        report = log.verify(keys)
    except MedtwinError as exc:
        fail(exc)
    if report.ok:
        console.print(f"audit log intact: {report.n_entries} entries, chain, signatures and head checkpoint "
                      "verified")
        return
    err_console.print(f"[bold red]audit log broken[/] at entry {report.first_bad_seq}: {report.reason} "
                      f"({report.n_entries} entries verified before it)")
    raise typer.Exit(code=1)


@audit_app.command("show")
def audit_show_command(
    patient: Optional[str] = typer.Option(None, "--patient", help="Only entries about this patient."),
    limit: int = typer.Option(50, "--limit", min=1, help="Show at most this many (the most recent)."),
) -> None:
    """List audit entries (time, actor, action, patient, payload)."""
    try:
        log, _ = edge.open_audit_log()
        entries = list(log.entries(patient=patient))[-limit:]
    except MedtwinError as exc:
        fail(exc)
    table = Table(title=f"audit log ({len(entries)} entries shown)", title_justify="left")
    for col in ("seq", "time (UTC)", "actor", "action", "patient", "payload"):
        table.add_column(col)
    for e in entries:
        table.add_row(str(e.seq), e.time, e.actor, e.action, e.patient or "", e.payload_json[:80])
    console.print(table)


consent_app = typer.Typer(no_args_is_help=True, help="Dynamic consent: patients' FHIR Consents, audited.")


def _open_consent_store():
    return edge.open_stores().consents


def _purposes_text(policy) -> str:
    if not policy.provisions:
        return "any"
    names = set()
    for p in policy.provisions:
        if p.purposes is None:
            return "any"
        names |= p.purposes
    return ", ".join(sorted(names))


def _period_text(period) -> str:
    if period is None:
        return ""
    start = period.start.date().isoformat() if period.start else "…"
    end = period.end.date().isoformat() if period.end else "…"
    return f"{start} – {end}"


@consent_app.command("add")
def consent_add_command(
    file: Path = typer.Argument(..., metavar="FILE.json", exists=True, dir_okay=False,
                                callback=input_file("Consent file", "json"),
                                help="FHIR R5 (or R4B) Consent resource as JSON (one object)."),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who records it (default: login name)."),
) -> None:
    """Validate a FHIR Consent and store it (audit entry consent.add)."""
    try:
        store = _open_consent_store()
        policy = store.add(file, actor or default_actor())
    except MedtwinError as exc:
        fail(exc)
    console.print(f"stored consent {policy.id} for patient {policy.patient} "
                  f"({policy.status}, {policy.decision})")


@consent_app.command("show")
def consent_show_command(
    patient: str = typer.Argument(..., metavar="PATIENT", help="Patient id (or Patient/id)."),
) -> None:
    """List the stored consents of PATIENT (id, status, decision, period, purposes, date)."""
    try:
        consents = _open_consent_store().for_patient(patient)
    except MedtwinError as exc:
        fail(exc)
    table = Table(title=f"consents of patient {patient.split('/')[-1]} ({len(consents)})", title_justify="left")
    table.add_column("id", no_wrap=True)  # ids are what users copy: never folded
    for col in ("status", "decision", "period", "purposes", "date"):
        table.add_column(col, overflow="fold")
    for c in consents:
        table.add_row(c.id, c.status, c.decision, _period_text(c.period), _purposes_text(c),
                      c.date.isoformat() if c.date else "")
    console.print(table)


@consent_app.command("withdraw")
def consent_withdraw_command(
    patient: str = typer.Argument(..., metavar="PATIENT", help="Patient id (or Patient/id)."),
    purpose: str = typer.Option(..., "--purpose", help="treatment | decision-support | research | "
                                "model-training | third-party-sharing"),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who records it (default: login name)."),
) -> None:
    """Withdraw PATIENT's consent to a purpose from now on (audit entry consent.withdraw)."""
    try:
        policy = _open_consent_store().withdraw(patient, purpose, actor or default_actor())
    except MedtwinError as exc:
        fail(exc)
    console.print(f"stored consent {policy.id}: patient {policy.patient} denies {purpose} "
                  f"from {policy.period.start.isoformat(timespec='seconds')}")


def register(app: typer.Typer) -> None:
    """Add ``runs``, ``provenance``, ``reproduce``, ``audit`` and ``consent`` to *app*."""
    app.command("runs")(runs_command)
    app.command("provenance")(provenance_command)
    app.command("reproduce")(reproduce_command)
    app.add_typer(audit_app, name="audit")
    app.add_typer(consent_app, name="consent")
