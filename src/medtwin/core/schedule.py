"""The dosing schedule as one value: NONMEM event records → piecewise-constant inputs (Segments).

This module is the single place where NONMEM event semantics — steady state
(SS=1/2, including infusions longer than the dosing interval), lag time
(ALAG), bioavailability (F), zero-order input (RATE/DUR, modelled ``-1``/``-2``),
overlapping infusions, resets (EVID 3/4) — and the output times become a
sequence of *segments* with constant inputs.  Every numerical backend (numba
exact / dopri5 / fixed-step, the cohort block program, the JAX superposition
path, diffrax, the observers' input schedules) only steps over them.

Construction has two stages, both here:

1. :func:`build_schedule` turns the event records into *actions* (dose,
   infusion start/end, reset, steady-state record, observation), stably sorted
   by (time, priority, record order).  At one time the order is always:
   parameter changes, resets, pre-dose observations, steady-state records,
   doses (record order), post-dose observations.
2. :func:`segment_arrays` walks the actions once — the one copy of the
   infusion bookkeeping (an end cancels only an infusion that started; a
   compartment's rate returns to exactly 0 when its last infusion ends; a reset
   or an SS=1 record stops every infusion) — and groups them by distinct time.

Both are written once, in the subset of Python that numba compiles.  Here they are
plain Python (this module does not import numba); :mod:`medtwin.core.schedule_jit`
compiles the *same code objects* with ``numba.njit`` so that the per-patient
kernels build a patient's segments inside their parallel loop.
:func:`compile_schedule` (which wraps the arrays in the frozen
:class:`Segments` value) runs the plain-Python functions for a small schedule —
a live twin's regimen, so a new process need not load numba — and the compiled
ones for a large one; both give the same arrays (tested).

Semantics of segment ``k`` (times in h): at ``start[k]`` apply, in order, the
parameter changes, the reset (state back to its initial value, infusions
stopped), read the pre-dose observations, solve the steady-state records, add
the bolus, read the post-dose observations; then integrate to ``end[k]`` with
the infusion rates ``rates[k]``.  The state before the first segment is the
initial state at the first segment's start (the first action time).

Examples
--------
>>> from medtwin.models import get_model
>>> from medtwin.core.events import Regimen
>>> seg = compile_schedule(get_model("pk1_iv"), Regimen.single(100.0, time=1.0, rate=50.0), [0.0, 2.0])
>>> seg.start.tolist(), seg.rates[:, 0].tolist()
([0.0, 1.0, 2.0, 3.0], [0.0, 50.0, 50.0, 0.0])
>>> seg.obs_segment.tolist()
[0, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import sys

import numpy as np

from medtwin.core.events import EV_AMT, EV_CMT, EV_EVID, EV_II, EV_RATE, EV_SS, EV_TIME, Regimen, event_matrix
from medtwin.errors import SimulationError

__all__ = ["Segments", "ParameterChanges", "compile_schedule", "build_schedule", "segment_arrays",
           "dose_parameter_index", "dose_terms", "JIT_ABOVE"]

ACT_RESET, ACT_SS, ACT_BOLUS, ACT_INF_START, ACT_INF_END, ACT_OBS = 0, 1, 2, 3, 4, 5
PRI_RESET, PRI_OBS_PRE, PRI_SS, PRI_DOSE, PRI_OBS_POST = 0, 1, 2, 3, 4
#: How many still-running infusions of earlier steady-state doses one SS record may carry (DUR > II).
MAX_SS_RESIDUALS = 8
#: :func:`compile_schedule` runs the numba-compiled functions when a schedule has more event records plus
#: output times than ``JIT_ABOVE``, when numba's copies are already loaded, or once the process has built
#: ``JIT_AFTER`` records and times in plain Python (≈ 8 µs each); below that, plain Python is cheaper than
#: importing numba and loading the compiled code (0.3–0.5 s CPU in a new process).
JIT_ABOVE = 2000
JIT_AFTER = 20_000
_plain_work = 0  # records + output times this process has built in plain Python


# ----------------------------------------------------------------- event records → actions
def dose_terms(p, row, idx):
    """(bioavailable amount mg, rate mg/h, duration h, lag h) of a dose record; duration 0 for a bolus.

    ``idx`` (4, n_states) holds the parameter positions of F, ALAG, R and D per
    compartment (-1: none).
    """
    c = int(row[EV_CMT])
    f = p[idx[0, c]] if idx[0, c] >= 0 else 1.0
    lag = p[idx[1, c]] if idx[1, c] >= 0 else 0.0
    amt = row[EV_AMT] * f
    rate = row[EV_RATE]
    if rate == -1.0:
        rate = p[idx[2, c]]
        dur = amt / rate
    elif rate == -2.0:
        dur = p[idx[3, c]]
        rate = amt / dur if dur > 0 else 0.0
    elif rate > 0.0:
        dur = amt / rate
    else:
        dur = 0.0
    return amt, rate, dur, lag


def build_schedule(p, ev, obs_t, obs_pre, idx):
    """All actions of one patient, sorted by (time, priority, record order).

    Returns (a_t, a_kind, a_cmt, a_val, a_ref, info): action times (h), kinds
    (``ACT_*``), 0-based compartments, values (bolus mg or infusion rate mg/h),
    references (event row, infusion number or observation index) and
    info = [number of infusions, overflow flag].
    """
    n_ev = ev.shape[0]
    n_obs = obs_t.shape[0]
    cap = n_ev * (4 + 2 * MAX_SS_RESIDUALS) + n_obs
    a_t = np.empty(cap)
    a_kind = np.empty(cap, np.int64)
    a_cmt = np.empty(cap, np.int64)
    a_val = np.empty(cap)
    a_ref = np.empty(cap, np.int64)
    sec = np.empty(cap)
    m = 0
    n_inf = 0
    overflow = False
    for e in range(n_ev):
        row = ev[e]
        t0 = row[EV_TIME]
        c = int(row[EV_CMT])
        evid = int(row[EV_EVID])
        base = float(e)
        if evid == 3 or evid == 4:
            a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = t0, ACT_RESET, c, 0.0, e, PRI_RESET * 1e12 + base
            m += 1
        if evid == 3:
            continue
        amt, rate, dur, lag = dose_terms(p, row, idx)
        ss = int(row[EV_SS])
        ii = row[EV_II]
        if ss > 0:
            a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = t0, ACT_SS, c, 0.0, e, PRI_SS * 1e12 + base
            m += 1
            if dur > 0.0 and ii > 0.0:
                # Infusions of earlier SS doses still running at the record time.
                s = ii - (lag % ii)
                k = 0
                while s + k * ii < dur:
                    if k >= MAX_SS_RESIDUALS:
                        overflow = True
                        break
                    end = t0 + dur - s - k * ii
                    a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = t0, ACT_INF_START, c, rate, n_inf, PRI_DOSE * 1e12 + base
                    m += 1
                    a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = end, ACT_INF_END, c, rate, n_inf, PRI_DOSE * 1e12 + base
                    m += 1
                    n_inf += 1
                    k += 1
        td = t0 + lag
        if amt == 0.0 and rate > 0.0:  # steady-state constant infusion: runs until a reset
            a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = td, ACT_INF_START, c, rate, n_inf, PRI_DOSE * 1e12 + base
            m += 1
            n_inf += 1
        elif dur > 0.0:
            a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = td, ACT_INF_START, c, rate, n_inf, PRI_DOSE * 1e12 + base
            m += 1
            a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = td + dur, ACT_INF_END, c, rate, n_inf, PRI_DOSE * 1e12 + base
            m += 1
            n_inf += 1
        elif amt > 0.0:
            a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = td, ACT_BOLUS, c, amt, e, PRI_DOSE * 1e12 + base
            m += 1
    for o in range(n_obs):
        pri = PRI_OBS_PRE if obs_pre[o] else PRI_OBS_POST
        a_t[m], a_kind[m], a_cmt[m], a_val[m], a_ref[m], sec[m] = obs_t[o], ACT_OBS, 0, 0.0, o, pri * 1e12 + o
        m += 1
    # Stable two-key sort: first by (priority, record order), then by time.
    o1 = np.argsort(sec[:m], kind="mergesort")
    o2 = np.argsort(a_t[:m][o1], kind="mergesort")
    order = o1[o2]
    info = np.array([n_inf, 1 if overflow else 0], dtype=np.int64)
    return a_t[:m][order], a_kind[:m][order], a_cmt[:m][order], a_val[:m][order], a_ref[:m][order], info


# ----------------------------------------------------------------- actions → segments
def _merge_unique(a, b):
    """The distinct values of two sorted arrays, sorted (a linear merge)."""
    out = np.empty(a.shape[0] + b.shape[0])
    i = j = m = 0
    while i < a.shape[0] or j < b.shape[0]:
        if j >= b.shape[0] or (i < a.shape[0] and a[i] <= b[j]):
            v = a[i]
            i += 1
        else:
            v = b[j]
            j += 1
        if m == 0 or v != out[m - 1]:
            out[m] = v
            m += 1
    return out[:m].copy()


def segment_arrays(p, ev, obs_t, obs_pre, idx, n, change_t):
    """One patient's segments as a tuple of arrays (the fields of :class:`Segments`, in this order).

    ``(start, end, reset, bolus, bolus_dose, rates, ss_segment, ss_record, obs_segment, obs_pre, obs_order,
    change_segment, overflow)``; ``change_t`` (C,) are the (sorted) times of parameter changes (h).
    The one copy of the infusion bookkeeping.
    """
    a_t, a_kind, a_cmt, a_val, a_ref, info = build_schedule(p, ev, obs_t, obs_pre, idx)
    start = _merge_unique(a_t, change_t)
    k_all = start.shape[0]
    end = start.copy()
    if k_all > 1:
        end[:-1] = start[1:]
    reset = np.zeros(k_all, np.bool_)
    bolus = np.zeros((k_all, n))
    bolus_dose = np.zeros((k_all, n))
    rates_out = np.zeros((k_all, n))
    n_ss = 0
    for k in range(a_kind.shape[0]):
        if a_kind[k] == ACT_SS:
            n_ss += 1
    ss_segment = np.zeros(n_ss, np.int64)
    ss_record = np.zeros(n_ss, np.int64)
    n_obs = obs_t.shape[0]
    obs_segment = np.zeros(n_obs, np.int64)
    obs_order = np.zeros(n_obs, np.int64)
    change_segment = np.searchsorted(start, change_t).astype(np.int64)
    rates = np.zeros(n)
    active = np.zeros(n, np.int64)
    inf_on = np.zeros(max(info[0], 1), np.bool_)
    j = 0
    n_ss = 0
    n_read = 0
    for k in range(a_t.shape[0]):
        while start[j] < a_t[k]:
            rates_out[j] = rates
            j += 1
        kind, c, ref = a_kind[k], a_cmt[k], a_ref[k]
        if kind == ACT_OBS:
            obs_segment[ref] = j
            obs_order[n_read] = ref
            n_read += 1
        elif kind == ACT_BOLUS:
            bolus[j, c] += a_val[k]
            bolus_dose[j, c] += ev[ref, EV_AMT]
        elif kind == ACT_INF_START:
            inf_on[ref] = True
            rates[c] += a_val[k]
            active[c] += 1
        elif kind == ACT_INF_END:
            if inf_on[ref]:
                inf_on[ref] = False
                active[c] -= 1
                rates[c] = rates[c] - a_val[k] if active[c] > 0 else 0.0
        elif kind == ACT_RESET or (kind == ACT_SS and int(ev[ref, EV_SS]) == 1):
            if kind == ACT_RESET:
                reset[j] = True
            rates[:] = 0.0
            active[:] = 0
            inf_on[:] = False
        if kind == ACT_SS:
            ss_segment[n_ss] = j
            ss_record[n_ss] = ref
            n_ss += 1
    while j < k_all:
        rates_out[j] = rates
        j += 1
    return (start, end, reset, bolus, bolus_dose, rates_out, ss_segment, ss_record, obs_segment,
            obs_pre.copy(), obs_order, change_segment, info[1] != 0)


def empty_segment_arrays(n: int) -> tuple:
    """A placeholder segments tuple with the types of :func:`segment_arrays` (for kernels given none)."""
    i0, f0 = np.zeros(0, np.int64), np.zeros(0)
    return (f0, f0.copy(), np.zeros(0, bool), np.zeros((0, n)), np.zeros((0, n)), np.zeros((0, n)), i0, i0.copy(),
            i0.copy(), np.zeros(0, bool), i0.copy(), i0.copy(), False)


def dose_parameter_index(model) -> np.ndarray:
    """(4, n_states) int array: positions of F, ALAG, R, D per compartment (-1: none)."""
    index = {name: i for i, name in enumerate(model.parameter_names)}
    idx = np.full((4, model.n_states), -1, np.int64)
    for target in model.dose_targets:
        for row, ref in enumerate((target.bioavailability, target.lag, target.rate, target.duration)):
            if ref is not None:
                idx[row, target.cmt - 1] = index[ref]
    return idx


# ----------------------------------------------------------------- values
@dataclass(frozen=True)
class ParameterChanges:
    """Piecewise-constant parameters: from ``times[c]`` h on, parameter ``parameter[c]`` takes ``values[..., c]``.

    Attributes
    ----------
    times : ndarray, shape (C,)
        Change times (h), non-decreasing.
    parameter : ndarray of int, shape (C,)
        Positions in the model's parameter vector.
    values : ndarray, shape (n_patients, C)
        New values (the parameter's unit), one row per patient.

    Examples
    --------
    >>> from medtwin.models import get_model
    >>> ch = ParameterChanges.build(get_model("pk1_iv"), {"CL": ([5.0], [4.0])})
    >>> ch.times.tolist(), ch.parameter.tolist(), ch.values.tolist()
    ([5.0], [0], [[4.0]])
    """

    times: np.ndarray
    parameter: np.ndarray
    values: np.ndarray

    @classmethod
    def build(cls, model, changes, n_patients: int = 1) -> "ParameterChanges":
        """From ``{name: (times, values)}``; values of shape (n_times,) or (n_patients, n_times)."""
        if isinstance(changes, ParameterChanges):
            return changes
        names = model.parameter_names
        rows = []
        for name, spec in dict(changes or {}).items():
            if name not in names:
                raise SimulationError(f"parameter_changes: unknown parameter {name!r}; parameters are {list(names)}")
            try:
                times, values = spec
            except (TypeError, ValueError):
                raise SimulationError(f"parameter_changes[{name!r}] must be (times, values)") from None
            times = np.atleast_1d(np.asarray(times, dtype=float))
            values = np.asarray(values, dtype=float)
            if times.ndim != 1 or values.ndim not in (1, 2) or values.shape[-1] != len(times):
                raise SimulationError(f"parameter_changes[{name!r}]: values must have shape (n_times,) or "
                                      f"(n_patients, n_times) with n_times = {len(times)}")
            try:
                values = np.broadcast_to(values, (n_patients, len(times)))
            except ValueError:
                raise SimulationError(f"parameter_changes[{name!r}]: {values.shape[0]} rows of values for "
                                      f"{n_patients} patients") from None
            if not (np.all(np.isfinite(times)) and np.all(times >= 0) and np.all(np.isfinite(values))):
                raise SimulationError(f"parameter_changes[{name!r}]: times must be finite and >= 0 h, values finite")
            for c, t in enumerate(times):
                rows.append((float(t), len(rows), names.index(name), values[:, c]))
        rows.sort(key=lambda r: (r[0], r[1]))  # by time, then in the order given
        return cls(times=np.array([r[0] for r in rows], dtype=float),
                   parameter=np.array([r[2] for r in rows], dtype=np.int64),
                   values=np.ascontiguousarray(np.array([r[3] for r in rows], dtype=float).reshape(len(rows), n_patients).T))

    @classmethod
    def none(cls, n_patients: int = 1) -> "ParameterChanges":
        return cls(np.zeros(0), np.zeros(0, np.int64), np.zeros((n_patients, 0)))

    def __len__(self) -> int:
        return int(self.times.shape[0])


@dataclass(frozen=True, eq=False)
class Segments:
    """One patient's schedule as segments of constant inputs (see the module docstring for the order of acts).

    Attributes
    ----------
    start, end : ndarray, shape (K,)
        Segment bounds (h); ``end[k] == start[k+1]``, the last segment has zero length.
    reset : ndarray of bool, shape (K,)
        The state returns to its initial value at ``start[k]`` (EVID 3/4), infusions stop.
    bolus : ndarray, shape (K, n_states)
        Bioavailable bolus amounts (F at ``reference`` applied) added at ``start[k]`` (model units).
    bolus_dose : ndarray, shape (K, n_states)
        The same boluses as nominal amounts (AMT, before F), for paths differentiable in F.
    rates : ndarray, shape (K, n_states)
        Zero-order input rates (units/h) in effect on [start[k], end[k]).
    ss_segment, ss_record : ndarray of int, shape (S,)
        Steady-state records to solve, in order: at the start of segment ``ss_segment[s]``, the row
        ``ss_record[s]`` of ``events``.
    obs_segment : ndarray of int, shape (n_obs,)
        Segment at whose start observation ``o`` is read.
    obs_pre : ndarray of bool, shape (n_obs,)
        Observation read before that segment's SS records and bolus (else after).
    obs_order : ndarray of int, shape (n_obs,)
        The observations in reading order.
    change_segment : ndarray of int, shape (C,)
        Segment at whose start parameter change ``c`` (of ``changes``) applies.
    changes : ParameterChanges
        Piecewise-constant parameters (values for one patient).
    events : ndarray, shape (n_events, 7)
        The event records (:func:`medtwin.core.events.event_matrix`).
    reference : ndarray, shape (n_parameters,)
        θ at which lag times, F and modelled rates/durations were evaluated.
    overflow : bool
        An SS record carried more running infusions than ``MAX_SS_RESIDUALS`` (the patient fails).
    """

    start: np.ndarray
    end: np.ndarray
    reset: np.ndarray
    bolus: np.ndarray
    bolus_dose: np.ndarray
    rates: np.ndarray
    ss_segment: np.ndarray
    ss_record: np.ndarray
    obs_segment: np.ndarray
    obs_pre: np.ndarray
    obs_order: np.ndarray
    change_segment: np.ndarray
    changes: ParameterChanges
    events: np.ndarray
    reference: np.ndarray
    overflow: bool

    @classmethod
    def from_arrays(cls, parts: tuple, *, changes: ParameterChanges, events: np.ndarray,
                    reference: np.ndarray) -> "Segments":
        """Wrap the tuple of :func:`segment_arrays` (built for ``events`` at ``reference``)."""
        return cls(*parts[:12], changes=changes, events=events, reference=reference, overflow=bool(parts[12]))

    @property
    def n_segments(self) -> int:
        return int(self.start.shape[0])

    @property
    def n_states(self) -> int:
        return int(self.rates.shape[1])

    def arrays(self) -> tuple:
        """The tuple handed to the numba kernels (the order of :func:`segment_arrays`)."""
        return (self.start, self.end, self.reset, self.bolus, self.bolus_dose, self.rates, self.ss_segment,
                self.ss_record, self.obs_segment, self.obs_pre, self.obs_order, self.change_segment,
                bool(self.overflow))


def compile_schedule(model, regimen: Regimen | None, times=(), theta=None, *, pre_dose=None,
                     parameter_changes=None) -> Segments:
    """Compile one patient's regimen and output times into :class:`Segments`.

    Parameters
    ----------
    model : Model
    regimen : Regimen or None
        NONMEM-style dose records; None: no doses.
    times : array_like, shape (n_obs,)
        Output times (h).
    theta : mapping or vector, optional
        Parameters setting F, lag times and modelled rates/durations (typical values when absent).
    pre_dose : bool array, shape (n_obs,), optional
        Outputs read before doses at the same time (NONMEM record order); default after.
    parameter_changes : mapping or ParameterChanges, optional
        ``{name: (times, values)}``: piecewise-constant parameters (h; the parameter's unit).

    Returns
    -------
    Segments
    """
    from medtwin.core.model import parameter_matrix  # the same parameter parsing and checks as simulate()

    reference = parameter_matrix(model, theta)[0]
    n = model.n_states
    ev = event_matrix(regimen if regimen is not None else Regimen(), n, model.default_cmt,
                      [t.cmt for t in model.dose_targets])
    times = np.ascontiguousarray(times, dtype=float).reshape(-1)
    pre = np.zeros(len(times), bool) if pre_dose is None else np.asarray(pre_dose, bool).reshape(-1)
    if len(pre) != len(times):
        raise SimulationError("pre_dose must give one flag per output time")
    changes = ParameterChanges.build(model, parameter_changes)
    global _plain_work
    build, size = segment_arrays, len(ev) + len(times)
    if size > JIT_ABOVE or _plain_work > JIT_AFTER or "medtwin.core.schedule_jit" in sys.modules:
        from medtwin.core.schedule_jit import segment_arrays as build  # the same code, compiled by numba
    else:
        _plain_work += size
    parts = build(reference, ev, times, pre, dose_parameter_index(model), n, changes.times)
    return Segments.from_arrays(parts, changes=changes, events=ev, reference=reference)


def scan_steps(segments: Segments, f_index: np.ndarray, multiple: int = 16) -> dict:
    """The segments as padded scan steps for the JAX paths (superposition, ODE steppers).

    Step k advances by ``dt[k]`` h with the rates ``rate[k]`` (units/h per state)
    running, then adds a bolus (``bolus_amt`` nominal amount into ``bolus_cmt``,
    times F(θ) = θ[bolus_f] when ``bolus_f >= 0``).  Observation ``o`` reads the
    state of step ``obs_step[o]`` after its advance, before its bolus.  A
    segment start becomes one step, plus a zero-length step per further dosed
    compartment and, when post-dose observations are read there, one after the
    boluses (so a patient costs no more steps than it has distinct times).  Padded with empty
    steps to ``multiple`` times a power of two, so that patients share a few
    compilations.  Resets, steady-state records and parameter changes are
    refused (the numba kernels handle them).

    Parameters
    ----------
    segments : Segments
    f_index : ndarray of int, shape (n_states,)
        Position of each compartment's bioavailability in θ (-1: none).
    multiple : int
        Smallest padded length.

    Returns
    -------
    dict
        ``dt`` (S,), ``rate`` (S, n_states), ``bolus_cmt`` (S,), ``bolus_amt`` (S,), ``bolus_f`` (S,),
        ``obs_step`` (n_obs,).
    """
    seg = segments
    if seg.reset.any() or len(seg.ss_segment) or seg.overflow or len(seg.change_segment):
        raise SimulationError("steady-state (SS), reset (EVID 3/4) records and parameter changes are not "
                              "supported by the JAX scan paths; use simulate()")
    n = seg.n_states
    dt, rate, cmt, amt = [], [], [], []
    obs_step = np.zeros(len(seg.obs_segment), np.int64)
    zero = np.zeros(n)
    for k in range(seg.n_segments):
        dosed = np.flatnonzero(seg.bolus[k])
        entry = len(dt)
        for j in range(max(1, len(dosed))):
            dt.append(seg.start[k] - seg.start[k - 1] if (k > 0 and j == 0) else 0.0)
            rate.append(seg.rates[k - 1] if (k > 0 and j == 0) else zero)
            cmt.append(int(dosed[j]) if len(dosed) else 0)
            amt.append(float(seg.bolus_dose[k, dosed[j]]) if len(dosed) else 0.0)
        mine = seg.obs_segment == k
        if len(dosed) and np.any(mine & ~seg.obs_pre):  # post-dose observations read after every bolus
            dt.append(0.0), rate.append(zero), cmt.append(0), amt.append(0.0)
        obs_step[mine & seg.obs_pre] = entry
        obs_step[mine & ~seg.obs_pre] = len(dt) - 1
    size = multiple
    while size < len(dt):  # powers of two: few distinct shapes, so few compilations across patients
        size *= 2
    used = len(dt)
    out = {"dt": np.zeros(size), "rate": np.zeros((size, n)), "bolus_cmt": np.zeros(size, np.int64),
           "bolus_amt": np.zeros(size), "bolus_f": np.full(size, -1, np.int64), "obs_step": obs_step}
    if used:
        out["dt"][:used], out["rate"][:used] = dt, np.array(rate)
        out["bolus_cmt"][:used], out["bolus_amt"][:used] = cmt, amt
        out["bolus_f"][:used] = np.where(np.array(amt) != 0.0, np.asarray(f_index)[np.array(cmt)], -1)
    return out
