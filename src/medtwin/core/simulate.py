"""simulate(model, θ, regimen, times) → Trajectory, for one patient or a batch.

The batch runs in compiled kernels (:mod:`medtwin.core.kernels`), in parallel
over patients (``NUMBA_NUM_THREADS``).  Linear models use the exact
matrix-exponential solution by default, nonlinear ones adaptive Dormand–Prince
5(4).  The solver name, tolerances and every patient's :class:`Status` are part
of the result: a failed patient gets NaN outputs and a status, not an exception.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from medtwin.core import kernels
from medtwin.core.events import Regimen, as_regimens, event_matrix
from medtwin.core.model import Model
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

    Rows are in long format: row ``r`` belongs to patient ``patient[r]`` at
    ``time[r]`` h.  When every patient shares the same times, :meth:`output`
    returns an array of shape (n_patients, n_times).
    """

    model: str
    patient: np.ndarray
    time: np.ndarray
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
            values = self.outputs[name]
        except KeyError:
            raise SimulationError(f"no output {name!r}; outputs are {list(self.outputs)}") from None
        return values.reshape(self.shape) if self.shape is not None else values

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
        data.update({name: values for name, values in self.outputs.items()})
        return pd.DataFrame(data)


def _parameter_matrix(model: Model, params) -> np.ndarray:
    if params is None:
        return model.parameter_table()
    if hasattr(params, "columns") and hasattr(params, "to_numpy"):
        params = {c: params[c].to_numpy() for c in params.columns if c != "ID"}
    if isinstance(params, Mapping):
        return model.parameter_table(params)
    table = np.asarray(params, dtype=float)
    if table.ndim == 1:
        table = table[None, :]
    from medtwin.core.model import check_parameter_table

    check_parameter_table(model, table)
    return np.ascontiguousarray(table)


def _time_arrays(times, n: int) -> list[np.ndarray]:
    if times is None:
        raise SimulationError("give the output times (h)")
    if isinstance(times, np.ndarray) and times.ndim == 1 or (
        isinstance(times, (list, tuple)) and (len(times) == 0 or np.isscalar(times[0]))
    ):
        arrays = [np.asarray(times, dtype=float)] * n
    else:
        arrays = [np.asarray(t, dtype=float) for t in times]
        if len(arrays) != n:
            raise SimulationError(f"{len(arrays)} time vectors for {n} patients")
    for i, t in enumerate(arrays):
        if t.ndim != 1:
            raise SimulationError(f"patient {i}: times must be one-dimensional")
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise SimulationError(f"patient {i}: times must be finite and >= 0 h")
        if np.any(np.diff(t) < 0):
            raise SimulationError(f"patient {i}: times must be non-decreasing")
    return arrays


def model_callbacks(model: Model) -> dict:
    """The model's compiled callbacks (see :func:`kernels.model_callbacks`), built once and cached on it."""
    if "callbacks" not in model._cache:
        model._cache["callbacks"] = kernels.model_callbacks(model)
    return model._cache["callbacks"]


