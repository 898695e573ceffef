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
    # Plain Python lists: the loop below runs once per segment, numpy calls per segment would dominate.
    reads: list[list[int]] = [[] for _ in range(seg.n_segments)]
    for o in seg.obs_order.tolist():
        reads[seg.obs_segment[o]].append(o)
    pre = seg.obs_pre.tolist()
    changed = np.diff(seg.rates, axis=0, prepend=np.zeros((1, seg.n_states))) != 0.0
    bolus, rates, length = seg.bolus.tolist(), seg.rates.tolist(), (seg.end - seg.start).tolist()
    dosed = np.flatnonzero(seg.bolus.any(axis=1) | changed.any(axis=1)).tolist()
    acts = {k: ([c for c in range(seg.n_states) if bolus[k][c] != 0.0], np.flatnonzero(changed[k]).tolist())
            for k in dosed}
    for k in range(seg.n_segments):
        for r in reads[k]:
            if pre[r]:
                kinds.append(OP_OBS), ints.append(r), floats.append(0.0)
        for kind, i, f in ss_at.get(k, ()):
            kinds.append(kind), ints.append(i), floats.append(f)
        for c in acts.get(k, ((), ()))[0]:
            kinds.append(OP_BOLUS), ints.append(c), floats.append(bolus[k][c])
        for c in acts.get(k, ((), ()))[1]:
            kinds.append(OP_RATE), ints.append(c), floats.append(rates[k][c])
        for r in reads[k]:
            if not pre[r]:
                kinds.append(OP_OBS), ints.append(r), floats.append(0.0)
        if length[k] > 0:
            kinds.append(OP_ADVANCE), ints.append(steps.setdefault(length[k], len(steps))), floats.append(0.0)
    step_sizes = np.array(sorted(steps, key=steps.get), dtype=float)
    ss_rates = any(kind == OP_RATE and f != 0.0 for ops in ss_at.values() for kind, _, f in ops)
    return (np.array(kinds, np.int64), np.array(ints, np.int64), np.array(floats, float), step_sizes,
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
                    for b in range(BLOCK):
                        xnf[oi + b] = 0.0
                    for j in range(n):
                        om = h0 + (i * n + j) * BLOCK
                        oj = j * BLOCK
                        for b in range(BLOCK):
                            xnf[oi + b] += phf[om + b] * xf[oj + b]
                        if any_rate and r[j] != 0.0:
                            rj = r[j]
                            for b in range(BLOCK):
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
                for b in range(BLOCK):
                    xf[oc + b] += amt
            elif kind == OP_ZERO:
                for b in range(n * BLOCK):
                    xf[b] = 0.0
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
