"""medtwin.trials.execution: the same cohort in process and on Dask, bit for bit; retries; failure statuses.

One LocalCluster (2 worker processes × 1 thread) for the module; the ``"local"`` scheduler starts its own once.
Chunk functions defined here are module-level, so the workers import them (spawned workers get this
process's sys.path).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from medtwin.errors import SimulationError
from medtwin.trials.execution import (INVALID_PARAMETERS, ChunkFailedError, map_patients, patient_normals,
                                      patient_rng, patient_uniforms)
from medtwin.trials.workloads import NonlinearWorkload, VancomycinWorkload, reference_endpoints

distributed = pytest.importorskip("distributed")

VANCO = VancomycinWorkload(seed=11)
NONLINEAR = NonlinearWorkload(seed=12)


@pytest.fixture(scope="module")
def worker_home(tmp_path_factory):
    """A private MEDTWIN_HOME for the workers (their numba callback cache), never the user's."""
    return str(tmp_path_factory.mktemp("worker_home"))


@pytest.fixture(scope="module")
def client(worker_home):
    """Two worker processes (1 thread each) for the module."""
    import logging

    env = {"MEDTWIN_HOME": worker_home}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR, scheduler_kwargs={"dashboard": False},
                                  env=env) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def collect(stream) -> dict:
    parts = list(stream)
    starts = [a for a, _, _ in parts]
    assert starts == sorted(starts) and all(b == c for (_, b, _), (c, _, _) in zip(parts, parts[1:]))
    return {k: np.concatenate([r[k] for _, _, r in parts]) for k in parts[0][2]}


def assert_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=True), k


# ------------------------------------------------------------------ chunk functions used on the workers
def flaky(start, stop, *, folder, fail_times, only=None):
    """Raise the first ``fail_times`` times chunk [start, stop) runs (attempts counted in files).

    ``only``: the start of the one chunk that fails (default: every chunk).
    """
    marker = Path(folder) / f"{start}-{stop}"
    count = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(count + 1))
    if count < fail_times and only in (None, start):
        raise RuntimeError(f"injected failure {count + 1} of chunk {start}")
    return {"status": np.zeros(stop - start, np.int64), "i": np.arange(start, stop)}


def dies_once(start, stop, *, folder):
    """Kill the worker process the first time chunk 0 runs (a lost worker)."""
    marker = Path(folder) / f"died-{start}"
    if start == 0 and not marker.exists():
        marker.write_text("1")
        os._exit(1)
    return {"status": np.zeros(stop - start, np.int64), "i": np.arange(start, stop)}


def wrong_length(start, stop):
    return {"status": np.zeros(stop - start + 1, np.int64)}


# ------------------------------------------------------------------ determinism
def test_same_patients_bit_for_bit_whatever_the_chunking_and_scheduler(client, worker_home, monkeypatch):
    monkeypatch.setenv("MEDTWIN_HOME", worker_home)  # the "local" cluster's worker reuses the compiled callbacks
    n = 130
    serial7 = collect(map_patients(VANCO, n, chunk_size=7))
    serial50 = collect(map_patients(VANCO, n, chunk_size=50))
    cluster7 = collect(map_patients(VANCO, n, chunk_size=7, scheduler=client))
    local50 = collect(map_patients(VANCO, n, chunk_size=50, scheduler="local", workers=1))
    assert_identical(serial7, serial50)
    assert_identical(serial7, cluster7)
    assert_identical(serial7, local50)
    assert np.all(serial7["status"] == 0) and 0 < serial7["attained"].mean() < 1
    nl7 = collect(map_patients(NONLINEAR, 20, chunk_size=7))
    nl_cluster = collect(map_patients(NONLINEAR, 20, chunk_size=50, scheduler=client))
    assert_identical(nl7, nl_cluster)


def test_endpoints_match_an_independent_scipy_solve():
    for workload, n, tolerance in ((VANCO, 4, 1e-9), (NONLINEAR, 3, 1e-4)):
        params = workload.parameters(0, n)
        ours = workload.endpoints(params)
        ref = reference_endpoints(workload, params, method="DOP853", rtol=1e-11, atol=1e-12)
        for k, values in ref.items():
            np.testing.assert_allclose(ours[k], values, rtol=tolerance, err_msg=k)


