"""Compiled (numba) per-patient kernels: event schedule, integrators, steady state.

The numerical kernels are generic and compiled once per machine (numba's
on-disk cache).  A model enters them as four small C callbacks (``cfunc``)
generated from its single definition — vector field, initial state, outputs
and (linear models) system matrix — each ``f(..., out*)`` writing into an
array.  So a new model costs well under a second of compilation, not a
recompilation of the solvers.

A patient's run steps over its *segments* (:mod:`medtwin.core.schedule`, the
one place where NONMEM event semantics become piecewise-constant inputs): at
each segment start it applies the parameter changes, reset, steady-state
records and bolus and reads the observations, then integrates to the segment
end with the segment's infusion rates, by the chosen method.

Methods: ``"exact"`` (matrix exponential of a linear model by scaling and
squaring of the Taylor series, carrying Γ(h) = ∫₀ʰ e^{As} ds for infusions),
``"dopri5"`` (adaptive Dormand–Prince 5(4), standard step controller), and
fixed-step ``"euler"`` (order 1), ``"heun"`` (2), ``"rk4"`` (4), used for
convergence-order verification.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import types

from medtwin.core.events import EV_CMT, EV_II, EV_SS
from medtwin.core.schedule import dose_parameter_index  # noqa: F401  (re-export)
from medtwin.core.schedule_jit import dose_terms, segment_arrays
from medtwin.core.status import Status

# Plain ints for numba, taken from the one definition of the status values.
ST_OK, ST_MAX_STEPS, ST_NON_FINITE, ST_SS, ST_SMALL, ST_OVERFLOW = (
    int(Status.OK), int(Status.MAX_STEPS), int(Status.NON_FINITE), int(Status.STEADY_STATE_NOT_CONVERGED),
    int(Status.STEP_TOO_SMALL), int(Status.SCHEDULE_OVERFLOW),
)
METHOD_CODES = {"exact": 0, "euler": 1, "heun": 2, "rk4": 4, "dopri5": 5}
FIXED_ORDERS = {"euler": 1, "heun": 2, "rk4": 4}
METHODS = tuple(METHOD_CODES)

_DBL = types.CPointer(types.float64)
RHS_SIG = types.void(types.float64, _DBL, _DBL, _DBL)  # f(t, x*, p*, out*)
MAP_SIG = types.void(_DBL, _DBL)  # g(p*, out*): initial state, system matrix (row-major)
OUT_SIG = types.void(_DBL, _DBL, _DBL)  # y(x*, p*, out*)

# Dormand–Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Nørsett & Wanner, Table II.5.2).
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
DP_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
DP_A = np.zeros((7, 7))
for _i, _row in enumerate(_A):
    DP_A[_i, : len(_row)] = _row
_B5 = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0])
_B4 = np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
DP_E = _B5 - _B4


# ----------------------------------------------------------------- per-model callbacks
def callback_source(model) -> str:
    """The Python source of the callbacks of :func:`model_callbacks` (sizes written in as literals)."""
    n, n_par, n_out = model.n_states, len(model.parameters), len(model.outputs)
    unroll = "\n".join(f"    out[{j}] = d[{j}]" for j in range(n))
    outs = "\n".join(f"    out[{k}] = o{k}(x, p)" for k in range(n_out))
    source = (
        "def rhs_into(t, xp, pp, op):\n"
        f"    x = nb.carray(xp, ({n},)); p = nb.carray(pp, ({n_par},)); out = nb.carray(op, ({n},))\n"
        f"    d = f(t, x, p)\n{unroll}\n\n\n"
        "def init_into(pp, op):\n"
        f"    p = nb.carray(pp, ({n_par},)); out = nb.carray(op, ({n},))\n"
        f"    d = x0(p)\n{unroll}\n\n\n"
        "def outputs_into(xp, pp, op):\n"
        f"    x = nb.carray(xp, ({n},)); p = nb.carray(pp, ({n_par},)); out = nb.carray(op, ({n_out},))\n"
        f"{outs}\n"
    )
    if model.linear_matrix is not None:
        cells = "\n".join(f"    out[{i * n + j}] = m[{i}][{j}]" for i in range(n) for j in range(n))
        source += ("\n\ndef matrix_into(pp, op):\n"
                   f"    p = nb.carray(pp, ({n_par},)); out = nb.carray(op, ({n * n},))\n"
                   f"    m = a(p)\n{cells}\n")
    return source


def callback_namespace(model) -> dict:
    """The names :func:`callback_source` refers to: the model's functions lifted with ``numba.njit``."""
    env = {"nb": nb, "f": model.rhs(nb.njit), "x0": model.init(nb.njit)}
    env.update({f"o{k}": fn for k, fn in enumerate(model.output_functions(nb.njit))})
    if model.linear_matrix is not None:
        env["a"] = nb.njit(model.linear_matrix)
    return env


