"""Rows of dicts as columns and as CSV, the way pandas writes them, without importing pandas.

``medtwin replay`` writes its tracked rows and its rejections as CSV and plots
a few columns; pandas (≈ 0.3 s CPU to import) did that before.  These
functions reproduce what ``pandas.DataFrame(rows).to_csv(path, index=False)``
writes — the same column order (first appearance), the same type per column
(all bool, all int, numbers with gaps as float, anything else as objects), the
same cells (shortest round-trip floats, missing values empty) — and the test
suite checks them against pandas byte for byte.

Examples
--------
>>> rows = [{"a": 1, "b": 0.5, "c": "x"}, {"a": 2, "b": None, "c": None}]
>>> cols = columns(rows)
>>> cols["a"].tolist(), cols["b"].tolist()[0], list(cols["c"])
([1, 2], 0.5, ['x', None])
>>> import io
>>> buffer = io.StringIO(); write_csv(buffer, rows, lineterminator="\\n"); print(buffer.getvalue(), end="")
a,b,c
1,0.5,x
2,,
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["columns", "write_csv"]

_MISSING = object()  # a key absent from a row (pandas: NaN)


def _kind(value) -> str:
    if value is None:
        return "null"
    if value is _MISSING or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "nan"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    return "object"


def _column(values: list) -> np.ndarray:
    """One column with the dtype pandas infers for these Python values."""
    types = set(map(type, values))
    if types <= {float, np.float64} and types and not any(v != v for v in values):  # no NaN: the usual column
        return np.array(values, dtype=float)
    kinds = {_kind(v) for v in values}
    if kinds and kinds <= {"bool"}:
        return np.array(values, dtype=bool)
    if kinds and kinds <= {"int"}:
        return np.array([int(v) for v in values], dtype=np.int64)
    if "float" in kinds and kinds <= {"int", "float", "null", "nan"} or (
            "int" in kinds and kinds <= {"int", "null", "nan"}) or kinds == {"nan"}:
        return np.array([float("nan") if _kind(v) in ("null", "nan") else float(v) for v in values], dtype=float)
    return np.array([float("nan") if v is _MISSING else v for v in values], dtype=object)


def columns(rows: Iterable[Mapping], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The columns of ``rows`` (keys in order of first appearance, or ``names``), typed as pandas would.

    Returns
    -------
    dict of str to ndarray
        bool, int64, float64 (missing values NaN) or object arrays (missing values None or NaN), one per column.
    """
    rows = list(rows)
    if names is None:
        names = list(dict.fromkeys(k for row in rows for k in row))
    return {name: _column([row.get(name, _MISSING) for row in rows]) for name in names}


def _cells(array: np.ndarray) -> list:
    if array.dtype == float:
        text = array.astype(str).astype(object)
        text[np.isnan(array)] = ""
        return text.tolist()
    if array.dtype == object:
        return ["" if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)) else v for v in array]
    return array.tolist()


def write_csv(target, rows: Iterable[Mapping] | Mapping[str, np.ndarray], names: Sequence[str] | None = None, *,
              lineterminator: str = os.linesep) -> None:
    """Write ``rows`` as ``pandas.DataFrame(rows, columns=names).to_csv(target, index=False)`` would.

    Parameters
    ----------
    target : path or text file
    rows : iterable of mapping, or mapping of str to ndarray
        The rows, or their :func:`columns` (then ``names`` is ignored).
    names : sequence of str, optional
        The columns, in order (default: the keys in order of first appearance).
    lineterminator : str
        pandas' default, ``os.linesep``.
    """
    cols = rows if isinstance(rows, Mapping) else columns(rows, names)
    header, body = list(cols), list(zip(*(_cells(a) for a in cols.values())))
    if hasattr(target, "write"):
        _write(target, header, body, lineterminator)
        return
    with open(target, "w", newline="", encoding="utf-8") as handle:
        _write(handle, header, body, lineterminator)


def _write(handle, header, body, lineterminator) -> None:
    if not header:  # pandas writes one empty line for a frame without columns
        handle.write(lineterminator)
        return
    writer = csv.writer(handle, lineterminator=lineterminator, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    writer.writerows(body)
