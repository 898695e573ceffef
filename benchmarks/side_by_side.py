"""Before/after figures of the benchmarks of issues 2–6, side by side in one run.

Run:  python benchmarks/side_by_side.py                 (before = the last commit before the issue-13 redesign)
      python benchmarks/side_by_side.py --before REV    (any other git revision)
      python benchmarks/side_by_side.py --only cohort,mpc

The "before" code is checked out from git into a temporary worktree and each benchmark script (W1/W2 cohort,
Laplace MAP, UKF update, MPC step, recommend_dose) runs in its own subprocess twice, once on the old source
tree and once on this one, alternating so that drift of this shared machine hits both sides alike.  Each
side runs its own copy of the benchmark script with ``--quick``; the figures are read from their printed lines
(the regular expressions below) and printed in one table with the ratio after/before (for times, < 1 is
faster; for rates, > 1 is faster).  The first run of the old tree compiles its numba kernels (about a
minute, not counted in any figure: every script reports compile time apart from warm time).

The environment is today's.  The pre-redesign MPC reads SLSQP's callback argument as an ``OptimizeResult``,
which SciPy passes from 1.17 on; with the SciPy 1.15 that EconML (issue 15) pins, its MPC benchmark stops with
an AttributeError and the row says "figure not found".  To measure it, give the old code a SciPy of its time on
the side: ``pip install --no-deps --target /tmp/scipy117 "scipy==1.17.*"`` and ``--before-path /tmp/scipy117``
(the after side keeps the installed SciPy; its MPC handles both callback forms).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "6c4748f"  # main just before the issue-13 redesign (one Twin, one workflow, one schedule)

# (benchmark, figure, regex with one group, unit, larger_is_better); a regex starting with "== W1 " or "== W2 "
# is searched in that section of the cohort output only, and its LAST match is taken (the largest quick N).
_RATE = r"N=\s*[\d,]+:\s+[\d.]+ s\s+([\d,]+) patients/s"
_RATIO = r"ratio vs naive\s+([\d,]+)x"
FIGURES = [
    ("cohort", "W1 rate (largest quick N)", "== W1 " + _RATE, "patients/s", True),
    ("cohort", "W1 ratio vs naive (largest quick N)", "== W1 " + _RATIO, "x", True),
    ("cohort", "W2 rate (largest quick N)", "== W2 " + _RATE, "patients/s", True),
    ("cohort", "W2 ratio vs naive (largest quick N)", "== W2 " + _RATIO, "x", True),
    ("personalize", "Laplace MAP warm median", r"Laplace: .*?warm median ([\d.]+) ms", "ms", False),
    ("observers", "UKF update median", r"UKF .*?update \(predict 5 min \+ update\) median ([\d.]+) ms", "ms", False),
    ("mpc", "MPC step warm median", r"MPC step .*?warm median ([\d.]+) ms", "ms", False),
    ("recommend", "recommend_dose search warm", r"search alone \(no sensitivity\): warm ([\d.]+) s", "s", False),
]


def checkout(rev: str, where: Path) -> Path:
    """The source tree of ``rev`` in ``where`` (git archive: no worktree bookkeeping left behind)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def run_benchmark(tree: Path, name: str, timeout: float, extra_path: str = "") -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(tree / "src"), extra_path) if p))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", "")  # no persistent JAX cache: compile figures stay comparable
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / f"{name}.py"), "--quick"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        output += f"\n[exit status {done.returncode}]"
    return output, time.perf_counter() - start


def figure(output: str, pattern: str) -> float | None:
    """The figure ``pattern`` captures in ``output`` (see FIGURES), or None when it is not there."""
    if pattern.startswith("== W"):
        section, pattern = pattern[:5], pattern[6:]
        parts = output.split(section)
        output = parts[1].split("\n== ")[0] if len(parts) > 1 else ""
        matches = re.findall(pattern, output)
        return float(matches[-1].replace(",", "")) if matches else None
    match = re.search(pattern, output)
    return float(match.group(1).replace(",", "")) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the 'before' code (default {BEFORE})")
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per benchmark run")
    parser.add_argument("--keep-output", type=Path, help="folder to write every run's full output to")
    parser.add_argument("--before-path", default="",
                        help="folders put on the 'before' code's PYTHONPATH after its src (a package version it "
                             "needs, e.g. a SciPy >= 1.17 installed with pip --target: see the module docstring)")
    args = parser.parse_args()
    names = sorted({f[0] for f in FIGURES}, key=[f[0] for f in FIGURES].index)
    if args.only:
        names = [n for n in names if n in set(args.only.split(","))]
    temp = Path(tempfile.mkdtemp(prefix="medtwin-before-"))
    try:
        before_tree = checkout(args.before, temp)
        print(f"before: {args.before} (in {before_tree}); after: {ROOT} (working tree); "
              f"python {sys.version.split()[0]}; NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}")
        rows = []
        for name in names:
            outputs = {}
            for side, tree in (("before", before_tree), ("after", ROOT)):
                out, wall = run_benchmark(tree, name, args.timeout, args.before_path if side == "before" else "")
                outputs[side] = out
                print(f"  ran {name:12s} {side:6s} in {wall:6.1f} s", flush=True)
                if args.keep_output:
                    args.keep_output.mkdir(parents=True, exist_ok=True)
                    (args.keep_output / f"{name}.{side}.txt").write_text(out)
            for bench, label, pattern, unit, larger_better in FIGURES:
                if bench == name:
                    rows.append((label, unit, larger_better, figure(outputs["before"], pattern),
                                 figure(outputs["after"], pattern)))
        print(f"\n{'figure':34s} {'before':>14s} {'after':>14s}  {'after/before':>12s}  verdict")
        worse = 0
        for label, unit, larger_better, old, new in rows:
            if old is None or new is None:
                print(f"{label:34s} {str(old):>14s} {str(new):>14s}  {'':>12s}  figure not found in the output")
                worse += 1
                continue
            ratio = new / old if old else float("inf")
            # 15 %: the run-to-run spread of these quick runs on this shared 2-core machine.
            ok = ratio >= 0.85 if larger_better else ratio <= 1.15
            worse += not ok
            print(f"{label:34s} {old:>11,.3f} {unit:>2s} {new:>11,.3f} {unit:>2s}  {ratio:>12.2f}  "
                  f"{'no worse' if ok else 'WORSE'}")
        return 1 if worse else 0
    finally:
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
