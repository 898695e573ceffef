"""Compiled (numba) per-patient kernels: event schedule, integrators, steady state.

The numerical kernels are generic and compiled once per machine (numba's
on-disk cache).  A model enters them as four small C callbacks (``cfunc``)
generated from its single definition — vector field, initial state, outputs
and (linear models) system matrix — each ``f(..., out*)`` writing into an
array.  So a new model costs well under a second of compilation, not a
recompilation of the solvers.

A patient's run is:

1. build the *schedule*: every dose, infusion start/end, reset, steady-state
   record and observation as an action, with NONMEM lag time, bioavailability
   and modelled rate/duration applied, stably sorted by (time, priority, order);
2. walk the schedule, integrating between distinct action times with the chosen
   method and applying each action.

Methods: ``"exact"`` (matrix exponential of a linear model by scaling and
squaring of the Taylor series, carrying Γ(h) = ∫₀ʰ e^{As} ds for infusions),
``"dopri5"`` (adaptive Dormand–Prince 5(4), standard step controller), and
fixed-step ``"euler"`` (order 1), ``"heun"`` (2), ``"rk4"`` (4), used for
convergence-order verification.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import types as types_module
from pathlib import Path

import numba as nb
import numpy as np
from numba import types

from medtwin.core.events import EV_AMT, EV_CMT, EV_EVID, EV_II, EV_RATE, EV_SS, EV_TIME
from medtwin.core.status import Status

ACT_RESET, ACT_SS, ACT_BOLUS, ACT_INF_START, ACT_INF_END, ACT_OBS = 0, 1, 2, 3, 4, 5
PRI_RESET, PRI_OBS_PRE, PRI_SS, PRI_DOSE, PRI_OBS_POST = 0, 1, 2, 3, 4

# Plain ints for numba, taken from the one definition of the status values.
ST_OK, ST_MAX_STEPS, ST_NON_FINITE, ST_SS, ST_SMALL, ST_OVERFLOW = (
    int(Status.OK), int(Status.MAX_STEPS), int(Status.NON_FINITE), int(Status.STEADY_STATE_NOT_CONVERGED),
    int(Status.STEP_TOO_SMALL), int(Status.SCHEDULE_OVERFLOW),
)
MAX_SS_RESIDUALS = 8
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
def _callback_source(model) -> str:
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


def _fingerprint(value, depth: int = 0) -> str:
    """What a compiled callback depends on beyond the model's digest: code, constants and closed-over values."""
    value = getattr(value, "py_func", value)  # a numba dispatcher: its Python function
    code = getattr(value, "__code__", None)
    if code is None or depth > 4:
        return repr(value)
    cells = [_fingerprint(c.cell_contents, depth + 1) for c in (value.__closure__ or ())]
    try:
        stat = os.stat(code.co_filename)  # the defining file's stamp, as numba's own cache checks it
        stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
    except OSError:
        stamp = ""
    return repr((code.co_filename, stamp, code.co_code.hex(), repr(code.co_consts), cells))


def model_callbacks(model, cache_dir=None):
    """C callbacks (rhs, init, outputs, matrix) generated from the model definition.

    The matrix callback is ``None`` for nonlinear models.  Each wraps the
    model's arithmetic-only functions lifted with ``numba.njit``.

    Parameters
    ----------
    model : Model
    cache_dir : path-like, optional
        A folder the caller keeps compiled callbacks in (a process edge, such as
        the command line, passes one; by default nothing is written).  The
        callbacks' source is then written there as a file named by a digest of
        the model's definition, the code and closed-over values of its
        functions, their files' stamps and the numba version, and compiled with
        numba's on-disk cache next to it (``__pycache__``), so a later process
        loads the machine code instead of compiling it (about 0.5 s per model).

    Returns
    -------
    dict
        ``{"rhs", "init", "outputs", "matrix"}``: numba ``CFunc`` objects (``matrix`` None for nonlinear models).
    """
    env = {"nb": nb}
    env["f"] = model.rhs(nb.njit)
    env["x0"] = model.init(nb.njit)
    env.update({f"o{k}": fn for k, fn in enumerate(model.output_functions(nb.njit))})
    if model.linear_matrix is not None:
        env["a"] = nb.njit(model.linear_matrix)
    source = _callback_source(model)
    if cache_dir is None:
        exec(compile(source, "<model_callbacks>", "exec"), env)
    else:
        parts = [model.digest(), source, nb.__version__] + [_fingerprint(env[k]) for k in sorted(env) if k != "nb"]
        key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
        path = Path(cache_dir) / f"callbacks_{key}.py"
        if not path.exists():  # written once (numba's cache index is keyed by the file's stamp)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(f"# numba callbacks of model {model.name!r} (medtwin.core.kernels)\n" + source)
            os.replace(partial, path)
        # numba's cached code names its module and imports it when loaded: the file is that module
        name = f"medtwin_numba_callbacks_{key}"
        module = sys.modules.get(name) or types_module.ModuleType(name)
        module.__file__ = str(path)
        module.__dict__.update(env)
        sys.modules[name] = module
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
        env = module.__dict__
    cache = cache_dir is not None
    callbacks = {
        "rhs": nb.cfunc(RHS_SIG, cache=cache)(env["rhs_into"]),
        "init": nb.cfunc(MAP_SIG, cache=cache)(env["init_into"]),
        "outputs": nb.cfunc(OUT_SIG, cache=cache)(env["outputs_into"]),
        "matrix": None,
    }
    if model.linear_matrix is not None:
        callbacks["matrix"] = nb.cfunc(MAP_SIG, cache=cache)(env["matrix_into"])
    return callbacks


