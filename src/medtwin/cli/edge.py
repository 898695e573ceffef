"""The edge of the command line: what every command checks before it does any work, and how errors look.

* :class:`MedtwinGroup` (the ``medtwin`` app's click group): every numeric
  option takes ASCII numbers only (``--hours １０`` is refused, not read as 10),
  and when stderr is not a terminal a usage error (``--bogus``, a value out of
  range) is one plain ``error: ...`` line instead of a framed panel.
* :func:`input_file`: an option/argument callback that reads the file once,
  safely (:mod:`medtwin.io.textfile`), before the command starts: binary, not
  UTF-8, empty, too large, or (for JSON/YAML) not an object at the top level is
  a one-line usage error naming the option.
* :func:`check_out_folder` / :func:`check_out_file`: ``--out`` checks, called
  first in a command, before any work is done or any run is stored;
  :class:`OutFolder` also removes a refused run's partial outputs (nothing half-written).  A folder output must be a new path or an
  existing *empty* folder (an existing file, or a folder with anything in it,
  is refused: medtwin never overwrites or mixes in earlier outputs); a file
  output (``simulate --out out.csv``) must not be a folder (an existing file is
  replaced).
* :func:`parse_assignments` (``--param``/``--covariate NAME=VALUE``), :func:`check_method`,
  :func:`check_patient_options`, :func:`check_covariates`: options checked before any data are read or any
  fit starts, each error naming the option.
* :func:`with_option`: a reader whose DataError is prefixed with the option and the file (``--data x.csv: row
  2, column TIME: ...``).
* :func:`one_line`: a message on one line (newlines and runs of blanks folded).
* The shell every command shares: :data:`console` / :data:`err_console`, :func:`fail` (``error: ...``, exit
  status 2), :class:`ProgressBar`, :func:`open_stores`, the common options (:data:`POP`, :data:`DATA`, ...) and
  :func:`read_patient` (one patient of a NONMEM-style file, consent-checked, with --id and --covariate).
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import typer
from rich.console import Console
from typer.core import TyperGroup

from medtwin.errors import DataError
from medtwin.io.jax_cache import enable_persistent_jax_cache, warm_block_callbacks, warm_model_callbacks

__all__ = ["ACTOR", "COVARIATE", "DATA", "ID", "MAX_OPTION_VALUE", "METHOD", "MedtwinGroup", "OPEN_DATA", "OutFolder",
           "POP", "POPS", "PURPOSES", "SELECT", "WEIGHTING", "ProgressBar", "SEED", "TREATMENT", "check_covariates", "check_method",
           "check_out_file", "check_out_folder", "check_patient_options", "console", "default_actor",
           "err_console", "fail", "input_file", "is_terminal", "one_line", "open_audit_log", "open_stores",
           "parse_assignments", "population_files", "read_dataset", "read_patient", "read_patients", "strict_numbers", "warn_posterior", "with_option"]


def one_line(message: object) -> str:
    """``message`` as one line: newlines and runs of blanks become one space."""
    return " ".join(str(message).split())


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


# ------------------------------------------------------------------ numbers in options
# typer >= 0.20 vendors click (typer._click) and describes a parameter's type by its annotation; older typer
# uses click's ParamType objects.  Both call Parameter.process_value(ctx, raw) first, which is wrapped here.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_NUMBER_TYPES = ("float", "integer", "float range", "integer range")


def _numeric_annotation(annotation) -> bool:
    if annotation in (int, float):
        return True
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis and a is not type(None)]
    return bool(args) and all(_numeric_annotation(a) for a in args)


def _is_numeric(param) -> bool:
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:
        return _numeric_annotation(desc.annotation)
    kind = getattr(param, "type", None)
    types = getattr(kind, "types", None) or [kind]
    return all(getattr(t, "name", "") in _NUMBER_TYPES for t in types)


def _ascii_numbers(param) -> None:
    from medtwin.io.textfile import parse_number

    process = param.process_value

    def process_value(ctx, value):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str):
                try:
                    parse_number(item)
                except ValueError as exc:
                    raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None
        return process(ctx, value)

    param.process_value = process_value
    param._medtwin_strict = True


def strict_numbers(command) -> None:
    """Make every int/float parameter of ``command`` and its subcommands refuse non-ASCII numbers."""
    for param in command.params:
        if _is_numeric(param) and not getattr(param, "_medtwin_strict", False):
            _ascii_numbers(param)
    for sub in getattr(command, "commands", {}).values():
        strict_numbers(sub)


class MedtwinGroup(TyperGroup):
    """The ``medtwin`` group: strict numeric options; plain one-line usage errors when stderr is not a terminal."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        strict_numbers(self)
        enable_persistent_jax_cache()  # compiled JAX programs on disk: a second process does not compile again
        if not standalone_mode or is_terminal(sys.stderr):
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=standalone_mode, **extra)
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
        except _ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already (or is the message)
                if exc.format_message().strip():
                    typer.echo(exc.format_message(), err=True)
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


