"""The ``medtwin`` command line: a thin shell over the library functions.

Commands: ``models`` (the library, optionally as JSON), ``simulate`` (a
NONMEM-style dataset through a model, one row per observation record) and
``demo`` (the vancomycin virtual ward).  Errors from the library's exception
tree are printed as one clear line and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medtwin.cli_edge import (MedtwinGroup, OutFolder, check_covariates as _check_covariates, check_out_file,
                              check_out_folder, check_patient_options as _check_patient_options, input_file,
                              is_terminal, one_line, parse_assignments as _parse_param_overrides,
                              with_option as _with_option)
from medtwin.errors import MedtwinError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="medtwin: medical digital twins.",
                  cls=MedtwinGroup)
#: Output width when stdout is a file or a pipe (no terminal to fit): wide enough that tables and paths are
#: neither cut nor folded for the reader, a log or grep.
_PIPE_WIDTH = 240
console = Console(soft_wrap=True, width=None if is_terminal(sys.stdout) else _PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True)  # an error line is never folded at 80 columns


#: Consent purposes (kept here so that --help does not import the governance layer).
_PURPOSES = ("treatment", "decision-support", "research", "model-training", "third-party-sharing")


class _Stores:
    """This installation's database, signing key, audit log, consents and runs (opened once per command)."""

    def __init__(self):
        from medtwin.governance.audit import AuditLog
        from medtwin.governance.audit_checkpoint import checkpoint_path
        from medtwin.governance.consent_store import ConsentStore
        from medtwin.governance.provenance import load_or_create_key
        from medtwin.governance.runs import RunStore
        from medtwin.io.storage import data_home, database_url, make_engine, upgrade

        self.engine = make_engine(database_url())
        upgrade(self.engine)
        self.key = load_or_create_key(data_home() / "keys")
        # signed head checkpoint beside the key: `audit verify` detects a truncated or emptied log
        self.log = AuditLog(self.engine, self.key, checkpoint=checkpoint_path(data_home() / "keys", self.engine))
        self.consents = ConsentStore(self.engine, self.log)
        self.runs = RunStore(self.engine, self.log, self.key)


def _open_stores() -> _Stores:
    return _Stores()


def _fail(exc: Exception) -> None:
    """Print ``error: <message>`` on one line (no markup read from the message) and exit with status 2."""
    from rich.text import Text

    err_console.print(Text.assemble(("error:", "bold red"), " ", one_line(exc)), soft_wrap=True)
    raise typer.Exit(code=2)


class _ProgressBar:
    """A rich progress bar usable as the ``progress(done, total)`` callback of simulate()."""

    def __init__(self, label: str, enabled: bool = True):
        self.enabled = enabled and err_console.is_terminal  # no bar (nor its blank line) in a log or a pipe
        self.progress = Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total} patients"),
                                 TimeElapsedColumn(), console=err_console, transient=True)
        self.task = None

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.task is None:
            self.task = self.progress.add_task("run", total=total)
        self.progress.update(self.task, completed=done)


@app.command("models")
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
        _fail(exc)
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


def _data_access(stores, actor: str, purpose: str, open_data: Optional[str]):
    """The consent gate for (actor, purpose), or OpenData when the user declared the data non-identifiable."""
    from medtwin.governance.consent_store import ConsentGate
    from medtwin.io.access import OpenData

    return OpenData(open_data) if open_data else ConsentGate(stores.consents, actor, purpose)