@nb.cfunc(MAP_SIG, cache=True)
def _no_matrix(pp, op):  # pragma: no cover - placeholder for nonlinear models, never called
    pass


def no_matrix():
    """Placeholder matrix callback for nonlinear models."""
    return _no_matrix


# ----------------------------------------------------------------- small dense linear algebra
@nb.njit(cache=True)
def _matmul(a, b, out):
    n = a.shape[0]
    for i in range(n):
        for j in range(n):
            acc = 0.0
            for k in range(n):
                acc += a[i, k] * b[k, j]
            out[i, j] = acc


@nb.njit(cache=True)
def expm_phi_gamma(a, h, phi, gam):
    """Φ = e^{A h} and Γ = ∫₀ʰ e^{A s} ds for a small dense A (scaling and squaring)."""
    n = a.shape[0]
    norm = 0.0
    for j in range(n):
        col = 0.0
        for i in range(n):
            col += abs(a[i, j])
        norm = max(norm, col)
    norm *= h
    s = 0
    if norm > 0.5:
        s = int(math.ceil(math.log2(norm / 0.5)))
    tau = h / (2.0 ** s)
    term = np.eye(n)
    nxt = np.empty((n, n))
    tmp = np.empty((n, n))
    b = a * tau
    for i in range(n):
        for j in range(n):
            phi[i, j] = 1.0 if i == j else 0.0
            gam[i, j] = phi[i, j]  # Γ/τ = Σ B^k/(k+1)!
    for k in range(1, 40):
        _matmul(term, b, nxt)
        biggest = 0.0
        for i in range(n):
            for j in range(n):
                term[i, j] = nxt[i, j] / k
                phi[i, j] += term[i, j]
                gam[i, j] += term[i, j] / (k + 1)
                biggest = max(biggest, abs(term[i, j]))
        if biggest < 1e-18:
            break
    for i in range(n):
        for j in range(n):
            gam[i, j] *= tau
    for _ in range(s):
        _matmul(phi, gam, tmp)
        for i in range(n):
            for j in range(n):
                gam[i, j] += tmp[i, j]
        _matmul(phi, phi, tmp)
        for i in range(n):
            for j in range(n):
                phi[i, j] = tmp[i, j]


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


# ----------------------------------------------------------------- schedule
@nb.njit(cache=True)
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


