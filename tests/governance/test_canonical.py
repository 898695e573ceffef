"""Canonical serialization: determinism, float forms, leaf sensitivity, array vs list."""

import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medtwin.errors import DataError
from medtwin.governance.canonical import UnsupportedValueError, canonical_bytes, digest

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
    ),
    max_leaves=20,
)


def _shuffled(value, rnd):
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


def _leaf_paths(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, path + (i,))
    else:
        yield path


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


def _mutate(leaf):
    """A different leaf: never equal in the canonical sense."""
    if leaf is None:
        return 0
    if isinstance(leaf, bool):
        return not leaf
    if isinstance(leaf, int):
        return leaf + 1
    if isinstance(leaf, float):
        if math.isnan(leaf):
            return 0.0
        if math.isinf(leaf) or leaf == 0.0:
            return 1.5
        return math.nextafter(leaf, math.inf)
    return leaf + "x"


@settings(max_examples=200, deadline=None)
@given(values, st.integers(0, 2**32))
def test_digest_stable_under_key_order(value, seed):
    assert digest(_shuffled(value, random.Random(seed))) == digest(value)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_digest_stable_under_float_formatting(x):
    assert digest(float(repr(x))) == digest(x)
    assert digest(float(f"{x:.17g}")) == digest(x)
    assert digest({"v": [float(f"{x:.17g}")]}) == digest({"v": [x]})


def test_same_double_written_differently():
    assert canonical_bytes(0.1) == canonical_bytes(0.10000000000000001) == b"0.1"
    assert digest(np.float64(0.1)) == digest(0.1)


def test_int_and_float_are_distinct():
    """Documented choice: 1 and 1.0 are different values (different digests)."""
    assert digest(1) != digest(1.0)
    assert canonical_bytes([1, 1.0, 1e16]) == b"[1,1.0,1e+16]"
    assert digest(np.int64(3)) == digest(3)
    assert digest(True) != digest(1)


def test_signed_zero_and_nonfinite():
    """Documented choices: -0.0 differs from 0.0; every NaN is the same NaN."""
    assert digest(-0.0) != digest(0.0)
    assert canonical_bytes([math.nan, -math.nan, math.inf, -math.inf]) == b"[NaN,NaN,Infinity,-Infinity]"
    a = np.array([np.nan, 1.0])
    b = a.copy()
    b.view(np.uint64)[0] |= 1  # another NaN payload
    assert np.isnan(b[0]) and digest(a) == digest(b)


@settings(max_examples=300, deadline=None)
@given(values, st.data())
def test_digest_changes_when_any_leaf_changes(value, data):
    paths = list(_leaf_paths(value))
    if not paths:  # an empty container
        assert digest(value) != digest([value])
        return
    path = data.draw(st.sampled_from(paths))
    leaf = value
    for step in path:
        leaf = leaf[step]
    assert digest(_replace(value, path, _mutate(leaf))) != digest(value)


def test_array_is_not_a_list():
    """Documented: an array's digest covers dtype and shape, so it differs from the list."""
    assert digest(np.array([1.0, 2.0])) != digest([1.0, 2.0])
    assert digest(np.array([1.0, 2.0])) == digest(np.array([1.0, 2.0]))
    assert digest(np.array([1.0, 2.0], dtype=np.float32)) != digest(np.array([1.0, 2.0]))
    assert digest(np.zeros((2, 3))) != digest(np.zeros((3, 2)))
    assert digest(np.zeros(6)) != digest(np.zeros((1, 6)))
    assert digest(np.array([1, 2])) != digest(np.array([1.0, 2.0]))


def test_array_byte_order_and_layout_do_not_matter():
    a = np.arange(6.0).reshape(2, 3)
    assert digest(a.astype(">f8")) == digest(a)
    assert digest(np.asfortranarray(a)) == digest(a)
    assert digest(a.T.copy().T) == digest(a)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=10), st.data())
def test_array_changes_when_any_element_changes(xs, data):
    a = np.array(xs)
    i = data.draw(st.integers(0, len(xs) - 1))
    b = a.copy()
    b[i] = _mutate(float(a[i]))
    assert digest(b) != digest(a)


def test_dataframe_columns_dtypes_values():
    df = pd.DataFrame({"CL": [5.0, 6.0], "V": [50.0, 60.0]})
    assert digest(df) == digest(df.copy())
    assert digest(df) != digest(df[["V", "CL"]])  # column order is part of the table
    assert digest(df) != digest(df.astype({"CL": "float32"}))
    changed = df.copy()
    changed.loc[1, "V"] = 60.000000001
    assert digest(changed) != digest(df)
    assert digest(df.rename(columns={"V": "V1"})) != digest(df)
    strings = pd.DataFrame({"ID": ["a", None], "n": [1, 2]})
    assert digest(strings) == digest(strings.copy())


def test_series():
    s = pd.Series([5.0, 6.0], name="CL")
    assert digest(s) == digest(s.copy())
    assert digest(s) != digest(s.rename("V"))
    assert digest(s) != digest(s.to_numpy())
    assert digest(pd.DataFrame({"CL": [5.0, 50.0]}).iloc[0]) != digest(pd.DataFrame({"CL": [5.0, 51.0]}).iloc[1])


def test_tuple_equals_list_and_mapping_types():
    assert digest((1, 2.0)) == digest([1, 2.0])
    assert digest({"a": (1,)}) == digest({"a": [1]})


@pytest.mark.parametrize(
    "value, path",
    [
        ({"params": [1, 2, 3, object()]}, "inputs.params[3]"),
        ({"a": {"b c": {1, 2}}}, "inputs.a['b c']"),
        ({"a": {1: 2}}, "inputs.a"),
        ({"x": np.array([object()], dtype=object)}, "inputs.x[0]"),
    ],
)
def test_unsupported_values_name_their_path(value, path):
    with pytest.raises(UnsupportedValueError) as info:
        digest(value, root="inputs")
    assert str(info.value).startswith(path + ":")
    assert isinstance(info.value, DataError) and isinstance(info.value, TypeError)
