"""Cohort simulation benchmark (engine issue): W1 closed form, W2 nonlinear PK/PD.

Run:  python benchmarks/cohort.py            (full: W1 N=1e3/1e5/1e6, W2 N=1e3/1e5)
      python benchmarks/cohort.py --quick    (small sizes, for a smoke run)
      python benchmarks/cohort.py --cold-warm   (only W2's first call in new processes: per-model compiled code
                                                 from an empty vs a filled $MEDTWIN_HOME cache, ~1 min)
      python benchmarks/cohort.py --backend jax   (also W2 through the JAX/diffrax cohort path, on JAX's
                                                   default device: a GPU when there is one)

W1: pk2_oral, 100 mg every 12 h for 7 days (14 doses), hourly outputs 0–168 h,
    log-normal parameters (30 % CV).  Exact (matrix-exponential) solution.
W2: the same PK with Michaelis–Menten elimination, an effect compartment with
    sigmoid Emax and an indirect-response (III) biomarker driven by the effect
    site: model ``pk2_oral_mm_effect_idr3``, adaptive Dormand–Prince 5(4).  Three medtwin figures side by
    side: the block kernel (``kernel="block"``, patients stepped 32 at a time, the default), the previous
    per-patient kernel (``kernel="patient"``) and the naive loop; the decisive size is timed ``--repeat``
    times (best and median wall time, and CPU time: wall figures on a shared machine are contended).

Every figure is printed next to a baseline measured in the same process: a
naive per-patient loop of ``scipy.integrate.solve_ivp`` (RK45, the same
Dormand–Prince pair, same tolerances, integrating dose interval by dose interval
with ``t_eval``), on a subset of patients, as patients/second.  W2 accuracy is
the maximum pointwise relative error of every output (points where the
reference exceeds 1e-6 of that patient's peak) against (a) medtwin at
rtol 1e-12 on 10,000 random patients of the largest run and (b) an independent
scipy DOP853 solve at rtol 1e-12 on a subset.  Peak memory is the process resident set size sampled
every 5 ms during the timed call, minus the resident size before it.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import threading  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

from medtwin import Regimen, get_model, simulate  # noqa: E402

TIMES = np.arange(0.0, 169.0)
DOSE_TIMES = np.arange(14) * 12.0
W1_TYPICAL = {"KA": 1.0, "CL": 5.0, "V1": 30.0, "Q": 8.0, "V2": 40.0}
RTOL, ATOL = 1e-7, 1e-9


def lognormal_params(typical: dict, n: int, cv: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sd = np.sqrt(np.log(1 + cv**2))
    return {k: v * np.exp(rng.normal(0.0, sd, n)) for k, v in typical.items()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn):
    """Run fn(); return (result, seconds, peak RSS increase in bytes)."""
    base = rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    peak[0] = max(peak[0], rss_bytes())
    return result, seconds, peak[0] - base


# ----------------------------------------------------------------- naive scipy baselines
def w1_rhs(t, x, ka, cl, v1, q, v2):
    depot, central, periph = x
    return [-ka * depot, ka * depot - (cl + q) / v1 * central + q / v2 * periph, q / v1 * central - q / v2 * periph]


def w2_rhs(t, x, p):
    ka, vmax, km, v1, q, v2, f1, alag, ke0, e0, emax, ec50, hill, r0, kout, smax, sc50 = p
    depot, central, periph, ce, r = x
    c = central / v1
    exchange = q * c - q * periph / v2
    effect_driver = ce
    return [
        -ka * depot,
        ka * depot - vmax * c / (km + c) - exchange,
        exchange,
        ke0 * (c - ce),
        r0 * kout * (1 + smax * effect_driver / (sc50 + effect_driver)) - kout * r,
    ]


def naive_loop(rhs, x0, dose_cmt, dose, params_rows, times, rtol, atol, method="RK45", outputs=None):
    """Per-patient solve_ivp, one call per dosing interval, outputs at ``times``.

    Each interval is integrated once, with ``t_eval`` holding the output times
    inside it and the interval's end (the state carried to the next dose).
    """
    results = []
    ends = list(DOSE_TIMES[1:]) + [times[-1]]
    for p in params_rows:
        args = p if isinstance(p, tuple) else (p,)
        x = np.array(x0(p), dtype=float)
        out = np.empty((len(times), len(x)))
        for k, t0 in enumerate(DOSE_TIMES):
            x[dose_cmt] += dose
            t1 = ends[k]
            last = k == len(DOSE_TIMES) - 1
            mask = (times >= t0) & ((times <= t1) if last else (times < t1))
            t_eval = np.append(times[mask], t1) if not last else times[mask]
            sol = solve_ivp(rhs, (t0, t1), x, method=method, rtol=rtol, atol=atol, t_eval=t_eval, args=args)
            out[mask] = sol.y[:, : mask.sum()].T
            x = sol.y[:, -1].copy()
        results.append(out if outputs is None else outputs(out, p))
    return results


def run_w1(sizes, baseline_n):
    model = get_model("pk2_oral")
    regimen = Regimen.every(12, "h", 100, "mg", n=14)
    print("\n== W1: pk2_oral, 14 oral doses, 169 hourly outputs, 30 % CV (exact solution)")
    _, compile_s, _ = timed(lambda: simulate(model, lognormal_params(W1_TYPICAL, 10, 0.3, 0), regimen, TIMES,
                                             keep_states=False))
    print(f"  compile + first call (N=10): {compile_s:.2f} s")
    params = lognormal_params(W1_TYPICAL, baseline_n, 0.3, 1)
    rows = [tuple(params[k][i] for k in ("KA", "CL", "V1", "Q", "V2")) for i in range(baseline_n)]
    ours = simulate(model, params, regimen, TIMES, keep_states=False).output("C")
    naive, naive_s, _ = timed(lambda: naive_loop(w1_rhs, lambda p: (0.0, 0.0, 0.0), 0, 100.0, rows, TIMES,
                                                 RTOL, ATOL))
    naive_c = np.array([o[:, 1] / r[2] for o, r in zip(naive, rows)])
    naive_rate = baseline_n / naive_s
    err = np.max(np.abs(naive_c - ours) / np.maximum(np.abs(ours), 1e-6 * ours.max()))
    print(f"  naive solve_ivp loop (RK45 rtol {RTOL:g}): {naive_rate:,.1f} patients/s on {baseline_n} patients "
          f"(max rel. difference to exact {err:.1e})")
    for n in sizes:
        params = lognormal_params(W1_TYPICAL, n, 0.3, 2)
        tr, seconds, mem = timed(lambda: simulate(model, params, regimen, TIMES, keep_states=False))
        assert tr.ok
        rate = n / seconds
        print(f"  N={n:>9,}: {seconds:7.3f} s  {rate:>12,.0f} patients/s  ratio vs naive {rate / naive_rate:>10,.0f}x"
              f"  peak memory +{mem / 2**30:.2f} GiB  (target >= 1,000,000 patients/s at N=1e6, <= 8 GiB)")
        del tr
        # How much of that is the operating system providing fresh memory for the output (first touch)?
        _, touch_s, _ = timed(lambda: np.empty((n, len(TIMES))).fill(0.0))
        print(f"             of which first touch of a fresh {n * len(TIMES) * 8 / 2**30:.2f} GiB output array "
              f"costs about {touch_s:.3f} s on this machine (measured separately, single thread)")


def run_w1_buffers(n: int, repeats: int) -> None:
    """W1 with the output options of issue 20: a reused caller-supplied buffer (``out=``) and float32 outputs.

    Side by side at the same N, best of ``repeats`` calls each: the default call (the previous path: a fresh
    float64 output the kernel first-touches) against ``out=`` (one buffer, allocated and touched once, reused by
    every call, as a caller simulating cohort after cohort does), ``dtype=float32`` (half the memory written)
    and both.  Accuracy: max relative error of every variant against the default float64 result.
    """
    model = get_model("pk2_oral")
    regimen = Regimen.every(12, "h", 100, "mg", n=14)
    params = lognormal_params(W1_TYPICAL, n, 0.3, 2)
    import numba

    threads = numba.get_num_threads()
    print(f"\n== W1 output options (issue 20), N={n:,}, best of {repeats} calls; ratio vs the default call; CPU of "
          f"the last call (user + sys, the steadier figure on a shared machine){'; target >= 1,000,000 patients/s' if n >= 1_000_000 else ''}")
    for dtype in (np.float64, np.float32):  # compile (or load) each specialisation outside the timing
        simulate(model, lognormal_params(W1_TYPICAL, 10, 0.3, 0), regimen, TIMES, keep_states=False, dtype=dtype)
    buffers = {dt: np.zeros((len(TIMES), 1, n), dtype=dt) for dt in (np.float64, np.float32)}  # touched once
    variants = [("default (previous path: fresh float64 output)", {}),
                ("out= reused float64 buffer", {"out": buffers[np.float64]}),
                ("dtype=float32 (fresh output)", {"dtype": np.float32}),
                ("out= reused float32 buffer", {"out": buffers[np.float32]})]
    reference, base_rate = None, None
    for label, options in variants:
        best, values = np.inf, None
        for _ in range(repeats):
            values = None  # a fresh output is allocated inside the timed call
            t0, c0 = time.perf_counter(), time.process_time()
            tr = simulate(model, params, regimen, TIMES, keep_states=False, **options)
            best = min(best, time.perf_counter() - t0)
            cpu = time.process_time() - c0
            assert tr.ok
            values = tr.output("C")
        if reference is None:
            reference, base_rate = np.array(values, dtype=np.float64), n / best
        err = max_rel_error(np.asarray(values, dtype=np.float64), reference)  # (n, n_times): per-patient peak
        rate = n / best
        cpu_rate = n / (cpu / threads)  # what the threads would reach with their cores to themselves
        print(f"  {label:<46} {best:7.3f} s wall {rate:>11,.0f} patients/s {rate / base_rate:5.2f}x | CPU {cpu:.2f} s"
              f" = {cpu_rate:>11,.0f} patients/s on {threads} free cores | max rel. error vs default {err:.1e}")
        del tr, values


def run_w2(sizes, baseline_n, reference_n, previous_n=10_000, repeat=3):
    model = get_model("pk2_oral_mm_effect_idr3")
    regimen = Regimen.every(12, "h", 100, "mg", n=14)
    varied = ("KA", "VMAX", "KM", "V1", "Q", "V2", "KE0", "EC50", "KOUT", "SC50")
    typical = {name: model.parameter(name).value for name in varied}
    print(f"\n== W2: {model.name} ({model.n_states} states: {', '.join(model.state_names)}), "
          f"outputs {', '.join(model.output_names)}; dopri5 rtol {RTOL:g} atol {ATOL:g}")
    _, compile_s, _ = timed(lambda: simulate(model, lognormal_params(typical, 10, 0.3, 0), regimen, TIMES,
                                             rtol=RTOL, atol=ATOL, keep_states=False, kernel="block"))
    print(f"  compile + first call (N=10): {compile_s:.2f} s")
    params = lognormal_params(typical, baseline_n, 0.3, 3)
    table = model.parameter_table(params)
    rows = [tuple(row) for row in table]
    names = model.parameter_names
    i_v1, i_e0, i_emax, i_ec50, i_hill = (names.index(k) for k in ("V1", "E0", "EMAX", "EC50", "HILL"))
    expected = ("KA", "VMAX", "KM", "V1", "Q", "V2", "F1", "ALAG1", "KE0", "E0", "EMAX", "EC50", "HILL", "R0",
                "KOUT", "SMAX", "SC50")
    if names != expected:  # the independent baseline below unpacks parameters in this order
        raise SystemExit(f"unexpected parameter order {names}")

    def outputs(states, p):
        c = states[:, 1] / p[i_v1]
        ce = states[:, 3]
        e = p[i_e0] + p[i_emax] * ce ** p[i_hill] / (p[i_ec50] ** p[i_hill] + ce ** p[i_hill])
        return states, c, e

    def x0(p):
        return (0.0, 0.0, 0.0, 0.0, p[names.index("R0")])

    naive_cpu0 = time.process_time()
    naive, naive_s, _ = timed(lambda: naive_loop(lambda t, x, *p: w2_rhs(t, x, p), x0, 0, 100.0, rows, TIMES,
                                                 RTOL, ATOL, outputs=outputs))
    naive_rate = baseline_n / naive_s
    naive_cpu_rate = baseline_n / (time.process_time() - naive_cpu0)
    print(f"  naive solve_ivp loop (RK45 rtol {RTOL:g}): {naive_rate:,.1f} patients/s on {baseline_n} patients "
          f"({naive_cpu_rate:,.1f} patients per CPU-second, one thread)")
    threads = numba.get_num_threads()
    prev_n = min(sizes[-1], previous_n)
    prev_params = lognormal_params(typical, prev_n, 0.3, 4)
    prev_cpu0 = time.process_time()
    _, prev_s, _ = timed(lambda: simulate(model, prev_params, regimen, TIMES, rtol=RTOL, atol=ATOL,
                                          keep_states=False, kernel="patient"))
    prev_rate = prev_n / prev_s
    prev_cpu_rate = prev_n / (time.process_time() - prev_cpu0)
    print(f"  previous medtwin path (per-patient kernel, kernel='patient'): {prev_rate:,.0f} patients/s on {prev_n:,} "
          f"patients = {prev_rate / naive_rate:,.0f}x naive ({prev_cpu_rate:,.0f} patients per CPU-second)")
    for n in sizes:
        params = lognormal_params(typical, n, 0.3, 4)
        walls, cpus = [], []
        for _ in range(repeat if n == sizes[-1] else 1):
            cpu0 = time.process_time()
            tr, seconds, mem = timed(lambda: simulate(model, params, regimen, TIMES, rtol=RTOL, atol=ATOL,
                                                      keep_states=False))
            walls.append(seconds)
            cpus.append(time.process_time() - cpu0)
        rate, median = n / min(walls), n / float(np.median(walls))
        cpu_rate = n / min(cpus)
        print(f"  N={n:>9,}: {min(walls):7.3f} s  {rate:>12,.0f} patients/s  ratio vs naive {rate / naive_rate:>8,.0f}x"
              f"  vs previous {rate / prev_rate:5.1f}x  peak memory +{mem / 2**30:.2f} GiB  "
              f"failed {int((tr.status != 0).sum())}  kernel {tr.extra['kernel']}")
        if len(walls) > 1:
            print(f"             {len(walls)} runs: best {rate:,.0f}, median {median:,.0f} patients/s (wall, {threads} "
                  f"threads; contended when the machine is shared)")
        print(f"             CPU time {min(cpus):.3f} s = {cpu_rate:,.0f} patients per CPU-second -> "
              f"{threads * cpu_rate:,.0f} patients/s on {threads} uncontended threads = "
              f"{threads * cpu_rate / naive_cpu_rate:,.0f}x the naive loop's CPU rate, "
              f"{cpu_rate / prev_cpu_rate:.1f}x the previous kernel's per CPU-second "
              f"(target >= 30,000 patients/s and >= 1,500x naive at N=1e5 on 2 threads)")
    # Accuracy of the largest run against a tighter solve (rtol 1e-12 costs ~10x the steps: a random subset).
    check = np.sort(np.random.default_rng(5).choice(n, size=min(n, 10_000), replace=False))
    tight = simulate(model, {k: v[check] for k, v in params.items()}, regimen, TIMES, rtol=1e-12, atol=1e-14,
                     keep_states=False)
    worst = max(max_rel_error(tr.output(o)[check], tight.output(o)) for o in model.output_names)
    print(f"  max relative error vs medtwin rtol 1e-12 on {len(check):,} random patients of the N={n:,} run, "
          f"outputs {model.output_names}: {worst:.2e}  (target < 1e-5)")
    subset = np.arange(reference_n)
    ref_rows = [tuple(r) for r in model.parameter_table({k: v[subset] for k, v in params.items()})]
    ref = naive_loop(lambda t, x, *p: w2_rhs(t, x, p), x0, 0, 100.0, ref_rows, TIMES, 1e-12, 1e-14,
                     method="DOP853", outputs=outputs)
    ref_c = np.array([r[1] for r in ref])
    ref_e = np.array([r[2] for r in ref])
    ref_r = np.array([r[0][:, 4] for r in ref])
    err_scipy = max(max_rel_error(tr.output("C")[subset], ref_c), max_rel_error(tr.output("E")[subset], ref_e),
                    max_rel_error(tr.output("R")[subset], ref_r))
    print(f"  max relative error vs scipy DOP853 rtol 1e-12 on {reference_n} patients (C, E, R): {err_scipy:.2e}")
    return model, regimen, params, tr


def run_w2_jax(model, regimen, params, numba_result, n):
    """W2 through the JAX cohort path (diffrax Dormand–Prince, vmapped over patients) on JAX's default device."""
    import jax
    import jax.numpy as jnp

    from medtwin.core.jax_ode import ode_predictor

    table = model.parameter_table({k: v[:n] for k, v in params.items()})
    pred = ode_predictor(model, regimen, TIMES, rtol=RTOL, atol=ATOL)
    with jax.enable_x64(True):
        cohort = jax.jit(jax.vmap(pred.function, in_axes=(0, None)))
        theta = jnp.asarray(table)
        _, compile_s, _ = timed(lambda: cohort(theta[:2], pred.data).block_until_ready())
        out, seconds, _ = timed(lambda: cohort(theta, pred.data).block_until_ready())
    device = next(iter(out.devices()))
    c = np.asarray(out)[:, :, model.output_names.index("C")]
    err = max_rel_error(c, numba_result.output("C")[:n])
    print(f"\n== W2 on the JAX cohort path (diffrax dopri5 rtol {RTOL:g}, vmapped): device {device} "
          f"(default backend {jax.default_backend()!r}; a GPU is used when JAX sees one)")
    print(f"  compile + first call: {compile_s:.1f} s;  N={n:,}: {seconds:.3f} s = {n / seconds:,.0f} patients/s;  "
          f"max relative difference of C to the numba block kernel {err:.1e}")


