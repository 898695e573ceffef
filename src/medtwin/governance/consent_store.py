"""Dynamic consent persisted: FHIR Consents in the database, every change and decision audited.

:class:`ConsentStore` keeps each patient's consents in the ``consents`` table
(created by migration ``0002_consents``; see :func:`medtwin.io.storage.upgrade`)
as FHIR R5 JSON written by :func:`medtwin.governance.consent.to_fhir`, and
writes to the hash-chained :class:`~medtwin.governance.audit.AuditLog`:

=====================  ==========================================================
action                 payload
=====================  ==========================================================
``consent.add``        ``consent_id``, ``status``, ``decision``, ``row_digest``
``consent.withdraw``   ``consent_id`` (the new deny), ``supersedes``, ``purpose``,
                       ``row_digest``
``consent.decision``   ``decision`` (permit / deny), ``reason``, ``consent_id``,
                       ``purpose``, ``data_class``, ``time``
=====================  ==========================================================

A consent row and its ``consent.add`` / ``consent.withdraw`` entry are
committed in one transaction (:meth:`AuditLog.transaction
<medtwin.governance.audit.AuditLog.transaction>`): both or neither. The
entry's ``row_digest`` anchors the row in the signed chain, and every read of
a patient's consents checks the rows against their entries first
(:mod:`medtwin.governance.consent_integrity`): a deleted, edited or smuggled
row raises :class:`~medtwin.governance.consent_integrity.ConsentRecordAltered`
before any decision.

Examples
--------
>>> import tempfile, os
>>> from datetime import datetime, timezone
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from medtwin.governance.audit import AuditLog
>>> from medtwin.io.storage import make_engine, upgrade
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "c.db"))
>>> upgrade(engine)
>>> store = ConsentStore(engine, AuditLog(engine, Ed25519PrivateKey.generate()))
>>> doc = {"resourceType": "Consent", "id": "c1", "status": "active",
...        "subject": {"reference": "Patient/p1"}, "date": "2026-01-01", "decision": "permit"}
>>> store.add(doc, "dr.who").id
'c1'
>>> t = datetime(2026, 6, 1, tzinfo=timezone.utc)
>>> store.check("p1", "Organization/lab", "research", "observations", t).permit
True
>>> store.withdraw("p1", "research", "dr.who", t).id
'c1-withdraw-research'
>>> store.check("p1", "Organization/lab", "research", "observations", t)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
medtwin.governance.consent.ConsentDenied: consent denied (c1-withdraw-research): ...
>>> [e.action for e in store.audit_log.entries(patient="p1")]
['consent.add', 'consent.decision', 'consent.withdraw', 'consent.decision']
>>> engine.dispose()
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from medtwin.errors import ConsentError, DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.consent_integrity import ConsentRecordAltered, SignatureCache, load_checked, row_digest
from medtwin.governance.consent import (
    DEFAULT_POLICY, PURPOSES, ConsentPolicy, Decision, DefaultPolicy, decide, load_consent, require, to_fhir,
    withdraw as withdraw_policy,
)
from medtwin.io.storage import consents_table

__all__ = ["AccessDenied", "ConsentGate", "ConsentRecordAltered", "ConsentStore"]

_T = consents_table


def _pid(patient: str) -> str:
    pid = str(patient).split("/")[-1]
    if not pid:
        raise DataError(f"patient id is empty: {patient!r}")
    return pid


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _recency(policy: ConsentPolicy, added_at: str):
    start = (policy.period.start if policy.period and policy.period.start
             else datetime.min.replace(tzinfo=timezone.utc))
    return (policy.date or date.min, start, added_at)


class ConsentStore:
    """Patients' FHIR Consents in the ``consents`` table; changes and decisions go to the audit log.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Database at revision ``0002_consents`` or later.
    audit_log : AuditLog
        Log (with a signing key) receiving ``consent.*`` entries.
    default_policy : DefaultPolicy
        Passed to :func:`~medtwin.governance.consent.decide` by :meth:`check`.
    trusted_keys : sequence of Ed25519PublicKey, optional
        Keys whose signatures on ``consent.*`` audit entries are accepted
        when rows are checked, besides the audit log's own key.
    """

    def __init__(self, engine: sa.Engine, audit_log: AuditLog,
                 default_policy: DefaultPolicy = DEFAULT_POLICY, *, trusted_keys: Sequence = ()):
        self.engine = engine
        self.audit_log = audit_log
        self.default_policy = default_policy
        own = [] if audit_log.public_key is None else [audit_log.public_key]
        self._signatures = SignatureCache(own + list(trusted_keys))

    # -- writing -----------------------------------------------------------------
    def _insert(self, conn: sa.Connection, policy: ConsentPolicy) -> str:
        """Insert the row on the audit transaction's connection; return its digest."""
        row = {"id": policy.id, "patient": policy.patient, "status": policy.status,
               "date": policy.date.isoformat() if policy.date else None,
               "resource": json.dumps(to_fhir(policy), sort_keys=True),
               "added_at": _now().isoformat(timespec="microseconds")}
        if conn.execute(sa.select(_T.c.id).where(_T.c.id == policy.id)).first() is not None:
            raise DataError(f"a consent with id {policy.id!r} is already stored")
        conn.execute(_T.insert(), row)
        return row_digest(row["id"], row["patient"], row["status"], row["date"], row["resource"],
                          row["added_at"])

    def _free_id(self, conn: sa.Connection, wanted: str) -> str:
        taken = set(conn.execute(sa.select(_T.c.id).where(_T.c.id.like(f"{wanted}%"))).scalars())
        if wanted not in taken:
            return wanted
        n = 2
        while f"{wanted}-{n}" in taken:
            n += 1
        return f"{wanted}-{n}"

    def add(self, resource: ConsentPolicy | dict | str | Path, actor: str) -> ConsentPolicy:
        """Validate and store a Consent (FHIR R5/R4B dict, JSON text, file, or a policy).

        A resource without ``id`` gets a random one. Returns the stored policy.

        Raises
        ------
        InvalidConsent
            (a DataError) naming the invalid element; DataError for a duplicate id.
        """
        policy = resource if isinstance(resource, ConsentPolicy) else load_consent(resource)
        policy = load_consent(to_fhir(policy))  # what is stored is exactly what is read back
        if not policy.id:
            policy = dataclasses.replace(policy, id=uuid.uuid4().hex)
        with self.audit_log.transaction() as tx:  # row and entry: both or neither
            digest = self._insert(tx.conn, policy)
            tx.append(actor, "consent.add", {"consent_id": policy.id, "status": policy.status,
                                             "decision": policy.decision, "row_digest": digest},
                      patient=policy.patient)
        return policy

    def withdraw(self, patient: str, purpose: str, actor: str,
                 time: datetime | None = None) -> ConsentPolicy:
        """Withdraw consent to *purpose* from *time* (default now) on.

        Stores a new active deny (see :func:`medtwin.governance.consent.withdraw`)
        superseding the patient's most recent active consent, or a deny-only
        consent when none is on file. Returns the new consent.
        """
        pid, t = _pid(patient), time or _now()
        active = [(p, added) for p, added in self._rows(pid) if p.status == "active"]
        if active:
            base = max(active, key=lambda pa: _recency(*pa))[0]
        else:
            base = ConsentPolicy(pid, pid, "active", "deny")
        new = withdraw_policy(base, purpose, t)
        with self.audit_log.transaction() as tx:  # row and entry: both or neither
            new = dataclasses.replace(new, id=self._free_id(tx.conn, new.id))
            digest = self._insert(tx.conn, new)
            tx.append(actor, "consent.withdraw",
                      {"consent_id": new.id, "supersedes": base.id if active else None,
                       "purpose": purpose, "row_digest": digest}, patient=pid)
        return new

    # -- reading -----------------------------------------------------------------
    def _checked(self, pids: Sequence[str]) -> dict[str, list[tuple[ConsentPolicy, str]]]:
        """Each patient's ``(policy, added_at)`` in the order added, checked against the audit log."""
        rows = load_checked(self.engine, pids, self._signatures)
        return {pid: [(load_consent(json.loads(resource)), added) for resource, added in found]
                for pid, found in rows.items()}

    def _rows(self, pid: str) -> list[tuple[ConsentPolicy, str]]:
        return self._checked([pid])[pid]

    def for_patient(self, patient: str) -> list[ConsentPolicy]:
        """Every stored consent of *patient* (id or ``Patient/id``), in the order added.

        Raises
        ------
        ConsentRecordAltered
            The stored consents differ from those the audit log recorded.
        """
        return [p for p, _ in self._rows(_pid(patient))]

    def _audit_record(self, d: Decision, actor: str, purpose: str, data_class: str,
                      operation: str | None = None) -> dict:
        payload = {"decision": "permit" if d.permit else "deny", "reason": d.reason, "consent_id": d.consent_id,
                   "purpose": purpose, "data_class": data_class, "time": d.time.isoformat()}
        if operation is not None:
            payload["operation"] = operation
        return {"actor": actor, "action": "consent.decision", "payload": payload, "patient": d.patient}

    def check(self, patient: str, actor: str, purpose: str, data_class: str,
              time: datetime | None = None) -> Decision:
        """:func:`~medtwin.governance.consent.require` on the stored consents, audited.

        Every decision (permit or deny) is appended as ``consent.decision``
        before the result is returned or :class:`ConsentDenied` (a
        :class:`~medtwin.errors.ConsentError`) is raised.
        """
        pid, t = _pid(patient), time or _now()

        def audit(d: Decision) -> None:
            record = self._audit_record(d, actor, purpose, data_class)
            self.audit_log.append(record["actor"], record["action"], record["payload"], patient=pid)

        return require(self.for_patient(pid), pid, actor, purpose, data_class, t,
                       self.default_policy, on_decision=audit)

    def check_many(self, patients: Sequence[str], actor: str, purpose: str, data_classes: Sequence[str],
                   time: datetime | None = None, *, operation: str | None = None) -> list[Decision]:
        """Decide every (patient, data class) pair; all decisions audited in one transaction.

        Unlike :meth:`check` this does not raise: the caller (e.g.
        :class:`ConsentGate`) decides what a deny means.  The consents of all
        patients are read in one query and the ``consent.decision`` entries
        (with ``operation`` when given) are appended with
        :meth:`~medtwin.governance.audit.AuditLog.append_many`.

        Returns
        -------
        list of Decision
            Patient-major: ``len(patients) * len(data_classes)`` decisions.
        """
        pids, t = [_pid(p) for p in patients], time or _now()
        by_patient = self._checked(pids)  # raises ConsentRecordAltered before any decision
        decisions = [decide([c for c, _ in by_patient[pid]], pid, actor, purpose, data_class, t,
                            self.default_policy)
                     for pid in pids for data_class in data_classes]
        self.audit_log.append_many([self._audit_record(d, actor, purpose, d.data_class, operation)
                                    for d in decisions])
        return decisions


