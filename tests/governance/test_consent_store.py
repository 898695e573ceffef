"""Persisted dynamic consent (ConsentStore) on SQLite and PostgreSQL, and `medtwin consent`.

PostgreSQL: ``MEDTWIN_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test runs in a
fresh schema (``search_path``), dropped afterwards. The PostgreSQL cases are
skipped, with the reason, only when no server answers (they fail instead when
``MEDTWIN_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.cli.edge import open_audit_log as _open_audit_log
from medtwin.errors import ConsentError, DataError
from medtwin.governance.audit import AuditLog
from medtwin.governance.consent import PURPOSE_SYSTEMS, InvalidConsent, load_consent, to_fhir
from medtwin.governance.consent_store import ConsentStore

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
LAB = "Organization/lab"

CONSENT = {
    "resourceType": "Consent", "id": "c1", "status": "active",
    "subject": {"reference": "Patient/p1"}, "date": "2026-01-01",
    "period": {"start": "2026-01-01"}, "decision": "permit",
    "provision": [{"purpose": [{"system": PURPOSE_SYSTEMS["research"], "code": "HRESCH"},
                               {"system": PURPOSE_SYSTEMS["model-training"], "code": "model-training"}]}],
}


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store(engine, key):
    return ConsentStore(engine, AuditLog(engine, key))


def _actions(store, patient="p1"):
    return [e.action for e in store.audit_log.entries(patient=patient)]


def test_migration_creates_consents_table(engine):
    insp = sa.inspect(engine)
    assert {c["name"] for c in insp.get_columns("consents")} == \
        {"id", "patient", "status", "date", "resource", "added_at"}
    assert any(ix["column_names"] == ["patient"] for ix in insp.get_indexes("consents"))
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() >= "0002_consents"  # applied 0002


def test_add_show_withdraw_round_trip(store, engine, key):
    added = store.add(CONSENT, "dr.who")
    assert added == load_consent(CONSENT)
    assert store.for_patient("p1") == [added] == store.for_patient("Patient/p1")
    assert store.for_patient("p2") == []
    with engine.connect() as c:
        row = c.execute(sa.text("SELECT id, patient, status, date, resource FROM consents")).one()
    assert row[:4] == ("c1", "p1", "active", "2026-01-01")
    assert json.loads(row[4]) == to_fhir(added)  # the R5 JSON as stored

    new = store.withdraw("p1", "research", "dr.who", T0)
    assert new.id == "c1-withdraw-research" and new.decision == "deny" and new.status == "active"
    assert new.period.start == T0
    assert store.for_patient("p1") == [added, new]
    again = store.withdraw("p1", "research", "dr.who", T0 + timedelta(days=1))  # unique id
    assert again.id != new.id and len(store.for_patient("p1")) == 3

    with pytest.raises(DataError, match="already stored"):
        store.add(CONSENT, "dr.who")
    assert _actions(store) == ["consent.add", "consent.withdraw", "consent.withdraw"]
    entry = next(store.audit_log.entries(patient="p1"))
    assert entry.payload["consent_id"] == "c1" and entry.actor == "dr.who"
    assert store.audit_log.verify([key.public_key()]).ok


def test_add_rejects_invalid_resource_and_stores_nothing(store):
    with pytest.raises(InvalidConsent, match="Consent.status"):
        store.add({**CONSENT, "status": "bogus"}, "dr.who")
    assert store.for_patient("p1") == [] and len(store.audit_log) == 0


def test_add_without_id_and_from_policy(store):
    doc = {k: v for k, v in CONSENT.items() if k != "id"}
    a = store.add(doc, "dr.who")
    assert a.id
    b = store.add(load_consent({**CONSENT, "id": "c2"}), "dr.who")
    assert [p.id for p in store.for_patient("p1")] == [a.id, "c2"] and b.id == "c2"


def test_withdrawal_takes_effect_for_next_check(store, key):
    store.add(CONSENT, "dr.who")
    d = store.check("p1", LAB, "research", "observations", T0)
    assert d.permit and d.consent_id == "c1"
    store.withdraw("p1", "research", "patient-portal", T0 + timedelta(hours=1))
    with pytest.raises(ConsentError) as err:
        store.check("p1", LAB, "research", "observations", T0 + timedelta(hours=2))
    assert err.value.consent_id == "c1-withdraw-research"
    # only research was withdrawn
    assert store.check("p1", LAB, "model-training", "observations", T0 + timedelta(hours=2)).permit
    assert store.audit_log.verify([key.public_key()]).ok


def test_denied_check_raises_and_is_audited(store, key):
    with pytest.raises(ConsentError) as err:
        store.check("p9", LAB, "research", "genomics", T0)  # no consent: default policy denies
    entries = list(store.audit_log.entries(patient="p9"))
    assert [e.action for e in entries] == ["consent.decision"]
    e = entries[0]
    assert e.actor == LAB
    assert e.payload["decision"] == "deny" and e.payload["consent_id"] is None
    assert e.payload["reason"] == err.value.reason and "default policy" in e.payload["reason"]
    assert e.payload["purpose"] == "research" and e.payload["data_class"] == "genomics"
    assert store.check("p9", "Practitioner/x", "treatment", "observations", T0).permit
    assert [x.payload["decision"] for x in store.audit_log.entries(patient="p9")] == ["deny", "permit"]
    assert store.audit_log.verify([key.public_key()]).ok


def test_withdraw_without_consent_creates_deny_only(store, key):
    new = store.withdraw("Patient/p5", "treatment", "dr.who", T0)
    assert new.patient == "p5" and new.decision == "deny"
    assert store.for_patient("p5") == [new]
    with pytest.raises(ConsentError):
        store.check("p5", "Practitioner/x", "treatment", "observations", T0 + timedelta(minutes=1))
    assert _actions(store, "p5") == ["consent.withdraw", "consent.decision"]
    assert store.audit_log.verify([key.public_key()]).ok


# -- CLI ---------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_add_show_withdraw(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTWIN_HOME", str(tmp_path))
    monkeypatch.delenv("MEDTWIN_DATABASE_URL", raising=False)
    good = tmp_path / "consent.json"
    good.write_text(json.dumps(CONSENT))
    r = runner.invoke(app, ["consent", "add", str(good), "--actor", "dr.who"])
    assert r.exit_code == 0, r.output
    assert "c1" in r.output

    r = runner.invoke(app, ["consent", "show", "p1"])
    assert r.exit_code == 0, r.output
    assert "c1" in r.output and "permit" in r.output and "research" in r.output
    assert "2026-01-01" in r.output

    r = runner.invoke(app, ["consent", "withdraw", "p1", "--purpose", "research", "--actor", "portal"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["consent", "show", "Patient/p1"])
    assert r.exit_code == 0, r.output
    assert "c1-withdraw-research" in r.output and "deny" in r.output

    r = runner.invoke(app, ["consent", "withdraw", "p1", "--purpose", "gossip"])
    assert r.exit_code == 2 and "purpose" in r.output

    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({**CONSENT, "id": "c2", "status": "bogus"}))
    r = runner.invoke(app, ["consent", "add", str(bogus)])
    assert r.exit_code == 2
    assert "Consent.status" in r.output

    log, _ = _open_audit_log()
    try:
        assert [(e.actor, e.action) for e in log.entries(patient="p1")] == \
            [("dr.who", "consent.add"), ("portal", "consent.withdraw")]
    finally:
        log.engine.dispose()
    r = runner.invoke(app, ["audit", "verify"])
    assert r.exit_code == 0, r.output