@nb.njit(cache=True)
def build_schedule(p, ev, obs_t, obs_pre, idx):
    """All actions of one patient, sorted by (time, priority, record order)."""
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
def run_patient(rhs, init, outputs, matrix, code, has_matrix, n, n_out, p, ev, obs_t, obs_pre, idx,
                a_t, a_kind, a_cmt, a_val, a_ref, info, out, states_out, keep_states, row0,
                rtol, atol, dt, max_steps):
    n_inf = info[0]
    n_obs = obs_t.shape[0]
    if info[1] != 0:
        for o in range(n_obs):
            out[row0 + o, :] = np.nan
        return ST_OVERFLOW
    x = np.empty(n)
    init(p.ctypes, x.ctypes)
    y = np.empty(n_out)
    rates = np.zeros(n)
    inf_on = np.zeros(max(n_inf, 1), np.bool_)
    active = np.zeros(n, np.int64)
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
    status = ST_OK
    t = a_t[0] if a_t.shape[0] > 0 else 0.0
    for k in range(a_t.shape[0]):
        tk = a_t[k]
        if status == ST_OK and tk > t:
            status = advance(rhs, code, x, t, tk, rates, p, amat, cache_h, cache_phi, cache_gam, cache_n, work,
                             hstate, counter, rtol, atol, dt, max_steps)
            t = tk
        kind = a_kind[k]
        if kind == ACT_OBS:
            r = row0 + a_ref[k]
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
            continue
        if status != ST_OK:
            continue
        c = a_cmt[k]
        if kind == ACT_BOLUS:
            x[c] += a_val[k]
        elif kind == ACT_INF_START:
            inf_on[a_ref[k]] = True
            rates[c] += a_val[k]
            active[c] += 1
        elif kind == ACT_INF_END:
            if inf_on[a_ref[k]]:
                inf_on[a_ref[k]] = False
                active[c] -= 1
                rates[c] = rates[c] - a_val[k] if active[c] > 0 else 0.0
        elif kind == ACT_RESET:
            init(p.ctypes, x.ctypes)
            rates[:] = 0.0
            active[:] = 0
            inf_on[:] = False
            hstate[0] = 0.0
        elif kind == ACT_SS:
            row = ev[a_ref[k]]
            if int(row[EV_SS]) == 1:
                rates[:] = 0.0
                active[:] = 0
                inf_on[:] = False
            status = steady_state(rhs, init, code, has_matrix, x, p, row, idx, amat, cache_h, cache_phi, cache_gam, cache_n,
                                  work, hstate, counter, rtol, atol, dt, max_steps)
            hstate[0] = 0.0
    return status


@nb.njit(cache=True)
def _run_one(i, rhs, init, outputs, matrix, code, has_matrix, n, n_out, P, ev_flat, ev_start, ev_stop, obs_flat, pre_flat,
             obs_start, obs_stop, row_start, idx, s_t, s_kind, s_cmt, s_val, s_ref, s_info, use_shared, out,
             states_out, keep_states, rtol, atol, dt, max_steps):
    p = P[i].copy()
    ev = ev_flat[ev_start[i]:ev_stop[i]]
    obs_t = obs_flat[obs_start[i]:obs_stop[i]]
    obs_pre = pre_flat[obs_start[i]:obs_stop[i]]
    if use_shared:
        return run_patient(rhs, init, outputs, matrix, code, has_matrix, n, n_out, p, ev, obs_t, obs_pre, idx, s_t, s_kind,
                           s_cmt, s_val, s_ref, s_info, out, states_out, keep_states, row_start[i], rtol, atol,
                           dt, max_steps)
    a_t, a_kind, a_cmt, a_val, a_ref, info = build_schedule(p, ev, obs_t, obs_pre, idx)
    return run_patient(rhs, init, outputs, matrix, code, has_matrix, n, n_out, p, ev, obs_t, obs_pre, idx, a_t, a_kind,
                       a_cmt, a_val, a_ref, info, out, states_out, keep_states, row_start[i], rtol, atol, dt,
                       max_steps)


@nb.njit(cache=True, nogil=True)
def run_cohort(rhs, init, outputs, matrix, code, has_matrix, n, n_out, P, ev_flat, ev_start, ev_stop, obs_flat, pre_flat,
               obs_start, obs_stop, row_start, idx, s_t, s_kind, s_cmt, s_val, s_ref, s_info, use_shared, out,
               states_out, keep_states, rtol, atol, dt, max_steps, status):
    """Simulate every patient of the block, in order; statuses into ``status``.

    Releases the GIL: the caller runs blocks on several threads.  (numba's
    ``prange`` was measured 20x slower here: function-typed arguments cross the
    parallel region at a per-iteration cost.)
    """
    for i in range(P.shape[0]):
        status[i] = _run_one(i, rhs, init, outputs, matrix, code, has_matrix, n, n_out, P, ev_flat, ev_start, ev_stop,
                             obs_flat, pre_flat, obs_start, obs_stop, row_start, idx, s_t, s_kind, s_cmt, s_val,
                             s_ref, s_info, use_shared, out, states_out, keep_states, rtol, atol, dt, max_steps)


def dose_parameter_index(model) -> np.ndarray:
    """(4, n_states) int array: positions of F, ALAG, R, D per compartment (-1: none)."""
    index = {name: i for i, name in enumerate(model.parameter_names)}
    idx = np.full((4, model.n_states), -1, np.int64)
    for target in model.dose_targets:
        for row, ref in enumerate((target.bioavailability, target.lag, target.rate, target.duration)):
            if ref is not None:
                idx[row, target.cmt - 1] = index[ref]
    return idx
