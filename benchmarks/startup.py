"""A twin as a new process (issue 20 item 3): ``medtwin --help``, ``recommend`` and ``replay``, cold vs warm.

Run:  python benchmarks/startup.py            (this tree and the BEFORE revision; cold, then 3 warm processes each)
      python benchmarks/startup.py --quick    (this tree only, one warm process each; CI smoke run)
      python benchmarks/startup.py --before REV
      python benchmarks/startup.py --only replay --repeat 5   (some commands only; more warm processes)

Every timed run is a whole command line in a new Python process, started as that tree's ``medtwin`` console
script starts it (``recommend_process.entry_code``):

* ``medtwin --help``;
* ``medtwin recommend`` for one synthetic vancomycin patient (the patient of
  ``benchmarks/recommend_process.py``: Goti 2018 population, 4 x 1,000 mg
  q12h, a trough and a peak): MAP + Laplace fit, 1,000-draw regimen search,
  plot, stored run;
* ``medtwin replay`` of 72 h of 5-minute glucose (864 readings, the stream of
  ``benchmarks/observers.py``) through the shipped ICU twin (UKF): tracked
  state, alarms, twin, plot, signed provenance.

**cold**: the first process of an installation, every cache empty: a new
``MEDTWIN_HOME`` (JAX's compiled programs, the model's numba callbacks, the
database) and a new ``NUMBA_CACHE_DIR`` (numba's compiled kernels).  **warm**:
later processes of the same installation (caches filled by the cold one).
In ``--quick`` mode the cold process starts from an empty ``MEDTWIN_HOME``
only (numba's kernels come from wherever this tree keeps them), so that the run
stays within a minute.

Baseline: the code of git revision :data:`BEFORE` (the commit this work started
from), its source tree extracted with ``git archive`` into a temporary folder
and run with ``PYTHONPATH=<tree>/src``, same command lines and inputs, its own
caches.  Reported: wall and CPU time (user + sys of the child), medians of the
warm processes, and the ratio before / now.  CPU time is the steadier figure on
a shared machine: wall time includes waiting for a core.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from recommend_process import checkout, child_env, entry_code, write_patient  # noqa: E402

BEFORE = "b798898"  # main when issue 20's startup work began
TARGETS = {"help": 0.5, "recommend": 3.0, "replay": 3.0}  # s wall, warm process
POPULATION = Path("medtwin/data/populations/vancomycin_goti2018.yaml")


def write_inputs(work: Path) -> dict:
    """The recommend patient and the 72-h replay stream + twin specification (written once, shared by both trees)."""
    import yaml

    from medtwin.io.access import OpenData
    from medtwin.io.stream_file import write_stream
    from medtwin.scenarios.glucose_patients import sample_icu_patients
    from medtwin.scenarios.icu import icu_twin_spec, synthetic_stream

    patient = sample_icu_patients(1, model="bergman_insulin", hours=73, seed=11)[0]
    stream = synthetic_stream(patient, 72, seed=0)
    write_stream(work / "stream.csv", stream.stream, access=OpenData("synthetic benchmark patient"))
    (work / "icu_twin.yaml").write_text(yaml.safe_dump(icu_twin_spec()))
    return {"patient": write_patient(work / "patient.csv", trough=17.5, peak=38.0, crcl=45, weight=82),
            "stream": work / "stream.csv", "spec": work / "icu_twin.yaml",
            "readings": len(stream.stream.measurements)}


def command(name: str, inputs: dict, src: Path, out: Path) -> list[str]:
    if name == "help":
        return ["--help"]
    if name == "recommend":
        return ["recommend", "--population", str(src / POPULATION), "--data", str(inputs["patient"]), "--out",
                str(out), "--open-data", "synthetic benchmark patient"]
    return ["replay", str(inputs["spec"]), "--stream", str(inputs["stream"]), "--out", str(out), "--open-data",
            "synthetic benchmark patient", "--no-progress"]


class Installation:
    """One source tree with its own caches (``MEDTWIN_HOME``, optionally ``NUMBA_CACHE_DIR``)."""

    def __init__(self, label: str, work: Path, src: Path, tree: Path | None, own_numba_cache: bool):
        self.label, self.work, self.src, self.tree = label, work, src, tree
        self.home = work / f"home-{label}"
        self.numba = work / f"numba-{label}" if own_numba_cache else None
        self.runs = 0

    def run(self, name: str, inputs: dict) -> tuple[float, float]:
        """One process; returns (wall s, CPU s of the child)."""
        self.runs += 1
        out = self.work / f"out-{self.label}-{name}-{self.runs}"
        env = child_env(self.home, cache=True, tree=self.tree)
        if self.numba is not None:
            env["NUMBA_CACHE_DIR"] = str(self.numba)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", entry_code(self.tree), *command(name, inputs, self.src, out)],
                              env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{self.label}: medtwin {name} failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                             f"{done.stderr[-4000:]}")
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fmt(runs) -> str:
    return ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)


def med(runs, i: int) -> float:
    return statistics.median(r[i] for r in runs)


def main(quick: bool, rev: str = BEFORE, only: tuple[str, ...] = ("help", "replay", "recommend"),
         repeat: int | None = None) -> dict:
    print("threads:", {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")},
          "cpus:", os.cpu_count(), "| wall/CPU s per process; CPU = user + sys of the child (the steadier figure "
          "on a shared machine)")
    names = tuple(only)
    repeats = repeat or (1 if quick else 3)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="medtwin-startup-") as tmp:
        work = Path(tmp)
        inputs = write_inputs(work)
        src = Path(__file__).resolve().parents[1] / "src"
        installs = [Installation("now", work, src, None, own_numba_cache=not quick)]
        if not quick:
            tree = checkout(rev, work / "before")
            installs.append(Installation("before", work, tree / "src", tree, own_numba_cache=True))
        for inst in installs:  # cold: the first process of each command on an empty installation
            for name in names:
                results[(inst.label, name, "cold")] = [inst.run(name, inputs)]
        for _ in range(repeats):  # warm, interleaved so that a change of the machine's load hits both alike
            for name in names:
                for inst in installs:
                    results.setdefault((inst.label, name, "warm"), []).append(inst.run(name, inputs))
    print(f"inputs: recommend = one vancomycin patient (4 doses, 2 levels); replay = 72 h, "
          f"{inputs['readings']} glucose readings; cold = empty caches ("
          + ("MEDTWIN_HOME only, --quick" if quick else "MEDTWIN_HOME and NUMBA_CACHE_DIR") + ")")
    for name in names:
        target = TARGETS[name]
        for label in [i.label for i in installs]:
            cold, warm = results[(label, name, "cold")], results[(label, name, "warm")]
            tag = f"{rev}" if label == "before" else "this tree"
            verdict = "MET" if med(warm, 0) <= target else "NOT MET"
            cpu = "below" if med(warm, 1) <= target else "above"  # on a loaded machine, the figure to read
            print(f"medtwin {name:<9} {label:>6} ({tag}): cold {fmt(cold)}; warm {fmt(warm)} -> median wall "
                  f"{med(warm, 0):.2f} s, CPU {med(warm, 1):.2f} s" + (f" (target <= {target:g} s wall: {verdict}; "
                                                                        f"CPU {cpu} it)" if label == "now" else ""))
        if not quick:
            before, now = results[("before", name, "warm")], results[("now", name, "warm")]
            print(f"  ratio before / now, warm: wall {med(before, 0) / med(now, 0):.2f}x, CPU "
                  f"{med(before, 1) / med(now, 1):.2f}x; cold: wall "
                  f"{med(results[('before', name, 'cold')], 0) / med(results[('now', name, 'cold')], 0):.2f}x")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="this tree only, one warm process per command (CI)")
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the baseline code (default {BEFORE})")
    parser.add_argument("--only", default="help,replay,recommend", help="commands to time, comma-separated")
    parser.add_argument("--repeat", type=int, default=None, help="warm processes per command (default 3; 1 --quick)")
    args = parser.parse_args()
    start = time.perf_counter()
    main(args.quick, args.before, tuple(n for n in args.only.split(",") if n), args.repeat)
    print(f"benchmark wall time {time.perf_counter() - start:.0f} s")
