"""``medtwin recommend`` as a new process: without the on-disk JAX cache (today) vs a second process (target >= 3x).

Run:  python benchmarks/recommend_process.py            (3 processes of each kind, interleaved)
      python benchmarks/recommend_process.py --quick    (1 of each; CI)

Every timed run is a whole ``medtwin recommend`` command line in a new Python
process (import, data checks, MAP + Laplace fit, 1,000-draw regimen search,
sensitivity, plot, stored run), on a synthetic vancomycin patient (Goti 2018
population, 4 x 1,000 mg q12h, a trough and a peak).  All processes share one
temporary ``MEDTWIN_HOME``, so the database and the numba kernels' on-disk cache
are warm for every timed run alike; they differ only in JAX's compiled programs:

* **today**: ``MEDTWIN_COMPILE_CACHE=0`` and ``JAX_ENABLE_COMPILATION_CACHE=false``:
  no persistent compilation cache, every process traces and compiles every
  JAX program (how ``medtwin recommend`` ran before the cache was switched on);
* **first process**: the command line's own cache (``$MEDTWIN_HOME/jax-cache``,
  :func:`medtwin.io.jax_cache.enable_persistent_jax_cache`) starting empty:
  compiles and writes every program (patient A; also warms numba and the database);
* **second process**: the same cache, now filled, on patient B (other levels and
  covariate values, same number of records): reads the programs back.

Reported: wall time and CPU time (user + sys of the child) per process, medians,
and the ratios today / second process.  Wall time on a shared machine drifts
with its load; CPU time is the steadier of the two.  JAX's own environment
(``JAX_COMPILATION_CACHE_DIR`` ...) is removed from the children so that the
command line's default is what is measured.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("NUMBA_NUM_THREADS", str(min(2, os.cpu_count() or 1)))

import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from medtwin.io.population_file import shipped_population_path  # noqa: E402

TARGET_RATIO = 3.0
CLI = "import sys; from medtwin.cli import app; sys.exit(app())"


def write_patient(path: Path, trough: float, peak: float, crcl: float, weight: float) -> Path:
    """Four 1,000 mg 1-h infusions q12h, a trough before the 4th dose and a peak after it (NONMEM CSV)."""
    rows = [dict(ID=1, TIME=12.0 * k, AMT=1000.0, RATE=1000.0, DV=".", EVID=1, CRCL=crcl, WT=weight, DIAL=0)
            for k in range(4)]
    rows += [dict(ID=1, TIME=35.5, AMT=0, RATE=0, DV=trough, EVID=0, CRCL=crcl, WT=weight, DIAL=0),
             dict(ID=1, TIME=38.0, AMT=0, RATE=0, DV=peak, EVID=0, CRCL=crcl, WT=weight, DIAL=0)]
    pd.DataFrame(rows).sort_values("TIME", kind="stable").to_csv(path, index=False)
    return path


def child_env(home: Path, cache: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE",
                                                                      "JAX_ENABLE_COMPILATION_CACHE", "MEDTWIN_"))}
    env["MEDTWIN_HOME"] = str(home)
    if not cache:
        env["MEDTWIN_COMPILE_CACHE"] = "0"
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


def run_recommend(work: Path, data: Path, cache: bool, tag: str) -> tuple[float, float]:
    """One ``medtwin recommend`` process; returns (wall s, CPU s of the child)."""
    out = work / f"rec-{tag}"
    cmd = [sys.executable, "-c", CLI, "recommend", "--population", str(shipped_population_path("vancomycin_goti2018")),
           "--data", str(data), "--out", str(out), "--open-data", "synthetic benchmark patient"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=child_env(work / "home", cache), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not (out / "recommendation.json").exists():
        raise SystemExit(f"medtwin recommend failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def entries(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main(quick: bool) -> float:
    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")},
          "cpus:", os.cpu_count())
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="medtwin-recommend-process-") as tmp:
        work = Path(tmp)
        patient_a = write_patient(work / "patient_a.csv", trough=12.0, peak=31.0, crcl=60, weight=75)
        patient_b = write_patient(work / "patient_b.csv", trough=17.5, peak=38.0, crcl=45, weight=82)
        cache = work / "home" / "jax-cache"
        wall, cpu = run_recommend(work, patient_a, cache=True, tag="first")
        print(f"first process (patient A, empty cache at $MEDTWIN_HOME/jax-cache: compiles and writes it; also warms "
              f"numba's cache and the database): wall {wall:.1f} s, CPU {cpu:.1f} s; {entries(cache)} cache files")
        filled = entries(cache)
        today, second = [], []
        for k in range(repeats):  # interleaved, so that a change in the machine's load hits both alike
            today.append(run_recommend(work, patient_b, cache=False, tag=f"today-{k}"))
            second.append(run_recommend(work, patient_b, cache=True, tag=f"second-{k}"))
        new = entries(cache) - filled

    def med(runs, i):
        return statistics.median(r[i] for r in runs)

    def show(runs):
        return ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs)

    print(f"today (no on-disk compile cache: MEDTWIN_COMPILE_CACHE=0, JAX_ENABLE_COMPILATION_CACHE=false), patient B, "
          f"wall/CPU s per process: {show(today)}; median wall {med(today, 0):.1f} s, CPU {med(today, 1):.1f} s")
    print(f"second process (cache filled by the first, patient B), wall/CPU s per process: {show(second)}; "
          f"median wall {med(second, 0):.1f} s, CPU {med(second, 1):.1f} s; {new} new cache files written")
    wall_ratio, cpu_ratio = med(today, 0) / med(second, 0), med(today, 1) / med(second, 1)
    print(f"ratio today / second process: wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x (target >= {TARGET_RATIO:g}x: "
          f"wall {'MET' if wall_ratio >= TARGET_RATIO else 'NOT MET'}, CPU "
          f"{'MET' if cpu_ratio >= TARGET_RATIO else 'NOT MET'})")
    return wall_ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one process of each kind (CI)")
    main(parser.parse_args().quick)
