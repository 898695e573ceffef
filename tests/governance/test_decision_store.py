"""Clinicians' decisions stored with signed provenance next to the recommendation (SQLite and PostgreSQL).

Runs on both databases through the ``engine`` fixture (conftest).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.control.decisions import decide, override_analysis
from medtwin.control.recommendation import Recommendation
from medtwin.errors import ConsentError, DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.consent_store import ConsentGate, ConsentStore
from medtwin.governance.decision_store import DATA_CLASSES, DecisionStore
from medtwin.governance.provenance import verify
from medtwin.io.access import OpenData
from medtwin.io.storage import decisions_table

SYNTHETIC = OpenData("synthetic decisions written in the tests")
T = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
REC = Recommendation(kind="regimen", action={"dose_mg": 1250.0, "interval_h": 12.0}, status="optimal",
                     target={"name": "AUC24", "low": 400.0, "high": 600.0, "unit": "mg*h/L"},
                     probabilities={"target": 0.81, "toxic": 0.03}, active_constraints=("P(toxic) <= 0.05",))


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def log(engine, key):
    return AuditLog(engine, key)


@pytest.fixture
def store(engine, log, key):
    return DecisionStore(engine, log, key)


def _modify(patient="v1", time=36.0, dose=1000.0, subgroup=None):
    return decide(REC, "modify", given={"dose_mg": dose, "interval_h": 12.0}, reason="creatinine rising",
                  patient=patient, clinician="dr.who", time=time, subgroup=subgroup or {"renal": "CrCl<30"},
                  in_force_until=time + 24.0)


def test_round_trip_signature_and_audit(store, key, log, engine):
    accepted = decide(REC, "accept", patient="v1", clinician="dr.who", time=12.0, timestamp="2026-06-01T08:00:00Z")
    r1 = store.record(accepted, REC, "svc.dosing", access=SYNTHETIC)
    r2 = store.record(_modify(), REC, "svc.dosing", access=SYNTHETIC)
    assert verify(r1, key.public_key()) and verify(r2, key.public_key())
    assert r2.operation == "decision" and set(r2.input_digests) == {"recommendation", "decision"}
    assert set(r2.output_digests) == {"decision", "recommendation"} and r2.model_digest is None

    stored = store.for_patient("v1", access=SYNTHETIC)
    assert [s.decision_id for s in stored] == [r1.run_id, r2.run_id]  # decision time order
    first, second = stored
    assert first.decision == accepted and first.record == r1
    assert second.decision.timestamp is not None  # stamped when recorded
    assert second.decision.given == {"dose_mg": 1000.0, "interval_h": 12.0}
    assert second.recommendation["action"] == dict(REC.action) and second.recommendation["summary"] == REC.summary()
    assert second.recommendation["probabilities"] == {"target": 0.81, "toxic": 0.03}
    assert all(s.intact([key.public_key()]) for s in stored)
    assert not first.intact([Ed25519PrivateKey.generate().public_key()])
    assert store.get(r2.run_id, access=SYNTHETIC).decision == second.decision

    entries = [e for e in log.entries(patient="v1") if e.action == "decision.record"]
    assert [e.payload["decision_id"] for e in entries] == [r1.run_id, r2.run_id]
    assert entries[1].payload["choice"] == "modify" and entries[1].actor == "svc.dosing"
    assert entries[1].payload["output_digest"] == r2.output_digest
    assert log.verify([key.public_key()]).ok
    with engine.connect() as c:
        row = c.execute(sa.select(decisions_table.c.choice, decisions_table.c.time_h, decisions_table.c.operator)
                        .where(decisions_table.c.decision_id == r2.run_id)).one()
    assert tuple(row) == ("modify", 36.0, "svc.dosing")


def test_changed_row_is_detected(store, key, engine):
    record = store.record(_modify(), REC, "svc", access=SYNTHETIC)
    with engine.begin() as c:
        text = c.execute(sa.select(decisions_table.c.decision)).scalar()
        data = json.loads(text)
        data["given"]["dose_mg"] = 1250.0
        data["choice"], data["reason"] = "override", "edited later"
        c.execute(decisions_table.update().values(decision=json.dumps(data)))
    stored = store.get(record.run_id, access=SYNTHETIC)
    assert verify(stored.record, key.public_key())  # the record itself is untouched ...
    assert not stored.intact([key.public_key()])  # ... but no longer matches the stored decision


def test_all_feeds_the_override_analysis(store):
    for i in range(8):
        store.record(_modify(patient=f"p{i}", dose=900.0 - 5 * i), REC, "svc", access=SYNTHETIC)
        store.record(decide(REC, "accept", patient=f"q{i}", clinician="dr.who", time=1.0,
                            subgroup={"renal": "CrCl>=60"}), REC, "svc", access=SYNTHETIC)
    decisions = [s.decision for s in store.all(access=SYNTHETIC)]
    assert len(decisions) == 16
    report = override_analysis(decisions, by=["renal"]).set_index("renal")
    assert report.loc["CrCl<30", "flag"] == "systematic" and report.loc["CrCl>=60", "flag"] == "none"


def test_consent_refusal_stores_nothing(engine, log, store):
    consents = ConsentStore(engine, log)
    research = ConsentGate(consents, "Organization/lab", "research", time=T)  # no consent: research denied
    with pytest.raises(ConsentError, match="write of patient data"):
        store.record(_modify(), REC, "svc", access=research)
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(decisions_table)).scalar() == 0
    actions = [e.action for e in log.entries(patient="v1")]
    assert "decision.record" not in actions and set(actions) == {"consent.decision"}
    assert {e.payload["data_class"] for e in log.entries(patient="v1")} == set(DATA_CLASSES)

    treatment = ConsentGate(consents, "dr.who", "treatment", time=T)  # permitted by the default policy
    store.record(_modify(), REC, "svc", access=treatment)
    assert len(store.for_patient("v1", access=treatment)) == 1
    with pytest.raises(ConsentError, match="read of patient data"):
        store.for_patient("v1", access=research)
    with pytest.raises(ConsentError):
        store.all(access=research)


def test_wrong_recommendation_and_bad_inputs_are_refused(store):
    other = Recommendation(kind="regimen", action={"dose_mg": 500.0, "interval_h": 24.0}, status="feasible",
                           target={})
    with pytest.raises(DataError, match="record it with the recommendation decided on"):
        store.record(_modify(), other, "svc", access=SYNTHETIC)
    with pytest.raises(DataError, match="needs a Decision"):
        store.record({"choice": "accept"}, REC, "svc", access=SYNTHETIC)
    with pytest.raises(DataError, match="access must be"):
        store.record(_modify(), REC, "svc", access=None)
    with pytest.raises(DataError, match="no decision"):
        store.get("nope", access=SYNTHETIC)
    assert store.all(access=SYNTHETIC) == []
