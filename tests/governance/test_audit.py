"""Tests of the hash-chained audit log on SQLite and PostgreSQL.

PostgreSQL: ``MEDTWIN_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test runs in a
fresh schema (``search_path``), dropped afterwards. The PostgreSQL cases are
skipped, with the reason, only when no server answers.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.errors import DataError
from medtwin.governance.audit import GENESIS_HASH, AuditLog, entry_hash, key_id
from medtwin.io.storage import alembic_config, database_url, default_sqlite_path, make_engine, upgrade

PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc)


def _engine_for(spec: dict) -> sa.Engine:
    if spec["backend"] == "sqlite":
        return make_engine(spec["url"])
    return make_engine(spec["url"], connect_args={"options": f"-csearch_path={spec['schema']}"})


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A spec ``{"backend", "url", "schema"}`` for an empty database."""
    if request.param == "sqlite":
        yield {"backend": "sqlite", "url": f"sqlite:///{tmp_path / 'audit.db'}", "schema": None}
        return
    schema = request.getfixturevalue("pg_schema")  # conftest: fresh schema, skip/fail without a server
    yield {"backend": "postgresql", "url": PG_URL, "schema": schema}


@pytest.fixture
def engine(db):
    eng = _engine_for(db)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def _fill(log: AuditLog, n: int = 10) -> None:
    for i in range(n):
        log.append("dr.a" if i % 2 else "svc", f"act{i}", {"i": i, "x": [1.5, "é"]},
                   patient=f"p{i % 3}", time=T0 + timedelta(minutes=i))


def _row(engine, seq):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT seq, time, actor, action, patient, payload, prev_hash, "
                                 "entry_hash, signature, key_id FROM audit_log WHERE seq = :s"),
                         {"s": seq}).one()


def _exec(engine, sql, **params):
    with engine.begin() as c:
        c.execute(sa.text(sql), params)


def _forge(engine, seq, prev_hash, signer, kid, actor="mallory"):
    """Insert a well-formed entry (correct hash and link) signed by ``signer``."""
    t = (T0 + timedelta(days=1)).isoformat(timespec="microseconds")
    h = entry_hash(seq, t, actor, "forged", None, "{}", prev_hash)
    _exec(engine, "INSERT INTO audit_log (seq, time, actor, action, patient, payload, prev_hash, "
                  "entry_hash, signature, key_id) VALUES (:seq, :t, :a, 'forged', NULL, '{}', :p, :h, "
                  ":sig, :kid)",
          seq=seq, t=t, a=actor, p=prev_hash, h=h, sig=signer.sign(bytes.fromhex(h)).hex(), kid=kid)


# -- storage / migrations -------------------------------------------------------------

