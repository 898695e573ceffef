"""Scale-out of a virtual cohort: patients in chunks, in process or on Dask, results streamed in order.

:func:`map_patients` runs a *chunk function* ``chunk_fn(start, stop) -> dict`` over consecutive patient
ranges ``[start, stop)`` and yields ``(start, stop, result)`` in chunk order, whatever the order in which the
chunks finish.  ``scheduler=None`` runs in this process; ``"local"`` starts a
:class:`distributed.LocalCluster` for the call; a ``"tcp://host:port"`` address or an existing
:class:`distributed.Client` uses a running cluster.  At most ``2 × worker threads`` chunks are submitted and
not yet yielded, so memory is bounded by the chunk size, not the cohort size.

Conventions for a chunk function (the executor checks the shape of what comes back):

* it is picklable: a module-level function or a :func:`functools.partial` of one (Dask sends it to workers);
* it returns a dict of 1-D numpy arrays of length ``stop - start``, one row per patient, including
  ``status`` (integers): ``0`` ok; ``1``–``5`` the simulation's :class:`medtwin.core.status.Status`;
  :data:`INVALID_PARAMETERS` (100) a parameter was non-finite or outside its bounds (not simulated);
  :data:`NON_FINITE_ENDPOINT` (101) an endpoint came out non-finite.  One failed patient is a status,
  never an exception;
* its random draws depend on ``(seed, patient index)`` only — use :func:`patient_normals`,
  :func:`patient_uniforms` or :func:`patient_rng` — so the result of a patient does not depend on the chunk
  size or on where the chunk ran (the tests check bit identity across chunk sizes and schedulers).

An exception inside a chunk (or a lost worker) fails the *chunk*: it is run again up to ``retries`` times,
then :class:`ChunkFailedError` names the range and the last exception.

Random numbers: patient ``i``'s draws of stream ``stream`` are row ``i mod 1024`` of a
``(1024, size)`` block drawn from ``Generator(Philox(SeedSequence(seed, spawn_key=(stream, i // 1024))))``:
a block costs ~20 µs, so 10⁶ patients × 5 normals take ~0.2 s, where one generator per patient would take
~30 µs each (30 s).  A chunk draws the blocks it overlaps and keeps its rows.

Examples
--------
>>> import numpy as np
>>> def ones(start, stop):
...     return {"status": np.zeros(stop - start, np.int64), "x": np.arange(start, stop) * 1.0}
>>> [(a, b, r["x"].tolist()) for a, b, r in map_patients(ones, 5, chunk_size=2)]
[(0, 2, [0.0, 1.0]), (2, 4, [2.0, 3.0]), (4, 5, [4.0])]
>>> bool(np.array_equal(patient_normals(7, 3, 5, 2), patient_normals(7, 0, 10, 2)[3:5]))
True
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Callable, Iterator

import numpy as np

from medtwin.errors import MedtwinError, SimulationError

__all__ = ["ChunkFailedError", "INVALID_PARAMETERS", "NON_FINITE_ENDPOINT", "RNG_BLOCK", "map_patients",
           "patient_normals", "patient_rng", "patient_uniforms", "progress_bar"]

#: Status of a patient whose parameters were non-finite or outside their bounds (not simulated).
INVALID_PARAMETERS = 100
#: Status of a patient whose simulation succeeded but whose endpoint is non-finite.
NON_FINITE_ENDPOINT = 101
#: Patients per random-number block (part of the stream definition: changing it changes every draw).
RNG_BLOCK = 1024

ProgressCallback = Callable[[int, int], None]


class ChunkFailedError(MedtwinError, RuntimeError):
    """A chunk of patients failed on every attempt (an exception in the chunk function or a lost worker).

    Attributes
    ----------
    start, stop : int
        The patient range ``[start, stop)``.
    attempts : int
        How many times it was run.
    """

    def __init__(self, start: int, stop: int, attempts: int, last: BaseException):
        self.start, self.stop, self.attempts = start, stop, attempts
        super().__init__(f"patients [{start}, {stop}) failed on all {attempts} attempt(s); last error: "
                         f"{type(last).__name__}: {last}")


# ---------------------------------------------------------------------------------------------- randomness
def _check_range(seed, start, stop, size, stream) -> None:
    for name, value in (("seed", seed), ("start", start), ("stop", stop), ("size", size), ("stream", stream)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise SimulationError(f"{name} must be an integer >= 0, got {value!r}")
    if stop < start:
        raise SimulationError(f"patient range [{start}, {stop}) is empty the wrong way round (stop < start)")


def _block_rows(seed: int, start: int, stop: int, size: int, stream: int, draw) -> np.ndarray:
    _check_range(seed, start, stop, size, stream)
    out = np.empty((stop - start, size))
    for block in range(start // RNG_BLOCK, -(-stop // RNG_BLOCK)):
        lo, hi = block * RNG_BLOCK, (block + 1) * RNG_BLOCK
        gen = np.random.Generator(np.random.Philox(np.random.SeedSequence(int(seed), spawn_key=(int(stream),
                                                                                                  block))))
        values = draw(gen, (RNG_BLOCK, size))
        a, b = max(lo, start), min(hi, stop)
        out[a - start:b - start] = values[a - lo:b - lo]
    return out


def patient_normals(seed: int, start: int, stop: int, size: int, *, stream: int = 0) -> np.ndarray:
    """Standard normal draws of patients ``start..stop-1``, shape (stop - start, size).

    Row ``i - start`` depends only on ``(seed, stream, i, size)``: any chunking gives the same numbers.
    Use different ``stream`` values for independent quantities (covariates, random effects, noise).

    Examples
    --------
    >>> patient_normals(1, 0, 2, 3).shape
    (2, 3)
    """
    return _block_rows(seed, start, stop, size, stream, lambda g, shape: g.standard_normal(shape))


def patient_uniforms(seed: int, start: int, stop: int, size: int, *, stream: int = 0) -> np.ndarray:
    """Uniform draws on [0, 1) of patients ``start..stop-1``, shape (stop - start, size) (see :func:`patient_normals`).

    Examples
    --------
    >>> u = patient_uniforms(1, 5, 9, 1)
    >>> u.shape, bool(((u >= 0) & (u < 1)).all())
    ((4, 1), True)
    """
    return _block_rows(seed, start, stop, size, stream, lambda g, shape: g.random(shape))


def patient_rng(seed: int, index: int, *, stream: int = 0) -> np.random.Generator:
    """A generator of patient ``index`` alone, for draws whose number varies by patient (~30 µs to create).

    Independent of :func:`patient_normals` streams (its spawn key has a third element).

    Examples
    --------
    >>> float(patient_rng(3, 10).random()) == float(patient_rng(3, 10).random())
    True
    """
    _check_range(seed, index, index, 0, stream)
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(int(seed),
                                                                       spawn_key=(int(stream), int(index), 0))))


# ---------------------------------------------------------------------------------------------- execution
def _check_result(result: Any, start: int, stop: int) -> None:
    where = f"chunk [{start}, {stop})"
    if not isinstance(result, dict):
        raise SimulationError(f"{where}: the chunk function must return a dict of 1-D arrays, got "
                              f"{type(result).__name__}")
    if "status" not in result:
        raise SimulationError(f"{where}: the chunk function's result has no 'status' column "
                              f"(columns: {sorted(result)})")
    for name, column in result.items():
        shape = np.shape(column)
        if not isinstance(column, np.ndarray) or shape != (stop - start,):
            raise SimulationError(f"{where}: column {name!r} must be a numpy array of shape ({stop - start},), "
                                  f"got {type(column).__name__} of shape {shape}")


def _bounds(n_patients: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk_size, n_patients)) for a in range(0, n_patients, chunk_size)]


def map_patients(chunk_fn, n_patients: int, *, chunk_size: int = 10_000, scheduler=None, retries: int = 2,
                 progress: ProgressCallback | None = None, workers: int = 2,
                 threads_per_worker: int = 1) -> Iterator[tuple[int, int, dict]]:
    """Yield (start, stop, chunk_fn(start, stop)) for consecutive chunks [start, stop) in order.

    Parameters
    ----------
    chunk_fn : callable(start, stop) -> dict of numpy arrays
        Picklable (module-level function or ``functools.partial`` of one); returns one row per patient of
        ``[start, stop)`` in each 1-D array, including ``status`` (0 = ok; see the module docstring).
    n_patients : int
        Cohort size (patients 0 .. n_patients - 1).
    chunk_size : int
        Patients per chunk; memory per chunk in flight is what ``chunk_fn`` uses for that many patients.
    scheduler : None, "local", str or distributed.Client
        None: serial, in this process.  ``"local"``: a ``LocalCluster`` of ``workers`` processes with
        ``threads_per_worker`` threads each, started for this call and closed at its end.  An address
        ``"tcp://host:port"``: connect to that scheduler (closed at the end).  A ``Client``: use it (left open).
    retries : int
        Extra attempts of a chunk whose function raised or whose worker was lost; then ChunkFailedError.
    progress : callable(done_patients, total), optional
        Called when each chunk finishes (done_patients is non-decreasing and ends at ``n_patients``).
    workers, threads_per_worker : int
        Size of the ``"local"`` cluster.

    Yields
    ------
    (int, int, dict)
        The chunk's range and the chunk function's result, in chunk order.

    Raises
    ------
    SimulationError
        An invalid argument (before anything runs), or a chunk result of the wrong shape.
    ChunkFailedError
        A chunk failed ``1 + retries`` times (names the patient range and the last error).

    Examples
    --------
    >>> import numpy as np
    >>> def squares(start, stop):
    ...     i = np.arange(start, stop)
    ...     return {"status": np.zeros(len(i), np.int64), "y": i * i}
    >>> seen = []
    >>> sum(int(r["y"].sum()) for _, _, r in map_patients(squares, 10, chunk_size=4,
    ...                                                  progress=lambda d, t: seen.append(d)))
    285
    >>> seen
    [4, 8, 10]
    """
    if not callable(chunk_fn):
        raise SimulationError(f"chunk_fn must be callable, got {type(chunk_fn).__name__}")
    for name, value, low in (("n_patients", n_patients, 0), ("chunk_size", chunk_size, 1), ("retries", retries, 0),
                             ("workers", workers, 1), ("threads_per_worker", threads_per_worker, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise SimulationError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (scheduler is None or isinstance(scheduler, str) or hasattr(scheduler, "submit")):
        raise SimulationError(f"scheduler must be None, 'local', a scheduler address 'tcp://host:port' or a "
                              f"distributed.Client, got {type(scheduler).__name__}")
    if isinstance(scheduler, str) and scheduler != "local" and "://" not in scheduler:
        raise SimulationError(f"scheduler {scheduler!r}: give 'local' or an address like 'tcp://host:8786'")
    bounds = _bounds(int(n_patients), int(chunk_size))
    if scheduler is None:
        return _serial(chunk_fn, bounds, int(retries), progress)
    return _distributed(chunk_fn, bounds, scheduler, int(retries), progress, int(workers), int(threads_per_worker))


def _serial(chunk_fn, bounds, retries, progress) -> Iterator[tuple[int, int, dict]]:
    total = bounds[-1][1] if bounds else 0
    for start, stop in bounds:
        for attempt in range(retries + 1):
            try:
                result = chunk_fn(start, stop)
                break
            except Exception as exc:  # noqa: BLE001 - any failure of the chunk is retried, then reported
                last = exc
        else:
            raise ChunkFailedError(start, stop, retries + 1, last) from last
        _check_result(result, start, stop)
        if progress is not None:
            progress(stop, total)
        yield start, stop, result


def _call_chunk(chunk_fn, start: int, stop: int):
    """Run on a worker (module level, so that it pickles by reference)."""
    return chunk_fn(start, stop)


@contextlib.contextmanager
def _client(scheduler, workers: int, threads_per_worker: int):
    from distributed import Client, LocalCluster

    if not isinstance(scheduler, str):
        yield scheduler
        return
    if scheduler == "local":
        threads = str(threads_per_worker)
        env = {"NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                          dashboard_address=":0", silence_logs=logging.ERROR, env=env,
                          scheduler_kwargs={"dashboard": False}) as cluster, \
                Client(cluster) as client:
            yield client
        return
    with Client(scheduler) as client:
        yield client


def _distributed(chunk_fn, bounds, scheduler, retries, progress, workers,
                 threads_per_worker) -> Iterator[tuple[int, int, dict]]:
    from distributed import as_completed

    total = bounds[-1][1] if bounds else 0
    with _client(scheduler, workers, threads_per_worker) as client:
        n_threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
        window = 2 * n_threads
        tag = uuid.uuid4().hex[:8]
        owner: dict = {}
        attempts = [0] * len(bounds)
        ready: dict[int, dict] = {}
        pending = as_completed()

        def submit(i: int) -> None:
            attempts[i] += 1
            start, stop = bounds[i]
            future = client.submit(_call_chunk, chunk_fn, start, stop, pure=False,
                                   key=f"medtwin-chunk-{tag}-{start}-{stop}-{attempts[i]}")
            owner[future] = i
            pending.add(future)

        next_submit = next_yield = done = 0
        try:
            while next_yield < len(bounds):
                while next_submit < len(bounds) and next_submit - next_yield < window:
                    submit(next_submit)
                    next_submit += 1
                future = next(pending)
                i = owner.pop(future)
                try:
                    result = future.result()
                except BaseException as exc:  # noqa: BLE001 - chunk errors, KilledWorker, cancellation
                    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                        raise
                    if attempts[i] <= retries:
                        submit(i)
                        continue
                    raise ChunkFailedError(*bounds[i], attempts[i], exc) from exc
                finally:
                    future.release()
                _check_result(result, *bounds[i])
                ready[i] = result
                done += bounds[i][1] - bounds[i][0]
                if progress is not None:
                    progress(done, total)
                while next_yield in ready:
                    yield (*bounds[next_yield], ready.pop(next_yield))
                    next_yield += 1
        finally:
            for future in list(owner):
                future.cancel()


@contextlib.contextmanager
def progress_bar(label: str = "virtual patients", *, enabled: bool = True):
    """A rich progress bar as a ``progress(done, total)`` callback (silent when stderr is not a terminal).

    Examples
    --------
    >>> import numpy as np
    >>> def nothing(start, stop):
    ...     return {"status": np.zeros(stop - start, np.int64)}
    >>> with progress_bar("demo") as bar:
    ...     len(list(map_patients(nothing, 3, chunk_size=2, progress=bar)))
    2
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield lambda done, total: None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
