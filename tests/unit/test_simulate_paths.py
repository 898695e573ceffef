"""The cohort fast path (linear model, shared schedule) agrees with the general kernel."""

import numpy as np

from medtwin import Regimen, get_model, simulate
from medtwin.core.events import DoseEvent


def test_linear_fast_path_equals_general_kernel(rng):
    model = get_model("pk2_oral")
    n = 70  # more than two blocks of 32, last one short
    params = {"KA": rng.lognormal(0, 0.3, n), "CL": 5 * rng.lognormal(0, 0.3, n), "V1": 30 * rng.lognormal(0, 0.3, n)}
    regimen = Regimen((DoseEvent(time=0.0, amount=100.0, ii=12.0, addl=5),
                       DoseEvent(time=30.0, amount=200.0, cmt=2, rate=100.0)))
    times = np.linspace(0.0, 96.0, 97)
    fast = simulate(model, params, regimen, times)  # shared schedule -> fast path
    general = simulate(model, params, regimen, [times] * n, pre_dose=[np.zeros(97, bool)] * n)  # per-patient path
    np.testing.assert_allclose(fast.output("C"), general.output("C").reshape(n, 97), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fast.states, general.states, rtol=1e-12, atol=1e-12)
    assert fast.ok and general.ok


def test_results_do_not_depend_on_threads_or_chunks(rng):
    model = get_model("pk2_oral_mm")
    n = 50
    params = {"VMAX": 50 * rng.lognormal(0, 0.3, n)}
    regimen = Regimen.every(12, "h", 100, n=4)
    times = np.arange(0.0, 60.0)
    one = simulate(model, params, regimen, times, threads=1)
    two = simulate(model, params, regimen, times, threads=2, chunk_size=7)
    np.testing.assert_array_equal(one.output("C"), two.output("C"))


def test_progress_callback_reaches_total():
    calls = []
    simulate(get_model("pk1_iv"), {"CL": np.ones(10)}, Regimen.single(1.0), [1.0], chunk_size=3,
             progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (10, 10) and len(calls) == 4


def test_digest_is_stable_across_processes():
    import subprocess
    import sys

    code = "from medtwin.models import get_model; print(get_model('pbpk_whole_body').digest(), get_model('pk1_iv').digest())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1