def compile_callbacks(namespace: dict, *, cache: bool = False) -> dict:
    """numba C callbacks of the ``*_into`` functions defined in ``namespace`` (from :func:`callback_source`).

    ``cache=True`` keeps the machine code in numba's on-disk cache next to the file the functions were
    defined in: only a process edge that wrote that file (:func:`medtwin.io.jax_cache.warm_model_callbacks`)
    asks for it; the core itself writes nothing.
    """
    callbacks = {
        "rhs": nb.cfunc(RHS_SIG, cache=cache)(namespace["rhs_into"]),
        "init": nb.cfunc(MAP_SIG, cache=cache)(namespace["init_into"]),
        "outputs": nb.cfunc(OUT_SIG, cache=cache)(namespace["outputs_into"]),
        "matrix": None,
    }
    if "matrix_into" in namespace:
        callbacks["matrix"] = nb.cfunc(MAP_SIG, cache=cache)(namespace["matrix_into"])
    return callbacks


def model_callbacks(model):
    """C callbacks (rhs, init, outputs, matrix) generated from the model definition, compiled in memory.

    The matrix callback is ``None`` for nonlinear models.  Each wraps the
    model's arithmetic-only functions lifted with ``numba.njit``.

    Returns
    -------
    dict
        ``{"rhs", "init", "outputs", "matrix"}``: numba ``CFunc`` objects (``matrix`` None for nonlinear models).
    """
    env = callback_namespace(model)
    exec(compile(callback_source(model), "<model_callbacks>", "exec"), env)
    return compile_callbacks(env)


@nb.cfunc(MAP_SIG, cache=True)
def _no_matrix(pp, op):  # pragma: no cover - placeholder for nonlinear models, never called
    pass


def no_matrix():
    """Placeholder matrix callback for nonlinear models."""
    return _no_matrix


