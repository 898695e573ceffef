"""Canonical bytes and content digests for JSON-like values.

The canonical form is a compact, JSON-like ASCII text with a few extensions,
chosen so that equal values always give the same bytes and different values
(in the sense below) give different bytes.

Rules
-----
- ``None`` -> ``null``; ``True``/``False`` -> ``true``/``false``.
- ``int`` (and numpy integers) -> decimal digits, e.g. ``1``.
- ``float`` (and numpy floating scalars, converted exactly with ``float``) ->
  the shortest round-trip ``repr``, e.g. ``1.0``, ``0.1``, ``1e+16``.  So
  ``0.1`` and ``0.10000000000000001`` (the same double) give the same bytes.
  **Ints and floats are distinct**: ``1`` and ``1.0`` give different digests
  (a float repr always contains ``.``, ``e``, ``NaN`` or ``Infinity``).
  ``-0.0`` is kept distinct from ``0.0`` (the sign bit is part of the value and
  changes e.g. ``1/x``).  Non-finite values are written ``NaN``, ``Infinity``
  and ``-Infinity``; every NaN (any payload or sign) is the same ``NaN``.
- ``complex`` -> ``@complex[re,im]`` with both parts encoded as floats.
- ``str`` -> a JSON string with ``\\uXXXX`` escapes (no Unicode normalisation).
- ``bytes`` -> ``@bytes"<hex>"``.
- ``list`` and ``tuple`` -> ``[a,b,...]`` (a tuple equals the list with the
  same items).
- mappings with ``str`` keys -> ``{"k":v,...}`` with keys sorted by code point.
- numpy arrays -> ``@ndarray{"dtype":"<f8","shape":[2,3],"data":"<hex>"}``:
  dtype (normalised to little-endian), shape and the raw C-order
  little-endian bytes, NaNs canonicalised; object arrays list their items
  (``"items":[...]``) instead of raw bytes.  **An array is not a list**:
  ``np.array([1.0, 2.0])`` and ``[1.0, 2.0]`` have different digests, and so
  do arrays differing only in dtype (``float32`` vs ``float64``) or shape.
- pandas DataFrames -> ``@dataframe{...}`` with column names (in order),
  dtypes, the index and each column's values.  Column order matters.
  A Series is ``@series{...}`` with its name, dtype, index and values.

Anything else raises :class:`UnsupportedValueError` (a
:class:`medtwin.errors.DataError` and a ``TypeError``)
naming the path of the offending value, e.g. ``inputs.params[3]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from medtwin.errors import DataError

__all__ = ["canonical_bytes", "digest", "DIGEST_PREFIX", "UnsupportedValueError"]

#: Prefix of every digest string returned by :func:`digest`.
DIGEST_PREFIX = "sha256:"



class UnsupportedValueError(DataError, TypeError):
    """A value (or mapping key, or numpy dtype) cannot be encoded canonically.

    It is a :class:`medtwin.errors.DataError` and a :class:`TypeError`; the
    message starts with the path of the offending value, e.g. ``inputs.params[3]``.
    """


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RAW_KINDS = frozenset("biufcmMUS")


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if isinstance(key, str) and _IDENT.match(key):
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _float(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float.__repr__(float(x))


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)


def _array(arr: np.ndarray, path: str, out: list[str]) -> None:
    dt = arr.dtype
    if dt.kind == "O":
        out.append('@ndarray{"dtype":"object","shape":')
        out.append(_shape(arr.shape))
        out.append(',"items":[')
        for i, item in enumerate(arr.reshape(-1)):
            if i:
                out.append(",")
            _encode(item, _child(path, i), out)
        out.append("]}")
        return
    if dt.kind not in _RAW_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise UnsupportedValueError(f"{path}: numpy dtype {dt} is not supported for digests")
    le = dt.newbyteorder("<")  # no-op for byte-order-free dtypes ('|b1', '|u1', '|S3')
    data = np.ascontiguousarray(arr, dtype=le)
    if dt.kind in "fc" and data.size:
        parts = data.reshape(-1).view(np.dtype(f"<f{le.itemsize // (2 if dt.kind == 'c' else 1)}"))
        nan = np.isnan(parts)
        if nan.any():  # one NaN bit pattern whatever the payload or sign
            data = data.copy()
            data.reshape(-1).view(parts.dtype)[nan] = np.nan
    out.append('@ndarray{"dtype":')
    out.append(_string(le.str))
    out.append(',"shape":')
    out.append(_shape(arr.shape))
    out.append(',"data":"')
    out.append(data.tobytes(order="C").hex())
    out.append('"}')


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(int(n)) for n in shape) + "]"


def _dataframe(df: Any, path: str, out: list[str]) -> None:
    out.append('@dataframe{"columns":[')
    for i, name in enumerate(df.columns):
        if i:
            out.append(",")
        _encode(name.item() if isinstance(name, np.generic) else name, _child(path + ".columns", i), out)
    out.append('],"dtypes":[')
    out.append(",".join(_string(str(t)) for t in df.dtypes))
    out.append('],"index":')
    _column_values(df.index, path + ".index", out)
    out.append(',"values":[')
    for i in range(df.shape[1]):
        if i:
            out.append(",")
        _column_values(df.iloc[:, i], _child(path, str(df.columns[i])), out)
    out.append("]}")


def _column_values(col: Any, path: str, out: list[str]) -> None:
    if isinstance(col.dtype, np.dtype) and col.dtype.kind != "O":
        _array(col.to_numpy(), path, out)
        return
    # extension dtypes (string, nullable ints, categoricals) and object: item by item, NA -> null
    values = col.to_numpy(dtype=object, na_value=None)
    _array(values, path, out)


def _encode(value: Any, path: str, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif isinstance(value, (bool, np.bool_)):
        out.append("true" if value else "false")
    elif isinstance(value, (int, np.integer)):
        out.append(str(int(value)))
    elif isinstance(value, (float, np.floating)):
        out.append(_float(float(value)))
    elif isinstance(value, (complex, np.complexfloating)):
        c = complex(value)
        out.append(f"@complex[{_float(c.real)},{_float(c.imag)}]")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, (bytes, bytearray)):
        out.append(f'@bytes"{bytes(value).hex()}"')
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        for k in keys:
            if not isinstance(k, str):
                raise UnsupportedValueError(
                    f"{path}: mapping key {k!r} is a {type(k).__name__}, only str keys are supported")
        out.append("{")
        for i, k in enumerate(sorted(keys)):
            if i:
                out.append(",")
            out.append(_string(k))
            out.append(":")
            _encode(value[k], _child(path, k), out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, _child(path, i), out)
        out.append("]")
    elif isinstance(value, np.ndarray):
        _array(value, path, out)
    elif _pandas_kind(value) == "DataFrame":
        _dataframe(value, path, out)
    elif _pandas_kind(value) == "Series":
        out.append('@series{"name":')
        _encode(value.name.item() if isinstance(value.name, np.generic) else value.name, path + ".name", out)
        out.append(',"dtype":')
        out.append(_string(str(value.dtype)))
        out.append(',"index":')
        _column_values(value.index, path + ".index", out)
        out.append(',"values":')
        _column_values(value, path, out)
        out.append("}")
    else:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise UnsupportedValueError(f"{path}: values of type {kind} cannot be digested "
                                    "(use dict, list, str, int, float, bool, None, numpy or pandas)")


def _pandas_kind(value: Any) -> str | None:
    if not type(value).__module__.startswith("pandas"):
        return None
    import pandas as pd  # imported lazily: pandas is only needed when a pandas value is given

    if isinstance(value, pd.DataFrame):
        return "DataFrame"
    return "Series" if isinstance(value, pd.Series) else None


def canonical_bytes(value: Any, *, root: str = "value") -> bytes:
    """Encode a JSON-like value as deterministic canonical bytes.

    Parameters
    ----------
    value : object
        ``None``, bool, int, float, complex, str, bytes, list/tuple, mapping
        with str keys, numpy scalar or array, pandas DataFrame or Series,
        nested freely.
    root : str, optional
        Name of ``value`` used in error messages (e.g. ``"inputs"``).

    Returns
    -------
    bytes
        ASCII bytes; see the module docstring for the rules.

    Raises
    ------
    UnsupportedValueError
        If a value of an unsupported type is found (the message names its path).

    Examples
    --------
    >>> canonical_bytes({"b": [1, 2.5, None], "a": True})
    b'{"a":true,"b":[1,2.5,null]}'
    >>> canonical_bytes(0.10000000000000001) == canonical_bytes(0.1)
    True
    >>> canonical_bytes(1) == canonical_bytes(1.0)
    False
    """
    out: list[str] = []
    _encode(value, root, out)
    return "".join(out).encode("ascii")


def digest(value: Any, *, root: str = "value") -> str:
    """SHA-256 digest of :func:`canonical_bytes`, as ``"sha256:<hex>"``.

    Parameters
    ----------
    value : object
        Any value accepted by :func:`canonical_bytes`.
    root : str, optional
        Name of ``value`` used in error messages.

    Returns
    -------
    str
        ``"sha256:"`` followed by 64 lowercase hex digits.

    Examples
    --------
    >>> digest({"x": 1, "y": [0.5]}) == digest({"y": [0.5], "x": 1})
    True
    >>> digest([1.0]).startswith("sha256:")
    True
    >>> try:
    ...     digest({"params": [1, 2, object()]}, root="inputs")
    ... except UnsupportedValueError as err:
    ...     print(str(err).split(": ")[0])
    inputs.params[2]
    """
    return DIGEST_PREFIX + hashlib.sha256(canonical_bytes(value, root=root)).hexdigest()
