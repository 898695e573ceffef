"""Run patients in chunks: the serial, in-process executor (the Dask one replaces this module).

Examples
--------
>>> import numpy as np
>>> def chunk(start, stop):
...     return {"x": np.arange(start, stop, dtype=float), "status": np.array(["ok"] * (stop - start))}
>>> [(a, b, r["x"].tolist()) for a, b, r in map_patients(chunk, 5, chunk_size=2)]
[(0, 2, [0.0, 1.0]), (2, 4, [2.0, 3.0]), (4, 5, [4.0])]
"""

from __future__ import annotations

from medtwin.errors import DataError

__all__ = ["map_patients"]


def map_patients(chunk_fn, n_patients: int, *, chunk_size: int = 10_000, scheduler=None,
                 retries: int = 2, progress=None):
    """Yield (start, stop, chunk_fn(start, stop)) for consecutive chunks [start, stop) in order.
    chunk_fn must be picklable (a module-level function or functools.partial of one) and return a
    dict of 1-D numpy arrays, one row per patient (including a 'status' column); scheduler None =
    in-process serial; progress(done_patients, total) is called as chunks finish."""
    if int(n_patients) < 0 or int(chunk_size) < 1:
        raise DataError(f"map_patients: need n_patients >= 0 and chunk_size >= 1, got {n_patients}, {chunk_size}")
    if scheduler is not None:
        raise DataError("map_patients: this build runs in-process only (scheduler=None); the Dask executor "
                        "takes a scheduler address or 'local'")
    n = int(n_patients)
    for start in range(0, n, int(chunk_size)):
        stop = min(n, start + int(chunk_size))
        result = None
        for attempt in range(int(retries) + 1):
            try:
                result = chunk_fn(start, stop)
                break
            except Exception:  # a failed chunk is retried (patients' failures are statuses inside it)
                if attempt == int(retries):
                    raise
        if progress is not None:
            progress(stop, n)
        yield start, stop, result