def resolve_method(model: Model, method: str) -> str:
    if method == "auto":
        return "exact" if model.is_linear else "dopri5"
    if method not in kernels.METHODS:
        raise SimulationError(f"unknown method {method!r}; choose auto or one of {kernels.METHODS}")
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
    method : {"auto", "exact", "dopri5", "euler", "heun", "rk4"}
        ``auto`` is ``exact`` for linear models and ``dopri5`` otherwise.
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
        Patients per compiled call (progress granularity).

    Returns
    -------
    Trajectory

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> from medtwin.core.events import Regimen
    >>> m = get_model("pk1_iv")
    >>> tr = simulate(m, {"CL": 2.0, "V": 20.0}, Regimen.single(100.0), [0.0, 10.0])
    >>> [round(c, 4) for c in tr.output("C")[0]]
    [5.0, 1.8394]
    """
    model.require_well_posed()
    method = resolve_method(model, method)
    if method in kernels.FIXED_ORDERS and (dt is None or not dt > 0):
        raise SimulationError(f"method {method} needs a step dt > 0 (h)")
    if not (rtol > 0 and atol > 0):
        raise SimulationError("rtol and atol must be > 0")
    table = _parameter_matrix(model, params)
    n = table.shape[0]
    regimens = as_regimens(regimen if regimen is not None else Regimen(), n)
    time_list = _time_arrays(times, n)
    shared_times = pre_dose is None and all(t is time_list[0] for t in time_list)
    if pre_dose is None:
        pre_list = [np.zeros(len(t), dtype=bool) for t in time_list]
    else:
        pre_list = [np.asarray(p, dtype=bool) for p in pre_dose]
        if len(pre_list) != n or any(len(p) != len(t) for p, t in zip(pre_list, time_list)):
            raise SimulationError("pre_dose must give one flag per output time and patient")

    dose_cmts = [t.cmt for t in model.dose_targets]
    matrices: dict[int, np.ndarray] = {}
    ev_blocks, ev_index = [], []
    for r in regimens:
        if id(r) not in matrices:
            matrices[id(r)] = event_matrix(r, model.n_states, model.default_cmt, dose_cmts)
            ev_blocks.append(matrices[id(r)])
        ev_index.append(id(r))
    offsets, start = {}, 0
    for block, key in zip(ev_blocks, dict.fromkeys(ev_index)):
        offsets[key] = (start, start + len(block))
        start += len(block)
    ev_flat = np.ascontiguousarray(np.concatenate(ev_blocks) if ev_blocks else np.zeros((0, 7)))
    ev_start = np.array([offsets[k][0] for k in ev_index], dtype=np.int64)
    ev_stop = np.array([offsets[k][1] for k in ev_index], dtype=np.int64)

    if shared_times:
        obs_flat = np.ascontiguousarray(time_list[0])
        counts = np.full(n, len(time_list[0]), dtype=np.int64)
    else:
        obs_flat = np.concatenate(time_list) if n else np.zeros(0)
        counts = np.array([len(t) for t in time_list], dtype=np.int64)
    pre_flat = pre_list[0] if shared_times else (np.concatenate(pre_list) if n else np.zeros(0, bool))
    row_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_rows = int(counts.sum())

    callbacks = model_callbacks(model)
    matrix = callbacks["matrix"] if callbacks["matrix"] is not None else kernels.no_matrix()
    idx = kernels.dose_parameter_index(model)
    schedule_columns = sorted(set(idx[idx >= 0].tolist()))
    single_regimen = len(set(ev_index)) == 1
    same_schedule_params = n > 0 and all(np.all(table[:, j] == table[0, j]) for j in schedule_columns)
    use_shared = bool(single_regimen and shared_times and same_schedule_params)
    if use_shared:
        sched = kernels.build_schedule(table[0], ev_flat[ev_start[0]:ev_stop[0]], time_list[0], pre_list[0], idx)
    else:
        sched = (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64),
                 np.zeros(2, np.int64))

    out = np.empty((n_rows, len(model.outputs)))
    states = np.empty((n_rows if keep_states else 1, model.n_states))
    status = np.zeros(n, dtype=np.int64)
    dt_value = float(dt) if dt is not None else 1.0
    if shared_times:  # every patient reads the same observation block
        obs_start = np.zeros(n, dtype=np.int64)
        obs_stop = np.full(n, len(time_list[0]), dtype=np.int64)
    else:
        obs_start, obs_stop = row_start, row_start + counts
    code = kernels.METHOD_CODES[method]
    for lo in range(0, n, chunk_size):
        hi = min(n, lo + chunk_size)
        kernels.run_cohort(
            callbacks["rhs"], callbacks["init"], callbacks["outputs"], matrix, code, model.n_states,
            len(model.outputs), table[lo:hi], ev_flat, ev_start[lo:hi], ev_stop[lo:hi], obs_flat, pre_flat,
            obs_start[lo:hi], obs_stop[lo:hi], row_start[lo:hi], idx, *sched, use_shared, out, states,
            keep_states, float(rtol), float(atol), dt_value, int(max_steps), status[lo:hi],
        )
        if progress is not None:
            progress(hi, n)

    patient = np.repeat(np.arange(n), counts)
    time = np.tile(time_list[0], n) if shared_times and n else (obs_flat.copy() if n else np.zeros(0))
    return Trajectory(
        model=model.name,
        patient=patient,
        time=time,
        outputs={o.name: out[:, j] for j, o in enumerate(model.outputs)},
        output_units={o.name: o.unit for o in model.outputs},
        status=status,
        solver=SolverSettings(method, float(rtol), float(atol), float(dt) if dt is not None else None, int(max_steps)),
        states=states if keep_states else None,
        state_names=model.state_names,
        shape=(n, len(time_list[0])) if shared_times else None,
        ids=None if ids is None else np.asarray(ids),
    )
