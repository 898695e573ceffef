"""Stored consents checked against the signed audit log before every decision.

A consent row is only as trustworthy as the table it sits in: deleting a
withdrawal row would silently allow a research use again. Every row that
:class:`~medtwin.governance.consent_store.ConsentStore` stores is therefore
anchored in the hash-chained, Ed25519-signed audit log: its ``consent.add``
or ``consent.withdraw`` entry, committed in the same transaction as the row,
carries the row's digest (``row_digest``, :func:`row_digest`). Whenever rows
are read for a decision or a listing (``check``, ``check_many``,
``for_patient``, ``withdraw``), :func:`load_checked` reads, in one snapshot,
the patients' rows and their ``consent.*`` entries (index
``ix_audit_log_patient_action``, migration ``0005``) and requires:

- every such entry intact: its ``entry_hash`` recomputed from its fields, and
  its signature valid for a trusted key (each distinct signature is checked
  once per store; later checks of the same entry are a set look-up);
- every consent the entries name present, with the same digest (a deleted or
  edited row, or a row moved to another patient);
- every row named by an entry (a row inserted directly in the table).

Otherwise :class:`ConsentRecordAltered` (a
:class:`~medtwin.errors.ConsentError`) names the patient and the consent,
before any decision is taken (nothing is permitted, no decision is audited).

Limits: entries written before migration ``0005`` carry no digest, so their
rows are checked for presence only. Deleting a row *together with* its audit
entry (or rolling both back to an earlier state) is not visible from the
patient's entries; it breaks the chain (a ``seq`` gap, a broken link) or the
head checkpoint, which ``medtwin audit verify`` reports. Whoever holds the
signing key can rewrite both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from medtwin.errors import ConsentError
from medtwin.governance.audit_chain import (SIGNATURE_BACKEND, _signature_checker, canonical_json,
                                            entry_hash, key_id)
from medtwin.io.storage import audit_table, consents_table

__all__ = ["CONSENT_ACTIONS", "ConsentRecordAltered", "SignatureCache", "load_checked", "row_digest"]

#: Audit actions that store a consent row (their payload names ``consent_id`` and ``row_digest``).
CONSENT_ACTIONS = ("consent.add", "consent.withdraw")

_C, _A = consents_table, audit_table
_ROW = (_C.c.patient, _C.c.id, _C.c.status, _C.c.date, _C.c.resource, _C.c.added_at)
_ENTRY = (_A.c.patient, _A.c.seq, _A.c.time, _A.c.actor, _A.c.action, _A.c.payload, _A.c.prev_hash,
          _A.c.entry_hash, _A.c.signature, _A.c.key_id)
_CHUNK = 500


class ConsentRecordAltered(ConsentError):
    """A patient's stored consents differ from what the audit log recorded; no decision was taken.

    Attributes
    ----------
    patient : str
    consent_id : str or None
    """

    def __init__(self, patient: str, consent_id: str | None, why: str):
        self.patient, self.consent_id = patient, consent_id
        super().__init__(f"consent record of patient {patient} was altered: {why}; "
                         "no consent decision was made (run `medtwin audit verify` and restore the consents)")


def row_digest(consent_id: str, patient: str, status: str, date: str | None, resource: str,
               added_at: str) -> str:
    """``sha256:<hex>`` of a stored consent row's canonical JSON (all its columns).

    Examples
    --------
    >>> row_digest("c1", "p1", "active", None, "{}", "2026-01-01T00:00:00+00:00")[:7]
    'sha256:'
    """
    doc = {"id": consent_id, "patient": patient, "status": status, "date": date, "resource": resource,
           "added_at": added_at}
    return "sha256:" + hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


class SignatureCache:
    """Checks audit-entry signatures against trusted keys, each distinct (hash, signature, key) once.

    Parameters
    ----------
    public_keys : sequence of Ed25519PublicKey
        Trusted signers; an entry signed by any other key is rejected. With
        no key at all, signatures are not checked (hashes still are).
    max_size : int, default 200000
        Verified signatures remembered (the set is emptied when full).
    """

    def __init__(self, public_keys: Sequence[Ed25519PublicKey], max_size: int = 200_000):
        raw = {key_id(k): k.public_bytes(Encoding.Raw, PublicFormat.Raw) for k in public_keys}
        self._check = _signature_checker(raw, SIGNATURE_BACKEND) if raw else None
        self._seen: set[tuple[str, str, str]] = set()
        self._max = int(max_size)

    def bad(self, kid: str, signature: str, hash_hex: str) -> str | None:
        """None when the signature is valid (or no keys are trusted), else the reason."""
        if self._check is None or (hash_hex, signature, kid) in self._seen:
            return None
        why = self._check(kid, signature, hash_hex)
        if why is None:
            if len(self._seen) >= self._max:
                self._seen.clear()
            self._seen.add((hash_hex, signature, kid))
        return why


def _audited(pid: str, entries, signatures: SignatureCache) -> dict[str, str | None]:
    """consent id -> audited row digest (None for entries without one) from a patient's checked entries."""
    audited: dict[str, str | None] = {}
    for _, seq, time, actor, action, payload, prev, h, sig, kid in entries:
        if entry_hash(seq, time, actor, action, pid, payload, prev) != h:
            raise ConsentRecordAltered(pid, None, f"its audit entry {seq} ({action}) was changed")
        why = signatures.bad(kid, sig, h)
        if why is not None:
            raise ConsentRecordAltered(pid, None, f"its audit entry {seq} ({action}) has an {why}")
        data = json.loads(payload)
        audited[str(data.get("consent_id"))] = data.get("row_digest")
    return audited


