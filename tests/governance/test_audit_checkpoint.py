"""Truncation and deletion of the audit log are detected through the signed head checkpoint (issue 12, point 3).

Library checks on SQLite and PostgreSQL (fixture ``engine``); `medtwin audit verify` on a SQLite installation.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.cli.edge import open_audit_log as _open_audit_log
from medtwin.governance.audit import AuditLog
from medtwin.governance.audit_chain import key_id

runner = CliRunner()


def _delete_from(engine, seq: int) -> None:
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM audit_log WHERE seq >= :s"), {"s": seq})


def _filled(engine, key, path) -> AuditLog:
    log = AuditLog(engine, key, checkpoint=path)
    log.append("dr.who", "simulate", {"n": 1}, patient="p1")
    log.append_many([("dr.who", "forecast", {"n": 2}), ("nurse", "accept", {"n": 3}, "p1")])
    with log.transaction() as tx:
        tx.append("dr.who", "note", {"n": 4})
        tx.append("dr.who", "note", {"n": 5})
    return log


def test_deleted_tail_and_emptied_log_are_detected(engine, tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "keys" / "audit_head.json"
    log = _filled(engine, key, path)
    assert log.verify([key.public_key()]).ok
    doc = json.loads(path.read_text())
    assert doc["seq"] == 5 and path.stat().st_mode & 0o077 == 0

    _delete_from(engine, 4)  # the last two entries
    report = log.verify([key.public_key()])
    assert not report.ok and report.first_bad_seq == 4 and report.n_entries == 3
    assert "entries removed from the end" in report.reason and "checkpoint is seq 5" in report.reason

    other = AuditLog(engine, key)  # re-appended past the checkpoint (e.g. by a writer without it)
    other.append_many([("x", "y", {}), ("x", "y", {})])
    report = log.verify([key.public_key()])
    assert not report.ok and report.first_bad_seq == 5 and "different hash" in report.reason

    _delete_from(engine, 1)  # everything
    report = log.verify([key.public_key()])
    assert not report.ok and report.n_entries == 0 and "chain ends at seq 0" in report.reason


def test_checkpoint_missing_forged_or_moved_back(engine, tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit_head.json"
    from medtwin.governance.audit_checkpoint import HeadCheckpoint

    log = _filled(engine, key, path)
    good = path.read_text()

    cp = HeadCheckpoint(path, log.checkpoint.database)
    cp.advance(2, "0" * 64, key)  # an older head never replaces a newer one
    assert json.loads(path.read_text())["seq"] == 5

    doc = json.loads(good)
    path.write_text(json.dumps({**doc, "seq": 3}))  # edited: the signature no longer matches
    report = log.verify([key.public_key()])
    assert not report.ok and "not signed by a trusted key" in report.reason
    path.unlink()
    cp.advance(5, doc["entry_hash"], Ed25519PrivateKey.generate())  # same head, signed by an unknown key
    report = log.verify([key.public_key()])
    assert not report.ok and "not signed by a trusted key" in report.reason
    path.write_text(good)
    assert log.verify([key.public_key()]).ok

    path.unlink()
    report = log.verify([key.public_key()])
    assert not report.ok and "no head checkpoint" in report.reason
    log.append("dr.who", "simulate", {})  # the next append writes one again
    assert log.verify([key.public_key()]).ok


def test_cli_verify_detects_truncation(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTWIN_HOME", str(tmp_path))
    monkeypatch.delenv("MEDTWIN_DATABASE_URL", raising=False)
    log, _ = _open_audit_log()
    for n in range(4):
        log.append("dr.who", "simulate", {"n": n}, patient="P1")
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "4 entries" in ok.output, ok.output

    _delete_from(log.engine, 3)
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1, bad.output
    assert "entry 3" in bad.output and "entries removed from the end" in bad.output

    _delete_from(log.engine, 1)
    empty = runner.invoke(app, ["audit", "verify"])
    assert empty.exit_code == 1 and "chain ends at seq 0" in empty.output, empty.output
    assert len(list((tmp_path / "keys").glob("audit_head.*.json"))) == 1  # beside the key


@pytest.mark.parametrize("text", ["", "{not json", '{"format": 1}'])
def test_unreadable_checkpoint_is_reported_not_trusted(tmp_path, text):
    from medtwin.governance.audit_checkpoint import HeadCheckpoint

    key = Ed25519PrivateKey.generate()
    path = tmp_path / "h.json"
    path.write_text(text)
    cp = HeadCheckpoint(path, "db")
    with pytest.raises(ValueError, match="not a valid checkpoint file"):
        cp.read()
    cp.advance(1, "a" * 64, key)  # replaced by the next append
    assert cp.read({key_id(key.public_key()): key.public_key()})["seq"] == 1
