"""simulate(model, θ, regimen, times) → Trajectory, for one patient or a batch.

The batch runs in compiled kernels (:mod:`medtwin.core.kernels`), in parallel
over patients (``NUMBA_NUM_THREADS``).  Linear models use the exact
matrix-exponential solution by default, nonlinear ones adaptive Dormand–Prince
5(4).  The solver name, tolerances and every patient's :class:`Status` are part
of the result: a failed patient gets NaN outputs and a status, not an exception.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numba
import numpy as np

from medtwin.core import block_dopri, kernels, linear_kernels
from medtwin.core.compile_cache import cached
from medtwin.core.events import Regimen, as_regimens, event_matrix
from medtwin.core.model import Model, parameter_matrix
from medtwin.core.schedule import ParameterChanges, Segments, dose_parameter_index, empty_segment_arrays
from medtwin.core.schedule_jit import segment_arrays
from medtwin.core.status import Status
from medtwin.errors import SimulationError

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SolverSettings:
    """How a trajectory was computed (recorded with every result).

    Attributes
    ----------
    method : str
        ``exact``, ``dopri5``, ``euler``, ``heun`` or ``rk4``.
    rtol, atol : float
        Relative and absolute tolerances (adaptive method only; state units).
    dt : float or None
        Step in hours for the fixed-step methods.
    max_steps : int
        Step budget per patient.
    backend : str
        Where it ran (``numba``).
    """

    method: str
    rtol: float
    atol: float
    dt: float | None
    max_steps: int
    backend: str = "numba"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Trajectory:
    """Simulated outputs (and optionally states) at the requested times.

    When every patient shares the same times, ``times`` holds them once
    (``row_patient`` is None) and each entry of ``outputs`` has shape
    (n_patients, n_times).  Otherwise rows are in long format: ``outputs``
    entries, ``times`` and ``row_patient`` are flat (n_rows,), row ``r``
    belonging to patient ``row_patient[r]`` at ``times[r]`` h.
    """

    model: str
    times: np.ndarray
    row_patient: np.ndarray | None
    outputs: Mapping[str, np.ndarray]
    output_units: Mapping[str, str]
    status: np.ndarray
    solver: SolverSettings
    states: np.ndarray | None = None
    state_names: tuple[str, ...] = ()
    shape: tuple[int, int] | None = None
    ids: np.ndarray | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> np.ndarray:
        """Time (h) of every row, shape (n_rows,)."""
        return np.tile(self.times, self.n_patients) if self.shape is not None else self.times

    @property
    def patient(self) -> np.ndarray:
        """0-based patient index of every row, shape (n_rows,)."""
        if self.shape is not None:
            return np.repeat(np.arange(self.shape[0]), self.shape[1])
        return self.row_patient

    @property
    def n_patients(self) -> int:
        return int(self.status.shape[0])

    @property
    def ok(self) -> bool:
        """True when every patient's status is OK."""
        return bool(np.all(self.status == Status.OK))

    def statuses(self) -> list[Status]:
        return [Status(int(s)) for s in self.status]

    def output(self, name: str) -> np.ndarray:
        """Output ``name``: (n_patients, n_times) when times are shared, else flat (n_rows,)."""
        try:
            return self.outputs[name]
        except KeyError:
            raise SimulationError(f"no output {name!r}; outputs are {list(self.outputs)}") from None

    def state(self, name: str) -> np.ndarray:
        """State ``name`` at the output times (needs ``keep_states=True``)."""
        if self.states is None:
            raise SimulationError("states were not kept; simulate with keep_states=True")
        j = self.state_names.index(name)
        values = self.states[:, j]
        return values.reshape(self.shape) if self.shape is not None else values

    def to_frame(self):
        """Long pandas DataFrame: ID, TIME and one column per output."""
        import pandas as pd

        ids = self.ids[self.patient] if self.ids is not None else self.patient + 1
        data = {"ID": ids, "TIME": self.time}
        data.update({name: np.asarray(values).reshape(-1) for name, values in self.outputs.items()})
        return pd.DataFrame(data)


