"""Cohort fast path: exact solution of a linear model when every patient shares one schedule.

A virtual cohort usually shares the regimen and the output times; only θ varies.
The shared schedule then becomes a straight-line *program* (advance by h, bolus,
set infusion rate, observe) run over blocks of patients in structure-of-arrays
layout: Φ(h) = e^{Ah} and Γ(h) = ∫₀ʰ e^{As} ds are computed once per patient and
distinct step size, and every inner loop runs over the block's patients, so it
vectorises.  Outputs must be linear in the state (``Output.linear``).  Results
equal the general kernel's (tests/unit/test_simulate_paths.py).
A patient's result does not depend on which patients share its block (the matrix
exponential scales each lane by its own norm), so chunked and threaded runs agree bit for bit.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from medtwin.core.events import EV_CMT, EV_II, EV_SS
from medtwin.core.kernels import ST_NON_FINITE, ST_OK, expm_block, solve_small
from medtwin.core.schedule import dose_terms

OP_ADVANCE, OP_BOLUS, OP_RATE, OP_OBS, OP_ZERO, OP_PERIODIC = 0, 1, 2, 3, 4, 5
BLOCK = 512


def _steady_ops(seg, idx, steps: dict) -> dict | None:
    """Per segment: the ops of its SS=1 records, run at its start (see :func:`linear_program`).

    The state becomes the periodic one, as the general kernel's ``steady_state`` computes it for a linear
    model: from zero, one period of the record's dose (an infusion longer than II overlaps itself:
    ``n_full + 1`` then ``n_full`` times the rate), then ``x = (I - Φ(II))⁻¹ x`` per patient
    (:data:`OP_PERIODIC`); the rates in force before are restored.  None (the general kernel runs) for
    SS=2, a constant infusion (II = 0) or a lag time.
    """
    before = np.vstack([np.zeros((1, seg.n_states)), seg.rates[:-1]]).tolist()
    out: dict[int, list] = {}
    for k, r in zip(seg.ss_segment.tolist(), seg.ss_record.tolist()):
        row = seg.events[r]
        amt, rate, dur, lag = dose_terms(seg.reference, row, idx)
        ii, c = float(row[EV_II]), int(row[EV_CMT])
        if int(row[EV_SS]) != 1 or not ii > 0.0 or lag != 0.0:
            return None
        ops = [(OP_ZERO, 0, 0.0)]
        if dur == 0.0:
            ops += [(OP_BOLUS, c, amt), (OP_ADVANCE, steps.setdefault(ii, len(steps)), 0.0)]
        else:
            n_full = math.floor(dur / ii)
            mid = min(dur - n_full * ii, ii)
            ops.append((OP_RATE, c, rate * (n_full + 1)))
            if mid > 0.0:
                ops.append((OP_ADVANCE, steps.setdefault(mid, len(steps)), 0.0))
            ops.append((OP_RATE, c, rate * n_full))
            if ii - mid > 0.0:
                ops.append((OP_ADVANCE, steps.setdefault(ii - mid, len(steps)), 0.0))
        ops.append((OP_PERIODIC, steps.setdefault(ii, len(steps)), 0.0))
        ops += [(OP_RATE, j, v) for j, v in enumerate(before[k])]
        out.setdefault(k, []).extend(ops)
    return out


def _index(values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position in ``values`` (distinct floats) of each element of ``query`` (all present, compared exactly)."""
    order = np.argsort(values, kind="stable")
    return order[np.searchsorted(values[order], query)]


