"""Load and fault test of ``medtwin serve``: live ingest of ICU glucose streams over loopback, then kill -9.

1. starts ``medtwin serve`` (uvicorn, SQLite under a fresh MEDTWIN_HOME, or ``--database URL``) on a free
   loopback port; registers N patients, each with the shipped ICU glycaemic twin (``icu_glucose``) and its
   feed/insulin infusions;
2. ingests H hours of 5-minute glucose readings per patient (a simple simulated stream: a slow daily swing,
   5 % CV noise; every reading a separate POST, as a bedside analyser sends them) from 4 concurrent client
   threads, in time order across the ward; prints the throughput as a multiple of real time (readings ingested
   per second / readings the ward produces per second: N / 300 s) and the p50 / p99 request latency; the
   in-process ``Twin.assimilate`` time per reading is the baseline (same machine, same readings);
3. ingests the next stretch and ``kill -9``s the server after half of it has been acknowledged; restarts it
   on the same database and checks that every acknowledged reading is stored (count and ids), that the twins
   caught up with them, and that the audit chain verifies (``GET /audit/verify``).

Acceptance (issue 16): >= 20x real time with 100 patients; no acknowledged reading lost; audit chain intact.

Usage::

    python benchmarks/service.py --quick    # 6 patients x 1 h, then the kill -9 (a smoke run, < 30 s)
    python benchmarks/service.py            # 100 patients x 3 h, then the kill -9
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

EVERY_H = 5.0 / 60.0
TARGET_X = 20.0
ADMIN_PASSWORD = "bench-admin-pass"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(env: dict, port: int, log) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "medtwin", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=log, cwd=str(ROOT))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"medtwin serve exited with {proc.returncode} (log: {log.name})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("medtwin serve did not become ready in 120 s")


def _glucose(pid: int, times: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng([pid, 16])
    base = 6.5 + rng.normal(0, 0.8) + 1.5 * np.sin(2 * np.pi * times / 24.0 + rng.uniform(0, 2 * np.pi))
    return np.round(base * (1 + 0.05 * rng.standard_normal(times.size)), 3)


def _readings(n_patients: int, start_h: float, hours: float) -> list[tuple[str, dict]]:
    """(patient, reading) in time order across the ward."""
    times = np.round(np.arange(start_h + EVERY_H, start_h + hours + 1e-9, EVERY_H), 6)
    out = []
    for k, t in enumerate(times):
        for p in range(n_patients):
            out.append((f"icu-{p:03d}", {"source_id": f"icu-{p:03d}-bg-{int(round(t / EVERY_H))}", "time_h": float(t),
                                         "name": "G", "value": None, "unit": "mmol/L", "device": "blood-gas"}))
    values = {p: _glucose(p, times) for p in range(n_patients)}
    for i, (pid, r) in enumerate(out):
        r["value"] = float(values[int(pid[4:])][i // n_patients])
    return out


def _setup(base: str, n_patients: int) -> dict:
    with httpx.Client(base_url=base, timeout=60) as c:
        admin = c.post("/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
        ah = {"Authorization": f"Bearer {admin}"}
        c.post("/users", json={"username": "icu-feed", "password": "icu-feed-pass", "role": "clinician"}, headers=ah)
        c.post("/users", json={"username": "auditor", "password": "auditor-pass", "role": "auditor"}, headers=ah)
        tok = c.post("/auth/token", data={"username": "icu-feed", "password": "icu-feed-pass"}).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        for p in range(n_patients):
            pid = f"icu-{p:03d}"
            r = c.post("/patients", json={"resourceType": "Patient", "id": pid, "name": [{"text": f"ICU {p}"}]},
                       params={"ward": "ICU", "bed": str(p + 1)}, headers=h)
            assert r.status_code == 201, r.text
            doses = [{"source_id": f"{pid}-feed", "time_h": 0.0, "kind": "infusion", "name": "enteral",
                      "value": 3.5, "unit": "g/h", "duration_h": 96.0},
                     {"source_id": f"{pid}-insulin", "time_h": 0.0, "kind": "infusion", "name": "iv_insulin",
                      "value": 2.0, "unit": "U/h", "duration_h": 96.0}]
            assert c.post(f"/patients/{pid}/doses", json=doses, headers=h).status_code == 201
            r = c.post(f"/patients/{pid}/twin", json={"kind": "live", "name": "icu_glucose"}, headers=h)
            assert r.status_code == 201, r.text
    return h


def _ingest(base: str, headers: dict, readings, *, threads: int = 4, stop_after: int | None = None,
            on_stop=None):
    """POST every reading (threads share a queue, in order); (acknowledged source ids, latencies s, wall s)."""
    work: queue.Queue = queue.Queue()
    for item in readings:
        work.put(item)
    acked: list[tuple[str, str]] = []
    latencies: list[float] = []
    lock = threading.Lock()
    stopped = threading.Event()

    def worker():
        with httpx.Client(base_url=base, timeout=30, headers=headers) as c:
            while not stopped.is_set():
                try:
                    pid, reading = work.get_nowait()
                except queue.Empty:
                    return
                t = time.perf_counter()
                try:
                    r = c.post(f"/patients/{pid}/measurements", json=reading)
                except httpx.HTTPError:
                    return  # the server is gone
                dt = time.perf_counter() - t
                if r.status_code in (200, 201):
                    with lock:
                        acked.append((pid, reading["source_id"]))
                        latencies.append(dt)
                        if stop_after is not None and len(acked) == stop_after and not stopped.is_set():
                            stopped.set()
                            on_stop()

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return acked, np.array(latencies), time.perf_counter() - t0


def _baseline(readings, n: int) -> float:
    """Seconds per reading of Twin.assimilate in this process (the shipped ICU twin, one reading at a time)."""
    from medtwin.core.stream import Measurement
    from medtwin.scenarios.icu import icu_twin_spec
    from medtwin.twin.codec import twin_from_spec

    twin = twin_from_spec(icu_twin_spec(), patient="icu-000")
    mine = [r for pid, r in readings if pid == "icu-000"][:n]
    twin = twin.assimilate([Measurement(mine[0]["time_h"], "G", mine[0]["value"], "mmol/L")])  # warm up
    t = time.perf_counter()
    for r in mine[1:]:
        twin = twin.assimilate([Measurement(r["time_h"], "G", r["value"], "mmol/L", source_id=r["source_id"])])
    return (time.perf_counter() - t) / max(1, len(mine) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 patients x 1 h (a smoke run, < 30 s)")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--hours", type=float, default=None)
    ap.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite under a fresh home)")
    args = ap.parse_args()
    n_patients = args.patients or (6 if args.quick else 100)
    hours = args.hours or (1.0 if args.quick else 3.0)
    home = tempfile.mkdtemp(prefix="medtwin-service-bench-")
    env = {**os.environ, "MEDTWIN_HOME": home, "MEDTWIN_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MEDTWIN_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get(
               "PYTHONPATH", "")}
    env.pop("MEDTWIN_DEMO", None)
    if args.database:
        env["MEDTWIN_DATABASE_URL"] = args.database
    else:
        env.pop("MEDTWIN_DATABASE_URL", None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(Path(home) / "server.log", "ab")
    print(f"service load test: {n_patients} patients x {hours:g} h of 5-min glucose readings, then kill -9 "
          f"({'quick smoke run' if args.quick else 'full'}); database: {args.database or 'SQLite in ' + home}")
    servers: list = []

    def start():
        servers.append(_start(env, port, log))
        return servers[-1]

    try:
        run(args, n_patients, hours, base, start)
    finally:
        for proc in servers:  # never leave a server behind, whatever happened
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        log.close()


def run(args, n_patients: int, hours: float, base: str, start) -> None:
    """The measured part (see the module docstring)."""
    t = time.perf_counter()
    server = start()
    started = time.perf_counter() - t
    headers = _setup(base, n_patients)
    print(f"  server ready in {started:.1f} s; ward set up (patients, infusions, twins) in "
          f"{time.perf_counter() - t - started:.1f} s")

    readings = _readings(n_patients, 0.0, hours)
    acked, lat, wall = _ingest(base, headers, readings)
    assert len(acked) == len(readings), f"only {len(acked)} of {len(readings)} readings acknowledged"
    rate = len(acked) / wall
    realtime = n_patients / (EVERY_H * 3600.0)  # readings per second the ward produces
    per_reading = _baseline(readings, 24)
    print(f"  ingest: {len(acked)} readings in {wall:.1f} s = {rate:.1f} readings/s = "
          f"{rate / realtime:.0f}x real time (target >= {TARGET_X:.0f}x)")
    print(f"  latency per reading: p50 {1000 * np.percentile(lat, 50):.1f} ms, p99 {1000 * np.percentile(lat, 99):.1f} "
          f"ms, max {1000 * lat.max():.1f} ms (4 concurrent senders)")
    print(f"  baseline Twin.assimilate in-process: {1000 * per_reading:.1f} ms/reading -> service p50 / baseline = "
          f"{np.percentile(lat, 50) / per_reading:.1f}")

    # ---- kill -9 mid-ingest
    more = _readings(n_patients, hours, 0.5 if args.quick else 1.0)
    kill_at = len(more) // 2
    acked2, _, _ = _ingest(base, headers, more, stop_after=kill_at, on_stop=lambda: os.kill(server.pid, signal.SIGKILL))
    server.wait(timeout=30)
    print(f"  kill -9 after {len(acked2)} of {len(more)} further readings were acknowledged "
          f"(exit status {server.returncode})")
    start()
    stored: set = set()
    twins_ok = True
    with httpx.Client(base_url=base, timeout=120, headers=headers) as c:
        for p in range(n_patients):
            pid = f"icu-{p:03d}"
            rows = c.get(f"/patients/{pid}/measurements").json()
            stored.update((pid, r["source_id"]) for r in rows)
            twin = c.get(f"/patients/{pid}/twin").json()["summary"]
            twins_ok &= twin["n_measurements"] + twin["n_rejected"] >= len(rows)
        aud = httpx.post(f"{base}/auth/token", data={"username": "auditor", "password": "auditor-pass"}).json()
        verify = c.get("/audit/verify", headers={"Authorization": f"Bearer {aud['access_token']}"}).json()
    all_acked = set(acked) | set(acked2)
    lost = all_acked - stored
    print(f"  after restart: {len(all_acked)} acknowledged, {len(stored)} stored, {len(lost)} lost "
          f"({'every acknowledged id present' if not lost else sorted(lost)[:5]}); twins caught up: {twins_ok}")
    print(f"  audit chain: {'intact' if verify['ok'] else 'BROKEN'} ({verify['n_entries']} entries"
          f"{'' if verify['ok'] else ', ' + verify['reason']})")
    ok = rate / realtime >= TARGET_X and not lost and verify["ok"] and twins_ok
    print(f"  verdict: {'MET' if ok else 'NOT MET'} (>= {TARGET_X:.0f}x real time, no acknowledged reading lost, "
          f"audit chain intact)")
    if not ok:
        raise SystemExit(1)




if __name__ == "__main__":
    main()
