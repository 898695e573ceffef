"""Clinicians' decisions stored next to what the twin proposed, signed and audited.

:class:`DecisionStore` keeps each :class:`~medtwin.control.decisions.Decision`
in the ``decisions`` table (migration ``0004_decisions``) together with the
recommendation it decides on (:func:`~medtwin.control.decisions.recommendation_content`:
action, status, target, probabilities, ..., and the clinician-facing
``summary()``) and a signed :class:`~medtwin.governance.provenance.ProvenanceRecord`
(operation ``"decision"``) whose digests cover both, and appends
``decision.record`` to the audit log in the same transaction (both are
committed, or neither).

Consent.  A decision is patient data: it is a medication order (FHIR
MedicationRequest: data class ``medications``) and it carries the twin's
predictions and the subgroup labels, derived from the patient's
measurements (``observations``).  Recording is a ``write`` and reading a
``read`` of both classes (:data:`DATA_CLASSES`), asked through ``access``
(:mod:`medtwin.io.access`) before anything is stored or returned.  The
consent policy has no class of its own for decisions
(:data:`medtwin.governance.consent.DATA_CLASSES`).

Provenance record of a decision
-------------------------------
``operation="decision"``, ``run_id`` = the decision id, ``input_digests``:
``recommendation`` (its content) and ``decision``; ``output_digest``: the
pair ``{"decision", "recommendation"}`` as stored; ``output_digests``: each
of the two; ``model_digest``: the model's digest when the caller passes the
model; ``solver``: ``{}``; environment as for every record.
:meth:`StoredDecision.intact` re-digests the stored texts and checks the
signature, so a changed row is detected.

Examples
--------
>>> import tempfile, os
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from medtwin.control.decisions import decide
>>> from medtwin.control.recommendation import Recommendation
>>> from medtwin.governance.audit import AuditLog
>>> from medtwin.io.access import OpenData
>>> from medtwin.io.storage import make_engine, upgrade
>>> engine = make_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "d.db"))
>>> upgrade(engine)
>>> key = Ed25519PrivateKey.generate()
>>> store = DecisionStore(engine, AuditLog(engine, key), key)
>>> rec = Recommendation(kind="regimen", action={"dose_mg": 1250.0}, status="optimal", target={})
>>> d = decide(rec, "modify", given={"dose_mg": 1000.0}, reason="AKI risk", patient="v1",
...            clinician="dr.who", time=24.0)
>>> synthetic = OpenData("synthetic virtual patient")
>>> record = store.record(d, rec, "dr.who", access=synthetic)
>>> [(s.decision.choice, s.recommendation["summary"]) for s in store.for_patient("v1", access=synthetic)]
[('modify', 'recommended (optimal): dose_mg=1250')]
>>> store.for_patient("v1", access=synthetic)[0].intact([key.public_key()])
True
>>> engine.dispose()
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import sqlalchemy as sa

from medtwin.errors import DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.canonical import digest
from medtwin.governance.provenance import ProvenanceRecord, environment, new_run_id, now, sign, verify
from medtwin.io.access import authorize
from medtwin.io.storage import decisions_table

if TYPE_CHECKING:
    from medtwin.control.decisions import Decision

__all__ = ["DATA_CLASSES", "DecisionStore", "StoredDecision"]

#: Consent data classes a stored decision holds (see the module docstring).
DATA_CLASSES = ("medications", "observations")

_T = decisions_table
_COLUMNS = (_T.c.decision, _T.c.recommendation, _T.c.provenance, _T.c.created_at)


def _json(value) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"decision is not storable as strict JSON: {exc}") from None


def _content_digests(decision: dict, recommendation: dict) -> tuple[str, dict]:
    """(output digest of the pair, per-part digests) of a decision and its recommendation content."""
    parts = {"decision": digest(decision, root="outputs.decision"),
             "recommendation": digest(recommendation, root="outputs.recommendation")}
    return digest({"decision": decision, "recommendation": recommendation}, root="outputs"), parts


@dataclass(frozen=True)
class StoredDecision:
    """A decision as stored: the decision, the recommendation content, its signed provenance, when stored.

    Attributes
    ----------
    decision : Decision
    recommendation : dict
        :func:`~medtwin.control.decisions.recommendation_content` of what the twin proposed
        (``summary``, ``action``, ``status``, ``target``, ``probabilities``, ...).
    record : ProvenanceRecord
        Signed; ``record.run_id`` is the decision id.
    created_at : str
        ISO 8601 UTC time it was stored.
    """

    decision: Decision
    recommendation: dict
    record: ProvenanceRecord
    created_at: str

    @property
    def decision_id(self) -> str:
        return self.record.run_id

    def intact(self, public_keys: Iterable) -> bool:
        """True when the record is signed by one of *public_keys* and the stored contents match its digests."""
        output, _ = _content_digests(self.decision.as_dict(), self.recommendation)
        signed = any(verify(self.record, k) for k in public_keys)
        return signed and output == self.record.output_digest


class DecisionStore:
    """Decisions in the ``decisions`` table, each with its recommendation and signed provenance; audited.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Database at revision ``0004_decisions`` or later.
    audit_log : AuditLog
        Receives a ``decision.record`` entry per stored decision.
    key : Ed25519PrivateKey
        Signs the provenance records.
    """

    def __init__(self, engine: sa.Engine, audit_log: AuditLog, key):
        self.engine, self.audit_log, self.key = engine, audit_log, key

    def record(self, decision: Decision, recommendation, operator: str, *, access, model=None,
               env: Mapping | None = None) -> ProvenanceRecord:
        """Store a decision next to the recommendation it decides on; sign it and audit it.

        Parameters
        ----------
        decision : Decision
            From :func:`~medtwin.control.decisions.decide`; a missing ``timestamp`` is stamped now.
        recommendation : Recommendation
            The recommendation decided on (must be the one the decision names).
        operator : str
            Who records (a person or a service; the clinician is in the decision).
        access : DataAccess
            Consent gate; a ``write`` of the patient's :data:`DATA_CLASSES` is asked before anything is stored.
        model : Model, optional
            The twin's model, digested into the record when given.
        env : mapping, optional
            :func:`~medtwin.governance.provenance.environment` (read from this process when omitted).

        Returns
        -------
        ProvenanceRecord
            Signed; its ``run_id`` is the decision id.

        Raises
        ------
        DataError
            Not a Decision, or a recommendation other than the one the decision names.
        ConsentError
            The write is denied (nothing stored, no ``decision.record`` entry).
        """
        # control.decisions (pandas, scipy) imported here: a process that only opens the stores (a replay)
        # records no decision
        from medtwin.control.decisions import Decision, recommendation_content, recommendation_id

        if not isinstance(decision, Decision):
            raise DataError(f"DecisionStore.record needs a Decision, got {type(decision).__name__}")
        if not isinstance(operator, str) or not operator.strip():
            raise DataError(f"operator must be a non-empty string, got {operator!r}")
        content = recommendation_content(recommendation)
        if recommendation_id(recommendation) != decision.recommendation_id or content["action"] != decision.proposed:
            raise DataError(f"decision names recommendation {decision.recommendation_id}, not this one "
                            f"({recommendation_id(recommendation)}): record it with the recommendation decided on")
        authorize(access, [decision.patient], DATA_CLASSES, "write")
        created = now()
        if decision.timestamp is None:
            decision = replace(decision, timestamp=created)
        stored = decision.as_dict()
        output, parts = _content_digests(stored, content)
        env = environment() if env is None else env
        record = sign(ProvenanceRecord(
            run_id=new_run_id(), operation="decision", time=created, operator=operator,
            input_digests={"recommendation": digest(content, root="inputs.recommendation"),
                           "decision": digest(stored, root="inputs.decision")},
            model_digest=None if model is None else "sha256:" + model.digest(),
            output_digest=output, output_digests=parts, code_version=dict(env.get("code_version", {})),
            dependencies=dict(env.get("dependencies", {})), platform=dict(env.get("platform", {}))), self.key)
        row = {"decision_id": record.run_id, "patient": decision.patient,
               "recommendation_id": decision.recommendation_id, "choice": decision.choice,
               "clinician": decision.clinician, "operator": operator, "time_h": decision.time,
               "decided_at": decision.timestamp, "created_at": created, "decision": _json(stored),
               "recommendation": _json(content), "provenance": _json(record.as_dict())}
        with self.audit_log.transaction() as tx:  # the row and its entry: both or neither
            tx.conn.execute(_T.insert(), row)
            tx.append(operator, "decision.record",
                      {"decision_id": record.run_id, "choice": decision.choice,
                       "recommendation_id": decision.recommendation_id, "clinician": decision.clinician,
                       "time_h": decision.time, "output_digest": output, "signer": record.signer},
                      patient=decision.patient)
        return record

    @staticmethod
    def _stored(row) -> StoredDecision:
        from medtwin.control.decisions import Decision

        return StoredDecision(Decision.from_dict(json.loads(row[0])), json.loads(row[1]),
                              ProvenanceRecord.from_dict(json.loads(row[2])), row[3])

    def for_patient(self, patient: str, *, access) -> list[StoredDecision]:
        """One patient's decisions, in decision time order (a consented ``read``)."""
        authorize(access, [patient], DATA_CLASSES, "read")
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_COLUMNS).where(_T.c.patient == str(patient))
                                .order_by(_T.c.time_h, _T.c.created_at, _T.c.decision_id)).all()
        return [self._stored(r) for r in rows]

    def all(self, *, access) -> list[StoredDecision]:
        """Every stored decision (for :func:`~medtwin.control.decisions.override_analysis`), a ``read`` of all
        their patients' data: refused as a whole when any patient's is denied."""
        with self.engine.connect() as conn:
            patients = conn.execute(sa.select(_T.c.patient).distinct().order_by(_T.c.patient)).scalars().all()
        authorize(access, patients, DATA_CLASSES, "read")
        rows = []
        with self.engine.connect() as conn:  # only the authorized patients (not any added meanwhile)
            for start in range(0, len(patients), 500):
                rows += conn.execute(sa.select(*_COLUMNS).where(_T.c.patient.in_(patients[start:start + 500]))
                                     .order_by(_T.c.patient, _T.c.time_h, _T.c.created_at,
                                               _T.c.decision_id)).all()
        return [self._stored(r) for r in rows]

    def get(self, decision_id: str, *, access) -> StoredDecision:
        """One stored decision by id (a consented ``read`` of its patient's data)."""
        with self.engine.connect() as conn:
            patient = conn.execute(sa.select(_T.c.patient).where(_T.c.decision_id == decision_id)).scalar()
        if patient is None:
            raise DataError(f"no decision {decision_id!r} in this database")
        authorize(access, [patient], DATA_CLASSES, "read")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(_T.c.decision_id == decision_id)).one()
        return self._stored(row)

