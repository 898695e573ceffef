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
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import typer
from typer.core import TyperGroup

from medtwin.errors import DataError
from medtwin.io.jax_cache import enable_persistent_jax_cache

__all__ = ["MAX_OPTION_VALUE", "MedtwinGroup", "OutFolder", "check_covariates", "check_method", "check_out_file", "check_out_folder",
           "check_patient_options", "input_file", "one_line", "parse_assignments", "strict_numbers", "with_option"]


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
