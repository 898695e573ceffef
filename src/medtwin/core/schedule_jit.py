"""The schedule functions of :mod:`medtwin.core.schedule`, compiled by numba (``njit``, cached on disk).

:mod:`medtwin.core.schedule` defines :func:`~medtwin.core.schedule.dose_terms`,
:func:`~medtwin.core.schedule.build_schedule` and
:func:`~medtwin.core.schedule.segment_arrays` once, as plain Python in the
subset numba compiles, and does not import numba (a live twin builds its few
segments without it).  This module compiles the *same code objects*: each
function is re-bound to a copy of that module's globals in which its callees
are the compiled versions, then wrapped by ``numba.njit(cache=True)``.  The
per-patient kernels (:mod:`medtwin.core.kernels`) call these inside their
parallel loops.

Examples
--------
>>> import numpy as np
>>> from medtwin.core import schedule
>>> a = np.array([0.0, 2.0]); b = np.array([1.0, 2.0])
>>> _merge_unique(a, b).tolist() == schedule._merge_unique(a, b).tolist() == [0.0, 1.0, 2.0]
True
"""

from __future__ import annotations

import types

import numba as nb

from medtwin.core import schedule as _plain

__all__ = ["dose_terms", "build_schedule", "segment_arrays"]

_NAMESPACE = dict(vars(_plain))  # the plain module's constants and imports; its functions replaced below


def _compiled(name: str):
    f = getattr(_plain, name)
    g = types.FunctionType(f.__code__, _NAMESPACE, f.__name__, f.__defaults__, f.__closure__)
    g.__qualname__, g.__doc__, g.__module__ = f.__qualname__, f.__doc__, f.__module__
    _NAMESPACE[name] = nb.njit(cache=True)(g)
    return _NAMESPACE[name]


dose_terms = _compiled("dose_terms")
build_schedule = _compiled("build_schedule")
_merge_unique = _compiled("_merge_unique")
segment_arrays = _compiled("segment_arrays")
