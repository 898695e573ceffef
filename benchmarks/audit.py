"""Audit log benchmark: signed appends per second and verification time.

Run:  python benchmarks/audit.py            (5,000 appends, 100,000-entry chain, 3 verify runs)
      python benchmarks/audit.py --quick    (500 appends, 5,000-entry chain, 1 verify run)

Targets (issue "Trust", 2-core machine): signed single-entry append
>= 1,000 entries/s on SQLite; verification of a 100,000-entry chain < 10 s.

Backends: SQLite (a fresh file under the temp directory) and PostgreSQL when it
answers at ``MEDTWIN_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; a fresh schema, dropped
at the end; ``--no-postgres`` to skip).

Durability: every figure counts an entry only once it is committed and
durable. ``append``: one transaction and one commit per entry (SQLite WAL with
``synchronous=FULL``, as ``make_engine`` sets it: the WAL is fsync'ed at each
commit; PostgreSQL with its default ``synchronous_commit=on``).
``append_many(100)``: group commit, 100 entries per transaction. For
comparison only, the full run also times SQLite appends with
``synchronous=NORMAL`` (WAL: a crash of the process loses nothing, a power
loss may lose the last commits) -- not what medtwin configures.

Verification streams the whole chain and recomputes every link, hash and
Ed25519 signature, in process (``workers=1``) and over ``os.cpu_count()``
worker processes (the default for long chains). Wall time is noisy on a shared
2-core machine, so the CPU seconds it took (all processes) are printed too.
Baselines, measured in the same run: a bare loop of Ed25519 sign (appends) and
verify with the library the verifier uses (verify); the ratios show the
overhead of storage and hashing. The header prints what the machine offered:
CPUs, CPUs this process may run on, load average and the signature library.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import uuid

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from medtwin.governance import audit_chain
from medtwin.governance.audit import AuditLog
from medtwin.io.storage import make_engine, upgrade

PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
APPEND_TARGET = 1000.0  # entries/s, one commit per entry, SQLite
VERIFY_TARGET = 10.0  # seconds for 100,000 entries


def _payload(i: int) -> dict:
    return {"dose_mg": 1000 + i % 250, "auc24": 412.5, "regimen": "q12h", "i": i}


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def baseline(n: int) -> tuple[float, float]:
    """Bare Ed25519 sign/s (cryptography) and verify/s (the verifier's library), 32-byte messages."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    check = audit_chain._signature_checker({"k": raw}, audit_chain.SIGNATURE_BACKEND)
    msg = os.urandom(32)
    t = time.perf_counter()
    for _ in range(n):
        sig = key.sign(msg)
    sign_rate = n / (time.perf_counter() - t)
    sig_hex, msg_hex = sig.hex(), msg.hex()
    t = time.perf_counter()
    for _ in range(n):
        check("k", sig_hex, msg_hex)
    return sign_rate, n / (time.perf_counter() - t)


def _status(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def bench_append(log: AuditLog, n: int, sign_rate: float, label: str = "append, 1 commit/entry") -> float:
    """Time ``n`` single-entry appends; print rate, median latency and the target ratio."""
    lat = []
    t = time.perf_counter()
    for i in range(n):
        t1 = time.perf_counter()
        log.append("bench", "dose.recommend", _payload(i), patient=f"p{i % 97}")
        lat.append(time.perf_counter() - t1)
    dt = time.perf_counter() - t
    rate = n / dt
    print(f"  {label:32s}: {rate:7.0f} entries/s  ({n} in {dt:.2f} s; median {1e6 * statistics.median(lat):.0f} us;"
          f" {rate / sign_rate:.2f} x bare sign; {rate / APPEND_TARGET:.2f} x target 1,000/s)")
    return rate


def bench_verify(log: AuditLog, key, n: int, repeat: int, verify_rate: float) -> None:
    """Verify the chain in process and with the default worker count; print times and targets."""
    for workers in (1, os.cpu_count() or 1):
        for _ in range(repeat if workers > 1 else 1):
            c, t = _cpu_seconds(), time.perf_counter()
            rep = log.verify([key.public_key()], workers=workers)
            dt, cpu = time.perf_counter() - t, _cpu_seconds() - c
            if not (rep.ok and rep.n_entries == n):
                raise RuntimeError(f"verification failed: {rep}")
            per100k = dt * 100_000 / n
            target = (f"{_status(per100k < VERIFY_TARGET)}" if n >= 100_000 else
                      "extrapolated: the target is for 100k entries")
            print(f"  verify {n} entries, workers={workers}: {dt:6.2f} s wall, {cpu:6.2f} s CPU  "
                  f"({n / dt:6.0f} entries/s; {(n / dt) / verify_rate:.2f} x bare verify; "
                  f"{per100k:.1f} s per 100k = {per100k / VERIFY_TARGET:.2f} x target 10 s, {target})")


def run(name: str, engine, n_append: int, n_verify: int, repeat: int, sign_rate: float,
        verify_rate: float) -> None:
    upgrade(engine)
    key = Ed25519PrivateKey.generate()
    log = AuditLog(engine, key, batch_size=5000)
    print(f"\n[{name}]")
    rate = bench_append(log, n_append, sign_rate)
    if engine.dialect.name == "sqlite" and n_append >= 5000:  # fewer: too short to judge
        print(f"  {'':32s}  SQLite target >= 1,000/s: {_status(rate >= APPEND_TARGET)}")

    group = 100
    t = time.perf_counter()
    for start in range(0, n_append, group):
        log.append_many([("bench", "dose.recommend", _payload(i), f"p{i % 97}")
                         for i in range(start, min(start + group, n_append))])
    dt = time.perf_counter() - t
    print(f"  {f'append_many({group}) group commit':32s}: {n_append / dt:7.0f} entries/s")

    t = time.perf_counter()
    done = len(log)
    while done < n_verify:
        k = min(1000, n_verify - done)
        log.append_many([("bench", "dose.recommend", _payload(i), f"p{i % 97}") for i in range(k)])
        done += k
    n = len(log)
    print(f"  chain filled to {n} entries (append_many(1000), {time.perf_counter() - t:.1f} s)")
    bench_verify(log, key, n, repeat, verify_rate)


def run_sqlite_normal(directory: str, n_append: int, sign_rate: float) -> None:
    """Appends with synchronous=NORMAL (comparison only; medtwin configures FULL)."""
    engine = make_engine(f"sqlite:///{directory}/audit_normal.db")
    # Runs after make_engine's own connect hook, overriding its synchronous=FULL.
    sa.event.listen(engine, "connect", lambda c, _r: c.execute("PRAGMA synchronous = NORMAL"))
    try:
        upgrade(engine)
        print("\n[SQLite (WAL, synchronous=NORMAL) -- comparison only, not medtwin's setting]")
        bench_append(AuditLog(engine, Ed25519PrivateKey.generate()), n_append, sign_rate)
    finally:
        engine.dispose()


def run_postgres(n_append: int, n_verify: int, repeat: int, sign_rate: float, verify_rate: float) -> None:
    schema = "mt_bench_" + uuid.uuid4().hex[:10]
    try:
        admin = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        print(f"\n[PostgreSQL] skipped: not reachable at {PG_URL} ({type(exc).__name__})")
        return
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        run(f"PostgreSQL ({engine.url.render_as_string(hide_password=True)})", engine, n_append,
            n_verify, repeat, sign_rate, verify_rate)
    finally:
        engine.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--n-append", type=int)
    ap.add_argument("--n-verify", type=int)
    ap.add_argument("--repeat", type=int, help="parallel verification runs (default 3, quick 1)")
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args(argv)
    n_append = args.n_append or (500 if args.quick else 5000)
    n_verify = args.n_verify or (5000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"audit benchmark: cpu_count={os.cpu_count()}, usable CPUs (affinity)={affinity}, "
          f"verify worker processes={os.cpu_count()}, load average {load}")
    print(f"  n_append={n_append}, n_verify={n_verify}, repeat={repeat}; "
          f"signatures verified with {audit_chain.SIGNATURE_BACKEND}")
    sign_rate, verify_rate = baseline(2000)
    print(f"baseline: bare Ed25519 sign {sign_rate:.0f}/s, verify {verify_rate:.0f}/s "
          f"(100k verifies: {100_000 / verify_rate:.1f} s on one core)")

    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(f"sqlite:///{d}/audit.db")
        try:
            run("SQLite (WAL, synchronous=FULL)", engine, n_append, n_verify, repeat, sign_rate,
                verify_rate)
        finally:
            engine.dispose()
        if not args.quick:
            run_sqlite_normal(d, n_append, sign_rate)

    if not args.no_postgres:
        run_postgres(n_append, n_verify, repeat, sign_rate, verify_rate)


if __name__ == "__main__":
    main()
