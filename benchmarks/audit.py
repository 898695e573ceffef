"""Audit log benchmark: signed appends per second and verification time.

Run:  python benchmarks/audit.py            (5,000 appends, 100,000-entry chain)
      python benchmarks/audit.py --quick    (500 appends, 5,000-entry chain)

Backends: SQLite (a fresh file under the temp directory) and, when it answers,
PostgreSQL (``MEDTWIN_TEST_POSTGRES_URL`` or
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; a fresh schema, dropped
at the end; ``--no-postgres`` to skip).

Durability: every figure counts an entry only once it is committed and
durable. ``append``: one transaction and one commit per entry (SQLite WAL with
``synchronous=FULL``: the WAL is fsync'ed at each commit; PostgreSQL with its
default ``synchronous_commit=on``). ``append_many(100)``: group commit -- 100
entries per transaction, each durable when its call returns (none is reported
written before its commit). The first is the headline (target >= 1,000/s on
SQLite); the second is what a high-rate writer can get without giving up
durability.

Verification (target < 10 s for 100,000 entries) streams the chain in batches
and recomputes every hash, link and Ed25519 signature, in process
(``workers=1``) and with signature checks spread over ``os.cpu_count()``
processes (the default for long chains). The baseline, measured in the same
run, is a bare loop of Ed25519 sign (for appends) and verify (for verify) on
32-byte messages: the ratios show the overhead of storage and hashing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.governance.audit import AuditLog
from medtwin.io.storage import make_engine, upgrade

PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _payload(i: int) -> dict:
    return {"dose_mg": 1000 + i % 250, "auc24": 412.5, "regimen": "q12h", "i": i}


def baseline(n: int) -> tuple[float, float]:
    """Bare Ed25519 sign/s and verify/s on 32-byte messages."""
    key = Ed25519PrivateKey.generate()
    pub, msg = key.public_key(), os.urandom(32)
    t = time.perf_counter()
    for _ in range(n):
        sig = key.sign(msg)
    sign_rate = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n):
        pub.verify(sig, msg)
    return sign_rate, n / (time.perf_counter() - t)


def run(name: str, engine, n_append: int, n_verify: int, sign_rate: float, verify_rate: float) -> None:
    upgrade(engine)
    key = Ed25519PrivateKey.generate()
    log = AuditLog(engine, key, batch_size=5000)
    print(f"\n[{name}]")

    t = time.perf_counter()
    for i in range(n_append):
        log.append("bench", "dose.recommend", _payload(i), patient=f"p{i % 97}")
    dt = time.perf_counter() - t
    rate = n_append / dt
    print(f"  append, 1 commit/entry     : {rate:9.0f} entries/s  ({n_append} in {dt:.2f} s; "
          f"{rate / sign_rate:.2f} x bare sign)")

    group = 100
    t = time.perf_counter()
    for start in range(0, n_append, group):
        log.append_many([("bench", "dose.recommend", _payload(i), f"p{i % 97}")
                         for i in range(start, min(start + group, n_append))])
    dt = time.perf_counter() - t
    print(f"  append_many({group}) group commit: {n_append / dt:9.0f} entries/s")

    t = time.perf_counter()
    done = len(log)
    while done < n_verify:
        k = min(1000, n_verify - done)
        log.append_many([("bench", "dose.recommend", _payload(i), f"p{i % 97}") for i in range(k)])
        done += k
    fill = time.perf_counter() - t
    n = len(log)
    print(f"  chain filled to {n} entries (append_many(1000), {fill:.1f} s)")

    for workers in (1, os.cpu_count() or 1):
        t = time.perf_counter()
        rep = log.verify([key.public_key()], workers=workers)
        dt = time.perf_counter() - t
        assert rep.ok and rep.n_entries == n, rep
        print(f"  verify {n} entries, workers={workers}: {dt:6.2f} s  ({n / dt:8.0f} entries/s; "
              f"{(n / dt) / verify_rate:.2f} x bare verify)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--n-append", type=int)
    ap.add_argument("--n-verify", type=int)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args(argv)
    n_append = args.n_append or (500 if args.quick else 5000)
    n_verify = args.n_verify or (5000 if args.quick else 100_000)
    print(f"audit benchmark: cpu_count={os.cpu_count()}, n_append={n_append}, n_verify={n_verify}")
    sign_rate, verify_rate = baseline(2000)
    print(f"baseline: bare Ed25519 sign {sign_rate:.0f}/s, verify {verify_rate:.0f}/s")

    with tempfile.TemporaryDirectory() as d:
        engine = make_engine(f"sqlite:///{d}/audit.db")
        try:
            run("SQLite (WAL, synchronous=FULL)", engine, n_append, n_verify, sign_rate, verify_rate)
        finally:
            engine.dispose()

    if args.no_postgres:
        return
    schema = "mt_bench_" + uuid.uuid4().hex[:10]
    try:
        admin = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:  # noqa: BLE001
        print(f"\n[PostgreSQL] skipped: not reachable at {PG_URL} ({type(exc).__name__})")
        return
    engine = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        run("PostgreSQL", engine, n_append, n_verify, sign_rate, verify_rate)
    finally:
        engine.dispose()
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


if __name__ == "__main__":
    main()
