"""The block kernel's per-model callbacks kept on disk by a process edge (medtwin.io.jax_cache.warm_block_callbacks,
medtwin.core.block_dopri.compile_block_callbacks(..., cache=True)).

A second process with the same ``MEDTWIN_HOME`` must load the three callbacks from numba's cache (each
``CFunc.cache_hits`` is 1: nothing compiled) and give bit-identical outputs; the reference is the in-memory
compilation of the library path.  A model with another digest must get its own entry, never this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from medtwin import Regimen, get_model, simulate
from medtwin.core.simulate import block_callbacks
from medtwin.io.jax_cache import warm_block_callbacks

MODEL = "pk1_iv_mm"  # one state: compiles in about a second (the W2 model takes 5-13 s; benchmarks/cohort.py)
VMAX = [4.0, 5.0, 6.5, 8.0, 11.0]
TIMES = [0.5, 2.0, 6.0, 12.0, 24.0]

_CHILD = f"""
import json, sys
import numpy as np
from medtwin import Regimen, get_model, simulate
from medtwin.core.simulate import block_callbacks
from medtwin.io.jax_cache import warm_block_callbacks
model = get_model({MODEL!r})
folder = warm_block_callbacks(model, {{"MEDTWIN_HOME": sys.argv[1]}})
r = simulate(model, {{"VMAX": {VMAX!r}}}, Regimen.every(12.0, "h", 100.0, n=2), {TIMES!r}, keep_states=False,
             kernel="block")
np.save(sys.argv[2], r.output("C"))
print(json.dumps({{"folder": str(folder), "kernel": r.extra["kernel"],
                  "hits": {{k: f.cache_hits for k, f in block_callbacks(model).items()}}}}))
"""


def _run(model):
    r = simulate(model, {"VMAX": VMAX}, Regimen.every(12.0, "h", 100.0, n=2), TIMES, keep_states=False,
                 kernel="block")
    assert r.extra["kernel"] == "block"
    return r.output("C")


def test_second_process_loads_block_callbacks_without_compiling(tmp_path):
    env = {"MEDTWIN_HOME": str(tmp_path)}
    reference = _run(get_model(MODEL).with_changes())  # in memory, no folder
    first = get_model(MODEL).with_changes()
    folder = warm_block_callbacks(first, env)
    assert {k: f.cache_hits for k, f in block_callbacks(first).items()} == {"rhs": 0, "outputs": 0, "step": 0}
    np.testing.assert_array_equal(_run(first), reference)
    files = sorted(p.name for p in folder.glob("block_*.py"))
    assert len(files) == 1 and len(list((folder / "__pycache__").glob("block_*.nbi"))) == 3

    out = tmp_path / "child.npy"
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), str(out)], capture_output=True, text=True,
                          env=child_env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["kernel"] == "block" and report["folder"] == str(folder)
    assert report["hits"] == {"rhs": 1, "outputs": 1, "step": 1}  # loaded from numba's cache: nothing compiled
    np.testing.assert_array_equal(np.load(out), reference)  # bit-identical
    assert sorted(p.name for p in folder.glob("block_*.py")) == files  # nothing new written

    other = get_model(MODEL).with_changes(name="pk1_iv_mm_renamed")  # same generated source, another digest
    assert other.digest() != first.digest()
    warm_block_callbacks(other, env)
    assert len(list(folder.glob("block_*.py"))) == 2  # its own file ...
    assert {k: f.cache_hits for k, f in block_callbacks(other).items()} == {"rhs": 0, "outputs": 0, "step": 0}
    np.testing.assert_array_equal(_run(other), reference)  # ... compiled anew (same arithmetic, same numbers)


def test_switch_off_writes_nothing_and_library_path_stays_in_memory(tmp_path):
    model = get_model(MODEL).with_changes()
    assert warm_block_callbacks(model, {"MEDTWIN_HOME": str(tmp_path), "MEDTWIN_COMPILE_CACHE": "0"}) is None
    _run(model)  # the library's own path: compiled in memory
    assert not any(tmp_path.iterdir())
    assert warm_block_callbacks(model, {"MEDTWIN_HOME": str(tmp_path)}) is None  # already built: nothing to do