def linear_program(segments, idx=None):
    """Turn shared :class:`~medtwin.core.schedule.Segments` into a straight-line program for :func:`run_linear_blocks`.

    Returns (op_kind, op_int, op_float, step_sizes, uses_rates) or None when the schedule has resets or
    parameter changes, or steady-state records other than SS=1 with II > 0 and no lag time (or ``idx``, the
    model's dose-parameter index, is not given): the general kernel handles those.
    """
    seg = segments
    if seg.reset.any() or len(seg.change_segment) or seg.overflow or (len(seg.ss_segment) and idx is None):
        return None
    kinds, ints, floats = [], [], []
    steps: dict[float, int] = {}
    ss_at = _steady_ops(seg, idx, steps) if len(seg.ss_segment) else {}
    if ss_at is None:
        return None
    # Every op gets a sort key (segment, phase, order within the phase): phase 0 pre-dose reads, 1 steady-state
    # ops, 2 boluses then rate changes, 3 post-dose reads, 4 the advance; one stable sort lays out the program
    # (numpy, not a Python loop per segment: a 30-day schedule on a 15-min grid has thousands of segments).
    n_seg, n_st = seg.n_segments, seg.n_states
    order = np.asarray(seg.obs_order, np.int64)
    o_seg = np.asarray(seg.obs_segment, np.int64)[order]
    o_phase = np.where(np.asarray(seg.obs_pre, bool)[order], 0, 3)
    changed = np.diff(seg.rates, axis=0, prepend=np.zeros((1, n_st))) != 0.0
    b_seg, b_cmt = np.nonzero(seg.bolus != 0.0)
    r_seg, r_cmt = np.nonzero(changed)
    ss_list = [(k, kind, i, f) for k, ops in ss_at.items() for kind, i, f in ops]
    length = seg.end - seg.start
    a_seg = np.flatnonzero(length > 0)
    for h in np.unique(length[a_seg]).tolist():
        steps.setdefault(h, len(steps))
    a_idx = _index(np.array(list(steps), float), length[a_seg])  # a dict's keys keep their order: key i -> i
    parts = [  # (segment, phase, kind, int, float)
        (o_seg, o_phase, np.full(len(order), OP_OBS), order, np.zeros(len(order))),
        (np.array([k for k, *_ in ss_list], np.int64), np.ones(len(ss_list), np.int64),
         np.array([kind for _, kind, _, _ in ss_list], np.int64), np.array([i for _, _, i, _ in ss_list], np.int64),
         np.array([f for *_, f in ss_list], float)),
        (b_seg, np.full(len(b_seg), 2), np.full(len(b_seg), OP_BOLUS), b_cmt, seg.bolus[b_seg, b_cmt]),
        (r_seg, np.full(len(r_seg), 2), np.full(len(r_seg), OP_RATE), r_cmt, seg.rates[r_seg, r_cmt]),
        (a_seg, np.full(len(a_seg), 4), np.full(len(a_seg), OP_ADVANCE), a_idx, np.zeros(len(a_seg)))]
    segs, phases, kinds_, ints_, floats_ = (np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(5))
    perm = np.lexsort((phases, segs))  # stable: within a (segment, phase) the order above
    kinds, ints, floats = kinds_[perm].astype(np.int64), ints_[perm].astype(np.int64), floats_[perm].astype(float)
    step_sizes = np.array(sorted(steps, key=steps.get), dtype=float)
    ss_rates = any(kind == OP_RATE and f != 0.0 for ops in ss_at.values() for kind, _, f in ops)
    return (kinds, ints, floats, step_sizes,
            bool(np.any(seg.rates != 0.0)) or ss_rates)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def run_linear_blocks(matrix, outputs, init, n, n_out, P, op_kind, op_int, op_float, step_sizes, uses_rates,
                      n_times, out, states_out, keep_states, status, lo, hi):
    """Exact solution of a linear model on a shared schedule, patients ``lo:hi``, in SoA blocks.

    Outputs must be linear in the state (``Output.linear``): their weights are
    read once per patient by evaluating them at unit states.  ``out`` is
    time-major, shape (n_times, n_outputs, n_patients), so that every write is
    contiguous across the block's patients.
    """
    n_par = P.shape[1]
    n_h = step_sizes.shape[0]
    a = np.zeros((n, n, BLOCK))
    phi = np.zeros((n_h, n, n, BLOCK))
    gam = np.zeros((n_h, n, n, BLOCK))
    w = np.zeros((n_out, n, BLOCK))
    x = np.zeros((n, BLOCK))
    xn = np.zeros((n, BLOCK))
    r = np.zeros(n)
    p = np.zeros(n_par)
    flat = np.zeros(n * n)
    unit = np.zeros(n)
    y = np.zeros(n_out)
    x0 = np.zeros(n)
    for start in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - start)
        a[:, :, :] = 0.0  # unused lanes of a short last block stay finite
        x[:, :] = 0.0
        for b in range(m):
            for k in range(n_par):
                p[k] = P[start + b, k]
            matrix(p.ctypes, flat.ctypes)
            for i in range(n):
                for j in range(n):
                    a[i, j, b] = flat[i * n + j]
            for j in range(n):
                unit[:] = 0.0
                unit[j] = 1.0
                outputs(unit.ctypes, p.ctypes, y.ctypes)
                for o in range(n_out):
                    w[o, j, b] = y[o]
            init(p.ctypes, x0.ctypes)
            for j in range(n):
                x[j, b] = x0[j]
        for hidx in range(n_h):
            expm_block(a, step_sizes[hidx], phi[hidx], gam[hidx], uses_rates, m)
        # Flat views, taken once per block: the op loop below creates no array views (each view costs an
        # atomic reference-count update) and its inner loops over the block's patients vectorise.
        phf = phi.reshape(-1)
        gmf = gam.reshape(-1)
        xf = x.reshape(-1)
        xnf = xn.reshape(-1)
        wf = w.reshape(-1)
        nn = n * n * BLOCK
        r[:] = 0.0
        any_rate = False
        for op in range(op_kind.shape[0]):
            kind = op_kind[op]
            if kind == OP_ADVANCE:
                h0 = op_int[op] * nn
                for i in range(n):
                    oi = i * BLOCK
                    for b in range(m):
                        xnf[oi + b] = 0.0
                    for j in range(n):
                        om = h0 + (i * n + j) * BLOCK
                        oj = j * BLOCK
                        for b in range(m):
                            xnf[oi + b] += phf[om + b] * xf[oj + b]
                        if any_rate and r[j] != 0.0:
                            rj = r[j]
                            for b in range(m):
                                xnf[oi + b] += gmf[om + b] * rj
                xf, xnf = xnf, xf  # the new state becomes current without a copy
            elif kind == OP_OBS:
                row = op_int[op]
                for o in range(n_out):
                    dest = out[row, o, start:start + m]
                    w0 = o * n * BLOCK
                    for b in range(m):
                        dest[b] = wf[w0 + b] * xf[b]
                    for j in range(1, n):
                        ow = w0 + j * BLOCK
                        oj = j * BLOCK
                        for b in range(m):
                            dest[b] += wf[ow + b] * xf[oj + b]
                if keep_states:
                    for b in range(m):
                        for j in range(n):
                            states_out[(start + b) * n_times + row, j] = xf[j * BLOCK + b]
            elif kind == OP_BOLUS:
                oc = op_int[op] * BLOCK
                amt = op_float[op]
                for b in range(m):
                    xf[oc + b] += amt
            elif kind == OP_ZERO:
                for i in range(n):
                    for b in range(m):
                        xf[i * BLOCK + b] = 0.0
            elif kind == OP_PERIODIC:
                _periodic(phi[op_int[op]], xf, n, m)
            else:
                r[op_int[op]] = op_float[op]
                any_rate = False
                for j in range(n):
                    if r[j] != 0.0:
                        any_rate = True
        for b in range(m):
            ok = True
            for j in range(n):
                if not math.isfinite(xf[j * BLOCK + b]):
                    ok = False
            status[start + b] = ST_OK if ok else ST_NON_FINITE


@nb.njit(cache=True, nogil=True)
def _periodic(phi, xf, n, m):
    """x = (I - Φ)⁻¹ x per patient (the first ``m`` lanes of the flat SoA state ``xf``): the steady state."""
    lhs = np.empty((n, n))
    rhs = np.empty(n)
    for b in range(m):
        for i in range(n):
            for j in range(n):
                lhs[i, j] = (1.0 if i == j else 0.0) - phi[i, j, b]
            rhs[i] = xf[i * BLOCK + b]
        sol = solve_small(lhs, rhs)
        for i in range(n):
            xf[i * BLOCK + b] = sol[i]