class AccessDenied(ConsentError):
    """A read or write of several patients' data was refused; nothing was returned or written.

    Attributes
    ----------
    denied : list of Decision
        Every refused (patient, data class) pair, with the reason and deciding consent.
    operation : str
        ``"read"`` or ``"write"``.
    """

    def __init__(self, denied: Sequence[Decision], operation: str, purpose: str, actor: str):
        self.denied, self.operation = list(denied), operation
        patients = list(dict.fromkeys(d.patient for d in self.denied))
        first = self.denied[0]
        super().__init__(
            f"{operation} of patient data for {purpose} by {actor} denied for {len(patients)} patient(s) "
            f"({', '.join(patients[:5])}{', ...' if len(patients) > 5 else ''}); first: patient {first.patient}, "
            f"{first.data_class}: {first.reason}; no data were {'returned' if operation == 'read' else 'written'}")


@dataclass(frozen=True)
class ConsentGate:
    """The consent gate for :mod:`medtwin.io`: one actor, one purpose, audited decisions.

    Pass it as ``access=`` to every reader and writer of patient data
    (:func:`medtwin.io.nonmem.read_nonmem`, :func:`~medtwin.io.nonmem.write_nonmem`,
    :func:`~medtwin.io.dataset_simulation.write_simulation`, run records).

    Parameters
    ----------
    store : ConsentStore
        The stored consents and the audit log receiving every decision.
    actor : str
        Who reads or writes (a person, ``Organization/...`` for a third party).
    purpose : str
        One of :data:`medtwin.governance.consent.PURPOSES`.
    time : datetime, optional
        The time of the access (default: now, at each call).
    patient_map : mapping, optional
        Dataset subject id (text, see :func:`medtwin.io.access.patient_ids`)
        -> FHIR Patient id; unmapped ids are used as they are.

    Examples
    --------
    >>> import io, tempfile, os
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> from medtwin.governance.audit import AuditLog
    >>> from medtwin.io.nonmem import read_nonmem
    >>> from medtwin.io.storage import make_engine, upgrade
    >>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "g.db"))
    >>> upgrade(engine)
    >>> store = ConsentStore(engine, AuditLog(engine, Ed25519PrivateKey.generate()))
    >>> text = "ID,TIME,AMT,DV\\n7,0,100,.\\n7,2,0,3.1\\n"
    >>> read_nonmem(io.StringIO(text), access=ConsentGate(store, "dr.who", "treatment")).ids
    array([7])
    >>> read_nonmem(io.StringIO(text), access=ConsentGate(store, "lab", "research"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    medtwin.governance.consent_store.AccessDenied: read of patient data for research by lab denied for 1 patient(s) (7)...
    >>> [e.payload["decision"] for e in store.audit_log.entries(patient="7")]
    ['permit', 'permit', 'deny', 'deny']
    >>> engine.dispose()
    """

    store: ConsentStore
    actor: str
    purpose: str
    time: datetime | None = None
    patient_map: Mapping[str, str] | None = None

    def __post_init__(self):
        if self.purpose not in PURPOSES:
            raise DataError(f"purpose must be one of {PURPOSES}, not {self.purpose!r}")
        if not isinstance(self.actor, str) or not self.actor:
            raise DataError(f"actor must be a non-empty string, got {self.actor!r}")

    def authorize(self, patients: Sequence[str], data_classes: Sequence[str], operation: str) -> None:
        """Check every patient x data class; raise :class:`AccessDenied` if any is refused (all audited)."""
        mapped = [self.patient_map.get(p, p) if self.patient_map else p for p in patients]
        decisions = self.store.check_many(mapped, self.actor, self.purpose, data_classes, self.time,
                                          operation=operation)
        denied = [d for d in decisions if not d.permit]
        if denied:
            raise AccessDenied(denied, operation, self.purpose, self.actor)