# ----------------------------------------------------------------- small dense linear algebra
@nb.njit(cache=True, nogil=True, error_model="numpy")
def expm_block(a, h, phi, gam, need_gamma, m):
    """Φ = e^{A h} and Γ = ∫₀ʰ e^{A s} ds for a block of small matrices (structure of arrays).

    ``a``, ``phi``, ``gam`` have shape (n, n, B): lane b is one patient's matrix; lanes ``m:`` are
    computed too (fixed-length inner loops vectorise).  Scaling and squaring of the Taylor series, per
    lane: ||A τ_b||₁ <= 0.5, 14 terms (truncation below 0.5¹⁵/15! ≈ 2.3e-17, under one ulp), then
    Γ(2τ) = Γ(τ) + Φ(τ)Γ(τ), Φ(2τ) = Φ(τ)², s_b times.  Each lane's scaling depends on its own matrix
    only, so a patient's result is bit for bit the same whichever patients share its block (chunking,
    thread count: ``medtwin.trials.execution`` relies on it).
    The one numba matrix exponential: the per-patient kernels call it with one lane.
    """
    n = a.shape[0]
    B = a.shape[2]
    m = B  # compute every lane: fixed-length inner loops vectorise
    squarings = np.zeros(B, np.int64)
    tau = np.empty(B)
    s_max = 0
    for b in range(B):
        norm = 0.0
        for j in range(n):
            col = 0.0
            for i in range(n):
                col += abs(a[i, j, b])
            norm = max(norm, col)
        norm *= h
        s = 0
        if norm > 0.5:
            s = int(math.ceil(math.log2(norm / 0.5)))
        squarings[b] = s
        tau[b] = h / (2.0 ** s)
        s_max = max(s_max, s)
    term = np.zeros((n, n, B))
    nxt = np.zeros((n, n, B))
    scale = np.empty(B)
    for i in range(n):
        for j in range(n):
            for b in range(m):
                v = 1.0 if i == j else 0.0
                term[i, j, b] = v
                phi[i, j, b] = v
                gam[i, j, b] = v
    for k in range(1, 15):
        block_matmul(term, a, nxt, m)
        for b in range(m):
            scale[b] = tau[b] / k
        for i in range(n):
            for j in range(n):
                for b in range(m):
                    term[i, j, b] = nxt[i, j, b] * scale[b]
                    phi[i, j, b] += term[i, j, b]
                    gam[i, j, b] += term[i, j, b] / (k + 1)
    for i in range(n):
        for j in range(n):
            for b in range(m):
                gam[i, j, b] *= tau[b]
    for it in range(s_max):
        if need_gamma:
            block_matmul(phi, gam, nxt, m)
            for i in range(n):
                for j in range(n):
                    for b in range(m):
                        if it < squarings[b]:
                            gam[i, j, b] += nxt[i, j, b]
        block_matmul(phi, phi, nxt, m)
        for i in range(n):
            for j in range(n):
                for b in range(m):
                    if it < squarings[b]:
                        phi[i, j, b] = nxt[i, j, b]


@nb.njit(cache=True, nogil=True, inline="always")  # no reference counting per call (a B=1 expm calls it ~20 times)
def block_matmul(left, right, out, m):
    """out[:, :, b] = left[:, :, b] @ right[:, :, b] for the first ``m`` lanes (inner loop over lanes)."""
    n = left.shape[0]
    for i in range(n):
        for j in range(n):
            for b in range(m):
                out[i, j, b] = 0.0
    for i in range(n):
        for j in range(n):
            for q in range(n):
                for b in range(m):
                    out[i, j, b] += left[i, q, b] * right[q, j, b]


@nb.njit(cache=True)
def expm_phi_gamma(a, h, phi, gam):
    """Φ = e^{A h} and Γ = ∫₀ʰ e^{A s} ds for one small dense A (n, n): :func:`expm_block` with one lane."""
    n = a.shape[0]
    expm_block(np.ascontiguousarray(a).reshape((n, n, 1)), h, phi.reshape((n, n, 1)), gam.reshape((n, n, 1)),
               True, 1)


@nb.njit(cache=True)
def solve_small(a, b):
    """Solve a x = b by Gaussian elimination with partial pivoting (small dense systems)."""
    n = a.shape[0]
    m = a.copy()
    x = b.copy()
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(m[r, col]) > abs(m[piv, col]):
                piv = r
        if piv != col:
            for c in range(n):
                m[col, c], m[piv, c] = m[piv, c], m[col, c]
            x[col], x[piv] = x[piv], x[col]
        d = m[col, col]
        for r in range(col + 1, n):
            fct = m[r, col] / d
            for c in range(col, n):
                m[r, c] -= fct * m[col, c]
            x[r] -= fct * x[col]
    for r in range(n - 1, -1, -1):
        acc = x[r]
        for c in range(r + 1, n):
            acc -= m[r, c] * x[c]
        x[r] = acc / m[r, r]
    return x


# ----------------------------------------------------------------- integrators
@nb.njit(cache=True, inline="always")
def _stage(rhs, t, xs, p, rates, kout):
    rhs(t, xs.ctypes, p.ctypes, kout.ctypes)
    for j in range(kout.shape[0]):
        kout[j] += rates[j]