def load_checked(engine: sa.Engine, pids: Sequence[str], signatures: SignatureCache
                 ) -> dict[str, list[tuple[str, str]]]:
    """Each patient's consent rows as ``(resource JSON, added_at)`` in the order added, checked against the log.

    Raises
    ------
    ConsentRecordAltered
        A row deleted, edited, moved or inserted outside medtwin, or a changed
        or forged ``consent.*`` audit entry (the first patient found).
    """
    unique = list(dict.fromkeys(pids))
    rows: dict[str, list] = {pid: [] for pid in unique}
    entries: dict[str, list] = {pid: [] for pid in unique}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":  # one snapshot for both reads
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():  # SQLite (WAL): the snapshot of the first read holds for the transaction
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                for row in conn.execute(sa.select(*_ROW).where(_C.c.patient.in_(chunk))
                                        .order_by(_C.c.added_at, _C.c.id)):
                    rows[row[0]].append(tuple(row))
                for row in conn.execute(sa.select(*_ENTRY).where(_A.c.patient.in_(chunk),
                                                                 _A.c.action.in_(CONSENT_ACTIONS))
                                        .order_by(_A.c.seq)):
                    entries[row[0]].append(tuple(row))
    for pid in unique:
        _compare(pid, rows[pid], _audited(pid, entries[pid], signatures))
    return {pid: [(r[4], r[5]) for r in rows[pid]] for pid in unique}


def _compare(pid: str, rows: list, audited: Mapping[str, str | None]) -> None:
    remaining = dict(audited)
    for patient, cid, status, date, resource, added_at in rows:
        if cid not in remaining:
            raise ConsentRecordAltered(pid, cid, f"consent {cid} has no audit entry (inserted or moved "
                                       "outside medtwin)")
        expected = remaining.pop(cid)
        if expected is not None and expected != row_digest(cid, patient, status, date, resource, added_at):
            raise ConsentRecordAltered(pid, cid, f"consent {cid} differs from the one audited (edited)")
    if remaining:
        cid = next(iter(remaining))
        raise ConsentRecordAltered(pid, cid, f"consent {cid} is in the audit log but missing from the "
                                   "consents table (deleted or moved)")