def _check_times(t: np.ndarray, who: str) -> np.ndarray:
    if t.ndim != 1:
        raise SimulationError(f"{who}: times must be one-dimensional")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise SimulationError(f"{who}: times must be finite and >= 0 h")
    if np.any(np.diff(t) < 0):
        raise SimulationError(f"{who}: times must be non-decreasing")
    return t


def _assemble(model: Model, lay: "_Layout", n: int, out: np.ndarray, status: np.ndarray, solver: "SolverSettings",
              states: np.ndarray | None, ids, time_major: bool = False) -> "Trajectory":
    """Wrap kernel output in a Trajectory: (n, n_times) per output when times are shared, else flat rows.

    ``out`` is (n_rows, n_outputs) in patient-major row order, or (n_times, n_outputs, n) when ``time_major``.
    """
    shared = lay.shared_times is not None
    if shared:
        shape = (n, len(lay.shared_times))
        times_out, row_patient = lay.shared_times, None
        outputs = {o.name: out[:, j, :].T if time_major else out[:, j].reshape(shape)
                   for j, o in enumerate(model.outputs)}
    else:
        shape = None
        times_out = lay.obs_flat.copy()
        row_patient = np.repeat(np.arange(n), lay.obs_stop - lay.obs_start)
        outputs = {o.name: out[:, j] for j, o in enumerate(model.outputs)}
    return Trajectory(
        model=model.name, times=times_out, row_patient=row_patient, outputs=outputs,
        output_units={o.name: o.unit for o in model.outputs}, status=status, solver=solver, states=states,
        state_names=model.state_names, shape=shape, ids=None if ids is None else np.asarray(ids),
    )


def _simulate_diffrax(model, table, regimen, lay, rtol, atol, max_steps, ids, progress) -> "Trajectory":
    """The JAX + diffrax path of :func:`simulate` (patient by patient; see :mod:`medtwin.core.jax_solve`)."""
    from medtwin.core.jax_solve import simulate_diffrax

    n = table.shape[0]
    regimens = as_regimens(regimen if regimen is not None else Regimen(), n)
    time_list = [lay.obs_flat[a:b] for a, b in zip(lay.obs_start, lay.obs_stop)]
    pre_list = [lay.pre_flat[a:b] for a, b in zip(lay.obs_start, lay.obs_stop)]
    values, status = simulate_diffrax(model, table, regimens, time_list, pre_list, rtol=float(rtol),
                                      atol=float(atol), max_steps=int(max_steps), progress=progress)
    stacked = np.concatenate(values) if values else np.zeros((0, len(model.outputs)))
    solver = SolverSettings("diffrax-dopri5", float(rtol), float(atol), None, int(max_steps), backend="jax")
    return _assemble(model, lay, n, stacked, status, solver, None, ids)


def _is_shared_times(times) -> bool:
    if isinstance(times, np.ndarray):
        return times.ndim == 1
    return isinstance(times, (list, tuple)) and (len(times) == 0 or np.isscalar(times[0]))


@dataclass(frozen=True)
class _Layout:
    """Flat arrays handed to the kernels; every field is indexed per patient or per row."""

    ev_flat: np.ndarray
    ev_start: np.ndarray
    ev_stop: np.ndarray
    obs_flat: np.ndarray
    pre_flat: np.ndarray
    obs_start: np.ndarray
    obs_stop: np.ndarray
    row_start: np.ndarray
    n_rows: int
    shared_regimen: bool
    shared_times: np.ndarray | None


