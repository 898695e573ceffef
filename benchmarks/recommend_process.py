"""``medtwin recommend`` as a new process: pre-redesign code, today's with caches off, a second process (3x).

Run:  python benchmarks/recommend_process.py            (3 processes of each kind, interleaved)
      python benchmarks/recommend_process.py --quick    (1 of each; CI)
      python benchmarks/recommend_process.py --before REV   (another "before" revision; default 6c4748f)

Every timed run is a whole ``medtwin recommend`` command line in a new Python
process, started as each tree's ``medtwin`` console script starts it
(:func:`entry_code`; import, data checks, MAP + Laplace fit, 1,000-draw regimen
search, sensitivity, plot, stored run), on a synthetic vancomycin patient (Goti 2018
population, 4 x 1,000 mg q12h, a trough and a peak).  All processes share one
temporary ``MEDTWIN_HOME``, so the database and the numba kernels' on-disk cache
are warm for every timed run alike; they differ in JAX's compiled programs and
the model's numba callbacks (both kept on disk by the command line since issue 13):

* **before** (the code before the issue-13 redesign, git revision :data:`BEFORE`):
  its source tree extracted with ``git archive`` into the temporary folder and
  run with ``PYTHONPATH=<tree>/src``, same command line and inputs, its own
  ``MEDTWIN_HOME`` (its database schema is its own).  That code has no
  persistent JAX cache for ``recommend``; its numba kernels cache on disk in its
  own tree, so one untimed warm-up run (patient A, about a minute: it compiles
  them) comes first, and the timed runs find them compiled, like ours;
* **today, caches off**: ``MEDTWIN_COMPILE_CACHE=0`` and ``JAX_ENABLE_COMPILATION_CACHE=false``:
  no persistent compilation cache, every process traces and compiles every
  JAX program and compiles the model's numba callbacks (today's code as
  ``medtwin recommend`` ran before its caches were switched on);
* **first process**: the command line's own caches (``$MEDTWIN_HOME/jax-cache``,
  :func:`medtwin.io.jax_cache.enable_persistent_jax_cache`, and
  ``$MEDTWIN_HOME/numba-callbacks``, :func:`medtwin.io.jax_cache.warm_model_callbacks`)
  starting empty: compiles and writes every program (patient A; also warms the
  numba kernels and the database);
* **second process**: the same caches, now filled, on patient B (other levels and
  covariate values, same number of records): reads the programs back.

Reported: wall time and CPU time (user + sys of the child) per process, medians,
and the ratios before / second process (issue 13's target, >= 3x) and today-caches-off / second process (a
diagnostic: what the on-disk caches save; since a linear recommend runs no JAX program, only the model's numba
callbacks, about 1.25x).  Wall time on a shared machine drifts
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

import medtwin  # noqa: E402
from medtwin.io.population_file import shipped_population_path  # noqa: E402

TARGET_RATIO = 3.0
CLI = "import sys; from medtwin.cli import app; sys.exit(app())"  # the console script of revisions before 06145c2
ROOT = Path(__file__).resolve().parents[1]
BEFORE = "6c4748f"  # main just before the issue-13 redesign (as benchmarks/side_by_side.py)


def write_patient(path: Path, trough: float, peak: float, crcl: float, weight: float) -> Path:
    """Four 1,000 mg 1-h infusions q12h, a trough before the 4th dose and a peak after it (NONMEM CSV)."""
    rows = [dict(ID=1, TIME=12.0 * k, AMT=1000.0, RATE=1000.0, DV=".", EVID=1, CRCL=crcl, WT=weight, DIAL=0)
            for k in range(4)]
    rows += [dict(ID=1, TIME=35.5, AMT=0, RATE=0, DV=trough, EVID=0, CRCL=crcl, WT=weight, DIAL=0),
             dict(ID=1, TIME=38.0, AMT=0, RATE=0, DV=peak, EVID=0, CRCL=crcl, WT=weight, DIAL=0)]
    pd.DataFrame(rows).sort_values("TIME", kind="stable").to_csv(path, index=False)
    return path


def entry_code(tree: Path | None = None) -> str:
    """``python -c`` code that runs what the ``medtwin`` console script of ``tree`` (default this one) runs.

    Read from the tree's ``pyproject.toml`` (``[project.scripts] medtwin = "module:function"``), as pip writes
    the script: ``sys.exit(function())``.  Since issue 20's fast exit that is ``medtwin.cli:main``; before, it
    was ``medtwin.cli:app`` (:data:`CLI`).
    """
    import tomllib

    project = tomllib.loads(((tree or ROOT) / "pyproject.toml").read_text())
    module, _, function = project["project"]["scripts"]["medtwin"].partition(":")
    return f"import sys; from {module} import {function}; sys.exit({function}())"


def checkout(rev: str, where: Path) -> Path:
    """The source tree of ``rev`` in ``where`` (``git archive | tar -x``: no worktree bookkeeping left behind)."""
    where.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def child_env(home: Path, cache: bool, tree: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE",
                                                                      "JAX_ENABLE_COMPILATION_CACHE", "MEDTWIN_"))}
    env["MEDTWIN_HOME"] = str(home)
    if tree is not None:  # the old source tree first on the path (the installed medtwin is this checkout's)
        env["PYTHONPATH"] = str(tree / "src")
    if not cache:
        env["MEDTWIN_COMPILE_CACHE"] = "0"
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


def run_recommend(work: Path, data: Path, cache: bool, tag: str, tree: Path | None = None) -> tuple[float, float]:
    """One ``medtwin recommend`` process (of the source ``tree``, default this one); returns (wall s, CPU s)."""
    out = work / f"rec-{tag}"
    population = shipped_population_path("vancomycin_goti2018")
    if tree is not None:  # the old tree's own copy of the shipped file
        population = tree / "src" / "medtwin" / population.relative_to(Path(medtwin.__file__).parent)
    cmd = [sys.executable, "-c", entry_code(tree), "recommend", "--population", str(population),
           "--data", str(data), "--out", str(out), "--open-data", "synthetic benchmark patient"]
    home = work / ("home" if tree is None else "home-before")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=child_env(home, cache, tree), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not (out / "recommendation.json").exists():
        raise SystemExit(f"medtwin recommend failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def entries(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def main(quick: bool, rev: str = BEFORE) -> float:
    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")},
          "cpus:", os.cpu_count())
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="medtwin-recommend-process-") as tmp:
        work = Path(tmp)
        patient_a = write_patient(work / "patient_a.csv", trough=12.0, peak=31.0, crcl=60, weight=75)
        patient_b = write_patient(work / "patient_b.csv", trough=17.5, peak=38.0, crcl=45, weight=82)
        tree = checkout(rev, work / "before")
        wall, cpu = run_recommend(work, patient_a, cache=False, tag="before-warmup", tree=tree)
        print(f"before ({rev}, its source tree run with PYTHONPATH=<tree>/src): untimed warm-up run (patient A; "
              f"compiles its numba kernels into its tree's on-disk cache): wall {wall:.1f} s, CPU {cpu:.1f} s")
        cache = work / "home" / "jax-cache"
        wall, cpu = run_recommend(work, patient_a, cache=True, tag="first")
        print(f"first process (patient A, empty caches under $MEDTWIN_HOME: compiles and writes them; also warms "
              f"numba's kernel cache and the database): wall {wall:.1f} s, CPU {cpu:.1f} s; {entries(cache)} "
              f"JAX cache files")
        filled = entries(cache)
        old, today, second = [], [], []
        for k in range(repeats):  # interleaved, so that a change in the machine's load hits all alike
            old.append(run_recommend(work, patient_b, cache=False, tag=f"before-{k}", tree=tree))
            today.append(run_recommend(work, patient_b, cache=False, tag=f"today-{k}"))
            second.append(run_recommend(work, patient_b, cache=True, tag=f"second-{k}"))
        new = entries(cache) - filled

    def med(runs, i):
        return statistics.median(r[i] for r in runs)

    def show(runs):
        return ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs)

    print(f"before ({rev}: no persistent JAX cache in recommend), patient B, wall/CPU s per process: {show(old)}; "
          f"median wall {med(old, 0):.1f} s, CPU {med(old, 1):.1f} s")
    print(f"today, caches off (MEDTWIN_COMPILE_CACHE=0, JAX_ENABLE_COMPILATION_CACHE=false), patient B, "
          f"wall/CPU s per process: {show(today)}; median wall {med(today, 0):.1f} s, CPU {med(today, 1):.1f} s")
    print(f"second process (caches filled by the first, patient B), wall/CPU s per process: {show(second)}; "
          f"median wall {med(second, 0):.1f} s, CPU {med(second, 1):.1f} s; {new} new JAX cache files written")
    ratios = {}
    for name, runs in (("before", old), ("today-cache-off", today)):
        wall_ratio, cpu_ratio = med(runs, 0) / med(second, 0), med(runs, 1) / med(second, 1)
        ratios[name] = wall_ratio
        if name == "before":  # issue 13's acceptance: the second process against the pre-redesign code
            verdict = (f"target >= {TARGET_RATIO:g}x: wall {'MET' if wall_ratio >= TARGET_RATIO else 'NOT MET'}, "
                       f"CPU {'MET' if cpu_ratio >= TARGET_RATIO else 'NOT MET'}")
        else:  # what the on-disk caches still save: little once a linear recommend needs no JAX program
            verdict = "diagnostic, no target: the caches' share of the second process"
        print(f"ratio {name} / second process: wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x ({verdict})")
    return ratios["before"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one process of each kind (CI)")
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the 'before' code (default {BEFORE})")
    args = parser.parse_args()
    main(args.quick, args.before)