@app.command("simulate")
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
                                "their consents): " + " | ".join(_PURPOSES)),
    actor: Optional[str] = typer.Option(None, "--actor", help="Who runs it (default: login name)."),
    open_data: Optional[str] = typer.Option(None, "--open-data", metavar="REASON",
                                            help="The data are not identifiable patient data (say why): "
                                                 "no consent check."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Simulate MODEL on every subject of a NONMEM-style dataset; the run is stored with signed provenance."""
    import numpy as np

    from medtwin.governance.runs import spec_for_dataset
    from medtwin.io.dataset_simulation import read_parameter_table, simulate_dataset, write_simulation
    from medtwin.io.nonmem import read_nonmem
    from medtwin.models import get_model

    actor = actor or _default_actor()
    try:
        model = get_model(model_name)
        overrides = _parse_param_overrides(param)
        check_out_file(out)
        stores = _open_stores()
        access = _data_access(stores, actor, purpose, open_data)
        dataset = _with_option("--data", data, read_nonmem, data, model=model, access=access)
        table = _with_option("--params", params, read_parameter_table, params) if params is not None else None
        if table is not None:
            for key, value in overrides.items():
                table[key] = value
            parameters = table
        else:
            parameters = overrides or None
        settings = {"method": method, "rtol": rtol, "atol": atol, "dt": dt, "keep_states": False}
        spec = spec_for_dataset(model_name, dataset, parameters, settings=settings,
                                purpose=None if open_data else purpose, open_data=open_data)
        with _ProgressBar(f"simulating {model.name}", enabled=not no_progress) as bar:
            trajectory = simulate_dataset(model, dataset, parameters, progress=bar, **settings)
        # CSV written aside first, run stored, then the CSV moved into place: a refused write (consent) or a
        # failed store leaves neither a run without its output nor an output without its run.
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}.partial{out.suffix}")
        try:
            write_simulation(trajectory, partial, access=access, observations_only=True)
            record = stores.runs.save(spec, trajectory, actor, access=access)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    except (MedtwinError, typer.BadParameter) as exc:
        _fail(exc)
    failed = [s for s in trajectory.statuses() if not s.ok]
    n_rows = int(np.sum(np.asarray(trajectory.extra["evid"]) == 0))
    console.print(f"wrote {n_rows} rows for {trajectory.n_patients} subjects to {out} "
                  f"(solver {trajectory.solver.method}, rtol {trajectory.solver.rtol:g}, atol {trajectory.solver.atol:g})")
    console.print(f"run {record.run_id} recorded with signed provenance "
                  f"(`medtwin provenance {record.run_id}`, `medtwin reproduce {record.run_id}`)")
    if failed:
        err_console.print(f"[yellow]warning:[/] {len(failed)} subject(s) failed: {failed[0].message}")


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("medtwin-demo"), "--out",
                             help="New (or empty) folder for the CSV and PNG files."),
    n_patients: int = typer.Option(12, "--patients", min=1, max=10_000, help="Number of virtual patients "
                                   "(1-10,000)."),
    seed: int = typer.Option(2026, help="Random seed of the virtual ward."),
) -> None:
    """Vancomycin virtual ward on 1,000 mg q12h: concentration curves and AUC24 vs the 400–600 target."""
    from medtwin.scenarios.demo import demo_table, plot_demo, run_vancomycin_demo
    from medtwin.governance.runs import spec_for_simulate
    from medtwin.io.access import OpenData

    try:
        check_out_folder(out)
        stores = _open_stores()
        with _ProgressBar("simulating vancomycin") as bar:
            result = run_vancomycin_demo(n_patients=n_patients, seed=seed, progress=bar)
        virtual = f"virtual patients drawn by medtwin demo (seed {seed})"
        spec = spec_for_simulate(result.trajectory.model, result.parameters, result.regimen, result.trajectory.times,
                                 settings={"keep_states": False}, open_data=virtual, seeds={"seed": seed})
        record = stores.runs.save(spec, result.trajectory, _default_actor(), access=OpenData(virtual))
    except (MedtwinError, typer.BadParameter) as exc:
        _fail(exc)
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
    _twin_demo(out, seed)


def _twin_demo(out: Path, seed: int) -> None:
    """Part 2 of the demo: one patient's twin from two levels, a 48-h forecast and P(AUC24 on target)."""
    import numpy as np

    from medtwin.scenarios.demo import run_twin_demo

    try:
        with _ProgressBar("personalizing the demo patient (first run compiles, ~10 s)") as bar:
            bar(0, 1)
            twin = run_twin_demo(seed)
            bar(1, 1)
    except MedtwinError as exc:
        _fail(exc)
    d = twin.data
    console.print(f"\n[bold]Twin of patient {d.patient}[/] (CrCl {d.covariates['CRCL']:.0f} mL/min, "
                  f"{d.covariates['WT']:.0f} kg), 1,000 mg q12h; levels "
                  + ", ".join(f"{v:g} mg/L at {t:g} h" for t, v in zip(d.times, d.values)))
    _print_posterior(twin.posterior)
    auc = twin.band.auc("C", *twin.auc_window)
    lo, hi = twin.target
    console.print(f"Forecast {twin.auc_window[0]:.0f}–{twin.auc_window[1]:.0f} h under the current regimen: "
                  f"AUC24 median {np.median(auc):.0f} mg·h/L (90 % {np.quantile(auc, 0.05):.0f}–"
                  f"{np.quantile(auc, 0.95):.0f}); [bold]P(AUC24 in {lo:.0f}–{hi:.0f}) = {twin.p_target:.2f}[/] "
                  f"(this virtual patient's true AUC24: {twin.true_auc24:.0f})")
    from medtwin.governance.runs import spec_for_personalize
    from medtwin.io.access import OpenData
    from medtwin.io.population_file import load_population, shipped_population_path

    virtual = f"virtual patient drawn by medtwin demo (seed {seed})"
    spec = spec_for_personalize(load_population(shipped_population_path("vancomycin_goti2018")), d,
                                method=twin.posterior.method, seed=seed, regimen=twin.regimen,
                                times=twin.band.times, n_draws=twin.band.draws["C"].shape[0], open_data=virtual)
    try:
        record = _open_stores().runs.save(spec, twin.band, _default_actor(), access=OpenData(virtual))
    except MedtwinError as exc:
        _fail(exc)
    console.print(f"twin forecast run {record.run_id} recorded (`medtwin reproduce {record.run_id}`)")
    twin.band.to_frame().to_csv(out / "twin_forecast.csv", index=False)
    _plot_band(twin.posterior, twin.band, d, out / "twin_forecast.png", twin.auc_window)
    console.print(f"forecast:       {(out / 'twin_forecast.csv').resolve()}")
    console.print(f"plot:           {(out / 'twin_forecast.png').resolve()}")
    from medtwin.cli_control import demo_recommendation

    demo_recommendation(twin, out, seed)


audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained, signed audit log.")
app.add_typer(audit_app, name="audit")


def _open_audit_log():
    """The installation's audit log (database from MEDTWIN_DATABASE_URL or the default SQLite file) and key."""
    stores = _open_stores()
    return stores.log, stores.key


@audit_app.command("verify")
def audit_verify_command(
    key: List[Path] = typer.Option([], "--key", exists=True, dir_okay=False,
                                   help="Extra Ed25519 public key (PEM) of another signer; repeatable."),
) -> None:
    """Check the whole chain, every signature and the signed head checkpoint (entries removed from the end);
    name the first bad entry. Exit status 1 when broken."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        log, own = _open_audit_log()
        keys = [own.public_key()] + [load_pem_public_key(path.read_bytes()) for path in key]
        report = log.verify(keys)
    except MedtwinError as exc:
        _fail(exc)
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
        log, _ = _open_audit_log()
        entries = list(log.entries(patient=patient))[-limit:]
    except MedtwinError as exc:
        _fail(exc)
    table = Table(title=f"audit log ({len(entries)} entries shown)", title_justify="left")
    for col in ("seq", "time (UTC)", "actor", "action", "patient", "payload"):
        table.add_column(col)
    for e in entries:
        table.add_row(str(e.seq), e.time, e.actor, e.action, e.patient or "", e.payload_json[:80])
    console.print(table)


consent_app = typer.Typer(no_args_is_help=True, help="Dynamic consent: patients' FHIR Consents, audited.")
app.add_typer(consent_app, name="consent")


def _default_actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers)
        return "medtwin-cli"


def _open_consent_store():
    return _open_stores().consents


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
        policy = store.add(file, actor or _default_actor())
    except MedtwinError as exc:
        _fail(exc)
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
        _fail(exc)
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
        policy = _open_consent_store().withdraw(patient, purpose, actor or _default_actor())
    except MedtwinError as exc:
        _fail(exc)
    console.print(f"stored consent {policy.id}: patient {policy.patient} denies {purpose} "
                  f"from {policy.period.start.isoformat(timespec='seconds')}")


def _read_patients(stores, data: Path, model, actor: str, purpose: str, open_data: Optional[str]):
    from medtwin.io.nonmem import read_nonmem

    return _with_option("--data", data, read_nonmem, data, model=model,
                        access=_data_access(stores, actor, purpose, open_data))


def _one_patient(dataset, patient_id: Optional[str], covariate: List[str]):
    from medtwin.core.data import PatientData

    ids = [str(i) for i in dataset.ids]
    if patient_id is None:
        if len(ids) != 1:
            raise typer.BadParameter(f"the dataset holds {len(ids)} subjects ({', '.join(ids[:8])}...): pick one "
                                     "with --id")
        patient_id = ids[0]
    if patient_id not in ids:
        raise typer.BadParameter(f"--id {patient_id}: no such subject (have {', '.join(ids[:8])})")
    subject = dataset.subjects[ids.index(patient_id)]
    data = PatientData.from_subject(subject)
    extra = _parse_param_overrides(covariate, "--covariate")
    if extra:
        data = PatientData(data.regimen, data.times, data.values, {**data.covariates, **extra}, data.output,
                           data.blq, data.lloq, data.pre_dose, data.patient, data.rows)
    if data.n_observations == 0:
        raise typer.BadParameter(f"subject {patient_id} has no observations (EVID 0, MDV 0, DV) to personalize on")
    return data


def _personalized(population_file: Path, data_file: Path, patient_id, covariate, method, actor, purpose,
                  open_data, seed):
    from medtwin.infer.personalize import personalize
    from medtwin.io.population_file import load_population
    from medtwin.models import get_model

    _check_patient_options(method, covariate)
    population = _with_option("--population", population_file, load_population, population_file)
    stores = _open_stores()
    dataset = _read_patients(stores, data_file, get_model(population.model), actor, purpose, open_data)
    data = _one_patient(dataset, patient_id, covariate)
    _check_covariates(population, data.covariates, data_file)
    with _ProgressBar(f"personalizing patient {data.patient} ({method})") as bar:
        bar(0, 1)
        posterior = personalize(population, data, method=method, seed=seed)
        bar(1, 1)
    if not posterior.ok:
        err_console.print(f"[yellow]warning:[/] posterior {posterior.status}: {posterior.message}")
    for line in posterior.warnings():
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False)
    return population, data, posterior


def _print_posterior(posterior) -> None:
    table = Table(title=f"posterior of patient {posterior.data[-1].patient} ({posterior.method}, "
                        f"{posterior.status})", title_justify="left")
    diagnostics = posterior.diagnostics if posterior.method == "nuts" else {}
    sampled = "rhat" in diagnostics and "ess" in diagnostics
    columns = ("parameter", "unit", "prior median", "posterior median", "90 % interval")
    for col in columns + (("R-hat", "bulk ESS") if sampled else ()):
        table.add_column(col, justify="right")
    for k, row in enumerate(posterior.summary().itertuples()):
        cells = [row.parameter, row.unit, f"{row.prior_median:.4g}", f"{row.median:.4g}",
                 f"{row.p05:.4g} – {row.p95:.4g}"]
        if sampled:
            cells += [f"{float(diagnostics['rhat'][k]):.3f}", f"{float(diagnostics['ess'][k]):.0f}"]
        table.add_row(*cells)
    console.print(table)
    if sampled:
        console.print(f"NUTS: {diagnostics.get('chains', '?')} chains × {diagnostics.get('draws', '?')} draws; "
                      f"{posterior.message} (R-hat < 1.01 and no divergences: {posterior.status})", highlight=False)


_POP = typer.Option(..., "--population", exists=True, dir_okay=False, callback=input_file("population file", "mapping"),
                    help="Population file (YAML/JSON; format in docs/population-file.md).")
_DATA = typer.Option(..., "--data", exists=True, dir_okay=False, callback=input_file("dataset"),
                     help="NONMEM-style CSV with the patient's doses, levels and covariate columns (those the "
                          "population needs, e.g. CRCL, WT, DIAL for vancomycin_goti2018).")
_ID = typer.Option(None, "--id", help="Subject ID (when the file holds several).")
_COVARIATE = typer.Option([], "--covariate", help="NAME=VALUE for a covariate not in the file (e.g. DIAL=0: no "
                          "haemodialysis); repeatable; |VALUE| <= 1e9.")
_METHOD = typer.Option("laplace", "--method", help="laplace (MAP + Laplace, bedside) | nuts (review)")
_TREATMENT = typer.Option("treatment", "--purpose", help=" | ".join(_PURPOSES))
_ACTOR = typer.Option(None, "--actor", help="Who runs it (default: login name).")
_OPEN_DATA = typer.Option(None, "--open-data", metavar="REASON",
                          help="The data are not identifiable patient data (say why): no consent check.")
_SEED = typer.Option(0, help="Seed (NUTS, predictive draws).")


@app.command("fit")
def fit_command(
    model_name: str = typer.Argument(..., metavar="MODEL", help="Library model (must match the population)."),
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="NONMEM-style dataset (CSV).",
                              callback=input_file("dataset")),
    population_file: Path = _POP,
    method: str = typer.Option("foce", "--method", help="foce (FOCE with interaction, ML) | nuts (hierarchical "
                               "Bayes)"),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for the estimates, diagnostics and plots."),
    purpose: str = typer.Option("model-training", "--purpose", help=" | ".join(_PURPOSES)),
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
        _fail(typer.BadParameter(f"--method must be foce or nuts, not {method!r}"))
    outputs = OutFolder(out)
    try:
        population = _with_option("--population", population_file, load_population, population_file)
        if population.model != model_name:
            raise typer.BadParameter(f"the population is for model {population.model!r}, not {model_name!r}")
        outputs.check()
        stores = _open_stores()
        dataset = _read_patients(stores, data, get_model(model_name), actor or _default_actor(), purpose, open_data)
        _check_covariates(population, dataset.covariate_names, data)
        out.mkdir(parents=True, exist_ok=True)
        if method == "foce":
            from medtwin.governance.runs import spec_for_fit

            access = _data_access(stores, actor or _default_actor(), purpose, open_data)
            paths, fit = _fit_foce(population, dataset, out, seed, access)
            spec = spec_for_fit(population, dataset, purpose=None if open_data else purpose, open_data=open_data)
            record = stores.runs.save(spec, fit, actor or _default_actor(), access=access)
            console.print(f"run {record.run_id} recorded with signed provenance (`medtwin reproduce "
                          f"{record.run_id}`)")
        else:
            paths = _fit_nuts(population, dataset, out, seed, chains, draws, warmup)
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        _fail(exc)
    for name, path in paths.items():
        console.print(f"{name:>22}: {path}")


def _fit_foce(population, dataset, out: Path, seed: int, access) -> tuple[dict, object]:
    from medtwin.infer.foce import fit_focei
    from medtwin.io.fit_report import write_fit_report

    with _ProgressBar("FOCEI estimation + covariance step") as bar:
        bar(0, 1)
        fit = fit_focei(population, dataset)
        bar(1, 1)
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
    with _ProgressBar("diagnostics (CWRES, NPDE, VPC)") as bar:
        bar(0, 1)
        paths = write_fit_report(fit, dataset, out, access=access, seed=seed)
        bar(1, 1)
    return paths, fit


def _fit_nuts(population, dataset, out: Path, seed: int, chains: int, draws: int, warmup: int) -> dict:
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


@app.command("personalize")
def personalize_command(
    population_file: Path = _POP,
    data: Path = _DATA,
    patient_id: Optional[str] = _ID,
    covariate: List[str] = _COVARIATE,
    method: str = _METHOD,
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for posterior.csv, fit.csv and fit.png."),
    purpose: str = _TREATMENT,
    actor: Optional[str] = _ACTOR,
    open_data: Optional[str] = _OPEN_DATA,
    seed: int = _SEED,
) -> None:
    """Personalize one patient: the posterior of their parameters and the individual fit with bands."""
    import numpy as np

    outputs = OutFolder(out)
    try:
        _check_patient_options(method, covariate)
        outputs.check()
        _, data_, posterior = _personalized(population_file, data, patient_id, covariate, method,
                                            actor or _default_actor(), purpose, open_data, seed)
        out.mkdir(parents=True, exist_ok=True)
        grid = np.round(np.arange(0.0, float(data_.times.max()) + 12.0 + 1e-9, 0.1), 10)
        band = posterior.predict(data_.regimen, grid, seed=seed)
        posterior.summary().to_csv(out / "posterior.csv", index=False)
        band.to_frame().to_csv(out / "fit.csv", index=False)
        _plot_band(posterior, band, data_, out / "fit.png", None)
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        _fail(exc)
    _print_posterior(posterior)
    for name in ("posterior.csv", "fit.csv", "fit.png"):
        console.print(f"{name:>14}: {out / name}")


#: Longest forecast (h): 30 days on a 0.1-h grid with 1,000 draws is about 60 MB per output.
MAX_FORECAST_HOURS = 720.0


@app.command("forecast")
def forecast_command(
    population_file: Path = _POP,
    data: Path = _DATA,
    patient_id: Optional[str] = _ID,
    covariate: List[str] = _COVARIATE,
    hours: float = typer.Option(48.0, "--hours", min=1.0, max=MAX_FORECAST_HOURS,
                                help=f"Forecast horizon after the last level (h, 1-{MAX_FORECAST_HOURS:g})."),
    method: str = _METHOD,
    auc_target: Tuple[float, float] = typer.Option((400.0, 600.0), "--auc-target",
                                                   help="AUC24 window (mg·h/L) over the last 24 h."),
    out: Path = typer.Option(..., "--out",
                             help="New (or empty) folder for forecast.csv and forecast.png."),
    purpose: str = _TREATMENT,
    actor: Optional[str] = _ACTOR,
    open_data: Optional[str] = _OPEN_DATA,
    seed: int = _SEED,
) -> None:
    """Forecast a patient under the current regimen (continued) with bands and target probabilities."""
    import numpy as np

    from medtwin.infer.posterior import probability

    outputs = OutFolder(out)
    try:
        if not 0.0 <= auc_target[0] < auc_target[1] <= 1e6:
            raise typer.BadParameter(f"--auc-target {auc_target[0]:g} {auc_target[1]:g}: give LOW HIGH with "
                                     "0 <= LOW < HIGH <= 1e6 (mg·h/L)")
        _check_patient_options(method, covariate)
        outputs.check()
        _, data_, posterior = _personalized(population_file, data, patient_id, covariate, method,
                                            actor or _default_actor(), purpose, open_data, seed)
        end = float(data_.times.max()) + hours
        regimen = data_.regimen.continued(end)
        grid = np.round(np.arange(0.0, end + 1e-9, 0.1), 10)
        band = posterior.predict(regimen, grid, seed=seed)
        window = (end - 24.0, end)
        output = posterior.prior.residual.output
        auc = band.auc(output, *window)
        cmin = np.min(band.draws[output][:, (grid >= window[0]) & (grid <= window[1])], axis=1)
        out.mkdir(parents=True, exist_ok=True)
        band.to_frame().to_csv(out / "forecast.csv", index=False)
        _plot_band(posterior, band, data_, out / "forecast.png", window)
    except (MedtwinError, typer.BadParameter) as exc:
        outputs.discard()
        _fail(exc)
    _print_posterior(posterior)
    unit = band.units.get(output, "")
    lo, hi = auc_target
    console.print(f"AUC24 over {window[0]:.1f}–{window[1]:.1f} h: median {np.median(auc):.0f} {unit}·h "
                  f"(90 % {np.quantile(auc, 0.05):.0f}–{np.quantile(auc, 0.95):.0f}); "
                  f"P(AUC24 in {lo:g}–{hi:g}) = {probability(auc, lo, hi):.2f}")
    console.print(f"Cmin over the same 24 h: median {np.median(cmin):.3g} {unit}; "
                  f"P(Cmin in 10–20 {unit}) = {probability(cmin, 10.0, 20.0):.2f}")
    console.print(f"forecast.csv: {out / 'forecast.csv'}\nforecast.png: {out / 'forecast.png'}")


def _plot_band(posterior, band, data, path: Path, window) -> None:
    from matplotlib.figure import Figure

    from medtwin.infer.plots import plot_individual

    fig = Figure(figsize=(9, 4.8))
    ax = fig.add_subplot()
    plot_individual(posterior, band, data, ax=ax)
    if window is not None:
        ax.axvspan(*window, color="0.92", zorder=0, label="AUC24 window")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


from medtwin import cli_control as _cli_control  # noqa: E402,F401  (registers `recommend`, `closed-loop`)
from medtwin import cli_twin as _cli_twin  # noqa: E402,F401  (registers `medtwin replay` on app)
from medtwin import cli_runs as _cli_runs  # noqa: E402,F401  (registers `runs`, `provenance`, `reproduce`)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
