"""Comparator data named in a context of use, located and digested.

A source is ``pharmpy:FILE`` (a file of the NONMEM example runs that pharmpy-core ships, e.g.
``pharmpy:pheno.dta``: the phenobarbital-in-neonates teaching data set of Grasela TH, Donn SM. Dev Pharmacol
Ther 1985;8(6):374-83, with NONMEM's estimates and tables) or a path to a file.  pharmpy-core is located
without importing it (its files are read, its code is not run); when it is not installed the source is
missing and the report says so.

Examples
--------
>>> source_path("/no/such/file.csv") is None
True
>>> file_digest(__file__).startswith("sha256:")
True
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

__all__ = ["file_digest", "pharmpy_examples", "source_path"]


def pharmpy_examples() -> Path | None:
    """The folder of pharmpy-core's example NONMEM runs, or None when pharmpy-core is not installed."""
    try:
        spec = importlib.util.find_spec("pharmpy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "internals" / "example_models"
        if folder.is_dir():
            return folder
    return None


def source_path(source: str) -> Path | None:
    """The file a COU source names (``pharmpy:FILE`` or a path), or None when it is not there."""
    source = str(source)
    if source.startswith("pharmpy:"):
        folder = pharmpy_examples()
        path = None if folder is None else folder / source.removeprefix("pharmpy:")
    else:
        path = Path(source)
    return path if path is not None and path.is_file() else None


def file_digest(path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