def test_patient_draws_depend_on_seed_and_index_only():
    whole = patient_normals(5, 0, 3000, 4, stream=2)
    pieces = np.concatenate([patient_normals(5, a, min(a + 999, 3000), 4, stream=2) for a in range(0, 3000, 999)])
    assert np.array_equal(whole, pieces)
    assert not np.array_equal(whole, patient_normals(5, 0, 3000, 4, stream=3))
    assert abs(whole.mean()) < 0.05 and abs(whole.std() - 1) < 0.03
    u = patient_uniforms(5, 1000, 1030, 1)
    assert np.array_equal(u, patient_uniforms(5, 0, 2048, 1)[1000:1030])
    assert patient_rng(5, 17).random() == patient_rng(5, 17).random() != patient_rng(5, 18).random()
    with pytest.raises(SimulationError, match="stop < start"):
        patient_normals(5, 10, 3, 1)


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize("where", ["serial", "cluster"])
def test_a_chunk_failing_once_is_retried(tmp_path, client, where):
    fn = functools.partial(flaky, folder=str(tmp_path), fail_times=1)
    out = collect(map_patients(fn, 25, chunk_size=10, retries=1, scheduler=None if where == "serial" else client))
    assert np.array_equal(out["i"], np.arange(25))
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"0-10": "2", "10-20": "2", "20-25": "2"}


@pytest.mark.parametrize("where", ["serial", "cluster"])
def test_a_chunk_failing_always_names_its_range(tmp_path, client, where):
    fn = functools.partial(flaky, folder=str(tmp_path), fail_times=99, only=10)
    with pytest.raises(ChunkFailedError, match=r"patients \[10, 20\) failed on all 3 attempt\(s\).*failure 3"):
        list(map_patients(fn, 25, chunk_size=10, retries=2, scheduler=None if where == "serial" else client))


def test_a_lost_worker_does_not_lose_the_chunk(tmp_path, client):
    fn = functools.partial(dies_once, folder=str(tmp_path))
    out = collect(map_patients(fn, 20, chunk_size=10, scheduler=client))
    assert np.array_equal(out["i"], np.arange(20)) and (tmp_path / "died-0").exists()


def test_a_patient_with_a_bad_parameter_is_a_status_not_an_abort():
    params = VANCO.parameters(0, 6)
    params["CL"][2] = np.nan
    params["V1"][4] = -1.0
    out = VANCO.endpoints(params)
    whole = VANCO(0, 6)
    assert out["status"].tolist() == [0, 0, INVALID_PARAMETERS, 0, INVALID_PARAMETERS, 0]
    assert np.isnan(out["auc24"][[2, 4]]).all() and out["attained"][2] == 0
    keep = [0, 1, 3, 5]
    assert np.array_equal(out["auc24"][keep], whole["auc24"][keep])
    nl = NONLINEAR.parameters(0, 3)
    nl["KA"][1] = np.inf
    assert NONLINEAR.endpoints(nl)["status"].tolist() == [0, INVALID_PARAMETERS, 0]


def test_bad_arguments_and_results_are_refused():
    with pytest.raises(SimulationError, match="chunk_size must be an integer >= 1"):
        map_patients(VANCO, 10, chunk_size=0)
    with pytest.raises(SimulationError, match="scheduler 'nowhere'"):
        map_patients(VANCO, 10, scheduler="nowhere")
    with pytest.raises(SimulationError, match=r"chunk \[0, 4\): column 'status' must be a numpy array of shape \(4,\)"):
        list(map_patients(wrong_length, 4))


# ------------------------------------------------------------------ address and progress
def test_scheduler_address_and_progress(client):
    seen = []
    out = collect(map_patients(VANCO, 40, chunk_size=7, scheduler=client.scheduler.address,
                               progress=lambda done, total: seen.append((done, total))))
    assert_identical(out, VANCO(0, 40))
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == 40 and {t for _, t in seen} == {40} and len(seen) == 6