@nb.njit(cache=True)
def advance_fixed(rhs, order, x, t0, t1, rates, p, dt, work, counter, max_steps):
    n = x.shape[0]
    steps = max(1, int(math.ceil((t1 - t0) / dt - 1e-9)))
    h = (t1 - t0) / steps
    k1, k2, k3, k4, xs = work[0], work[1], work[2], work[3], work[4]
    for step in range(steps):
        t = t0 + step * h
        counter[0] += 1
        if counter[0] > max_steps:
            return ST_MAX_STEPS
        _stage(rhs, t, x, p, rates, k1)
        if order == 1:
            for j in range(n):
                x[j] += h * k1[j]
        elif order == 2:
            for j in range(n):
                xs[j] = x[j] + h * k1[j]
            _stage(rhs, t + h, xs, p, rates, k2)
            for j in range(n):
                x[j] += 0.5 * h * (k1[j] + k2[j])
        else:
            for j in range(n):
                xs[j] = x[j] + 0.5 * h * k1[j]
            _stage(rhs, t + 0.5 * h, xs, p, rates, k2)
            for j in range(n):
                xs[j] = x[j] + 0.5 * h * k2[j]
            _stage(rhs, t + 0.5 * h, xs, p, rates, k3)
            for j in range(n):
                xs[j] = x[j] + h * k3[j]
            _stage(rhs, t + h, xs, p, rates, k4)
            for j in range(n):
                x[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j])
    for j in range(n):
        if not math.isfinite(x[j]):
            return ST_NON_FINITE
    return ST_OK


@nb.njit(cache=True)
def advance_dopri(rhs, x, t0, t1, rates, p, hstate, rtol, atol, work, counter, max_steps):
    n = x.shape[0]
    xs = work[7]
    xn = work[8]
    t = t0
    h = hstate[0]
    if h <= 0.0:  # Hairer's initial step heuristic (simplified)
        _stage(rhs, t, x, p, rates, work[0])
        d0 = 0.0
        d1 = 0.0
        for j in range(n):
            sc = atol + rtol * abs(x[j])
            d0 += (x[j] / sc) ** 2
            d1 += (work[0, j] / sc) ** 2
        d0 = math.sqrt(d0 / n)
        d1 = math.sqrt(d1 / n)
        h = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h = min(h, t1 - t0)
    while t < t1:
        if counter[0] >= max_steps:
            return ST_MAX_STEPS
        counter[0] += 1
        last = t + h >= t1 - 1e-12 * max(1.0, abs(t1))
        hh = t1 - t if last else h
        _stage(rhs, t, x, p, rates, work[0])
        for s in range(1, 7):
            for j in range(n):
                acc = x[j]
                for q in range(s):
                    acc += hh * DP_A[s, q] * work[q, j]
                xs[j] = acc
            _stage(rhs, t + DP_C[s] * hh, xs, p, rates, work[s])
        err = 0.0
        for j in range(n):
            xn[j] = xs[j]  # the last stage point is the 5th-order solution (FSAL)
            e = 0.0
            for q in range(7):
                e += DP_E[q] * work[q, j]
            e *= hh
            sc = atol + rtol * max(abs(x[j]), abs(xn[j]))
            err += (e / sc) ** 2
        err = math.sqrt(err / n)
        if not math.isfinite(err):
            h = 0.25 * hh
            if h < 1e-14 * max(1.0, abs(t)):
                return ST_NON_FINITE
            continue
        if err <= 1.0:
            t = t1 if last else t + hh
            for j in range(n):
                x[j] = xn[j]
            factor = 5.0 if err == 0.0 else min(5.0, max(0.2, 0.9 * err ** -0.2))
            # A step cut short to land on t1 says little about the next step size.
            h = max(h, hh * factor) if last else hh * factor
        else:
            h = hh * max(0.2, 0.9 * err ** -0.2)
            if h < 1e-14 * max(1.0, abs(t)):
                return ST_SMALL
    hstate[0] = h
    return ST_OK


