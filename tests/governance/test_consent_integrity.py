"""Consent rows changed in the database are detected before a decision (issue 12, point 4, consent half).

Each stored consent is anchored in the signed audit log (``row_digest`` in its ``consent.add`` /
``consent.withdraw`` entry); a deleted, edited or smuggled row raises ConsentRecordAltered before any permit.
Runs on SQLite and PostgreSQL (fixture ``engine``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.errors import ConsentError
from medtwin.governance.audit import AuditLog
from medtwin.governance.consent import ConsentDenied
from medtwin.governance.consent_store import ConsentGate, ConsentStore

T = datetime(2026, 6, 1, tzinfo=timezone.utc)
CONSENT = {"resourceType": "Consent", "id": "c1", "status": "active", "subject": {"reference": "Patient/p1"},
           "date": "2026-01-01", "decision": "permit"}


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(engine, key):
    s = ConsentStore(engine, AuditLog(engine, key))
    s.add(CONSENT, "dr.who")
    s.add({**CONSENT, "id": "c2", "subject": {"reference": "Patient/p2"}}, "dr.who")
    s.withdraw("p1", "research", "dr.who", T)
    with pytest.raises(ConsentDenied):
        s.check("p1", "lab", "research", "observations", T)
    return s


def _sql(engine, text: str, **params) -> None:
    with engine.begin() as c:
        c.execute(sa.text(text), params)


def _decisions(store) -> int:
    return sum(e.action == "consent.decision" for e in store.audit_log.entries())


def _refused(store, patient="p1"):
    """Every way of reading p1's consents raises ConsentRecordAltered (a ConsentError), and no decision is audited."""
    before = _decisions(store)
    with pytest.raises(ConsentError, match=f"consent record of patient {patient} was altered") as err:
        store.check(patient, "lab", "research", "observations", T)
    assert type(err.value).__name__ == "ConsentRecordAltered"
    with pytest.raises(ConsentError, match="was altered"):
        ConsentGate(store, "lab", "research", T).authorize([f"Patient/{patient}", "p2"], ["observations"], "read")
    with pytest.raises(ConsentError, match="was altered"):
        store.for_patient(patient)
    assert _decisions(store) == before
    assert store.check("p2", "lab", "research", "observations", T).permit  # other patients unaffected
    return err.value


def test_deleted_withdrawal_is_detected_before_permitting(store, engine):
    _sql(engine, "DELETE FROM consents WHERE id = 'c1-withdraw-research'")
    err = _refused(store)
    assert err.patient == "p1" and err.consent_id == "c1-withdraw-research" and "deleted" in str(err)


def test_edited_resource_is_detected(store, engine):
    with engine.connect() as c:
        text = c.execute(sa.text("SELECT resource FROM consents WHERE id = 'c1-withdraw-research'")).scalar_one()
    doc = json.loads(text)
    doc["decision"] = "permit"
    _sql(engine, "UPDATE consents SET resource = :r WHERE id = 'c1-withdraw-research'", r=json.dumps(doc))
    assert "edited" in str(_refused(store))


def test_smuggled_and_moved_rows_are_detected(store, engine):
    _sql(engine, "INSERT INTO consents (id, patient, status, date, resource, added_at) "
         "SELECT 'c9', patient, status, date, resource, '2027-01-01T00:00:00+00:00' FROM consents WHERE id = 'c1'")
    assert "no audit entry" in str(_refused(store))
    _sql(engine, "DELETE FROM consents WHERE id = 'c9'")
    _sql(engine, "UPDATE consents SET patient = 'p3' WHERE id = 'c1-withdraw-research'")
    _refused(store)
    with pytest.raises(ConsentError, match="patient p3 was altered"):
        store.check("p3", "lab", "research", "observations", T)


def test_changed_audit_entry_is_detected(store, engine):
    _sql(engine, "UPDATE audit_log SET payload = replace(payload, 'sha256:', 'sha256:0') "
         "WHERE action = 'consent.withdraw'")
    assert "audit entry" in str(_refused(store))


def test_intact_consents_decide_as_before(store):
    assert not store.check_many(["p1", "p2"], "lab", "research", ["observations"], T)[0].permit
    assert [c.id for c in store.for_patient("p1")] == ["c1", "c1-withdraw-research"]
