"""Signed head checkpoint of the audit log, kept in a file outside the database.

A hash chain proves that the entries it holds were not changed, but a chain
whose *last* entries (or all entries) were deleted is still a valid, shorter
chain. :class:`HeadCheckpoint` keeps a lower bound of the head outside the
table it protects: a small JSON file beside the signing key, rewritten after
every committed append by :class:`~medtwin.governance.audit.AuditLog` (when it
is given a ``checkpoint`` path), and checked by :meth:`AuditLog.verify
<medtwin.governance.audit.AuditLog.verify>` and ``medtwin audit verify``.

File format
-----------
One JSON object::

    {"format": 1, "seq": int, "entry_hash": str, "time": str, "key_id": str,
     "database": str, "signature": str}

``signature`` is the hex Ed25519 signature, by the installation key named by
``key_id``, of the canonical JSON (see
:func:`~medtwin.governance.audit_chain.canonical_json`) of the other fields.
``database`` names the database the head belongs to (:func:`database_id`).
The file is written to a private temporary file, fsync'ed and renamed over
the old one (mode 0600), under an exclusive ``flock`` on ``<file>.lock``; it
is replaced only by a head with a *larger* ``seq``, so concurrent writers
(threads or processes of this installation) never move it backwards.

The checkpoint is written *after* the database commit, so a crash between the
two leaves it behind the table: it is a lower bound of the head, never ahead
of a log that was not tampered with.

What is detected
----------------
Compared with the stored chain (after the chain itself verified):

- fewer entries than the checkpoint's ``seq``: entries deleted from the end
  (including all of them: an empty table with a checkpoint);
- a different ``entry_hash`` at the checkpoint's ``seq``: the log was
  rewritten (deleted, then re-appended by someone holding the key);
- a checkpoint whose signature does not verify with a trusted key, or that
  cannot be read: the file was edited or damaged;
- no checkpoint file for a non-empty log: the file was deleted (or the log
  was written by medtwin before checkpoints existed; the next append writes
  one).

What is not detected
--------------------
- Deleting the tail *and* the checkpoint, then appending again: the next
  append writes a fresh checkpoint for the shorter chain. Only a copy of the
  head kept elsewhere (:meth:`AuditLog.head` published to a ticket, a notary,
  another machine; pass it back as ``expect_head``) detects that.
- Deleting entries appended after the last checkpoint write (a crash between
  commit and checkpoint write; at most the entries of one transaction per
  writer).
- Replacing the checkpoint file by an *older* signed checkpoint of the same
  database together with deleting the entries after it (a rollback of both
  to an earlier, consistent state).
- Anything done by someone holding the signing key: they can rewrite the
  chain and sign a matching checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medtwin.governance.audit_chain import canonical_json, key_id
from medtwin.io.storage import write_private_temp

try:  # POSIX advisory file locks; without them (Windows) the seq comparison still applies
    import fcntl
except ImportError:  # pragma: no cover - depends on the platform
    fcntl = None

__all__ = ["CHECKPOINT_PREFIX", "HeadCheckpoint", "checkpoint_path", "database_id"]

#: File name prefix of checkpoints in the key folder (``audit_head.<database id>.json``).
CHECKPOINT_PREFIX = "audit_head"
_FORMAT = 1
_SIGNED_FIELDS = ("format", "seq", "entry_hash", "time", "key_id", "database")


def database_id(engine: sa.Engine) -> str:
    """A stable name of the database behind *engine*: 16 hex digits of the SHA-256 of its URL (password hidden).

    Examples
    --------
    >>> from medtwin.io.storage import make_engine
    >>> len(database_id(make_engine("sqlite://")))
    16
    """
    url = engine.url.render_as_string(hide_password=True)
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def checkpoint_path(directory, engine: sa.Engine) -> Path:
    """The checkpoint file for *engine*'s database in *directory* (the key folder)."""
    return Path(directory) / f"{CHECKPOINT_PREFIX}.{database_id(engine)}.json"


