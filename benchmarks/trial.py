"""In-silico trial scale-out benchmark (causal issue, item 5): virtual cohorts in process and on Dask.

Run:  python benchmarks/trial.py            (full: 10^6 vancomycin patients, 10^5 nonlinear W2 patients)
      python benchmarks/trial.py --quick    (small sizes, a smoke run for CI, <= 30 s)

Workloads (``medtwin.trials.workloads``): linear PK — vancomycin 1000 mg q12h 1-h infusions, Goti 2018
population with correlated weight/CrCl, endpoints on day 3 (AUC24 by mass balance, Cmax, trough, AUC24
400–600 mg·h/L attained); nonlinear — W2 ``pk2_oral_mm_effect_idr3`` 100 mg q12h oral, adaptive
Dormand–Prince rtol 1e-7, endpoints AUC24 (Simpson, 0.25 h), Cmax, trough, biomarker, responder.

For each: (1) the naive loop — ``scipy.integrate.solve_ivp`` (RK45, rtol 1e-7) patient by patient on the
model's own vector field (``reference_endpoints``), timed on a subset and *extrapolated* to N; (2) the
chunked run in this process (``map_patients(..., scheduler=None)``, one numba thread); (3) the same chunk
function on a 2-worker × 1-thread ``LocalCluster`` (``scheduler=client``).  The endpoint columns of (2) and
(3) are hashed chunk by chunk (SHA-256 in patient order): equal digests = bit-identical per patient.
The consumer keeps running sums only, so memory is bounded by the chunks in flight: the peak resident set
size of this process (sampled every 5 ms, minus the size before the run) and of each worker are printed for
N/10 and N, with the CPU seconds of the client and of each worker (a measure of the work done that the
other jobs on the machine do not inflate as much as wall time).  Dask overhead: cluster start, worker
warm-up (imports, numba cache loads), and the cost per chunk measured with an empty chunk function.  The
machine has 2 cores shared with other jobs: absolute times drift; ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import hashlib  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from medtwin.trials.execution import map_patients  # noqa: E402
from medtwin.trials.workloads import NonlinearWorkload, VancomycinWorkload, reference_endpoints  # noqa: E402


def rss(pid: int | None = None) -> int:
    with open(f"/proc/{pid or 'self'}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (its threads included), from /proc/PID/stat."""
    with open(f"/proc/{pid or 'self'}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """Peak RSS of this process and of the given worker pids, sampled every 5 ms in a thread."""

    def __init__(self, pids=()):
        self.pids = list(pids)
        self.base = rss()
        self.peak = self.base
        self.worker_peak = {p: 0 for p in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            for p in self.pids:
                try:
                    self.worker_peak[p] = max(self.worker_peak[p], rss(p))
                except OSError:
                    pass
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def consume(stream, columns):
    """Running summary of a streamed run: patients, ok, mean of the first column, flag rate, digest."""
    digest = hashlib.sha256()
    n = ok = 0
    total = flags = 0.0
    for _, _, result in stream:
        good = result["status"] == 0
        n += len(good)
        ok += int(good.sum())
        total += float(result[columns[0]][good].sum())
        flags += float(result[columns[-1]][good].sum())
        for k in ("status",) + tuple(columns):
            digest.update(np.ascontiguousarray(result[k]).tobytes())
    return {"n": n, "ok": ok, "mean": total / max(ok, 1), "rate": flags / max(ok, 1), "digest": digest.hexdigest()}


def empty_chunk(start, stop):
    return {"status": np.zeros(stop - start, np.int64)}


def timed_run(label, workload, n, chunk, scheduler, columns, pids=()):
    cpu0 = [cpu_seconds()] + [cpu_seconds(p) for p in pids]
    with Sampler(pids) as mem:
        t0 = time.perf_counter()
        summary = consume(map_patients(workload, n, chunk_size=chunk, scheduler=scheduler), columns)
        seconds = time.perf_counter() - t0
    cpu = [b - a for a, b in zip(cpu0, [cpu_seconds()] + [cpu_seconds(p) for p in pids])]
    workers = ""
    if pids:
        workers = "  worker peak RSS " + ", ".join(f"{v / 2**20:.0f}" for v in mem.worker_peak.values()) + " MiB"
    print(f"  {label:<34} N={n:>9,}  {seconds:8.2f} s  {n / seconds:>11,.0f} patients/s  "
          f"CPU s (client{', workers' if pids else ''}) {' + '.join(f'{c:.1f}' for c in cpu)}  "
          f"client peak RSS +{(mem.peak - mem.base) / 2**20:.0f} MiB{workers}")
    return summary, seconds


def run(name, workload, n, chunk, naive_n, columns, client, pids):
    print(f"\n== {name}: N = {n:,}, chunks of {chunk:,} patients ({-(-n // chunk)} chunks)")
    t0 = time.perf_counter()
    workload(0, 10)
    print(f"  compile / cache load + first call (10 patients, this process): {time.perf_counter() - t0:.2f} s")
    params = workload.parameters(0, naive_n)
    t0 = time.perf_counter()
    naive = reference_endpoints(workload, params)
    naive_s = time.perf_counter() - t0
    naive_rate = naive_n / naive_s
    fast = workload.endpoints(params)
    diff = max(float(np.nanmax(np.abs(naive[k] - fast[k]) / np.abs(naive[k]))) for k in naive)
    print(f"  (1) naive solve_ivp loop, {naive_n} patients: {naive_rate:,.1f} patients/s -> EXTRAPOLATED to "
          f"N: {n / naive_rate:,.0f} s  (max rel. difference of the endpoints to ours {diff:.1e})")
    small = max(chunk, n // 10)
    timed_run("(2) single process, 1 thread", workload, small, chunk, None, columns)
    serial, serial_s = timed_run("(2) single process, 1 thread", workload, n, chunk, None, columns)
    timed_run("(3) Dask LocalCluster 2x1", workload, small, chunk, client, columns, pids)
    dask, dask_s = timed_run("(3) Dask LocalCluster 2x1", workload, n, chunk, client, columns, pids)
    same = dask["digest"] == serial["digest"]
    print(f"  Dask / single process speed: {serial_s / dask_s:.2f}x;  vs naive loop: single process "
          f"{(n / serial_s) / naive_rate:,.0f}x, Dask {(n / dask_s) / naive_rate:,.0f}x")
    print(f"  per-patient endpoints bit-identical (SHA-256 over {', '.join(('status',) + columns)}): "
          f"{'YES' if same else 'NO'};  ok {serial['ok']:,}/{serial['n']:,}, mean {columns[0]} "
          f"{serial['mean']:.1f}, {columns[-1]} rate {serial['rate']:.3f}")
    if not same:
        raise SystemExit("Dask and single-process results differ")
    return serial_s, dask_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()
    import distributed

    print(f"load average at start (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"threads: NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']} OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']}, cpus={os.cpu_count()}, dask.distributed {distributed.__version__}")
    n_lin, n_nl = (20_000, 400) if args.quick else (1_000_000, 100_000)
    chunk_lin, chunk_nl = (5_000, 100) if args.quick else (50_000, 2_000)
    t0 = time.perf_counter()
    env = {k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR, env=env,
                                  scheduler_kwargs={"dashboard": False}) as cluster, \
            distributed.Client(cluster) as client:
        start_s = time.perf_counter() - t0
        pids = list(client.run(os.getpid).values())
        t0 = time.perf_counter()
        client.run(lambda: (VancomycinWorkload()(0, 10), NonlinearWorkload()(0, 10)) and None)
        warm_s = time.perf_counter() - t0
        print(f"Dask LocalCluster (2 worker processes x 1 thread): start {start_s:.2f} s, worker warm-up (imports, "
              f"numba cache loads, first calls) {warm_s:.2f} s — both outside the timed runs below")
        n_empty = 50 if args.quick else 400
        t0 = time.perf_counter()
        list(map_patients(empty_chunk, n_empty, chunk_size=1, scheduler=client))
        per_chunk = (time.perf_counter() - t0) / n_empty
        t0 = time.perf_counter()
        list(map_patients(empty_chunk, n_empty, chunk_size=1))
        per_chunk_serial = (time.perf_counter() - t0) / n_empty
        print(f"Dask per-chunk overhead (empty chunk function, {n_empty} chunks, 4 in flight): "
              f"{per_chunk * 1e3:.2f} ms per chunk (in process: {per_chunk_serial * 1e6:.0f} µs)")
        lin = run("linear PK: vancomycin (Goti 2018), endpoints day 3", VancomycinWorkload(), n_lin, chunk_lin,
                  5 if args.quick else 100, ("auc24", "cmax", "ctrough", "attained"), client, pids)
        nl = run("nonlinear: pk2_oral_mm_effect_idr3 (W2), endpoints day 3", NonlinearWorkload(), n_nl, chunk_nl,
                 3 if args.quick else 40, ("auc24", "cmax", "ctrough", "r_end", "responder"), client, pids)
    print(f"\nsummary: linear N={n_lin:,}: single process {lin[0]:.2f} s, Dask {lin[1]:.2f} s; nonlinear "
          f"N={n_nl:,}: single process {nl[0]:.2f} s, Dask {nl[1]:.2f} s (2 cores shared with other jobs; "
          f"load average at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