@nb.njit(cache=True)
def advance_exact(x, t0, t1, rates, amat, cache_h, cache_phi, cache_gam, cache_n, xs):
    n = x.shape[0]
    h = t1 - t0
    slot = -1
    for i in range(cache_n[0]):
        if cache_h[i] == h:
            slot = i
            break
    if slot < 0:
        slot = cache_n[1] % cache_h.shape[0]
        cache_n[1] += 1
        cache_n[0] = min(cache_n[0] + 1, cache_h.shape[0])
        expm_phi_gamma(amat, h, cache_phi[slot], cache_gam[slot])
        cache_h[slot] = h
    phi = cache_phi[slot]
    gam = cache_gam[slot]
    any_rate = False
    for j in range(n):
        if rates[j] != 0.0:
            any_rate = True
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += phi[i, j] * x[j]
        if any_rate:
            for j in range(n):
                acc += gam[i, j] * rates[j]
        xs[i] = acc
    for i in range(n):
        x[i] = xs[i]
    return ST_OK


@nb.njit(cache=True)
def advance(rhs, code, x, t0, t1, rates, p, amat, cache_h, cache_phi, cache_gam, cache_n, work, hstate,
            counter, rtol, atol, dt, max_steps):
    if t1 <= t0:
        return ST_OK
    if code == 0:
        return advance_exact(x, t0, t1, rates, amat, cache_h, cache_phi, cache_gam, cache_n, work[8])
    if code == 5:
        return advance_dopri(rhs, x, t0, t1, rates, p, hstate, rtol, atol, work, counter, max_steps)
    return advance_fixed(rhs, code, x, t0, t1, rates, p, dt, work, counter, max_steps)


@nb.njit(cache=True)
def one_period(rhs, code, x, p, c, amt, rate, dur, ii, upto, amat, cache_h, cache_phi, cache_gam, cache_n,
               work, hstate, counter, rtol, atol, dt, max_steps):
    """Propagate x over [0, upto] of one steady-state dosing period (dose at phase 0)."""
    n = x.shape[0]
    rates = np.zeros(n)
    if dur == 0.0:
        x[c] += amt
        return advance(rhs, code, x, 0.0, upto, rates, p, amat, cache_h, cache_phi, cache_gam, cache_n, work,
                       hstate, counter, rtol, atol, dt, max_steps)
    n_full = math.floor(dur / ii)
    rem = dur - n_full * ii
    rates[c] = rate * (n_full + 1)
    mid = min(rem, upto)
    st = advance(rhs, code, x, 0.0, mid, rates, p, amat, cache_h, cache_phi, cache_gam, cache_n, work, hstate,
                 counter, rtol, atol, dt, max_steps)
    if st != ST_OK:
        return st
    rates[c] = rate * n_full
    return advance(rhs, code, x, mid, upto, rates, p, amat, cache_h, cache_phi, cache_gam, cache_n, work, hstate,
                   counter, rtol, atol, dt, max_steps)


@nb.njit(cache=True)
def _converged(new, old, rtol, atol):
    for j in range(new.shape[0]):
        if abs(new[j] - old[j]) > 0.1 * (atol + rtol * abs(new[j])):
            return False
    return True


