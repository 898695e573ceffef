"""Append-only, hash-chained, signed audit log.

Every entry records *who* (``actor``) did *what* (``action``) to *whom*
(``patient``, optional) and *when* (``time``), with a JSON ``payload``. Entries
form a chain: entry ``n`` stores ``prev_hash`` = the ``entry_hash`` of entry
``n - 1`` (64 zeros for entry 1), and is signed with Ed25519.

Hash and signature
------------------
``payload`` is stored as *canonical JSON*::

    json.dumps(payload, sort_keys=True, separators=(",", ":"),
               ensure_ascii=False, allow_nan=False)

``entry_hash`` is the hex SHA-256 of the UTF-8 bytes of the same canonical
serialization applied to the object ::

    {"seq": int, "time": str, "actor": str, "action": str,
     "patient": str | null, "payload": <canonical payload text, as a string>,
     "prev_hash": str}

``signature`` is the hex Ed25519 signature of the 32 raw bytes of
``entry_hash``, and ``key_id`` names the signing key: the first 16 hex digits
of the SHA-256 of its raw 32-byte public key (:func:`key_id`). Times are ISO
8601 strings in UTC with microseconds (``2026-01-02T03:04:05.000000+00:00``).
This serialization is simple and deterministic for the payloads medtwin writes
(it is not RFC 8785: floats use Python's shortest ``repr``).

What :meth:`AuditLog.verify` detects
-----------------------------------
A changed field (hash mismatch), a changed hash (mismatch, or the next entry's
``prev_hash`` no longer links), a deleted, inserted or reordered entry (``seq``
not contiguous from 1, broken link or hash mismatch), a forged signature or
one by an unknown key. Removing entries from the *end* leaves a valid shorter
chain: publish :meth:`AuditLog.head` somewhere else and pass it back as
``expect_head`` to detect truncation.

Concurrency
-----------
:meth:`AuditLog.append` reads the head and inserts the next entry in one
transaction that holds the log's write lock: ``pg_advisory_xact_lock`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite. Concurrent writers (threads or
processes) therefore serialize; ``seq`` is gap-free and unique (it is also the
primary key), and the chain cannot fork.

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

import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from medtwin.errors import DataError
from medtwin.io.storage import audit_table

__all__ = ["GENESIS_HASH", "AuditEntry", "AuditLog", "VerifyReport", "canonical_json", "entry_hash",
           "key_id"]

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64

_T = audit_table
_COLUMNS = (_T.c.seq, _T.c.time, _T.c.actor, _T.c.action, _T.c.patient, _T.c.payload, _T.c.prev_hash,
            _T.c.entry_hash, _T.c.signature, _T.c.key_id)
# json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)
_SQLITE_HEAD = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_SQLITE_INSERT = ("INSERT INTO audit_log (seq, time, actor, action, patient, payload, prev_hash, "
                  "entry_hash, signature, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Rows per signature-checking task sent to a worker process.
_TASK_ROWS = 1000
# Arbitrary constant: first half of the PostgreSQL advisory lock key.
_PG_LOCK_CLASS = 0x6D54_7731  # "mTw1"


def _check_rows(first_seq: int, keys: Mapping[str, Any], rows: Sequence[tuple]) -> tuple[int, str] | None:
    """Recompute hashes and verify signatures of consecutive stored rows.

    ``rows`` are ``(seq, time, actor, action, patient, payload, prev_hash,
    entry_hash, signature, key_id)`` tuples numbered from ``first_seq``;
    ``keys`` maps key ids to public keys or to their raw bytes (in worker
    processes). Returns ``(seq, reason)`` of the first failure, or None.
    """
    keys = {k: Ed25519PublicKey.from_public_bytes(v) if isinstance(v, bytes) else v
            for k, v in keys.items()}
    sha256, encode = hashlib.sha256, _ENCODER.encode
    for seq, time, actor, action, patient, payload, prev_hash, h, sig, kid in rows:
        doc = {"seq": seq, "time": time, "actor": actor, "action": action, "patient": patient,
               "payload": payload, "prev_hash": prev_hash}
        try:
            data = encode(doc).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return seq, f"entry cannot be serialized: {exc}"
        if sha256(data).hexdigest() != h:
            return seq, "entry_hash does not match the entry's contents"
        key = keys.get(kid)
        if key is None:
            return seq, f"unknown signing key id {kid!r}"
        try:
            key.verify(bytes.fromhex(sig), bytes.fromhex(h))
        except (InvalidSignature, ValueError):
            return seq, f"invalid signature for key id {kid!r}"
    return None


def canonical_json(obj: Any) -> str:
    """Serialize ``obj`` canonically (sorted keys, no spaces, UTF-8, no NaN).

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    '{"a":[1.5,"é"],"b":1}'
    """
    try:
        return _ENCODER.encode(obj)
    except (TypeError, ValueError) as exc:
        raise DataError(f"audit payload is not JSON-serializable: {exc}") from exc


def entry_hash(seq: int, time: str, actor: str, action: str, patient: str | None, payload_json: str,
               prev_hash: str) -> str:
    """Return the hex SHA-256 of an entry's canonical serialization.

    Parameters
    ----------
    seq, time, actor, action, patient, payload_json, prev_hash
        The stored fields; ``payload_json`` is the canonical payload text.

    Examples
    --------
    >>> len(entry_hash(1, "t", "a", "x", None, "{}", GENESIS_HASH))
    64
    """
    doc = {"seq": seq, "time": time, "actor": actor, "action": action, "patient": patient,
           "payload": payload_json, "prev_hash": prev_hash}
    try:
        data = canonical_json(doc).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"audit entry text is not valid Unicode: {exc}") from exc
    return hashlib.sha256(data).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the key id of an Ed25519 public key (16 hex digits of SHA-256 of its raw bytes).

    Examples
    --------
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> len(key_id(Ed25519PrivateKey.generate().public_key()))
    16
    """
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


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


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :meth:`AuditLog.verify`.

    Attributes
    ----------
    ok : bool
        True when the whole chain is intact.
    n_entries : int
        Number of entries that verified before the first bad one (all of
        them when ``ok``).
    first_bad_seq : int or None
        The first sequence number at which the chain is broken (for a deleted
        entry: the missing number).
    reason : str
        Human-readable cause, empty when ``ok``.
    """

    ok: bool
    n_entries: int
    first_bad_seq: int | None
    reason: str

    def __bool__(self) -> bool:
        return self.ok


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
    """

    def __init__(self, engine: sa.Engine, private_key: Ed25519PrivateKey | None = None, *,
                 batch_size: int = 2000):
        self.engine = engine
        self._key = private_key
        self.key_id = key_id(private_key.public_key()) if private_key is not None else None
        self.batch_size = int(batch_size)
        self._dialect = engine.dialect.name

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
        conn_opts = {"sqlite_begin": "IMMEDIATE"} if self._dialect == "sqlite" else {}
        with self.engine.connect() as conn:
            conn = conn.execution_options(**conn_opts)
            with conn.begin():
                self._lock(conn)
                if self._dialect == "sqlite":  # driver-level fast path (same transaction)
                    cur = conn.connection.driver_connection.cursor()
                    head = cur.execute(_SQLITE_HEAD).fetchone()
                else:
                    head = conn.execute(sa.select(_T.c.seq, _T.c.entry_hash)
                                        .order_by(_T.c.seq.desc()).limit(1)).first()
                seq, prev = (head[0], head[1]) if head is not None else (0, GENESIS_HASH)
                rows = []
                for time, actor, action, patient, payload_json in prepared:
                    seq += 1
                    h = entry_hash(seq, time, actor, action, patient, payload_json, prev)
                    sig = self._key.sign(bytes.fromhex(h)).hex()
                    rows.append({"seq": seq, "time": time, "actor": actor, "action": action,
                                 "patient": patient, "payload": payload_json, "prev_hash": prev,
                                 "entry_hash": h, "signature": sig, "key_id": self.key_id})
                    prev = h
                if self._dialect == "sqlite":
                    cur.executemany(_SQLITE_INSERT, [tuple(r.values()) for r in rows])  # column order
                    cur.close()
                else:
                    conn.execute(_T.insert(), rows)
        return [AuditEntry(payload=json.loads(r["payload"]), payload_json=r["payload"],
                           **{k: v for k, v in r.items() if k != "payload"}) for r in rows]

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
    def _batches(self, where=None) -> Iterator[list]:
        last = 0
        while True:
            q = sa.select(*_COLUMNS).where(_T.c.seq > last)
            if where is not None:
                q = q.where(where)
            with self.engine.connect() as conn:
                rows = conn.execute(q.order_by(_T.c.seq).limit(self.batch_size)).all()
            if not rows:
                return
            yield rows
            if len(rows) < self.batch_size:
                return
            last = rows[-1][0]

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
        for rows in self._batches(where):
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
    def verify(self, public_keys: Mapping[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
               *, expect_head: tuple[int, str] | None = None,
               workers: int | None = None) -> VerifyReport:
        """Check the whole chain, streaming through it in ``seq`` order.

        For every entry: ``seq`` continues the previous one (first is 1),
        ``prev_hash`` equals the previous ``entry_hash``, ``entry_hash`` is
        recomputed from the fields, and the signature verifies with the public
        key named by ``key_id``.

        Parameters
        ----------
        public_keys : mapping of key id to Ed25519PublicKey, or iterable of keys
            Trusted keys (ids computed with :func:`key_id` for an iterable). A
            signature by any other key is bad.
        expect_head : (int, str), optional
            A previously published :meth:`head`; the chain must contain it
            (detects truncation of the tail).
        workers : int, optional
            Processes recomputing hashes and checking signatures (the costly
            part, ~0.1 ms each) while this process streams rows and checks
            order and links (``fork`` start method where available). Default:
            ``os.cpu_count()`` for chains of at least
            :attr:`parallel_threshold` entries, else 1 (in-process).

        Returns
        -------
        VerifyReport
            The first bad entry (lowest ``seq``) whatever the order of checks.
        """
        if isinstance(public_keys, Mapping):
            keys = dict(public_keys)
        else:
            keys = {key_id(k): k for k in public_keys}
        if workers is None:
            workers = (os.cpu_count() or 1) if len(self) >= self.parallel_threshold else 1
        if workers > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            raw = {k: v.public_bytes(Encoding.Raw, PublicFormat.Raw) for k, v in keys.items()}
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                return self._verify(keys, expect_head, pool, raw)
        return self._verify(keys, expect_head, None, None)

    #: Chain length from which :meth:`verify` checks signatures in parallel by default.
    parallel_threshold = 20_000

    def _verify(self, keys, expect_head, pool, raw_keys) -> VerifyReport:
        # This process checks order and links (seq, prev_hash against the stored
        # previous entry_hash); hashes and signatures of the rows that passed are
        # checked by _check_rows, here or in the pool, one batch per task.
        expected, prev, n = 1, GENESIS_HASH, 0
        futures = []
        bad_seq, bad_reason = None, ""
        for rows in self._batches():
            good = 0
            for row in rows:
                seq, prev_hash = row[0], row[6]
                if seq != expected:
                    bad_seq, bad_reason = expected, (f"seq not contiguous: expected {expected}, found "
                                                     f"{seq} (entry deleted, inserted or reordered)")
                    break
                if prev_hash != prev:
                    bad_seq, bad_reason = seq, "prev_hash does not match the previous entry_hash"
                    break
                prev, expected, good = row[7], expected + 1, good + 1
            if good:
                first = rows[0][0]
                if pool is None:
                    failure = _check_rows(first, keys, rows[:good])
                    if failure is not None:
                        bad_seq, bad_reason = failure
                        break
                    n += good
                else:
                    chunk = [tuple(r) for r in rows[:good]]
                    for i in range(0, good, _TASK_ROWS):  # small tasks: no idle worker at the end
                        futures.append(pool.submit(_check_rows, first + i, raw_keys,
                                                   chunk[i:i + _TASK_ROWS]))
                    n += good
            if bad_seq is not None:
                break
        for fut in futures:  # in seq order: the first failure is the lowest seq
            failure = fut.result()
            if failure is not None and (bad_seq is None or failure[0] < bad_seq):
                bad_seq, bad_reason = failure
                break
        if bad_seq is None and expect_head is not None:
            hseq, hhash = expect_head
            if n < hseq:
                bad_seq, bad_reason = n + 1, (f"chain ends at seq {n} but the published head is seq "
                                              f"{hseq} (entries removed from the end)")
            elif self._hash_at(hseq) != hhash:
                bad_seq, bad_reason = hseq, "entry at the published head seq has a different hash"
        if bad_seq is None:
            return VerifyReport(True, n, None, "")
        return VerifyReport(False, bad_seq - 1, bad_seq, bad_reason)

    def _hash_at(self, seq: int) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(_T.c.entry_hash).where(_T.c.seq == seq)).scalar()
