"""Hash chain of the audit log: entry format, hashes, signatures and verification.

:class:`medtwin.governance.audit.AuditLog` writes and reads the ``audit_log``
table; this module defines what an entry's hash and signature are and checks a
stored chain (:func:`verify_chain`, behind :meth:`AuditLog.verify`).

Hash and signature (format 1, unchanged since the first entry)
--------------------------------------------------------------
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
of the SHA-256 of its raw 32-byte public key (:func:`key_id`). Entry ``n``
stores ``prev_hash`` = the ``entry_hash`` of entry ``n - 1``
(:data:`GENESIS_HASH` for entry 1). Times are ISO 8601 strings in UTC with
microseconds (``2026-01-02T03:04:05.000000+00:00``). This serialization is
simple and deterministic for the payloads medtwin writes (it is not RFC 8785:
floats use Python's shortest ``repr``).

Verification
------------
Every entry is checked, in this order: ``seq`` continues the previous one
(first is 1), ``prev_hash`` equals the previous ``entry_hash``, ``entry_hash``
is recomputed from the stored fields (the stored payload text is hashed as
it is, never re-serialized), and the signature verifies with the trusted key
named by ``key_id``. The report names the first bad entry (lowest ``seq``).

The Ed25519 checks dominate (about 80 us each with OpenSSL, 50 us with
libsodium, against 4 us for fetching a row and recomputing its hash). Long
chains are therefore cut into ranges of ``seq`` that worker processes fetch
and check on their own connections; this process only joins the ranges
(the first ``prev_hash`` of each range against the last ``entry_hash`` of the
one before). Signatures are checked by libsodium (PyNaCl) when it is
installed, otherwise by ``cryptography`` (OpenSSL); both implement RFC 8032
verification and reject non-canonical scalars (see :data:`SIGNATURE_BACKEND`).

Examples
--------
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> sk = Ed25519PrivateKey.generate()
>>> h = entry_hash(1, "2026-01-01T00:00:00.000000+00:00", "dr.a", "view", None, "{}", GENESIS_HASH)
>>> sig = sk.sign(bytes.fromhex(h)).hex()
>>> len(h), len(sig), len(key_id(sk.public_key()))
(64, 128, 16)
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from medtwin.errors import DataError
from medtwin.io.storage import audit_table

try:  # optional: libsodium's Ed25519 verify is ~1.6x OpenSSL's here
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBadSignature
except ImportError:  # pragma: no cover - depends on the environment
    _sodium_open = None

__all__ = ["GENESIS_HASH", "SIGNATURE_BACKEND", "VerifyReport", "canonical_json", "entry_hash",
           "iter_batches", "key_id", "verify_chain"]

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64

#: Library checking signatures in :func:`verify_chain`: ``"libsodium"`` when
#: PyNaCl is importable, else ``"openssl"`` (``cryptography``).
SIGNATURE_BACKEND = "openssl" if _sodium_open is None else "libsodium"

_T = audit_table
_COLUMNS = (_T.c.seq, _T.c.time, _T.c.actor, _T.c.action, _T.c.patient, _T.c.payload, _T.c.prev_hash,
            _T.c.entry_hash, _T.c.signature, _T.c.key_id)
# json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)
# Ranges of seq per worker process: this many per worker, for load balance on a busy machine.
_TASKS_PER_WORKER = 8
_NOT_CONTIGUOUS = "seq not contiguous: expected {}, found {} (entry deleted, inserted or reordered)"


def canonical_json(obj: Any) -> str:
    """Serialize ``obj`` canonically (sorted keys, no spaces, UTF-8, no NaN).

    Raises
    ------
    DataError
        ``obj`` is not JSON-serializable (or holds NaN or infinity).

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


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_chain` (:meth:`AuditLog.verify`).

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

    Examples
    --------
    >>> bool(VerifyReport(False, 4, 5, "prev_hash does not match the previous entry_hash"))
    False
    """

    ok: bool
    n_entries: int
    first_bad_seq: int | None
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def iter_batches(engine: sa.Engine, batch_size: int, *, lo: int | None = None, hi: int | None = None,
                 where=None) -> Iterator[list[tuple]]:
    """Yield stored rows in ``seq`` order, ``batch_size`` per query (keyset pagination).

    Rows are ``(seq, time, actor, action, patient, payload, prev_hash,
    entry_hash, signature, key_id)`` tuples with ``lo <= seq <= hi`` (either
    bound optional) matching the optional SQLAlchemy condition ``where``.

    Examples
    --------
    >>> from medtwin.io.storage import make_engine, upgrade
    >>> engine = make_engine("sqlite://")
    >>> upgrade(engine)
    >>> list(iter_batches(engine, 100))
    []
    >>> engine.dispose()
    """
    cond = [] if where is None else [where]
    if hi is not None:
        cond.append(_T.c.seq <= hi)
    last = None if lo is None else lo - 1
    while True:
        q = sa.select(*_COLUMNS).where(*cond, *([] if last is None else [_T.c.seq > last]))
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(q.order_by(_T.c.seq).limit(batch_size))]
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        last = rows[-1][0]


def _signature_checker(raw_keys: Mapping[str, bytes], backend: str) -> Callable[[str, str, str], str | None]:
    """Return ``check(key_id, signature_hex, hash_hex)``: None if valid, else the reason.

    ``raw_keys`` maps the trusted key ids to raw 32-byte public keys;
    ``backend`` is ``"libsodium"`` (PyNaCl) or ``"openssl"`` (``cryptography``).
    """
    if backend == "libsodium":
        keys: dict[str, Any] = dict(raw_keys)

        def valid(key, sig: bytes, msg: bytes) -> bool:
            try:
                _sodium_open(sig + msg, key)
            except _SodiumBadSignature:
                return False
            return True
    else:
        keys = {k: Ed25519PublicKey.from_public_bytes(v) for k, v in raw_keys.items()}

        def valid(key, sig: bytes, msg: bytes) -> bool:
            try:
                key.verify(sig, msg)
            except InvalidSignature:
                return False
            return True

    def check(kid: str, sig_hex: str, hash_hex: str) -> str | None:
        key = keys.get(kid)
        if key is None:
            return f"unknown signing key id {kid!r}"
        try:
            sig = bytes.fromhex(sig_hex)
        except ValueError:
            sig = b""
        if len(sig) != 64 or not valid(key, sig, bytes.fromhex(hash_hex)):
            return f"invalid signature for key id {kid!r}"
        return None
    return check


def _check_range(engine: sa.Engine, batch_size: int, check, lo: int, hi: int | None,
                 unbounded_below: bool) -> tuple[int, str | None, str | None, tuple[int, str] | None]:
    """Check the entries ``lo..hi`` (``hi`` None: to the end) in ``seq`` order.

    Rows below ``lo`` are fetched too when ``unbounded_below`` (so that a
    stray ``seq <= 0`` is reported). The link of the first row to the entry
    before ``lo`` is left to the caller. Returns ``(n_good, first_prev_hash,
    last_entry_hash, failure)`` where ``failure`` is ``(seq, reason)`` of the
    first bad entry or None; ``first_prev_hash`` is None when entry ``lo``
    itself is missing.
    """
    sha256, encode = hashlib.sha256, _ENCODER.encode
    expected, prev, first_prev, n = lo, None, None, 0
    for rows in iter_batches(engine, batch_size, lo=None if unbounded_below else lo, hi=hi):
        for seq, time, actor, action, patient, payload, prev_hash, h, sig, kid in rows:
            if seq != expected:
                return n, first_prev, prev, (expected, _NOT_CONTIGUOUS.format(expected, seq))
            if prev is None:
                first_prev = prev_hash
            elif prev_hash != prev:
                return n, first_prev, prev, (seq, "prev_hash does not match the previous entry_hash")
            doc = {"seq": seq, "time": time, "actor": actor, "action": action, "patient": patient,
                   "payload": payload, "prev_hash": prev_hash}
            try:
                data = encode(doc).encode("utf-8")
            except (TypeError, ValueError) as exc:
                return n, first_prev, prev, (seq, f"entry cannot be serialized: {exc}")
            if sha256(data).hexdigest() != h:
                return n, first_prev, prev, (seq, "entry_hash does not match the entry's contents")
            bad = check(kid, sig, h)
            if bad is not None:
                return n, first_prev, prev, (seq, bad)
            prev, expected, n = h, expected + 1, n + 1
    if hi is not None and expected <= hi:
        return n, first_prev, prev, (expected, _NOT_CONTIGUOUS.format(expected, "none up to " + str(hi)))
    return n, first_prev, prev, None


# -- worker processes (fork): each fetches and checks whole ranges on its own connections --------
_WORKER: tuple = ()


def _init_worker(engine: sa.Engine, raw_keys: Mapping[str, bytes], backend: str, batch_size: int) -> None:
    # The pool inherited from the parent holds the parent's connections: keep a
    # reference so they are never closed (or garbage-collected) here, and start
    # a fresh pool with the same settings (SQLAlchemy's documented fork recipe).
    inherited = engine.pool
    engine.dispose(close=False)
    global _WORKER
    _WORKER = (engine, batch_size, _signature_checker(raw_keys, backend), inherited)


def _worker_range(lo: int, hi: int | None, unbounded_below: bool):
    engine, batch_size, check, _ = _WORKER
    return _check_range(engine, batch_size, check, lo, hi, unbounded_below)


def _ranges(n: int, size: int) -> list[tuple[int, int | None, bool]]:
    """Cut ``1..n`` into ``(lo, hi, unbounded_below)`` ranges; the last is open-ended."""
    out = [(lo, lo + size - 1, lo == 1) for lo in range(1, n + 1, size)]
    lo, _, below = out[-1] if out else (1, None, True)
    out[-1:] = [(lo, None, below)]
    return out


def _join(results, expect_prev: str) -> tuple[int, tuple[int, str] | None]:
    """Join range results in order: ``(n_good, first failure or None)``."""
    n = 0
    for lo, (good, first_prev, last_hash, failure) in results:
        if first_prev is not None and first_prev != expect_prev:
            return n, (lo, "prev_hash does not match the previous entry_hash")
        n += good
        if failure is not None:
            return n, failure
        if last_hash is None:  # empty open-ended tail: the chain ends before lo
            return n, None
        expect_prev = last_hash
    return n, None


def verify_chain(engine: sa.Engine, public_keys: Mapping[str, Ed25519PublicKey], *,
                 expect_head: tuple[int, str] | None = None, workers: int | None = None,
                 batch_size: int = 2000, parallel_threshold: int = 20_000) -> VerifyReport:
    """Check every link, hash and signature of the stored chain.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Database holding the ``audit_log`` table.
    public_keys : mapping of key id to Ed25519PublicKey
        Trusted keys; a signature by any other key is bad.
    expect_head : (int, str), optional
        A previously published head ``(seq, entry_hash)`` the chain must
        contain (detects truncation of the tail).
    workers : int, optional
        Processes fetching and checking ranges of the chain. Default:
        ``os.cpu_count()`` for chains of at least ``parallel_threshold``
        entries, else 1 (in this process). Without the ``fork`` start method
        (Windows), and for an in-memory SQLite database, verification runs in
        this process.
    batch_size : int, default 2000
        Rows per query.
    parallel_threshold : int, default 20000
        Chain length from which ``workers`` defaults to the CPU count.

    Returns
    -------
    VerifyReport
        The first bad entry (lowest ``seq``), whatever the order of checks.

    Examples
    --------
    >>> from medtwin.io.storage import make_engine, upgrade
    >>> engine = make_engine("sqlite://")
    >>> upgrade(engine)
    >>> verify_chain(engine, {})
    VerifyReport(ok=True, n_entries=0, first_bad_seq=None, reason='')
    >>> engine.dispose()
    """
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(_T)).scalar_one()
    if workers is None:
        workers = (os.cpu_count() or 1) if count >= parallel_threshold else 1
    raw = {k: v.public_bytes(Encoding.Raw, PublicFormat.Raw) for k, v in public_keys.items()}
    if workers > 1 and count > 1 and "fork" in mp.get_all_start_methods() and _shareable(engine):
        size = max(batch_size, -(-count // (workers * _TASKS_PER_WORKER)))
        ranges = _ranges(count, size)
        init = (engine, raw, SIGNATURE_BACKEND, batch_size)
        with ProcessPoolExecutor(min(workers, len(ranges)), mp_context=mp.get_context("fork"),
                                 initializer=_init_worker, initargs=init) as pool:
            futures = [pool.submit(_worker_range, *r) for r in ranges]
            try:
                n, failure = _join(((r[0], f.result()) for r, f in zip(ranges, futures)), GENESIS_HASH)
            finally:
                for f in futures:  # stop early after a failure
                    f.cancel()
    else:
        check = _signature_checker(raw, SIGNATURE_BACKEND)
        n, failure = _join([(1, _check_range(engine, batch_size, check, 1, None, True))], GENESIS_HASH)
    if failure is None and expect_head is not None:
        failure = _check_head(engine, n, expect_head)
    if failure is None:
        return VerifyReport(True, n, None, "")
    return VerifyReport(False, failure[0] - 1, failure[0], failure[1])


def _shareable(engine: sa.Engine) -> bool:
    """Whether other processes can open the same database (not an in-memory SQLite one)."""
    if engine.dialect.name != "sqlite":
        return True
    db = engine.url.database or ""
    return db not in ("", ":memory:") and "mode=memory" not in db + str(engine.url.query)


def _check_head(engine: sa.Engine, n: int, expect_head: tuple[int, str]) -> tuple[int, str] | None:
    hseq, hhash = expect_head
    if n < hseq:
        return n + 1, f"chain ends at seq {n} but the published head is seq {hseq} (entries removed from the end)"
    with engine.connect() as conn:
        stored = conn.execute(sa.select(_T.c.entry_hash).where(_T.c.seq == hseq)).scalar()
    if stored != hhash:
        return hseq, "entry at the published head seq has a different hash"
    return None