@nb.njit(cache=True)
def steady_state(rhs, init, code, has_matrix, x, p, row, idx, amat, cache_h, cache_phi, cache_gam, cache_n, work,
                 hstate, counter, rtol, atol, dt, max_steps):
    """Replace x by the SS=1 state at the record time, or add the SS=2 contribution.

    Linear models (whatever the method) solve (I - Φ(II)) x = M(0) exactly;
    others iterate the one-period map to a fixed point, restarting the step-size
    controller every period so that the map is the same function each time.
    The current dose itself is applied later by the schedule, at the record
    time plus lag.
    """
    n = x.shape[0]
    if has_matrix:
        code = 0
    amt, rate, dur, lag = dose_terms(p, row, idx)
    c = int(row[EV_CMT])
    ii = row[EV_II]
    x0 = np.empty(n)
    init(p.ctypes, x0.ctypes)
    xp = x0.copy()
    prev = np.empty(n)
    if ii <= 0.0:  # constant infusion to steady state
        rates = np.zeros(n)
        rates[c] = rate
        if code == 0:
            xp = solve_small(amat, -rates)
        else:
            done = False
            for _ in range(5000):
                prev[:] = xp
                hstate[0] = 0.0
                st = advance(rhs, code, xp, 0.0, 24.0, rates, p, amat, cache_h, cache_phi, cache_gam, cache_n,
                             work, hstate, counter, rtol, atol, dt, max_steps)
                if st != ST_OK:
                    return st
                if _converged(xp, prev, rtol, atol):
                    done = True
                    break
            if not done:
                return ST_SS
    else:
        if code == 0:
            m0 = np.zeros(n)
            st = one_period(rhs, code, m0, p, c, amt, rate, dur, ii, ii, amat, cache_h, cache_phi, cache_gam,
                            cache_n, work, hstate, counter, rtol, atol, dt, max_steps)
            phi = np.empty((n, n))
            gam = np.empty((n, n))
            expm_phi_gamma(amat, ii, phi, gam)
            xp = solve_small(np.eye(n) - phi, m0)
        else:
            done = False
            for _ in range(20000):
                prev[:] = xp
                hstate[0] = 0.0
                st = one_period(rhs, code, xp, p, c, amt, rate, dur, ii, ii, amat, cache_h, cache_phi, cache_gam,
                                cache_n, work, hstate, counter, rtol, atol, dt, max_steps)
                if st != ST_OK:
                    return st
                if _converged(xp, prev, rtol, atol):
                    done = True
                    break
            if not done:
                return ST_SS
        s = ii - (lag % ii)
        if s < ii:
            st = one_period(rhs, code, xp, p, c, amt, rate, dur, ii, s, amat, cache_h, cache_phi, cache_gam,
                            cache_n, work, hstate, counter, rtol, atol, dt, max_steps)
            if st != ST_OK:
                return st
    if int(row[EV_SS]) == 1:
        for j in range(n):
            x[j] = xp[j]
    else:
        for j in range(n):
            x[j] += xp[j] - x0[j]
    return ST_OK


# ----------------------------------------------------------------- one patient, a cohort
@nb.njit(cache=True)
def run_patient(rhs, init, outputs, matrix, code, has_matrix, n, n_out, p, ev, idx, seg, chg_par, chg_val, out,
                states_out, keep_states, row0, rtol, atol, dt, max_steps):
    """Step one patient over its segments (:func:`medtwin.core.schedule.segment_arrays`); returns its status.

    ``p`` is the patient's θ (changed in place by the parameter changes ``chg_par``/``chg_val``).
    """
    (start, end, reset, bolus, _, rates_seg, ss_segment, ss_record, obs_segment, obs_pre, obs_order,
     change_segment, overflow) = seg
    n_obs = obs_segment.shape[0]
    if overflow:
        for o in range(n_obs):
            out[row0 + o, :] = np.nan
        return ST_OVERFLOW
    x = np.empty(n)
    init(p.ctypes, x.ctypes)
    y = np.empty(n_out)
    work = np.zeros((9, n))
    hstate = np.zeros(1)
    counter = np.zeros(1, np.int64)
    amat = np.zeros((n, n))
    if has_matrix:
        matrix(p.ctypes, amat.ctypes)
    k_cache = 4 if code == 0 else 1
    cache_h = np.full(k_cache, -1.0)
    cache_phi = np.zeros((k_cache, n, n))
    cache_gam = np.zeros((k_cache, n, n))
    cache_n = np.zeros(2, np.int64)
    rates = np.zeros(n)
    status = ST_OK
    o = 0
    s = 0
    cc = 0
    for k in range(start.shape[0]):
        changed = False
        while cc < change_segment.shape[0] and change_segment[cc] == k:
            p[chg_par[cc]] = chg_val[cc]
            changed = True
            cc += 1
        if changed and has_matrix:
            matrix(p.ctypes, amat.ctypes)
            cache_n[:] = 0  # Φ, Γ of the old matrix are stale
        if status == ST_OK and reset[k]:
            init(p.ctypes, x.ctypes)
            hstate[0] = 0.0
        for phase in range(2):  # 0: pre-dose reads; 1: steady-state records and bolus, then post-dose reads
            if phase == 1:
                while s < ss_segment.shape[0] and ss_segment[s] == k:
                    if status == ST_OK:
                        status = steady_state(rhs, init, code, has_matrix, x, p, ev[ss_record[s]], idx, amat, cache_h,
                                              cache_phi, cache_gam, cache_n, work, hstate, counter, rtol, atol, dt,
                                              max_steps)
                        hstate[0] = 0.0
                    s += 1
                if status == ST_OK:
                    for j in range(n):
                        if bolus[k, j] != 0.0:
                            x[j] += bolus[k, j]
            while o < n_obs and obs_segment[obs_order[o]] == k and (phase == 1 or obs_pre[obs_order[o]]):
                r = row0 + obs_order[o]
                o += 1
                if status == ST_OK:
                    outputs(x.ctypes, p.ctypes, y.ctypes)
                    for j in range(n_out):
                        out[r, j] = y[j]
                    if keep_states:
                        for j in range(n):
                            states_out[r, j] = x[j]
                else:
                    out[r, :] = np.nan
                    if keep_states:
                        states_out[r, :] = np.nan
        if status == ST_OK and end[k] > start[k]:
            for j in range(n):
                rates[j] = rates_seg[k, j]
            status = advance(rhs, code, x, start[k], end[k], rates, p, amat, cache_h, cache_phi, cache_gam,
                             cache_n, work, hstate, counter, rtol, atol, dt, max_steps)
    return status