# ------------------------------------------------------------------ input files
def input_file(what: str, kind: str = "text"):
    """A callback that refuses an unreadable input file before the command runs.

    Parameters
    ----------
    what : str
        What the file is, for the message (``"dataset"``).
    kind : {"text", "mapping", "json"}
        ``text``: UTF-8, not empty; ``mapping``: also a JSON (``.json``) or YAML
        object at the top level; ``json``: a JSON object whatever the suffix.
    """
    from medtwin.io.textfile import load_mapping, read_text

    def check(ctx, param, value):
        if value is None or ctx.resilient_parsing:
            return value
        for path in value if isinstance(value, (list, tuple)) else [value]:
            try:
                if kind == "text":
                    read_text(path, what=what)
                else:
                    load_mapping(path, what=what, fmt="json" if kind == "json" else None)
            except DataError as exc:
                raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None
        return value

    return check


# ------------------------------------------------------------------ outputs
def check_out_folder(path: Path) -> None:
    """``--out`` for a folder of outputs: a new path or an existing empty folder (else BadParameter naming --out).

    Called at the start of a command, after its options are checked and before any work is done or stored.
    """
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise typer.BadParameter(f"--out {path}: exists and is not a folder; give a new folder")
        if any(path.iterdir()):
            raise typer.BadParameter(f"--out {path}: the folder exists and is not empty; give a new or empty folder "
                                     "(medtwin never overwrites earlier outputs or mixes with them)")