@dataclass(frozen=True)
class HeadCheckpoint:
    """A signed ``(seq, entry_hash)`` of the audit log, read from or written to one file.

    Parameters
    ----------
    path : pathlib.Path
        The checkpoint file (its folder must exist or be creatable).
    database : str
        :func:`database_id` of the log's database; a file naming another
        database is not trusted.
    """

    path: Path
    database: str

    def _message(self, doc: dict) -> bytes:
        return canonical_json({k: doc[k] for k in _SIGNED_FIELDS}).encode("utf-8")

    def read(self, public_keys: dict[str, Ed25519PublicKey] | None = None) -> dict | None:
        """The checkpoint as a dict, None when there is no file.

        With ``public_keys`` (key id -> key) the signature is checked too.

        Raises
        ------
        ValueError
            The file is unreadable, malformed, for another database, or (with
            ``public_keys``) not signed by one of them; the message says which.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(f"cannot read the head checkpoint {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
            seq, entry = int(doc["seq"]), str(doc["entry_hash"])
            if doc["format"] != _FORMAT or not all(k in doc for k in _SIGNED_FIELDS) or seq < 1:
                raise ValueError("unexpected fields")
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"head checkpoint {self.path} is not a valid checkpoint file") from None
        if doc["database"] != self.database:
            raise ValueError(f"head checkpoint {self.path} belongs to another database")
        if public_keys is not None:
            key = public_keys.get(doc["key_id"])
            try:
                if key is None:
                    raise InvalidSignature
                key.verify(bytes.fromhex(str(doc["signature"])), self._message(doc))
            except (InvalidSignature, ValueError):
                raise ValueError(f"head checkpoint {self.path} is not signed by a trusted key "
                                 "(file edited or replaced)") from None
        doc["seq"], doc["entry_hash"] = seq, entry
        return doc

    def advance(self, seq: int, entry_hash: str, key: Ed25519PrivateKey) -> None:
        """Record ``(seq, entry_hash)`` as the head unless the file already holds a larger ``seq``.

        Atomic (temporary file, fsync, rename; mode 0600) and serialized with
        other writers by an exclusive lock on ``<file>.lock``.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                current = self.read()
            except ValueError:
                current = None  # unreadable or foreign: replaced (verify reports it until then)
            if current is not None and current["seq"] >= seq:
                return
            doc = {"format": _FORMAT, "seq": int(seq), "entry_hash": entry_hash,
                   "time": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                   "key_id": key_id(key.public_key()), "database": self.database}
            doc["signature"] = key.sign(self._message(doc)).hex()
            self._write(canonical_json(doc).encode("utf-8"))
        finally:
            os.close(lock_fd)  # releases the flock

    def _write(self, data: bytes) -> None:
        tmp = write_private_temp(self.path.parent, self.path.name, data)
        try:
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def check(self, n_entries: int, stored_hash_at, public_keys: dict[str, Ed25519PublicKey]
              ) -> tuple[int, str] | None:
        """Compare a verified chain of ``n_entries`` with the checkpoint.

        ``stored_hash_at(seq)`` returns the stored ``entry_hash`` at ``seq``
        (or None). Returns ``(seq, reason)`` of the failure, or None when the
        chain reaches the checkpoint with the same hash there.
        """
        try:
            doc = self.read(public_keys)
        except ValueError as exc:
            return n_entries + 1, str(exc)
        if doc is None:
            if n_entries == 0:
                return None
            return (n_entries + 1, f"no head checkpoint ({self.path}) for a log of {n_entries} entries: "
                    "the checkpoint file was deleted, or the log was written without one")
        seq = doc["seq"]
        if n_entries < seq:
            return (n_entries + 1, f"chain ends at seq {n_entries} but the signed head checkpoint is seq "
                    f"{seq} (entries removed from the end)")
        if stored_hash_at(seq) != doc["entry_hash"]:
            return seq, "entry at the signed head checkpoint's seq has a different hash (log rewritten)"
        return None