@nb.njit(cache=True)
def _run_one(i, rhs, init, outputs, matrix, code, has_matrix, n, n_out, P, ev_flat, ev_start, ev_stop, obs_flat, pre_flat,
             obs_start, obs_stop, row_start, idx, shared, use_shared, chg_t, chg_par, chg_val, out,
             states_out, keep_states, rtol, atol, dt, max_steps):
    p = P[i].copy()
    ev = ev_flat[ev_start[i]:ev_stop[i]]
    if use_shared:
        seg = shared
        par, val = chg_par, chg_val[i]
    else:
        keep = _effective_changes(p, chg_par, chg_val[i])
        par, val = chg_par[keep], chg_val[i][keep]
        seg = segment_arrays(p, ev, obs_flat[obs_start[i]:obs_stop[i]], pre_flat[obs_start[i]:obs_stop[i]], idx, n,
                             chg_t[keep])
    return run_patient(rhs, init, outputs, matrix, code, has_matrix, n, n_out, p, ev, idx, seg, par, val,
                       out, states_out, keep_states, row_start[i], rtol, atol, dt, max_steps)


@nb.njit(cache=True, nogil=True)
def _effective_changes(p, chg_par, chg_val):
    """Mask of the parameter changes (C,) that change this patient's value: the others (the batch shares one set
    of change times, e.g. IOV occasions of other subjects) would only split its segments."""
    current = p.copy()
    keep = np.zeros(chg_par.shape[0], np.bool_)
    for c in range(chg_par.shape[0]):
        if chg_val[c] != current[chg_par[c]]:
            keep[c] = True
            current[chg_par[c]] = chg_val[c]
    return keep


@nb.njit(cache=True, nogil=True)
def run_cohort(rhs, init, outputs, matrix, code, has_matrix, n, n_out, P, ev_flat, ev_start, ev_stop, obs_flat, pre_flat,
               obs_start, obs_stop, row_start, idx, shared, use_shared, chg_t, chg_par, chg_val, out,
               states_out, keep_states, rtol, atol, dt, max_steps, status):
    """Simulate every patient of the block, in order; statuses into ``status``.

    ``shared`` is the segments tuple every patient uses when ``use_shared`` (else each patient's own is
    built here); ``chg_t``, ``chg_par`` (C,) and ``chg_val`` (n_patients, C) are the parameter changes.
    Releases the GIL: the caller runs blocks on several threads.  (numba's
    ``prange`` was measured 20x slower here: function-typed arguments cross the
    parallel region at a per-iteration cost.)
    """
    for i in range(P.shape[0]):
        status[i] = _run_one(i, rhs, init, outputs, matrix, code, has_matrix, n, n_out, P, ev_flat, ev_start, ev_stop,
                             obs_flat, pre_flat, obs_start, obs_stop, row_start, idx, shared, use_shared, chg_t,
                             chg_par, chg_val, out, states_out, keep_states, rtol, atol, dt, max_steps)