def max_rel_error(values, reference):
    values, reference = np.asarray(values), np.asarray(reference)
    peak = np.max(np.abs(reference), axis=-1, keepdims=True)
    mask = np.abs(reference) > 1e-6 * peak
    return float(np.max(np.abs(values - reference)[mask] / np.abs(reference)[mask]))


W2_VARIED = ("KA", "VMAX", "KM", "V1", "Q", "V2", "KE0", "EC50", "KOUT", "SC50")


def cold_warm_child(home: str, out: str, n: int) -> None:
    """One process of ``--cold-warm``: W2's per-model callbacks from ``home`` ("-": compiled in memory), then
    the first simulate call (N=n, ``kernel="auto"``: the block kernel); prints one JSON line, saves the outputs."""
    import json
    import sys

    from medtwin.core.simulate import block_callbacks
    from medtwin.io.jax_cache import warm_block_callbacks, warm_model_callbacks

    model = get_model("pk2_oral_mm_effect_idr3")
    env = {"MEDTWIN_COMPILE_CACHE": "0"} if home == "-" else {"MEDTWIN_HOME": home}
    t0 = time.perf_counter()
    warm_model_callbacks(model, env)
    warm_block_callbacks(model, env)
    t1 = time.perf_counter()
    params = lognormal_params({k: model.parameter(k).value for k in W2_VARIED}, n, 0.3, 11)
    r = simulate(model, params, Regimen.every(12, "h", 100, "mg", n=14), TIMES, rtol=RTOL, atol=ATOL,
                 keep_states=False)
    t2 = time.perf_counter()
    np.save(out, np.stack([r.output(name) for name in model.output_names]))
    hits = {k: f.cache_hits for k, f in block_callbacks(model).items()}
    json.dump({"warm_s": t1 - t0, "first_s": t2 - t1, "kernel": r.extra["kernel"], "hits": hits}, sys.stdout)


