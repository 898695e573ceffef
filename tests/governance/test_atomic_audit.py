"""A stored record and its audit entry commit together or not at all (SQLite and PostgreSQL).

Issue 12, point 1: consents (add, withdraw), decisions and runs are inserted in
the audit log's locked transaction (:meth:`AuditLog.transaction`). A failing
audit insert leaves no record; writers (forked processes) killed with SIGKILL
at random moments leave no record without its entry and lose nothing they
acknowledged.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.control.decisions import decide
from medtwin.control.recommendation import Recommendation
from medtwin.core.events import Regimen
from medtwin.governance.audit import AuditLog
from medtwin.governance.consent_store import ConsentStore
from medtwin.governance.decision_store import DecisionStore
from medtwin.governance.runs import RunStore, spec_for_simulate
from medtwin.workflows.engine import execute
from medtwin.io.access import OpenData
from medtwin.io.storage import make_engine

SYNTHETIC = OpenData("synthetic records written in the tests")
T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
CONSENT = {"resourceType": "Consent", "id": "c1", "status": "active", "subject": {"reference": "Patient/p1"},
           "date": "2026-01-01", "decision": "permit"}
REC = Recommendation(kind="regimen", action={"dose_mg": 1250.0}, status="optimal", target={})


def _count(engine, table: str) -> int:
    with engine.connect() as c:
        return c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _refuse_audit_inserts(engine) -> None:
    """A trigger that makes every insert into audit_log fail."""
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.exec_driver_sql("CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log "
                              "BEGIN SELECT RAISE(ABORT, 'audit insert refused'); END")
        else:
            c.exec_driver_sql("CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'audit insert refused'; END $$")
            c.exec_driver_sql("CREATE TRIGGER audit_refuse BEFORE INSERT ON audit_log "
                              "FOR EACH ROW EXECUTE FUNCTION audit_refuse()")


def test_failing_audit_insert_leaves_no_record(engine):
    key = Ed25519PrivateKey.generate()
    log = AuditLog(engine, key)
    consents, decisions, runs = ConsentStore(engine, log), DecisionStore(engine, log, key), RunStore(engine, log, key)
    consents.add(CONSENT, "dr.who")  # before the trigger: one consent, one entry
    spec = spec_for_simulate("pk1_iv", {"CL": [2.0], "V": [20.0]}, Regimen.single(100.0), np.array([0.0, 1.0]),
                             open_data=SYNTHETIC.reason)
    result = execute(spec, access=SYNTHETIC)
    _refuse_audit_inserts(engine)

    with pytest.raises(sa.exc.DBAPIError, match="audit insert refused"):
        consents.add({**CONSENT, "id": "c2"}, "dr.who")
    with pytest.raises(sa.exc.DBAPIError, match="audit insert refused"):
        consents.withdraw("p1", "research", "dr.who", T0)
    with pytest.raises(sa.exc.DBAPIError, match="audit insert refused"):
        decisions.record(decide(REC, "accept", patient="v1", clinician="dr.who", time=1.0), REC, "svc",
                         access=SYNTHETIC)
    with pytest.raises(sa.exc.DBAPIError, match="audit insert refused"):
        runs.save(spec, result, "alice", access=SYNTHETIC)

    assert _count(engine, "consents") == 1 and _count(engine, "audit_log") == 1
    assert _count(engine, "decisions") == 0 and _count(engine, "runs") == 0
    assert [c.id for c in consents.for_patient("p1")] == ["c1"]  # still consistent with the log


def _write_until_killed(fd: int, url: str, schema: str, key, checkpoint: Path, tag: str) -> None:
    """Child: add consents in a loop on a new engine, acknowledging each stored id on ``fd``."""
    args = {"connect_args": {"options": f"-csearch_path={schema}"}} if schema else {}
    engine = make_engine(url, **args)
    store = ConsentStore(engine, AuditLog(engine, key, checkpoint=checkpoint))
    for i in range(10**9):
        cid = f"{tag}-{i}"
        store.add({**CONSENT, "id": cid, "subject": {"reference": f"Patient/p{i % 3}"}}, "writer")
        os.write(fd, (cid + "\n").encode())


def _kill_a_writer(url: str, schema: str, key, checkpoint: Path, tag: str, rng) -> list[str]:
    """Fork a writer, SIGKILL it at a random moment after its first acknowledgement; return what it acknowledged."""
    rfd, wfd = os.pipe()
    pid = os.fork()  # the child only writes to the database (never returns into pytest)
    if pid == 0:
        try:
            os.close(rfd)
            _write_until_killed(wfd, url, schema, key, checkpoint, tag)
        finally:
            os._exit(1)
    os.close(wfd)
    buf, deadline, give_up = b"", None, time.monotonic() + 30.0
    while time.monotonic() < give_up and (deadline is None or time.monotonic() < deadline):
        if select.select([rfd], [], [], 0.005)[0]:
            chunk = os.read(rfd, 65536)
            if not chunk:  # the writer died on its own
                break
            buf += chunk
        if deadline is None and buf:
            deadline = time.monotonic() + rng.uniform(0.0, 0.2)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    while chunk := os.read(rfd, 65536):
        buf += chunk
    os.close(rfd)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the writer failed by itself"
    return buf.decode().split()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_killed_writers_leave_no_record_without_entry(engine, tmp_path):
    key = Ed25519PrivateKey.generate()
    schema = ""
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            schema = c.exec_driver_sql("SELECT current_schema()").scalar_one()
    checkpoint = tmp_path / "audit_head.json"
    url = engine.url.render_as_string(hide_password=False)
    ConsentStore(engine, AuditLog(engine, key)).for_patient("p0")  # warm the parsers before forking
    rng = random.Random(12)
    acked = []
    for r in range(4):
        acked += _kill_a_writer(url, schema, key, checkpoint, f"w{r}", rng)
    assert len(acked) >= 4  # every writer stored and acknowledged something

    with engine.connect() as c:
        rows = set(c.exec_driver_sql("SELECT id FROM consents").scalars())
    log = AuditLog(engine, key, checkpoint=checkpoint)
    audited = [e.payload["consent_id"] for e in log.entries() if e.action == "consent.add"]
    assert len(audited) == len(set(audited))
    assert rows == set(audited)  # no record without its entry, no entry without its record
    assert set(acked) <= rows  # nothing acknowledged was lost
    report = log.verify([key.public_key()])
    assert report.ok, report
    store = ConsentStore(engine, log)
    assert sum(len(store.for_patient(f"p{i}")) for i in range(3)) == len(rows)
