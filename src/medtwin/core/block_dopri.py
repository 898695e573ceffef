"""Cohort fast path for nonlinear models: adaptive Dormand–Prince 5(4) over blocks of patients.

When every patient of a cohort shares one schedule (same regimen, same output
times, same lag/F/rate parameters) only θ differs, so the patients can be
stepped side by side.  The patients of a block of :data:`BLOCK` lanes are held
in structure-of-arrays layout (state ``x[j, b]``), and the model enters as two
*block* callbacks generated from its one definition — the vector field and the
outputs evaluated for all lanes in one call — so the indirect call is paid once
per stage and block instead of once per stage and patient, and the lane loop
inside the callback (the model's arithmetic inlined) vectorises.

Step-size control is **per patient**: every lane has its own time, step size,
error norm (the same RMS norm, controller and initial-step heuristic as the
per-patient kernel :func:`medtwin.core.kernels.advance_dopri`) and step count;
a lane that has reached the segment end waits (its arithmetic continues on a
zero step and is discarded) until the block's slowest lane arrives.  So a
patient's result does not depend on which patients share its block, and equals
the per-patient kernel's up to rounding.  The stage k₇ of an accepted step is
the next step's k₁ (FSAL) within a segment.

Supported: boluses, infusions (zero-order rates), resets, pre/post-dose
observations.  Steady-state records, parameter changes and overflowed schedules
go to the per-patient kernel (:func:`applies`), and so do cohorts smaller than :data:`MIN_PATIENTS`
unless ``kernel="block"`` is asked for.

Examples
--------
>>> from medtwin import Regimen, get_model, simulate
>>> m = get_model("pk1_iv_mm")
>>> fast = simulate(m, {"VMAX": [5.0, 8.0]}, Regimen.single(100.0), [1.0, 6.0], keep_states=False,
...                 kernel="block")
>>> slow = simulate(m, {"VMAX": [5.0, 8.0]}, Regimen.single(100.0), [1.0, 6.0], keep_states=False,
...                 kernel="patient")
>>> fast.extra["kernel"], slow.extra["kernel"], bool(abs(fast.output("C") - slow.output("C")).max() < 1e-9)
('block', 'patient', True)
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types

from medtwin.core.kernels import ST_MAX_STEPS, ST_NON_FINITE, ST_OK, ST_SMALL

__all__ = ["BLOCK", "BUILD_OPTIONS", "MIN_PATIENTS", "applies", "block_callback_source", "block_callbacks",
           "block_namespace", "block_source", "compile_block_callbacks", "run_dopri_blocks"]

#: Patients stepped side by side (lanes of one block).
BLOCK = 32
#: ``simulate(kernel="auto")`` uses the block kernel from this many patients on (its per-model callbacks
#: take seconds to compile once per process, unless a process edge loads them from disk:
#: :func:`medtwin.io.jax_cache.warm_block_callbacks`; the per-patient kernel does ~2,500 patients per CPU-second).
MIN_PATIENTS = 512

_DBL = types.CPointer(types.float64)
BLOCK_RHS_SIG = types.void(_DBL, _DBL, _DBL, _DBL)  # f(t[B]*, x[n,B]*, p[n_par,B]*, out[n,B]*)
BLOCK_OUT_SIG = types.void(_DBL, _DBL, _DBL)  # y(x[n,B]*, p[n_par,B]*, out[n_out,B]*)
BLOCK_STEP_SIG = types.void(*(_DBL,) * 9)  # step(t, h, x, p, r, k1, xn, k7, err): see block_step_source
# Contraction to FMA, reciprocal and signed-zero freedom only: NaN/inf stay detectable (no "nnan"/"ninf").
_FAST = {"contract", "arcp", "nsz"}

# Dormand–Prince 5(4) tableau (Hairer, Nørsett & Wanner, Table II.5.2), written out: numba folds them.
C2, C3, C4, C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
A21 = 1 / 5
A31, A32 = 3 / 40, 9 / 40
A41, A42, A43 = 44 / 45, -56 / 15, 32 / 9
A51, A52, A53, A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
A61, A62, A63, A64, A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
A71, A73, A74, A75, A76 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
E1, E3, E4, E5, E6, E7 = (35 / 384 - 5179 / 57600, 500 / 1113 - 7571 / 16695, 125 / 192 - 393 / 640,
                          -2187 / 6784 + 92097 / 339200, 11 / 84 - 187 / 2100, -1 / 40)


# ----------------------------------------------------------------- per-model block callbacks
def block_callback_source(model, block: int = BLOCK) -> str:
    """Python source of the block callbacks (sizes written in as literals; ``f``, ``o<k>`` from the namespace).

    ``rhs_block_into`` evaluates the vector field of every lane, ``outputs_block_into`` every output;
    a lane's state and θ are handed to the model's functions as tuples.
    """
    n, n_par, n_out = model.n_states, len(model.parameters), len(model.outputs)
    xs = ", ".join(f"x[{j}, b]" for j in range(n)) + ","
    ps = ", ".join(f"p[{i}, b]" for i in range(n_par)) + ","
    rhs_lines = "\n".join(f"        out[{j}, b] = d[{j}]" for j in range(n))
    out_lines = "\n".join(f"        out[{k}, b] = o{k}(xv, pv)" for k in range(n_out))
    return (
        "def rhs_block_into(tp, xp, pp, op):\n"
        f"    t = nb.carray(tp, ({block},)); x = nb.carray(xp, ({n}, {block}))\n"
        f"    p = nb.carray(pp, ({n_par}, {block})); out = nb.carray(op, ({n}, {block}))\n"
        f"    for b in range({block}):\n"
        f"        d = f(t[b], ({xs}), ({ps}))\n{rhs_lines}\n\n\n"
        "def outputs_block_into(xp, pp, op):\n"
        f"    x = nb.carray(xp, ({n}, {block})); p = nb.carray(pp, ({n_par}, {block}))\n"
        f"    out = nb.carray(op, ({n_out}, {block}))\n"
        f"    for b in range({block}):\n"
        f"        xv = ({xs})\n        pv = ({ps})\n{out_lines}\n"
    )


def block_step_source(model, block: int = BLOCK) -> str:
    """Python source of ``step_block_into``: one Dormand–Prince step of every lane, the model inlined.

    Given each lane's time ``t``, step ``h``, state ``x`` and first slope ``k1`` (``f(t, x)`` + rates), it
    writes the 5th-order solution ``xn``, its slope ``k7`` (the next step's k1) and the squared scaled error
    sum Σ_j (e_j / (atol + rtol·max(|x_j|, |xn_j|)))².  ``r`` holds the infusion rates (n) then rtol, atol.
    Every intermediate is a scalar of the lane loop, so the loop vectorises over the block's lanes.
    """
    n, n_par = model.n_states, len(model.parameters)
    tab = {2: (C2, (A21,)), 3: (C3, (A31, A32)), 4: (C4, (A41, A42, A43)), 5: (C5, (A51, A52, A53, A54)),
           6: (1.0, (A61, A62, A63, A64, A65))}
    ps = ", ".join(f"p[{i}, b]" for i in range(n_par)) + ","
    body = [f"        t = tt[b]\n        h = hh[b]\n        pv = ({ps})"]
    body += [f"        x{j} = x[{j}, b]\n        s1_{j} = k1[{j}, b]" for j in range(n)]

    def combo(coef, stages, j):
        return " + ".join(f"{c!r} * s{q}_{j}" for c, q in zip(coef, stages) if c != 0.0)

    for s, (c, coef) in tab.items():
        point = ", ".join(f"x{j} + h * ({combo(coef, range(1, s), j)})" for j in range(n)) + ","
        body.append(f"        d = f(t + {c!r} * h, ({point}), pv)")
        body += [f"        s{s}_{j} = d[{j}] + r{j}" for j in range(n)]
    fifth = (A71, 0.0, A73, A74, A75, A76)
    body += [f"        xn{j} = x{j} + h * ({combo(fifth, range(1, 7), j)})" for j in range(n)]
    body.append(f"        d = f(t + h, ({', '.join(f'xn{j}' for j in range(n))},), pv)")
    body += [f"        s7_{j} = d[{j}] + r{j}" for j in range(n)]
    body.append("        acc = 0.0")
    errc = (E1, 0.0, E3, E4, E5, E6, E7)
    for j in range(n):
        body.append(f"        e = h * ({combo(errc, range(1, 8), j)}) / (atol + rtol * max(abs(x{j}), abs(xn{j})))")
        body.append("        acc += e * e")
    body += [f"        xn[{j}, b] = xn{j}\n        k7[{j}, b] = s7_{j}" for j in range(n)]
    body.append("        err[b] = acc")
    head = (
        "def step_block_into(tp, hp, xp, pp, rp, k1p, xnp, k7p, ep):\n"
        f"    tt = nb.carray(tp, ({block},)); hh = nb.carray(hp, ({block},)); x = nb.carray(xp, ({n}, {block}))\n"
        f"    p = nb.carray(pp, ({n_par}, {block})); r = nb.carray(rp, ({n + 2},))\n"
        f"    k1 = nb.carray(k1p, ({n}, {block})); xn = nb.carray(xnp, ({n}, {block}))\n"
        f"    k7 = nb.carray(k7p, ({n}, {block})); err = nb.carray(ep, ({block},))\n"
        + "".join(f"    r{j} = r[{j}]\n" for j in range(n))
        + f"    rtol = r[{n}]\n    atol = r[{n + 1}]\n"
        f"    for b in range({block}):\n"
    )
    return head + "\n".join(body) + "\n"


def block_namespace(model) -> dict:
    """The names the block sources refer to: the model's functions lifted with ``numba.njit``."""
    env = {"nb": nb, "f": model.rhs(nb.njit)}
    env.update({f"o{k}": fn for k, fn in enumerate(model.output_functions(nb.njit))})
    return env


def block_source(model) -> str:
    """The whole generated source of the block callbacks (:func:`block_callback_source` + :func:`block_step_source`)."""
    return block_callback_source(model) + "\n\n" + block_step_source(model)


#: What the compiled block callbacks depend on besides their source and namespace (an on-disk cache keys by it).
BUILD_OPTIONS = repr((BLOCK, str(BLOCK_RHS_SIG), str(BLOCK_OUT_SIG), str(BLOCK_STEP_SIG), "numpy", sorted(_FAST)))


def compile_block_callbacks(namespace: dict, *, cache: bool = False) -> dict:
    """numba C callbacks of the block functions defined in ``namespace`` (from :func:`block_source`).

    ``cache=True`` keeps the machine code in numba's on-disk cache next to the file the functions were defined
    in: only a process edge that wrote that file (:func:`medtwin.io.jax_cache.warm_block_callbacks`) asks for
    it; the core itself writes nothing (as :func:`medtwin.core.kernels.compile_callbacks`).
    """
    return {
        "rhs": nb.cfunc(BLOCK_RHS_SIG, error_model="numpy", cache=cache)(namespace["rhs_block_into"]),
        "outputs": nb.cfunc(BLOCK_OUT_SIG, error_model="numpy", cache=cache)(namespace["outputs_block_into"]),
        "step": nb.cfunc(BLOCK_STEP_SIG, error_model="numpy", fastmath=_FAST, cache=cache)(
            namespace["step_block_into"]),
    }


def block_callbacks(model) -> dict:
    """Compile the block callbacks of ``model`` (numba ``cfunc``, in memory): ``{"rhs", "outputs", "step"}``."""
    env = block_namespace(model)
    exec(compile(block_source(model), "<block_callbacks>", "exec"), env)
    return compile_block_callbacks(env)


def applies(segments) -> bool:
    """True when the shared schedule has only what the block kernel steps (no SS records, no θ changes)."""
    return not (len(segments.ss_segment) or len(segments.change_segment) or segments.overflow)


# ----------------------------------------------------------------- the block stepper
_ONE_BITS = float(np.float64(1.0).view(np.int64))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _step_factors(err, n, fac, ebuf):
    """fac[b] = min(5, max(0.2, 0.9·ε_b^(-1/5))), ε_b = sqrt(err[b] / n): the controller of every lane.

    Vectorised (no ``pow`` call per lane): ε is clamped to [1e-4, 1e4] (outside it the factor is clamped
    anyway), a first guess of ε^(-1/5) is read off the float's bit pattern (bits(ε^a) ≈ a·bits(ε) + (1−a)·bits(1),
    within a few %) and four Newton steps y ← y(6 − ε y⁵)/5 bring it to rounding level.
    A non-finite ε gives 0.2 (the caller treats such a lane separately).
    """
    bits = fac.view(np.int64)
    for b in range(BLOCK):
        e = math.sqrt(err[b] / n)
        e = e if e >= 1e-4 else 1e-4  # (also replaces NaN)
        e = e if e <= 1e4 else 1e4
        ebuf[b] = e
        bits[b] = np.int64(1.2 * _ONE_BITS - 0.2 * float(ebuf.view(np.int64)[b]))
    for b in range(BLOCK):
        e = ebuf[b]
        y = fac[b]
        for _ in range(4):
            y2 = y * y
            y = y * (6.0 - e * (y2 * y2 * y)) * 0.2
        fac[b] = min(5.0, max(0.2, 0.9 * y))


@nb.njit(cache=True, nogil=True, inline="always")
def _eval(rhs, t, x, p, rates, k):
    """k = f(t, x) + rates for every lane."""
    rhs(t.ctypes, x.ctypes, p.ctypes, k.ctypes)
    for j in range(k.shape[0]):
        r = rates[j]
        if r != 0.0:
            for b in range(BLOCK):
                k[j, b] += r


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _advance_block(rhs, step, x, p, t0, t1, rates, rv, h, run, status, steps, w, tt, fac, ebuf, hh, err, last,
                   rtol, atol, max_steps):
    """Integrate every running lane from ``t0`` to ``t1`` h (per-lane step-size control; see the module doc).

    ``step`` is the model's fused step (:func:`block_step_source`); ``w`` (3, n, B) is work space (k1, k7,
    the new state), ``rv`` (n + 2,) the rates and tolerances handed to ``step``.  ``h`` carries each lane's step
    size between segments (<= 0: choose one); ``run`` marks the lanes to integrate (cleared as they finish).
    """
    n = x.shape[0]
    k1, k7, xs = w[0], w[1], w[2]
    for j in range(n):
        rv[j] = rates[j]
    rv[n] = rtol
    rv[n + 1] = atol
    span = t1 - t0
    need_h = False
    for b in range(BLOCK):
        tt[b] = t0
        if run[b] and h[b] <= 0.0:
            need_h = True
    have_k1 = False
    if need_h:  # Hairer's initial step heuristic (simplified), as the per-patient kernel
        _eval(rhs, tt, x, p, rates, k1)
        have_k1 = True
        for b in range(BLOCK):
            if run[b] and h[b] <= 0.0:
                d0 = 0.0
                d1 = 0.0
                for j in range(n):
                    sc = atol + rtol * abs(x[j, b])
                    d0 += (x[j, b] / sc) ** 2
                    d1 += (k1[j, b] / sc) ** 2
                d0 = math.sqrt(d0 / n)
                d1 = math.sqrt(d1 / n)
                hb = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
                h[b] = min(hb, span)
    tol_end = t1 - 1e-12 * max(1.0, abs(t1))
    while True:
        any_run = False
        for b in range(BLOCK):
            if run[b]:
                any_run = True
                lst = tt[b] + h[b] >= tol_end
                last[b] = lst
                hh[b] = t1 - tt[b] if lst else h[b]
            else:
                hh[b] = 0.0
        if not any_run:
            break
        if not have_k1:
            _eval(rhs, tt, x, p, rates, k1)
        step(tt.ctypes, hh.ctypes, x.ctypes, p.ctypes, rv.ctypes, k1.ctypes, xs.ctypes, k7.ctypes, err.ctypes)
        _step_factors(err, n, fac, ebuf)
        for b in range(BLOCK):
            if not run[b]:
                continue
            if steps[b] >= max_steps:
                status[b] = ST_MAX_STEPS
                run[b] = False
                continue
            steps[b] += 1
            eb = math.sqrt(err[b] / n)
            if not math.isfinite(eb):
                h[b] = 0.25 * hh[b]
                if h[b] < 1e-14 * max(1.0, abs(tt[b])):
                    status[b] = ST_NON_FINITE
                    run[b] = False
                continue
            if eb <= 1.0:
                tt[b] = t1 if last[b] else tt[b] + hh[b]
                for j in range(n):
                    x[j, b] = xs[j, b]
                    k1[j, b] = k7[j, b]
                # A step cut short to land on t1 says little about the next step size.
                h[b] = max(h[b], hh[b] * fac[b]) if last[b] else hh[b] * fac[b]
                if last[b]:
                    run[b] = False
            else:
                h[b] = hh[b] * fac[b]
                if h[b] < 1e-14 * max(1.0, abs(tt[b])):
                    status[b] = ST_SMALL
                    run[b] = False
        have_k1 = True


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _read(outputs, x, p, y, status, m, start, row, n_times, out, states_out, keep_states):
    """Write the outputs (and states) of lanes ``0:m`` at observation ``row`` (NaN for failed lanes)."""
    outputs(x.ctypes, p.ctypes, y.ctypes)
    n_out = y.shape[0]
    n = x.shape[0]
    for b in range(m):
        r = (start + b) * n_times + row
        ok = status[b] == ST_OK
        for o in range(n_out):
            out[r, o] = y[o, b] if ok else np.nan
        if keep_states:
            for j in range(n):
                states_out[r, j] = x[j, b] if ok else np.nan


@nb.njit(cache=True, nogil=True, error_model="numpy")
def run_dopri_blocks(rhs, step, outputs, init, n, n_out, P, seg_start, seg_end, reset, bolus, rates_seg, obs_segment,
                     obs_pre, obs_order, n_times, out, states_out, keep_states, rtol, atol, max_steps, status, lo,
                     hi):
    """Patients ``lo:hi`` of a cohort sharing one schedule, stepped in blocks of :data:`BLOCK` lanes.

    ``rhs``/``step``/``outputs`` are the model's block callbacks (:func:`block_callbacks`), ``init`` its per-patient
    initial-state callback; the ``seg_*``, ``reset``, ``bolus``, ``rates_seg`` and ``obs_*`` arrays are the
    shared :class:`~medtwin.core.schedule.Segments` fields.  ``out`` is (n_patients * n_times, n_out) in
    patient-major rows (as the per-patient kernel writes it); statuses go to ``status[lo:hi]``.
    Releases the GIL: the caller runs ranges on several threads.
    """
    n_par = P.shape[1]
    x = np.zeros((n, BLOCK))
    pb = np.zeros((n_par, BLOCK))
    w = np.zeros((3, n, BLOCK))
    rv = np.zeros(n + 2)
    y = np.zeros((n_out, BLOCK))
    h = np.zeros(BLOCK)
    tt = np.zeros(BLOCK)
    fac = np.zeros(BLOCK)
    ebuf = np.zeros(BLOCK)
    hh = np.zeros(BLOCK)
    err = np.zeros(BLOCK)
    last = np.zeros(BLOCK, np.bool_)
    run = np.zeros(BLOCK, np.bool_)
    st = np.zeros(BLOCK, np.int64)
    steps = np.zeros(BLOCK, np.int64)
    rates = np.zeros(n)
    prow = np.zeros(n_par)
    x0 = np.zeros(n)
    n_obs = obs_segment.shape[0]
    for first in range(lo, hi, BLOCK):
        m = min(BLOCK, hi - first)
        for b in range(BLOCK):  # lanes past the cohort's end repeat its first patient (finite, discarded)
            i = first + b if b < m else first
            for k in range(n_par):
                pb[k, b] = P[i, k]
            st[b] = ST_OK
            steps[b] = 0
            h[b] = 0.0
        _init_lanes(init, pb, prow, x0, x, st, h, True)
        o = 0
        for k in range(seg_start.shape[0]):
            if reset[k]:
                _init_lanes(init, pb, prow, x0, x, st, h, False)
            for phase in range(2):  # 0: pre-dose reads; 1: bolus, then post-dose reads
                if phase == 1:
                    for j in range(n):
                        if bolus[k, j] != 0.0:
                            for b in range(BLOCK):
                                x[j, b] += bolus[k, j]
                while o < n_obs and obs_segment[obs_order[o]] == k and (phase == 1 or obs_pre[obs_order[o]]):
                    _read(outputs, x, pb, y, st, m, first, obs_order[o], n_times, out, states_out, keep_states)
                    o += 1
            if seg_end[k] > seg_start[k]:
                any_ok = False
                for b in range(BLOCK):
                    run[b] = st[b] == ST_OK
                    any_ok = any_ok or run[b]
                if any_ok:
                    for j in range(n):
                        rates[j] = rates_seg[k, j]
                    _advance_block(rhs, step, x, pb, seg_start[k], seg_end[k], rates, rv, h, run, st, steps, w, tt,
                                   fac, ebuf, hh, err, last, rtol, atol, max_steps)
                    _calm_failed(x, x0, st)
        for b in range(m):
            if st[b] == ST_OK:
                for j in range(n):
                    if not math.isfinite(x[j, b]):
                        st[b] = ST_NON_FINITE
            status[first + b] = st[b]


@nb.njit(cache=True, nogil=True)
def _init_lanes(init, pb, prow, x0, x, st, h, every):
    """Initial state of the lanes (every lane, or the still-running ones at a reset); step sizes restart."""
    n_par = pb.shape[0]
    for b in range(BLOCK):
        if every or st[b] == ST_OK:
            for k in range(n_par):
                prow[k] = pb[k, b]
            init(prow.ctypes, x0.ctypes)
            for j in range(x.shape[0]):
                x[j, b] = x0[j]
            h[b] = 0.0


@nb.njit(cache=True, nogil=True)
def _calm_failed(x, x0, st):
    """A failed lane keeps computing (discarded): give it a finite state so it cannot disturb the others."""
    for b in range(BLOCK):
        if st[b] != ST_OK:
            for j in range(x.shape[0]):
                x[j, b] = 0.0