def _layout(model: Model, n: int, regimen, times, pre_dose) -> _Layout:
    """Validate regimens/times once and lay them out; O(1) Python work when they are shared."""
    if times is None:
        raise SimulationError("give the output times (h)")
    dose_cmts = [t.cmt for t in model.dose_targets]
    regimen = regimen if regimen is not None else Regimen()
    if isinstance(regimen, Regimen):
        ev_flat = event_matrix(regimen, model.n_states, model.default_cmt, dose_cmts)
        ev_start = np.zeros(n, np.int64)
        ev_stop = np.full(n, len(ev_flat), np.int64)
        shared_regimen = True
    else:
        regimens = as_regimens(regimen, n)
        blocks: dict[int, tuple[int, np.ndarray]] = {}
        ev_start = np.empty(n, np.int64)
        ev_stop = np.empty(n, np.int64)
        offset = 0
        for i, r in enumerate(regimens):
            if id(r) not in blocks:
                block = event_matrix(r, model.n_states, model.default_cmt, dose_cmts)
                blocks[id(r)] = (offset, block)
                offset += len(block)
            start, block = blocks[id(r)]
            ev_start[i], ev_stop[i] = start, start + len(block)
        ev_flat = np.concatenate([b for _, b in blocks.values()]) if blocks else np.zeros((0, 7))
        shared_regimen = len(blocks) == 1
    if _is_shared_times(times) and pre_dose is None:
        t = _check_times(np.ascontiguousarray(times, dtype=float), "all patients")
        counts = np.full(n, len(t), np.int64)
        row_start = np.arange(n, dtype=np.int64) * len(t)
        return _Layout(np.ascontiguousarray(ev_flat), ev_start, ev_stop, t, np.zeros(len(t), bool),
                       np.zeros(n, np.int64), counts.copy(), row_start, n * len(t), shared_regimen, t)
    if _is_shared_times(times):
        time_list = [np.asarray(times, dtype=float)] * n
    else:
        time_list = [np.asarray(t, dtype=float) for t in times]
        if len(time_list) != n:
            raise SimulationError(f"{len(time_list)} time vectors for {n} patients")
    for i, t in enumerate(time_list):
        _check_times(t, f"patient {i}")
    if pre_dose is None:
        pre_list = [np.zeros(len(t), dtype=bool) for t in time_list]
    else:
        pre_list = [np.asarray(p, dtype=bool) for p in pre_dose]
        if len(pre_list) != n or any(len(p) != len(t) for p, t in zip(pre_list, time_list)):
            raise SimulationError("pre_dose must give one flag per output time and patient")
    counts = np.array([len(t) for t in time_list], dtype=np.int64)
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    obs_flat = np.concatenate(time_list) if n else np.zeros(0)
    pre_flat = np.concatenate(pre_list) if n else np.zeros(0, bool)
    return _Layout(np.ascontiguousarray(ev_flat), ev_start, ev_stop, obs_flat, pre_flat, row_start,
                   row_start + counts, row_start, int(counts.sum()), shared_regimen, None)


def model_callbacks(model: Model) -> dict:
    """The model's compiled callbacks (see :func:`kernels.model_callbacks`), built once (:mod:`compile_cache`)."""
    return cached(model, "numba-callbacks", (), lambda: kernels.model_callbacks(model))


def block_callbacks(model: Model) -> dict | None:
    """The model's block callbacks (:func:`block_dopri.block_callbacks`), built once; None if they do not compile.

    A model whose functions cannot take tuples (e.g. one that slices its state) keeps the per-patient kernel.
    """
    def build():
        try:
            return block_dopri.block_callbacks(model)
        except (numba.core.errors.NumbaError, TypeError, ValueError):
            return None

    return cached(model, "numba-block-callbacks", (block_dopri.BLOCK,), build)


KERNELS = ("auto", "block", "patient")
#: The linear cohort kernel runs in the calling thread (``threads`` not given) when patients x program ops is
#: at most this (1,000 draws of a 3-day regimen: about 2 ms of work, less than 2 threads' start and hand-off
#: on a loaded machine); larger cohorts use ``threads`` threads.
INLINE_LANE_OPS = 500_000


def resolve_method(model: Model, method: str) -> str:
    if method == "auto":
        return "exact" if model.is_linear else "dopri5"
    if method == "diffrax":
        return method
    if method not in kernels.METHODS:
        raise SimulationError(f"unknown method {method!r}; choose auto, diffrax or one of {kernels.METHODS}")
    if method == "exact" and not model.is_linear:
        raise SimulationError(f"model {model.name} is nonlinear: no exact solution; use dopri5")
    return method


