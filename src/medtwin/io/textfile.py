"""A user's input file, read safely: size limit, UTF-8, empty file, the expected top-level shape, strict numbers.

Every reader of a user file (NONMEM datasets, parameter tables, population
files, twin specifications, recorded streams, FHIR Consents) goes through
:func:`read_text`, so that a binary file, a file in another encoding or an empty
file is one :class:`~medtwin.errors.DataError` naming the file, never a
``UnicodeDecodeError``.  :func:`load_mapping` also parses JSON or YAML and
insists on an object (mapping) at the top level.  :func:`parse_number` is the one
definition of "a number" in a user's text: ASCII digits only (``"１０"``,
full-width digits, is not 10), no ``_`` separators, finite.

Examples
--------
>>> parse_number(" 1.5e3 ")
1500.0
>>> parse_number("１０")
Traceback (most recent call last):
...
ValueError: '１０' is not a number (ASCII digits, e.g. 12.5 or 1e3)
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from medtwin.errors import DataError

__all__ = ["MAX_INPUT_BYTES", "describe_value", "load_mapping", "parse_number", "read_text"]

#: Largest input file read (bytes): 64 MiB, far above any patient file; a larger one is refused, not read.
MAX_INPUT_BYTES = 64 * 2**20

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def parse_number(text: str) -> float:
    """A finite float from ASCII text (surrounding blanks allowed); ValueError otherwise.

    Python's ``float`` also accepts full-width and other Unicode digits,
    ``1_000``, ``nan`` and ``inf``: none of them is a number in a user's file.
    """
    cleaned = str(text).strip()
    if not _NUMBER.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not a number (ASCII digits, e.g. 12.5 or 1e3)")
    value = float(cleaned)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} overflows a float (largest about 1.8e308)")
    return value


def describe_value(value: Any) -> str:
    """A short phrase for the JSON/YAML type of a parsed document (for error messages)."""
    if value is None:
        return "nothing (an empty document)"
    if isinstance(value, list):
        return f"an array of {len(value)} item(s)"
    if isinstance(value, str):
        return "plain text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


def read_text(path: str | os.PathLike, *, what: str = "file", allow_empty: bool = False,
              max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped).

    Parameters
    ----------
    path : path
        The file.
    what : str
        What the file is, for messages (``"dataset"``, ``"population file"``).
    allow_empty : bool
        Return an empty or blank file's text instead of refusing it.
    max_bytes : int
        Refuse a larger file before reading it.

    Raises
    ------
    DataError
        One line naming the file: it is missing, a folder, larger than
        ``max_bytes``, binary (a NUL byte), not UTF-8 (the first bad byte and its
        offset), or empty.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise DataError(f"{what} {path} is a folder, not a file")
        if path.is_file() and path.stat().st_size > max_bytes:
            raise DataError(f"{what} {path} is larger than the {max_bytes / 2**20:g} MiB limit for an input file")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise DataError(f"{what} {path} is larger than the {max_bytes / 2**20:g} MiB limit for an input file")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{what} {path} is a binary file (a NUL byte at offset {nul}), not UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None
    if not allow_empty and not text.strip():
        raise DataError(f"{what} {path} is empty")
    return text


def load_mapping(path: str | os.PathLike, *, what: str = "file", fmt: str | None = None) -> dict:
    """A JSON or YAML file whose top level is an object (mapping).

    ``fmt`` is ``"json"`` or ``"yaml"``; by default ``.json`` files are JSON and
    every other file YAML (a superset of JSON).

    Raises
    ------
    DataError
        As :func:`read_text`; or the text does not parse (the parser's reason,
        on one line); or the top level is not an object (says what it is).
    """
    path = Path(path)
    text = read_text(path, what=what)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "yaml")
    try:
        if fmt == "json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise DataError(f"{what} {path} is not valid JSON: {exc}") from None
    except Exception as exc:  # yaml.YAMLError (pyyaml is imported lazily)
        if type(exc).__module__.split(".")[0] != "yaml":
            raise
        raise DataError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path} must hold a {fmt.upper()} object (a mapping of names to values) at the top "
                        f"level, not {describe_value(data)}")
    return data
