"""Append-only, hash-chained, signed audit log.

Every entry records *who* (``actor``) did *what* (``action``) to *whom*
(``patient``, optional) and *when* (``time``), with a JSON ``payload``. Entries
form a chain: entry ``n`` stores ``prev_hash`` = the ``entry_hash`` of entry
``n - 1`` (64 zeros for entry 1), and is signed with Ed25519.

Hash and signature
------------------
The serialization that is hashed, and the signature over the hash, are
specified in :mod:`medtwin.governance.audit_chain` (which also verifies
chains); its names are re-exported here.

What :meth:`AuditLog.verify` detects
-----------------------------------
A changed field (hash mismatch), a changed hash (mismatch, or the next entry's
``prev_hash`` no longer links), a deleted, inserted or reordered entry (``seq``
not contiguous from 1, broken link or hash mismatch), a forged signature or
one by an unknown key. Removing entries from the *end* leaves a valid shorter
chain: an :class:`AuditLog` given a ``checkpoint`` file keeps a signed copy of
its head there after every append and :meth:`AuditLog.verify` compares the
table with it (see :mod:`medtwin.governance.audit_checkpoint` for exactly what
this detects and what it cannot); in addition, publish :meth:`AuditLog.head`
somewhere else and pass it back as ``expect_head``.

Records and their entries in one transaction
--------------------------------------------
:meth:`AuditLog.transaction` opens the locked write transaction that
:meth:`AuditLog.append` uses and hands out its connection: the stores
(consents, decisions, runs) insert their record on it and append its entry
with :meth:`AuditTransaction.append`; both commit together, or neither does
(an error, or the process killed, before the commit).

Concurrency
-----------
:meth:`AuditLog.append` reads the head and inserts the next entry in one
transaction that holds the log's write lock: ``pg_advisory_xact_lock`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. Concurrent writers (threads or
processes) therefore serialize; ``seq`` is gap-free and unique (it is also the
primary key), and the chain cannot fork. The head checkpoint is written after
the commit and never moved backwards (see
:meth:`~medtwin.governance.audit_checkpoint.HeadCheckpoint.advance`).

Examples
--------
>>> import tempfile, os
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from medtwin.io.storage import make_engine, upgrade
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "a.db"))
>>> upgrade(engine)
>>> key = Ed25519PrivateKey.generate()
>>> log = AuditLog(engine, key)
>>> e = log.append("dr.who", "forecast", {"dose_mg": 1000}, patient="p1")
>>> e.seq, e.prev_hash == GENESIS_HASH
(1, True)
>>> _ = log.append("dr.who", "accept", {"recommendation": 1}, patient="p1")
>>> log.verify([key.public_key()])
VerifyReport(ok=True, n_entries=2, first_bad_seq=None, reason='')
>>> [x.action for x in log.entries(patient="p1")]
['forecast', 'accept']
>>> engine.dispose()
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medtwin.errors import DataError
from medtwin.governance.audit_chain import (GENESIS_HASH, VerifyReport, canonical_json, entry_hash,
                                            iter_batches, key_id, verify_chain)
from medtwin.governance.audit_checkpoint import HeadCheckpoint, database_id
from medtwin.io.storage import audit_table

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "AuditTransaction", "VerifyReport", "canonical_json",
           "entry_hash", "key_id"]

_T = audit_table
_FIELDS = ("seq", "time", "actor", "action", "patient", "payload", "prev_hash", "entry_hash",
           "signature", "key_id")
_SQLITE_HEAD = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_SQLITE_INSERT = (f"INSERT INTO audit_log ({', '.join(_FIELDS)}) "
                  f"VALUES ({', '.join('?' * len(_FIELDS))})")
# Arbitrary constant: first half of the PostgreSQL advisory lock key.
_PG_LOCK_CLASS = 0x6D54_7731  # "mTw1"


def _utc_text(time: datetime | None) -> str:
    if time is None:
        time = datetime.now(timezone.utc)
    if not isinstance(time, datetime):
        raise DataError(f"audit time must be a datetime, got {type(time).__name__}")
    if time.tzinfo is None or time.utcoffset() is None:
        raise DataError("audit time must be timezone-aware")
    return time.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class AuditEntry:
    """One stored audit log entry.

    Attributes
    ----------
    seq : int
        Position in the chain, 1, 2, 3, ... without gaps.
    time : str
        ISO 8601 UTC time.
    actor, action : str
        Who did what.
    patient : str or None
        Patient concerned, if any.
    payload : dict
        Decoded payload.
    payload_json : str
        Canonical payload text as stored and hashed.
    prev_hash, entry_hash, signature, key_id : str
        Chain link, own hash, Ed25519 signature (hex) and signing key id.
    """

    seq: int
    time: str
    actor: str
    action: str
    patient: str | None
    payload: dict = field(repr=False)
    payload_json: str
    prev_hash: str
    entry_hash: str
    signature: str
    key_id: str

    @classmethod
    def _from_row(cls, row) -> AuditEntry:
        return cls(seq=row[0], time=row[1], actor=row[2], action=row[3], patient=row[4],
                   payload=json.loads(row[5]), payload_json=row[5], prev_hash=row[6],
                   entry_hash=row[7], signature=row[8], key_id=row[9])


class AuditTransaction:
    """The open write transaction of :meth:`AuditLog.transaction`.

    Attributes
    ----------
    conn : sqlalchemy.Connection
        The transaction's connection: write the records here.
    entries : list of AuditEntry
        Entries appended so far (committed with the records on exit).
    """

    def __init__(self, log: AuditLog, conn: sa.Connection):
        self._log, self.conn, self.entries = log, conn, []

    def append(self, actor: str, action: str, payload: Mapping[str, Any] | None = None,
               patient: str | None = None, time: datetime | None = None) -> AuditEntry:
        """Append one entry in this transaction (as :meth:`AuditLog.append`, committed on exit)."""
        return self.append_many([(actor, action, payload, patient, time)])[0]

    def append_many(self, records: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[AuditEntry]:
        """Append several entries in this transaction (as :meth:`AuditLog.append_many`)."""
        return self._append_prepared([self._log._prepare(r) for r in records])

    def _append_prepared(self, prepared: list[tuple]) -> list[AuditEntry]:
        """Number, chain, sign and insert records already checked by :meth:`AuditLog._prepare`."""
        if not prepared:
            return []
        head = self.conn.execute(sa.select(_T.c.seq, _T.c.entry_hash).order_by(_T.c.seq.desc()).limit(1)).first()
        rows = self._log._chain(head, prepared)
        self.conn.execute(_T.insert(), [dict(zip(_FIELDS, r)) for r in rows])
        out = [_entry(r) for r in rows]
        self.entries.extend(out)
        return out


def _entry(r: tuple) -> AuditEntry:
    return AuditEntry(seq=r[0], time=r[1], actor=r[2], action=r[3], patient=r[4], payload=json.loads(r[5]),
                      payload_json=r[5], prev_hash=r[6], entry_hash=r[7], signature=r[8], key_id=r[9])


class AuditLog:
    """Hash-chained, Ed25519-signed audit log stored in the ``audit_log`` table.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Database holding the table (see :func:`medtwin.io.storage.upgrade`),
        created by :func:`medtwin.io.storage.make_engine` for SQLite (its
        ``BEGIN IMMEDIATE`` hook is what serializes writers there).
    private_key : Ed25519PrivateKey, optional
        Signing key; required by :meth:`append` only.
    batch_size : int, default 2000
        Rows fetched per query by :meth:`entries` and :meth:`verify`.
    checkpoint : str or Path, optional
        File of the signed head checkpoint (kept outside the database, e.g.
        beside the key: :func:`~medtwin.governance.audit_checkpoint.checkpoint_path`).
        When given, every committed append advances it and :meth:`verify`
        checks the table against it (truncation and deletion of the log).
    """

    def __init__(self, engine: sa.Engine, private_key: Ed25519PrivateKey | None = None, *,
                 batch_size: int = 2000, checkpoint: str | Path | None = None):
        self.engine = engine
        self._key = private_key
        self.key_id = key_id(private_key.public_key()) if private_key is not None else None
        self.batch_size = int(batch_size)
        self._dialect = engine.dialect.name
        self.checkpoint = (None if checkpoint is None
                           else HeadCheckpoint(Path(checkpoint), database_id(engine)))

    @property
    def public_key(self) -> Ed25519PublicKey | None:
        """The public half of the signing key (None for a read-only log)."""
        return None if self._key is None else self._key.public_key()

    # -- writing -----------------------------------------------------------------
    def append(self, actor: str, action: str, payload: Mapping[str, Any] | None = None,
               patient: str | None = None, time: datetime | None = None) -> AuditEntry:
        """Append one signed entry and commit it.

        Parameters
        ----------
        actor, action : str
            Who did what (non-empty).
        payload : mapping, optional
            JSON-serializable details (default ``{}``).
        patient : str, optional
            Patient concerned.
        time : datetime, optional
            Timezone-aware time of the event; default now (UTC).

        Returns
        -------
        AuditEntry
            The entry as stored; durable when this returns.

        Raises
        ------
        DataError
            Invalid fields or a non-serializable payload.
        """
        return self.append_many([(actor, action, payload, patient, time)])[0]

    def append_many(self, records: Iterable[Sequence[Any] | Mapping[str, Any]]) -> list[AuditEntry]:
        """Append several entries in one transaction (one commit, one lock).

        Each record is ``(actor, action, payload[, patient[, time]])`` or a
        mapping with those keys. All entries are durable when this returns
        (and none is, if it raises): group commit for high-rate writers.

        Returns
        -------
        list of AuditEntry
        """
        prepared = [self._prepare(r) for r in records]
        if not prepared:
            return []
        if self._key is None:
            raise DataError("AuditLog needs a private key to append")
        if self._dialect == "sqlite":
            rows = self._insert_sqlite(prepared)
            self._advance_checkpoint(rows[-1][0], rows[-1][7])
            return [_entry(r) for r in rows]
        with self.transaction() as tx:
            tx._append_prepared(prepared)
        return tx.entries

    @contextmanager
    def transaction(self) -> Iterator[AuditTransaction]:
        """Open the log's locked write transaction for records and their audit entries.

        Write records on ``tx.conn`` and append their entries with
        ``tx.append(...)``: everything commits together when the block ends,
        and nothing does if it raises (or the process dies first). The write
        lock (``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on
        PostgreSQL) is held from the start, so keep the block short.

        Yields
        ------
        AuditTransaction

        Raises
        ------
        DataError
            The log has no signing key.

        Examples
        --------
        >>> import tempfile, os
        >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        >>> from medtwin.io.storage import make_engine, upgrade
        >>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "t.db"))
        >>> upgrade(engine)
        >>> log = AuditLog(engine, Ed25519PrivateKey.generate())
        >>> with log.transaction() as tx:
        ...     _ = tx.conn.exec_driver_sql("CREATE TABLE notes (t TEXT)")
        ...     _ = tx.conn.exec_driver_sql("INSERT INTO notes VALUES ('x')")
        ...     _ = tx.append("dr.who", "note.add", {"t": "x"})
        >>> len(log)
        1
        >>> engine.dispose()
        """
        if self._key is None:
            raise DataError("AuditLog needs a private key to append")
        with self.engine.connect() as conn:
            if self._dialect == "sqlite":  # make_engine's begin hook: take the write lock at BEGIN
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                self._lock(conn)
                tx = AuditTransaction(self, conn)
                yield tx
        if tx.entries:
            self._advance_checkpoint(tx.entries[-1].seq, tx.entries[-1].entry_hash)

    def _advance_checkpoint(self, seq: int, entry_hash: str) -> None:
        if self.checkpoint is None:
            return
        try:
            self.checkpoint.advance(seq, entry_hash, self._key)
        except OSError as exc:
            raise OSError(exc.errno, f"audit entries up to seq {seq} are committed, but the head checkpoint "
                          f"{self.checkpoint.path} could not be written: {exc.strerror or exc}") from exc

    def _chain(self, head, prepared) -> list[tuple]:
        """Number, link, hash and sign prepared records after ``head`` (``(seq, hash)`` or None)."""
        seq, prev = (head[0], head[1]) if head is not None else (0, GENESIS_HASH)
        rows = []
        for time, actor, action, patient, payload_json in prepared:
            seq += 1
            h = entry_hash(seq, time, actor, action, patient, payload_json, prev)
            sig = self._key.sign(bytes.fromhex(h)).hex()
            rows.append((seq, time, actor, action, patient, payload_json, prev, h, sig, self.key_id))
            prev = h
        return rows

    def _insert_sqlite(self, prepared) -> list[tuple]:
        # Driver level on a pooled connection (about a third less time per entry
        # than through SQLAlchemy's transaction events): BEGIN IMMEDIATE takes the
        # database write lock before the head is read, COMMIT makes the entries
        # durable (fsync of the WAL with make_engine's synchronous=FULL).
        dbapi = self.engine.raw_connection()
        try:
            cur = dbapi.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                rows = self._chain(cur.execute(_SQLITE_HEAD).fetchone(), prepared)
                cur.executemany(_SQLITE_INSERT, rows)
                cur.execute("COMMIT")
            except BaseException:
                if dbapi.driver_connection.in_transaction:
                    dbapi.driver_connection.rollback()
                raise
            finally:
                cur.close()
        finally:
            dbapi.close()  # back to the pool
        return rows

    @staticmethod
    def _prepare(record) -> tuple[str, str, str, str | None, str]:
        if isinstance(record, Mapping):
            actor, action = record.get("actor"), record.get("action")
            payload, patient, time = record.get("payload"), record.get("patient"), record.get("time")
        else:
            record = tuple(record) + (None,) * (5 - len(record))
            actor, action, payload, patient, time = record[:5]
        for name, value in (("actor", actor), ("action", action)):
            if not isinstance(value, str) or not value:
                raise DataError(f"audit {name} must be a non-empty string, got {value!r}")
        if patient is not None and not isinstance(patient, str):
            raise DataError(f"audit patient must be a string or None, got {patient!r}")
        payload = {} if payload is None else payload
        if not isinstance(payload, Mapping):
            raise DataError(f"audit payload must be a mapping, got {type(payload).__name__}")
        return _utc_text(time), actor, action, patient, canonical_json(dict(payload))

    def _lock(self, conn: sa.Connection) -> None:
        if self._dialect == "postgresql":
            # Transaction-level lock keyed by schema: released at COMMIT/ROLLBACK.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:c, hashtext(current_schema() || "
                                 "'.audit_log'))"), {"c": _PG_LOCK_CLASS})
        elif self._dialect != "sqlite":  # generic fallback: lock the head row
            conn.execute(sa.select(_T.c.seq).order_by(_T.c.seq.desc()).limit(1).with_for_update())

    # -- reading -----------------------------------------------------------------
    def entries(self, patient: str | None = None) -> Iterator[AuditEntry]:
        """Iterate over stored entries in ``seq`` order, fetched in batches.

        Parameters
        ----------
        patient : str, optional
            Only the entries about this patient.

        Yields
        ------
        AuditEntry
        """
        where = None if patient is None else (_T.c.patient == patient)
        for rows in iter_batches(self.engine, self.batch_size, where=where):
            for row in rows:
                yield AuditEntry._from_row(row)

    def head(self) -> tuple[int, str] | None:
        """Return ``(seq, entry_hash)`` of the last entry, or None when empty.

        Publish it outside the database (a ticket, a notary, a printout) to
        make truncation of the log detectable with ``verify(expect_head=...)``.
        """
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_T.c.seq, _T.c.entry_hash)
                               .order_by(_T.c.seq.desc()).limit(1)).first()
        return None if row is None else (row[0], row[1])

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(_T)).scalar_one()

    # -- verification ------------------------------------------------------------
    #: Chain length from which :meth:`verify` checks ranges in parallel by default.
    parallel_threshold = 20_000

    def verify(self, public_keys: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
               *, expect_head: tuple[int, str] | None = None,
               workers: int | None = None) -> VerifyReport:
        """Check the whole chain: every ``seq``, link, hash and signature.

        For every entry: ``seq`` continues the previous one (first is 1),
        ``prev_hash`` equals the previous ``entry_hash``, ``entry_hash`` is
        recomputed from the fields, and the signature verifies with the public
        key named by ``key_id`` (see :func:`~medtwin.governance.audit_chain.verify_chain`).

        Parameters
        ----------
        public_keys : mapping of key id to Ed25519PublicKey, or iterable of keys
            Trusted keys (ids computed with :func:`key_id` for an iterable). A
            signature by any other key is bad.
        expect_head : (int, str), optional
            A previously published :meth:`head`; the chain must contain it
            (detects truncation of the tail).
        workers : int, optional
            Processes that fetch and check ranges of the chain (``fork``
            start method). Default: ``os.cpu_count()`` for chains of at least
            :attr:`parallel_threshold` entries, else 1 (in-process).

        Returns
        -------
        VerifyReport
            The first bad entry (lowest ``seq``) whatever the order of checks.
            With a ``checkpoint`` file, an intact chain is then compared with
            it: a chain shorter than the checkpoint, another hash at its
            ``seq``, a checkpoint not signed by a trusted key, or no
            checkpoint for a non-empty log is reported as broken (``reason``
            says which).
        """
        if isinstance(public_keys, Mapping):
            keys = dict(public_keys)
        else:
            keys = {key_id(k): k for k in public_keys}
        report = verify_chain(self.engine, keys, expect_head=expect_head, workers=workers,
                              batch_size=self.batch_size, parallel_threshold=self.parallel_threshold)
        if not report.ok or self.checkpoint is None:
            return report
        failure = self.checkpoint.check(report.n_entries, self._stored_hash, keys)
        if failure is None:
            return report
        return VerifyReport(False, min(report.n_entries, failure[0] - 1), failure[0], failure[1])

    def _stored_hash(self, seq: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_T.c.entry_hash).where(_T.c.seq == seq)).scalar()