def test_database_url_resolution(tmp_path):
    assert database_url({"MEDTWIN_DATABASE_URL": "postgresql://x/y"}) == "postgresql://x/y"
    assert database_url({"MEDTWIN_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path}/medtwin.db"
    assert default_sqlite_path({"HOME": "/h", "XDG_DATA_HOME": "/d"}).as_posix() == \
        "/d/medtwin/medtwin.db"
    assert default_sqlite_path({}).as_posix().endswith(".local/share/medtwin/medtwin.db")


def test_sqlite_engine_settings(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with eng.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert (tmp_path / "sub" / "x.db").exists()
    eng.dispose()


def test_upgrade_creates_table_and_is_idempotent(db):
    eng = _engine_for(db)
    try:
        assert "audit_log" not in sa.inspect(eng).get_table_names()
        upgrade(eng)
        insp = sa.inspect(eng)
        assert "audit_log" in insp.get_table_names()
        cols = {c["name"] for c in insp.get_columns("audit_log")}
        assert cols == {"seq", "time", "actor", "action", "patient", "payload", "prev_hash",
                        "entry_hash", "signature", "key_id"}
        log = AuditLog(eng, Ed25519PrivateKey.generate())
        log.append("a", "b", {})
        upgrade(eng)  # second run: no error, data kept
        assert len(log) == 1
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with eng.connect() as c:
            assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head
    finally:
        eng.dispose()


# -- append / read / verify -----------------------------------------------------------

def test_append_chain_and_entries(engine, key):
    log = AuditLog(engine, key)
    assert log.verify([key.public_key()]).ok  # empty chain
    assert log.head() is None
    _fill(log, 7)
    es = list(log.entries())
    assert [e.seq for e in es] == list(range(1, 8))
    assert es[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in zip(es, es[1:]))
    assert es[3].payload == {"i": 3, "x": [1.5, "é"]}
    assert es[3].payload_json == '{"i":3,"x":[1.5,"é"]}'
    assert es[3].time == "2026-01-01T08:03:00.000000+00:00"
    assert es[0].key_id == key_id(key.public_key())
    assert [e.seq for e in log.entries(patient="p1")] == [2, 5]
    assert log.head() == (7, es[-1].entry_hash)
    rep = log.verify({key_id(key.public_key()): key.public_key()})
    assert rep.ok and rep.n_entries == 7 and rep.first_bad_seq is None and bool(rep)


def test_batches_smaller_than_chain(engine, key):
    log = AuditLog(engine, key, batch_size=3)
    _fill(log, 10)
    assert [e.seq for e in log.entries()] == list(range(1, 11))
    assert log.verify([key.public_key()]).n_entries == 10


def test_append_many_and_key_rotation(engine, key):
    k2 = Ed25519PrivateKey.generate()
    out = AuditLog(engine, key).append_many([("a", "x", {"n": 1}), {"actor": "b", "action": "y"}])
    assert [e.seq for e in out] == [1, 2]
    AuditLog(engine, k2).append("c", "z", {}, patient="p")
    both = AuditLog(engine)
    assert both.verify([key.public_key(), k2.public_key()]).ok
    rep = both.verify([key.public_key()])
    assert not rep.ok and rep.first_bad_seq == 3 and "unknown" in rep.reason


@pytest.mark.parametrize("bad", [
    dict(actor=""), dict(payload=[1, 2]), dict(payload={"x": object()}),
    dict(payload={"x": float("nan")}), dict(time=datetime(2026, 1, 1)), dict(patient=3),
])
def test_append_rejects_invalid(engine, key, bad):
    args = dict(actor="a", action="b", payload={}, patient=None, time=None) | bad
    with pytest.raises(DataError):
        AuditLog(engine, key).append(**args)
    assert len(AuditLog(engine)) == 0


def test_append_needs_private_key(engine):
    with pytest.raises(DataError):
        AuditLog(engine).append("a", "b", {})


# -- tampering ------------------------------------------------------------------------

def _tamper_modify_payload(engine, key, other):
    _exec(engine, "UPDATE audit_log SET payload = :p WHERE seq = 4", p='{"i":999,"x":[1.5,"é"]}')
    return 4, "entry_hash"


def _tamper_modify_payload_and_rehash(engine, key, other):
    r = _row(engine, 4)
    h = entry_hash(4, r.time, r.actor, r.action, r.patient, '{"i":999}', r.prev_hash)
    _exec(engine, "UPDATE audit_log SET payload = :p, entry_hash = :h WHERE seq = 4",
          p='{"i":999}', h=h)
    return 4, "signature"


def _tamper_modify_actor(engine, key, other):
    _exec(engine, "UPDATE audit_log SET actor = 'someone.else' WHERE seq = 2")
    return 2, "entry_hash"


def _tamper_modify_hash(engine, key, other):
    _exec(engine, "UPDATE audit_log SET entry_hash = :h WHERE seq = 6",
          h=hashlib.sha256(b"x").hexdigest())
    return 6, "entry_hash"


def _tamper_delete(engine, key, other):
    _exec(engine, "DELETE FROM audit_log WHERE seq = 5")
    return 5, "contiguous"


def _tamper_delete_first(engine, key, other):
    _exec(engine, "DELETE FROM audit_log WHERE seq = 1")
    return 1, "contiguous"


def _tamper_insert_end(engine, key, other):
    _forge(engine, 11, _row(engine, 10).entry_hash, other, key_id(key.public_key()))
    return 11, "signature"


def _tamper_insert_middle(engine, key, other):
    _exec(engine, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 5")
    _exec(engine, "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
    _forge(engine, 5, _row(engine, 4).entry_hash, other, key_id(key.public_key()))
    return 5, "signature"


def _tamper_reorder(engine, key, other):
    _exec(engine, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
    _exec(engine, "UPDATE audit_log SET seq = 3 WHERE seq = 7")
    _exec(engine, "UPDATE audit_log SET seq = 7 WHERE seq = -1")
    return 3, "prev_hash"


def _tamper_resign_other_key(engine, key, other):
    r = _row(engine, 6)
    _exec(engine, "UPDATE audit_log SET signature = :s, key_id = :k WHERE seq = 6",
          s=other.sign(bytes.fromhex(r.entry_hash)).hex(), k=key_id(other.public_key()))
    return 6, "unknown signing key"


def _tamper_resign_other_key_same_id(engine, key, other):
    r = _row(engine, 6)
    _exec(engine, "UPDATE audit_log SET signature = :s WHERE seq = 6",
          s=other.sign(bytes.fromhex(r.entry_hash)).hex())
    return 6, "signature"


def _tamper_garbage_signature(engine, key, other):
    _exec(engine, "UPDATE audit_log SET signature = 'zz' WHERE seq = 9")
    return 9, "signature"


TAMPERS = [f for n, f in sorted(globals().items()) if n.startswith("_tamper_")]


@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda f: f.__name__[len("_tamper_"):])
def test_tampering_is_detected(engine, key, tamper):
    log = AuditLog(engine, key)
    _fill(log, 10)
    assert log.verify([key.public_key()]).ok
    other = Ed25519PrivateKey.generate()
    seq, word = tamper(engine, key, other)
    rep = log.verify([key.public_key()])
    assert not rep.ok
    assert rep.first_bad_seq == seq, rep
    assert rep.n_entries == seq - 1
    assert word in rep.reason, rep


@pytest.mark.parametrize("tamper", [_tamper_delete, _tamper_modify_payload, _tamper_insert_middle,
                                    _tamper_resign_other_key_same_id, _tamper_reorder],
                         ids=lambda f: f.__name__[len("_tamper_"):])
def test_tampering_is_detected_with_parallel_signature_checks(engine, key, tamper):
    log = AuditLog(engine, key, batch_size=3)  # several chunks go to the workers
    _fill(log, 10)
    assert log.verify([key.public_key()], workers=2) == log.verify([key.public_key()], workers=1)
    seq, word = tamper(engine, key, Ed25519PrivateKey.generate())
    rep = log.verify([key.public_key()], workers=2)
    assert rep == log.verify([key.public_key()], workers=1)
    assert not rep.ok and rep.first_bad_seq == seq and word in rep.reason, rep


def test_signature_failure_before_later_hash_failure_parallel(engine, key):
    log = AuditLog(engine, key, batch_size=2)
    _fill(log, 10)
    _exec(engine, "UPDATE audit_log SET signature = :s WHERE seq = 3",
          s=Ed25519PrivateKey.generate().sign(b"x").hex())
    _exec(engine, "UPDATE audit_log SET actor = 'z' WHERE seq = 8")
    for w in (1, 2):
        rep = log.verify([key.public_key()], workers=w)
        assert rep.first_bad_seq == 3 and rep.n_entries == 2 and "signature" in rep.reason


def test_truncation_detected_with_published_head(engine, key):
    log = AuditLog(engine, key)
    _fill(log, 10)
    head = log.head()
    log.append("x", "later", {})  # growth after publication is fine
    assert log.verify([key.public_key()], expect_head=head).ok
    _exec(engine, "DELETE FROM audit_log WHERE seq >= 9")
    assert log.verify([key.public_key()]).ok  # undetectable without an anchor
    rep = log.verify([key.public_key()], expect_head=head)
    assert not rep.ok and rep.first_bad_seq == 9


# -- concurrency ----------------------------------------------------------------------

def _append_worker(spec, key_bytes, tag, n, barrier):
    eng = _engine_for(spec)
    log = AuditLog(eng, Ed25519PrivateKey.from_private_bytes(key_bytes))
    barrier.wait()
    for i in range(n):
        log.append(tag, "tick", {"i": i})
    eng.dispose()


def test_two_processes_append_concurrently(db, engine, key):
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_append_worker, args=(db, raw, tag, 200, barrier))
             for tag in ("proc-a", "proc-b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    log = AuditLog(engine, key)
    rep = log.verify([key.public_key()])
    assert rep.ok, rep
    assert rep.n_entries == 400
    es = list(log.entries())
    assert [e.seq for e in es] == list(range(1, 401))
    actors = [e.actor for e in es]
    assert actors.count("proc-a") == actors.count("proc-b") == 200
    for tag in ("proc-a", "proc-b"):  # each process's own order is kept
        assert [e.payload["i"] for e in es if e.actor == tag] == list(range(200))


# -- verification in ranges (worker processes) and signature libraries ---------------

def _range_tamper_link(engine):
    _exec(engine, "UPDATE audit_log SET prev_hash = :h WHERE seq = 7", h=hashlib.sha256(b"y").hexdigest())
    return 7, "prev_hash"


def _range_tamper_delete_range_end(engine):
    _exec(engine, "DELETE FROM audit_log WHERE seq = 6")
    return 6, "contiguous"


def _range_tamper_seq_zero(engine):
    _forge(engine, 0, GENESIS_HASH, Ed25519PrivateKey.generate(), "0" * 16)
    return 1, "contiguous"


def _range_tamper_far_seq(engine):
    _forge(engine, 1000, GENESIS_HASH, Ed25519PrivateKey.generate(), "0" * 16)
    return 41, "contiguous"


def _range_tamper_last_entry(engine):
    _exec(engine, "UPDATE audit_log SET action = 'x' WHERE seq = 40")
    return 40, "entry_hash"


@pytest.mark.parametrize("tamper", [_range_tamper_link, _range_tamper_delete_range_end,
                                    _range_tamper_seq_zero, _range_tamper_far_seq,
                                    _range_tamper_last_entry],
                         ids=lambda f: f.__name__[len("_range_tamper_"):])
def test_range_boundaries_in_parallel_verification(engine, key, tamper):
    # 40 entries, batch_size 3: the workers check ranges of 3 (1-3, 4-6, 7-9, ..., 40-).
    log = AuditLog(engine, key, batch_size=3)
    _fill(log, 40)
    assert log.verify([key.public_key()], workers=2).n_entries == 40
    seq, word = tamper(engine)
    for workers in (2, 1):
        rep = log.verify([key.public_key()], workers=workers)
        assert not rep.ok and rep.first_bad_seq == seq and rep.n_entries == seq - 1, (workers, rep)
        assert word in rep.reason, rep


def _backends():
    out = ["openssl"]
    try:
        import nacl.bindings  # noqa: F401
        out.append("libsodium")
    except ImportError:
        out.append(pytest.param("libsodium", marks=pytest.mark.skip(reason="PyNaCl not installed")))
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("tamper", [_tamper_resign_other_key_same_id, _tamper_garbage_signature,
                                    _tamper_modify_payload_and_rehash, _tamper_resign_other_key],
                         ids=lambda f: f.__name__[len("_tamper_"):])
def test_signature_libraries_agree(engine, key, backend, tamper, monkeypatch):
    from medtwin.governance import audit_chain

    monkeypatch.setattr(audit_chain, "SIGNATURE_BACKEND", backend)
    log = AuditLog(engine, key)
    _fill(log, 10)
    assert log.verify([key.public_key()]).ok
    seq, word = tamper(engine, key, Ed25519PrivateKey.generate())
    for workers in (1, 2):  # forked workers inherit the patched module
        rep = log.verify([key.public_key()], workers=workers)
        assert not rep.ok and rep.first_bad_seq == seq and word in rep.reason, rep


def test_in_memory_sqlite_is_verified_in_process(key):
    eng = make_engine("sqlite://")
    upgrade(eng)
    log = AuditLog(eng, key)
    _fill(log, 5)
    assert log.verify([key.public_key()], workers=2).n_entries == 5  # workers could not see it
    eng.dispose()