def simulate(
    model: Model,
    params=None,
    regimen: Regimen | Sequence[Regimen] | None = None,
    times=None,
    *,
    method: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    dt: float | None = None,
    max_steps: int = 1_000_000,
    keep_states: bool = True,
    pre_dose: Sequence[np.ndarray] | None = None,
    ids: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    chunk_size: int = 65_536,
    threads: int | None = None,
    parameter_changes=None,
    out: np.ndarray | None = None,
    dtype=np.float64,
    kernel: str = "auto",
) -> Trajectory:
    """Simulate ``model`` for one or many patients.

    Parameters
    ----------
    model : Model
        Any library or user model; it must pass its well-posedness check.
    params : mapping, DataFrame or array, optional
        Individual parameters: a mapping name -> scalar or (n_patients,) array
        (missing names take typical values), a DataFrame with one column per
        parameter, or an array of shape (n_patients, n_parameters).
    regimen : Regimen or sequence of Regimen, optional
        One regimen for everybody or one per patient.  ``None``: no doses.
    times : array_like or sequence of array_like
        Output times in h, shared (1-D) or per patient; non-decreasing, >= 0.
    method : {"auto", "exact", "dopri5", "euler", "heun", "rk4", "diffrax"}
        ``auto`` is ``exact`` for linear models and ``dopri5`` otherwise (numba
        kernels).  ``diffrax`` integrates with JAX + diffrax patient by patient
        (the differentiable path, :mod:`medtwin.core.jax_solve`; needs the
        ``jax`` extra; no SS records; states are not kept).
    rtol, atol : float
        Tolerances of ``dopri5``.
    dt : float, optional
        Step (h) of the fixed-step methods.
    max_steps : int
        Step budget per patient; exceeding it gives ``Status.MAX_STEPS``.
    keep_states : bool
        Also return the states at the output times (memory: rows × n_states).
    pre_dose : sequence of bool arrays, optional
        Per patient and output time, True when the observation is taken before
        doses at the same time (NONMEM record order); default after.
    ids : array, optional
        Patient identifiers carried into :meth:`Trajectory.to_frame`.
    progress : callable(done, total), optional
        Called after each chunk of patients.
    chunk_size : int
        Patients per progress update.
    threads : int, optional
        Worker threads (default: numba's thread count, ``NUMBA_NUM_THREADS``, except that a small
        linear cohort, at most ``INLINE_LANE_OPS`` patients x program ops, runs in the calling thread);
        results do not depend on it.
    parameter_changes : mapping, optional
        Piecewise-constant parameters: ``{name: (times, values)}``; from ``times[c]`` h on the
        parameter takes ``values[..., c]`` (shape (n_times,) for everybody or (n_patients, n_times)).
        Before the first change it has its value from ``params``.  Not with ``method="diffrax"``.
    out : ndarray, optional
        A caller-supplied buffer for the outputs, shape (n_times, n_outputs, n_patients), C-contiguous,
        float64 or float32: the cohort fast path (``exact`` on a linear model whose patients share the
        regimen, the output times and any dosing parameter) writes into it and every
        ``Trajectory.outputs[name]`` is a view ``out[:, j, :].T``.  Reusing one buffer across calls
        saves allocating and first touching the memory (at 10⁶ patients × 169 times the operating
        system's page faults are most of the time).  Other paths refuse it (``SimulationError``).
    dtype : {numpy.float64, numpy.float32}
        Precision of the returned outputs (the solution is computed in float64; float32 halves the
        memory written).  Ignored when ``out`` is given (its dtype is used).
    kernel : {"auto", "block", "patient"}
        Which numba kernel steps ``dopri5``: ``block`` steps patients side by side in blocks
        (:mod:`medtwin.core.block_dopri`; needs one shared schedule without SS records or parameter changes),
        ``patient`` one patient at a time (the general kernel), ``auto`` the block kernel where it applies
        and the cohort has at least ``block_dopri.MIN_PATIENTS`` patients (below, its one-off compilation
        per model, seconds, would cost more than it saves).
        Recorded in ``Trajectory.extra["kernel"]``.

    Returns
    -------
    Trajectory

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> from medtwin.core.events import Regimen
    >>> m = get_model("pk1_iv")
    >>> tr = simulate(m, {"CL": 2.0, "V": 20.0}, Regimen.single(100.0), [0.0, 10.0])
    >>> tr.output("C").round(4).tolist()
    [[5.0, 1.8394]]
    >>> buf = np.empty((2, 1, 1))  # (n_times, n_outputs, n_patients), reusable across calls
    >>> simulate(m, {"CL": 2.0, "V": 20.0}, Regimen.single(100.0), [0.0, 10.0], out=buf).output("C").base is buf
    True
    """
    model.require_well_posed()
    method = resolve_method(model, method)
    if kernel not in KERNELS:
        raise SimulationError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    if method in kernels.FIXED_ORDERS and (dt is None or not dt > 0):
        raise SimulationError(f"method {method} needs a step dt > 0 (h)")
    if not (rtol > 0 and atol > 0):
        raise SimulationError("rtol and atol must be > 0")
    dtype = _output_dtype(out.dtype if out is not None else dtype)
    table = parameter_matrix(model, params)
    n = table.shape[0]
    lay = _layout(model, table.shape[0], regimen, times, pre_dose)
    if method == "diffrax":
        if parameter_changes:
            raise SimulationError("parameter_changes are not supported with method='diffrax'")
        if out is not None:
            raise SimulationError("out= is for the cohort fast path (method exact), not method='diffrax'")
        return _with_dtype(_simulate_diffrax(model, table, regimen, lay, rtol, atol, max_steps, ids, progress),
                           dtype)

    callbacks = model_callbacks(model)
    matrix = callbacks["matrix"] if callbacks["matrix"] is not None else kernels.no_matrix()
    idx = dose_parameter_index(model)
    n = table.shape[0]
    changes = ParameterChanges.build(model, parameter_changes, n)
    schedule_columns = sorted(set(idx[idx >= 0].tolist()))
    same_schedule_params = n > 0 and all(np.all(table[:, j] == table[0, j]) for j in schedule_columns)
    use_shared = bool(lay.shared_regimen and lay.shared_times is not None and same_schedule_params)
    segments = None
    if use_shared:
        shared = segment_arrays(table[0], lay.ev_flat[lay.ev_start[0]:lay.ev_stop[0]], lay.obs_flat,
                                        lay.pre_flat, idx, model.n_states, changes.times)
        segments = Segments.from_arrays(shared, changes=changes, events=lay.ev_flat, reference=table[0])
    else:
        shared = empty_segment_arrays(model.n_states)

    status = np.zeros(n, dtype=np.int64)
    states = np.empty((lay.n_rows if keep_states else 1, model.n_states))
    dt_value = float(dt) if dt is not None else 1.0
    code = kernels.METHOD_CODES[method]
    n_threads = max(1, int(threads if threads is not None else numba.get_num_threads()))
    # Fast path: a linear model whose patients share one schedule (cohorts), outputs linear in the state;
    # it writes a time-major buffer (contiguous across patients), the general kernel a row per output time.
    program = None
    if code == 0 and use_shared and all(o.linear for o in model.outputs):
        program = linear_kernels.linear_program(segments, idx)
    blocks = None
    big = n >= block_dopri.MIN_PATIENTS or kernel == "block"  # small calls skip the per-model compile
    if code == 5 and kernel != "patient" and big and use_shared and block_dopri.applies(segments):
        blocks = block_callbacks(model)
    if kernel == "block" and blocks is None:
        raise SimulationError("kernel='block' needs method dopri5, one schedule shared by every patient, no "
                              "steady-state records or parameter changes, and a model whose functions take tuples")
    if program is not None:
        shape = (len(lay.shared_times), len(model.outputs), n)
        out = _check_out(out, shape) if out is not None else np.empty(shape, dtype=dtype)
    elif out is not None:
        raise SimulationError("out= needs the cohort fast path: method exact on a linear model (outputs linear "
                              "in the state) whose patients share the regimen, the output times and any dosing "
                              "parameter, without resets, steady-state records or parameter changes")
    else:
        out = np.empty((lay.n_rows if n else 0, len(model.outputs)))

    def run_general(lo: int, hi: int) -> None:
        kernels.run_cohort(
            callbacks["rhs"], callbacks["init"], callbacks["outputs"], matrix, code, model.is_linear, model.n_states,
            len(model.outputs), table[lo:hi], lay.ev_flat, lay.ev_start[lo:hi], lay.ev_stop[lo:hi], lay.obs_flat,
            lay.pre_flat, lay.obs_start[lo:hi], lay.obs_stop[lo:hi], lay.row_start[lo:hi], idx, shared, use_shared,
            changes.times, changes.parameter, changes.values[lo:hi], out, states, keep_states, float(rtol),
            float(atol), dt_value, int(max_steps), status[lo:hi],
        )

    def run_linear(lo: int, hi: int) -> None:
        linear_kernels.run_linear_blocks(callbacks["matrix"], callbacks["outputs"], callbacks["init"],
                                         model.n_states, len(model.outputs), table, *program,
                                         len(lay.shared_times), out, states, keep_states, status, lo, hi)

    def run_dopri_blocks(lo: int, hi: int) -> None:
        block_dopri.run_dopri_blocks(
            blocks["rhs"], blocks["step"], blocks["outputs"], callbacks["init"], model.n_states, len(model.outputs), table,
            segments.start, segments.end, segments.reset, segments.bolus, segments.rates, segments.obs_segment,
            segments.obs_pre, segments.obs_order, len(lay.shared_times), out, states, keep_states, float(rtol),
            float(atol), int(max_steps), status, lo, hi)

    run_block = run_linear if program is not None else run_general
    # Block kernel: ranges of a few blocks, handed out to the threads as they become free (balance).
    piece = None
    if blocks is not None:
        run_block, piece = run_dopri_blocks, 64 * block_dopri.BLOCK

    if threads is None and program is not None and n * len(program[0]) <= INLINE_LANE_OPS:
        n_threads = 1  # a small linear problem: starting threads and handing off cost more than they save
    pool = ThreadPoolExecutor(max_workers=n_threads) if n_threads > 1 else None
    try:
        for lo in range(0, n, chunk_size):
            hi = min(n, lo + chunk_size)
            if piece is not None:
                edges = np.append(np.arange(lo, hi, piece), hi)
            else:
                edges = np.linspace(lo, hi, min(n_threads, hi - lo) + 1).astype(int)
            if pool is None:  # in this thread (patients are independent: the same numbers as threaded)
                for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
                    run_block(a, b)
            else:
                list(pool.map(run_block, edges[:-1], edges[1:]))
            if progress is not None:
                progress(hi, n)
    finally:
        if pool is not None:
            pool.shutdown()

    solver = SolverSettings(method, float(rtol), float(atol), float(dt) if dt is not None else None, int(max_steps))
    used = "block" if blocks is not None else ("linear-block" if program is not None else "patient")
    if out.dtype != dtype:  # the general kernels write float64
        out = out.astype(dtype)
    tr = _assemble(model, lay, n, out, status, solver, states if keep_states else None, ids,
                   time_major=program is not None)
    tr.extra["kernel"] = used
    return tr


def _output_dtype(dtype) -> np.dtype:
    value = np.dtype(dtype)
    if value not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise SimulationError(f"output dtype must be float64 or float32, got {value}")
    return value


def _check_out(out, shape: tuple) -> np.ndarray:
    """The caller's ``out=`` buffer, checked: shape (n_times, n_outputs, n_patients), C-contiguous, writeable."""
    if not isinstance(out, np.ndarray) or out.shape != shape:
        got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        raise SimulationError(f"out= must be an array of shape (n_times, n_outputs, n_patients) = {shape}, got {got}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise SimulationError("out= must be C-contiguous and writeable")
    return out


def _with_dtype(trajectory: Trajectory, dtype: np.dtype) -> Trajectory:
    if dtype == np.dtype(np.float64):
        return trajectory
    from dataclasses import replace

    return replace(trajectory, outputs={k: np.asarray(v).astype(dtype) for k, v in trajectory.outputs.items()})