def run_cold_warm(n: int) -> None:
    """W2's first call in a new process: per-model compiled code from an empty vs a filled ``$MEDTWIN_HOME``.

    Three processes, one after the other: (1) no disk cache (callbacks compiled in memory; it also fills
    numba's cache of the model-independent kernels, so the next two differ only in the per-model code),
    (2) cold: an empty ``MEDTWIN_HOME`` (compiles, writes the folder), (3) warm: the same folder (loads).
    """
    import json
    import subprocess
    import sys
    import tempfile

    print(f"\n== W2 first call in a new process (N={n}, kernel auto): per-model callbacks cold vs warm cache")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for label, home in (("in memory", "-"), ("cold", tmp), ("warm", tmp)):
            out = os.path.join(tmp, f"{label.replace(' ', '_')}.npy")
            wall = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--cold-warm-child", home, out, str(n)],
                                  capture_output=True, text=True, check=False)
            wall = time.perf_counter() - wall
            if proc.returncode:
                raise SystemExit(f"{label} process failed:\n{proc.stderr[-3000:]}")
            rows[label] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"wall": wall, "y": np.load(out)}
            r = rows[label]
            print(f"  {label:>9}: callbacks {r['warm_s']:6.2f} s, first simulate {r['first_s']:6.2f} s, total "
                  f"{r['warm_s'] + r['first_s']:6.2f} s (process wall {wall:5.1f} s); kernel {r['kernel']}, block "
                  f"callbacks from numba's cache: {sum(r['hits'].values())}/3")
        cold, warm = (rows[k]["warm_s"] + rows[k]["first_s"] for k in ("cold", "warm"))
        same = all(np.array_equal(rows[k]["y"], rows["in memory"]["y"], equal_nan=True) for k in ("cold", "warm"))
        print(f"  compile seconds saved by the filled cache: {cold - warm:.2f} s ({cold / warm:.1f}x faster first "
              f"call); outputs bit-identical across the three processes: {same}")
        if not same or sum(rows["warm"]["hits"].values()) != 3:
            raise SystemExit("cold/warm: outputs differ or the warm process compiled")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of the decisive W2 size (default 3)")
    parser.add_argument("--backend", choices=("numba", "jax"), default="numba",
                        help="jax: also run W2 on the JAX cohort path (GPU when present)")
    parser.add_argument("--only", choices=("w1", "w2"), help="run one workload")
    parser.add_argument("--cold-warm", action="store_true",
                        help="only: W2's first call in new processes, empty vs filled per-model compile cache")
    parser.add_argument("--cold-warm-child", nargs=3, metavar=("HOME", "OUT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_warm_child:
        home, out, n = args.cold_warm_child
        return cold_warm_child(home, out, int(n))
    if args.cold_warm:
        return run_cold_warm(1_000)

    print(f"threads: NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS} (numba uses {numba.get_num_threads()}), "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"cpus={os.cpu_count()}")
    if args.quick:
        if args.only != "w2":
            run_w1([1_000, 20_000], baseline_n=20)
            run_w1_buffers(20_000, repeats=2)
        if args.only != "w1":
            w2 = run_w2([1_000, 5_000], baseline_n=5, reference_n=5, previous_n=1_000, repeat=args.repeat)
        jax_n = 200
    else:
        if args.only != "w2":
            run_w1([1_000, 100_000, 1_000_000], baseline_n=200)
            run_w1_buffers(1_000_000, repeats=3)
        if args.only != "w1":
            w2 = run_w2([1_000, 100_000], baseline_n=40, reference_n=40, repeat=args.repeat)
        jax_n = 2_000
    if args.backend == "jax" and args.only != "w1":
        run_w2_jax(*w2, n=jax_n)


if __name__ == "__main__":
    main()