class OutFolder:
    """``--out`` of a folder command: :meth:`check` first; after a refused run :meth:`discard` removes what the
    command wrote there (the folder was new or empty when it started, so nothing of the user's is touched)."""

    def __init__(self, path: Path):
        self.path = path
        self.fresh: bool | None = None  # None until checked: never discard a folder that was refused

    def check(self) -> None:
        check_out_folder(self.path)
        self.fresh = not self.path.exists()

    def discard(self) -> None:
        import shutil

        if self.fresh is None or not self.path.is_dir():
            return
        if self.fresh:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for child in self.path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def check_out_file(path: Path) -> None:
    """``--out`` for one output file: not a folder, and its parent is not a file (an existing file is replaced)."""
    if path.is_dir():
        raise typer.BadParameter(f"--out {path}: is a folder; give the output file's path, e.g. {path / 'out.csv'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise typer.BadParameter(f"--out {path}: {path.parent} is a file, not a folder")


# ------------------------------------------------------------------ options
#: Largest |value| accepted for a --param or --covariate (as for dataset cells: medtwin.io.nonmem.MAX_VALUE).
MAX_OPTION_VALUE = 1e9


def parse_assignments(items, option: str = "--param") -> dict[str, float]:
    """NAME=VALUE items of ``option``: ASCII numbers with |value| <= MAX_OPTION_VALUE (else BadParameter)."""
    from medtwin.io.textfile import parse_number

    values = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{option} expects NAME=VALUE, got {item!r}")
        key, _, raw = item.partition("=")
        try:
            value = parse_number(raw)
        except ValueError as exc:
            raise typer.BadParameter(f"{option} {key.strip()}: {exc}") from None
        if abs(value) > MAX_OPTION_VALUE:
            raise typer.BadParameter(f"{option} {key.strip()}={raw.strip()}: beyond the largest accepted magnitude "
                                     f"{MAX_OPTION_VALUE:g}")
        values[key.strip()] = value
    return values


def with_option(option: str, path: Path, read, *args, **kwargs):
    """``read(*args, **kwargs)``; a DataError about the file's content is prefixed with ``option`` and ``path``."""
    try:
        return read(*args, **kwargs)
    except DataError as exc:
        raise DataError(f"{option} {path}: {exc}") from exc


def check_method(method: str, allowed: tuple) -> None:
    if method not in allowed:
        raise typer.BadParameter(f"--method must be {' or '.join(allowed)}, not {method!r}")


def check_patient_options(method: str, covariate) -> None:
    """--method and --covariate of personalize/forecast/recommend, checked before any data are read."""
    check_method(method, ("laplace", "nuts"))
    parse_assignments(covariate, "--covariate")


def check_covariates(population, covariates, data_file: Path) -> None:
    """Every covariate of the population is a --data column or a --covariate, else name the option that supplies it.

    Nothing is assumed for a missing covariate (a dialysis status in particular): the user gives it.
    """
    missing = [c for c in population.covariates if c not in covariates]
    if missing:
        needs = ", ".join(f"{c} ({population.covariate_units.get(c, 'no unit given')})" for c in missing)
        give = " ".join(f"--covariate {c}=VALUE" for c in missing)
        raise typer.BadParameter(f"population {population.name} needs covariate(s) {needs}, which --data {data_file} "
                                 f"does not have: add the column(s) or give {give}")


# ------------------------------------------------------------------ the shell every command shares

#: Output width when stdout is a file or a pipe (no terminal to fit): wide enough that tables and paths are
#: neither cut nor folded for the reader, a log or grep.
_PIPE_WIDTH = 240
console = Console(soft_wrap=True, width=None if is_terminal(sys.stdout) else _PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True)  # an error line is never folded at 80 columns

#: Consent purposes (kept here so that --help does not import the governance layer).
PURPOSES = ("treatment", "decision-support", "research", "model-training", "third-party-sharing")


def fail(exc: Exception) -> typing.NoReturn:
    """Print ``error: <message>`` on one line (no markup read from the message) and exit with status 2."""
    from rich.text import Text

    err_console.print(Text.assemble(("error:", "bold red"), " ", one_line(exc)), soft_wrap=True)
    raise typer.Exit(code=2)


def model_from(reference: str):
    """The user-defined Model named by ``module:ATTRIBUTE`` (``--model-from``), imported with importlib.

    ``module`` is a dotted module name found on ``sys.path`` (the working directory included), or a path
    to a ``.py`` file; ``ATTRIBUTE`` a (dotted) attribute of it that is a :class:`~medtwin.core.model.Model`.
    Importing runs the module's code, as ``python -m`` would.

    Raises
    ------
    DataError
        A malformed reference, a module that cannot be imported, a missing attribute or one that is not a Model.
    """
    import importlib
    import importlib.util

    from medtwin.core.model import Model

    module_name, sep, attribute = str(reference).rpartition(":")
    if not sep or not module_name or not attribute:
        raise DataError(f"--model-from {reference!r}: expected module:ATTRIBUTE (e.g. mymodels:EFFECT_MODEL)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise DataError(f"--model-from {reference!r}: no file {module_name}")
            spec = importlib.util.spec_from_file_location(f"_medtwin_user_model_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except DataError:
        raise
    except Exception as exc:  # the user's module: any import failure is reported, in one line
        raise DataError(f"--model-from {reference!r}: cannot import {module_name}: "
                        f"{type(exc).__name__}: {exc}") from None
    value = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise DataError(f"--model-from {reference!r}: {module_name} has no attribute {attribute}")
        value = getattr(value, part)
    if not isinstance(value, Model):
        raise DataError(f"--model-from {reference!r}: {attribute} is a {type(value).__name__}, not a "
                        "medtwin Model")
    return value


def default_actor() -> str:
    """The login name (or ``medtwin-cli`` where there is none)."""
    from medtwin.workflows.stores import default_actor as actor

    return actor()


def open_stores():
    """This installation's :class:`~medtwin.workflows.stores.Stores` (opened once per command)."""
    import importlib

    return importlib.import_module("medtwin.workflows.stores").open_stores()  # looked up at call time


def open_audit_log():
    """The installation's audit log (database from MEDTWIN_DATABASE_URL or the default SQLite file) and key."""
    stores = open_stores()
    return stores.log, stores.key


class ProgressBar:
    """A rich progress bar usable as a ``progress(done, total)`` callback; silent when stderr is no terminal."""

    def __init__(self, label: str, enabled: bool = True, unit: str = "patients"):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled and err_console.is_terminal  # no bar (nor its blank line) in a log or a pipe
        self.progress = Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total} " + unit),
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
        if done >= total:  # finished: make way for the next bar (one live display at a time)
            self.progress.stop()


POP = typer.Option(..., "--population", exists=True, dir_okay=False, callback=input_file("population file", "mapping"),
                   help="Population file (YAML/JSON; format in docs/population-file.md).")
def population_files(ctx, param, value):
    """``--population`` of forecast/recommend: population files, or one drug name (every shipped file of it).

    Returns the list of paths; an unreadable file or an unknown name is refused naming ``--population``.
    """
    from medtwin.io.population_file import drug_population_paths

    if value is None or ctx.resilient_parsing:
        return value
    values = list(value)
    if len(values) == 1 and not Path(values[0]).exists() and "/" not in values[0] and "." not in values[0]:
        try:
            return drug_population_paths(values[0])
        except DataError as exc:
            raise typer.BadParameter(f"{values[0]}: not a file; {exc}", ctx=ctx, param=param) from None
    for v in values:
        if not Path(v).is_file():
            raise typer.BadParameter(f"{v}: no such file (give population files, or one drug name such as "
                                     "vancomycin)", ctx=ctx, param=param)
    return input_file("population file", "mapping")(ctx, param, [Path(v) for v in values])


POPS = typer.Option(..., "--population", callback=population_files, metavar="FILE|DRUG",
                    help="Population file (YAML/JSON; format in docs/population-file.md). Repeat it to average "
                         "several candidate models per patient, or give a drug name (e.g. vancomycin) for every "
                         "shipped population file of that drug (docs/model-averaging.md).")
WEIGHTING = typer.Option(None, "--model-weighting", help="With several populations: laplace (Laplace marginal "
                         "likelihood, default) | map (MAP objective, Uster 2021) | aic (map - 1 per random effect) | likelihood.")
SELECT = typer.Option(False, "--select-model", help="With several populations: use only the best-weighted model "
                      "instead of the weighted mixture.")
DATA = typer.Option(..., "--data", exists=True, dir_okay=False, callback=input_file("dataset"),
                    help="NONMEM-style CSV with the patient's doses, levels and covariate columns (those the "
                         "population needs, e.g. CRCL, WT, DIAL for vancomycin_goti2018).")
ID = typer.Option(None, "--id", help="Subject ID (when the file holds several).")
COVARIATE = typer.Option([], "--covariate", help="NAME=VALUE for a covariate not in the file (e.g. DIAL=0: no "
                         "haemodialysis); repeatable; |VALUE| <= 1e9.")
METHOD = typer.Option("laplace", "--method", help="laplace (MAP + Laplace, bedside) | nuts (review)")
TREATMENT = typer.Option("treatment", "--purpose", help=" | ".join(PURPOSES))
ACTOR = typer.Option(None, "--actor", help="Who runs it (default: login name).")
OPEN_DATA = typer.Option(None, "--open-data", metavar="REASON",
                         help="The data are not identifiable patient data (say why): no consent check.")
SEED = typer.Option(0, help="Seed (NUTS, predictive draws).")


def read_dataset(stores, data: Path, model, actor: str, purpose: str, open_data):
    """The NONMEM-style file ``--data``, read through the consent gate of (actor, purpose) or as open data."""
    from medtwin.io.nonmem import read_nonmem
    from medtwin.workflows.stores import data_access

    return with_option("--data", data, read_nonmem, data, model=model,
                       access=data_access(stores, actor, purpose, open_data))


def _one_patient(dataset, patient_id, covariate):
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
    extra = parse_assignments(covariate, "--covariate")
    if extra:
        data = PatientData(data.regimen, data.times, data.values, {**data.covariates, **extra}, data.output,
                           data.blq, data.lloq, data.pre_dose, data.patient, data.rows)
    if data.n_observations == 0:
        raise typer.BadParameter(f"subject {patient_id} has no observations (EVID 0, MDV 0, DV) to personalize on")
    return data


def read_patient(stores, population_file: Path, data_file: Path, patient_id, covariate, actor: str, purpose: str,
                 open_data):
    """(population, PatientData) of personalize/forecast/recommend: the --population file, one subject of --data
    (--id; --covariate added), every covariate the population needs present (else BadParameter naming the option)."""
    from medtwin.io.population_file import load_population
    from medtwin.models import get_model

    population = with_option("--population", population_file, load_population, population_file)
    dataset = read_dataset(stores, data_file, get_model(population.model), actor, purpose, open_data)
    data = _one_patient(dataset, patient_id, covariate)
    check_covariates(population, data.covariates, data_file)
    warm_model_callbacks(get_model(population.model))  # compiled numba callbacks from $MEDTWIN_HOME when there
    return population, data


def read_patients(stores, population_files: list, data_file: Path, patient_id, covariate, actor: str,
                  purpose: str, open_data):
    """(populations, PatientData) for one or several --population files: one file is :func:`read_patient`;
    several are candidate priors (one drug, one observed output; refusals name the file and field), every
    covariate any of them needs present."""
    from medtwin.infer.model_averaging import check_candidates
    from medtwin.io.population_file import load_population
    from medtwin.models import get_model

    if len(population_files) == 1:
        population, data = read_patient(stores, population_files[0], data_file, patient_id, covariate, actor,
                                        purpose, open_data)
        return [population], data
    populations = [with_option("--population", p, load_population, p) for p in population_files]
    check_candidates(populations, [f"--population {p}" for p in population_files])
    dataset = read_dataset(stores, data_file, get_model(populations[0].model), actor, purpose, open_data)
    data = _one_patient(dataset, patient_id, covariate)
    for population in populations:
        check_covariates(population, data.covariates, data_file)
        warm_model_callbacks(get_model(population.model))
    return populations, data


def warm_block_kernel(model, n_patients: int, method: str) -> None:
    """A big nonlinear cohort (``simulate(kernel="auto")`` may take the block kernel): its compiled callbacks from
    ``$MEDTWIN_HOME`` when there (:func:`medtwin.io.jax_cache.warm_block_callbacks`), compiled there once else."""
    from medtwin.core.block_dopri import MIN_PATIENTS

    if n_patients >= MIN_PATIENTS and method in ("auto", "dopri5") and not model.is_linear:
        warm_block_callbacks(model)


def warn_posterior(posterior) -> None:
    """The posterior's status and warnings on stderr (yellow ``warning:`` lines)."""
    if not posterior.ok:
        err_console.print(f"[yellow]warning:[/] posterior {posterior.status}: {posterior.message}")
    for line in posterior.warnings():
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False)
