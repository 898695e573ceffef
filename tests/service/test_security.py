"""Security: nothing but health, readiness and login without a token; role and consent gating per patient;
SQL injection attempts in path and query parameters are refused or find nothing, and leave the tables intact."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.service.conftest import new_patient, token

OPEN = {("/health", "get"), ("/ready", "get"), ("/auth/token", "post"), ("/auth/login", "post")}


def test_every_endpoint_needs_authentication(sqlite_service):
    c = sqlite_service
    schema = c.app.openapi()
    checked = 0
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for method in methods:
            r = c.request(method.upper(), concrete)
            if (path, method) in OPEN:
                assert r.status_code != 401, path
            else:
                assert r.status_code == 401, (method, path, r.status_code)
                checked += 1
    assert checked >= 20


def _research_consent(pid: str) -> dict:
    from medtwin.governance.consent import PURPOSE_SYSTEMS

    return {"resourceType": "Consent", "id": f"research-{pid}", "status": "active",
            "subject": {"reference": f"Patient/{pid}"}, "date": "2026-01-01", "decision": "permit",
            "provision": [{"purpose": [{"system": PURPOSE_SYSTEMS["research"], "code": "HRESCH"}]}]}


def test_researcher_sees_only_consenting_patients(service):
    c = service
    clin, res = token(c, "clinician"), token(c, "researcher")
    for pid in ("r1", "r2"):
        new_patient(c, clin, pid)
        m = {"source_id": f"{pid}-m1", "time_h": 1.0, "name": "C", "value": 10.0, "unit": "mg/L"}
        assert c.post(f"/patients/{pid}/measurements", json=m, headers=clin).status_code == 201
    # no research consent on file: the default policy denies research
    r = c.get("/patients/r1/measurements", headers=res)
    assert r.status_code == 403 and r.json()["detail"]["field"] == "consent"
    assert c.post("/patients/r1/consents", json=_research_consent("r1"), headers=clin).status_code == 201
    assert c.get("/patients/r1/measurements", headers=res).status_code == 200
    assert [p["id"] for p in c.get("/patients", headers=res).json()] == ["r1"]
    # the patient withdraws research consent: the researcher can no longer read them
    w = c.post("/patients/r1/consents/withdraw", json={"purpose": "research"}, headers=clin)
    assert w.status_code == 201 and w.json()["decision"] == "deny"
    assert c.get("/patients/r1/measurements", headers=res).status_code == 403
    assert c.get("/patients/r1", headers=res).status_code == 403
    assert c.get("/patients", headers=res).json() == []
    assert c.get("/patients/r1/measurements", headers=clin).status_code == 200  # treatment unaffected
    # the refusals are in the audit trail, with the researcher as actor
    entries = c.get("/audit/entries", params={"patient": "r1", "action": "consent.decision"},
                    headers=token(c, "auditor")).json()
    assert any(e["actor"] == "researcher" and e["payload"]["decision"] == "deny" for e in entries)


def test_audit_is_for_auditors_and_admins(sqlite_service):
    c = sqlite_service
    for role in ("clinician", "pharmacist", "researcher"):
        for path in ("/audit/verify", "/audit/entries", "/users"):
            r = c.get(path, headers=token(c, role))
            assert r.status_code == 403 and r.json()["detail"]["field"] == "role", (role, path)
    r = c.get("/audit/verify", headers=token(c, "auditor"))
    assert r.status_code == 200 and r.json()["ok"] is True
    assert c.get("/audit/verify", headers=token(c, "admin")).json()["ok"] is True
    assert c.get("/patients/x/measurements", headers=token(c, "auditor")).status_code in (403, 404)


INJECTIONS = ["p1' OR '1'='1", "p1; DROP TABLE clinical_records; --", "' UNION SELECT * FROM users --",
              "p1\" OR 1=1 --", "1 OR 1=1"]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_sql_injection_is_inert(sqlite_service, attack):
    c = sqlite_service
    clin, aud = token(c, "clinician"), token(c, "auditor")
    if c.get("/patients/p1", headers=clin).status_code == 404:
        new_patient(c, clin, "p1")
        c.post("/patients/p1/measurements", json={"source_id": "s1", "time_h": 1.0, "name": "C", "value": 5.0,
                                                  "unit": "mg/L"}, headers=clin)
    engine = c.app.state.stores.engine

    def counts():
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                    for t in ("patients", "clinical_records", "users", "consents")}

    before = counts()
    for path in (f"/patients/{attack}", f"/patients/{attack}/measurements", f"/runs/{attack}"):
        r = c.get(path, headers=clin)
        assert 400 <= r.status_code < 500, (path, r.status_code)
    r = c.get("/audit/entries", params={"patient": attack}, headers=aud)
    assert r.status_code == 200 and r.json() == []
    r = c.get("/patients", params={"limit": attack}, headers=clin)
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "limit"
    # a source id holding SQL is stored as text and read back verbatim
    r = c.post("/patients/p1/measurements", json={"source_id": attack, "time_h": 2.0, "name": "C", "value": 4.0,
                                                  "unit": "mg/L"}, headers=clin)
    assert r.status_code in (200, 201) and r.json()["records"][0]["source_id"] == attack
    after = counts()
    assert after["patients"] == before["patients"] and after["users"] == before["users"]
    assert after["clinical_records"] in (before["clinical_records"], before["clinical_records"] + 1)
