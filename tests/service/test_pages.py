"""The dashboard's pages with FastAPI's TestClient on a seeded demo ward (SQLite): roles, consent, CSRF, forms.

One small ward is seeded for the module (3 vancomycin patients with recorded recommendations, 1 ICU patient
with 2 h of readings); ``vanco-3`` withdrew research consent.
"""

from __future__ import annotations

import json
import re

import pytest

from medtwin.service.demo import DEMO_USERS, demo_password


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    from fastapi.testclient import TestClient

    from medtwin.service import demo
    from medtwin.service.app import create_app
    from medtwin.service.settings import ServiceSettings

    home = tmp_path_factory.mktemp("ward")
    app = create_app(ServiceSettings(database_url=f"sqlite:///{home}/ward.db", home=str(home), secret_key="s" * 32,
                                     log_level="WARNING"))
    with TestClient(app) as client:
        demo.seed_demo(app, n_vanco=3, n_icu=1, icu_hours=2.0, console=None)
        yield app, client


def login(client, role: str) -> str:
    """Log *role*'s demo user in through the login form; return the page's CSRF token."""
    client.cookies.clear()
    r = client.post("/ward/login", data={"username": role, "password": demo_password(role)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.get("/auth/me").json()["csrf_token"]


def test_login_page_and_wrong_password(ward):
    _, client = ward
    client.cookies.clear()
    assert client.get("/ward/login").status_code == 200
    r = client.post("/ward/login", data={"username": "clinician", "password": "nope"})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = client.get("/ward", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ward/login?next=")


@pytest.mark.parametrize("role, allowed", [("clinician", True), ("pharmacist", True), ("researcher", True),
                                           ("auditor", False), ("admin", False)])
def test_patient_pages_by_role(ward, role, allowed):
    _, client = ward
    login(client, role)
    ward_page = client.get("/ward")
    patient = client.get("/ward/patients/vanco-1")
    if not allowed:
        assert ward_page.status_code == 403 and patient.status_code == 403
        return
    assert ward_page.status_code == 200
    assert "vanco-1" in ward_page.text and "icu-1" in ward_page.text
    assert patient.status_code == 200
    assert 'id="forecast-figure"' in patient.text and "Parameter posteriors" in patient.text
    assert ("accept-form" in patient.text) == (role == "clinician")  # only a clinician decides


@pytest.mark.parametrize("role, allowed", [("auditor", True), ("admin", True), ("clinician", False),
                                           ("pharmacist", False), ("researcher", False)])
def test_audit_page_by_role(ward, role, allowed):
    _, client = ward
    login(client, role)
    r = client.get("/ward/audit")
    assert r.status_code == (200 if allowed else 403)
    if allowed:
        assert "Hash chain and signatures verified" in r.text and "run.record" in r.text


def test_researcher_cannot_read_patient_who_withdrew_research_consent(ward):
    _, client = ward
    login(client, "researcher")
    listing = client.get("/ward").text
    row = re.search(r"<tr>\s*<th scope=\"row\">Grace Hopper</th>.*?</tr>", listing, re.S)
    assert row is not None and "deny" in row.group(0)  # listed, not linked, no data
    assert client.get("/ward/patients/vanco-3").status_code == 403
    assert client.get("/ward/patients/vanco-1").status_code == 200
    login(client, "clinician")
    assert client.get("/ward/patients/vanco-3").status_code == 200  # treatment is still consented


def test_chart_json_for_live_twin(ward):
    _, client = ward
    login(client, "clinician")
    payload = client.get("/ward/patients/icu-1/chart.json").json()
    names = [t["name"] for t in payload["figure"]["data"]]
    assert names.count("measured") == 1 and "90 % band" in names and "50 % band" in names
    assert payload["n_measurements"] == 24  # 2 h of 5-minute readings


def test_form_posts_need_the_csrf_token(ward):
    _, client = ward
    csrf = login(client, "clinician")
    run_id = _recommendation(client, "vanco-1")
    r = client.post(f"/ward/recommendations/{run_id}/decide", data={"choice": "accept", "patient": "vanco-1"})
    assert r.status_code == 403 and r.json()["detail"]["field"] == "csrf_token"
    r = client.post("/ward/patients/icu-1/measurements", data={"time": "2.1", "value": "7.0"})
    assert r.status_code == 403
    r = client.post("/ward/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303


def _recommendation(client, pid: str) -> str:
    page = client.get(f"/ward/patients/{pid}").text
    return re.search(r"/ward/recommendations/([0-9a-f-]+)/decide", page).group(1)


def test_override_without_reason_is_422_naming_the_field(ward):
    _, client = ward
    csrf = login(client, "clinician")
    run_id = _recommendation(client, "vanco-2")
    r = client.post(f"/ward/recommendations/{run_id}/decide",
                    data={"csrf_token": csrf, "choice": "override", "patient": "vanco-2", "dose_mg": "750",
                          "reason": "  "})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "reason"
    r = client.post(f"/ward/recommendations/{run_id}/decide",
                    data={"csrf_token": csrf, "choice": "override", "patient": "vanco-2", "dose_mg": "750",
                          "interval_h": "12", "reason": "rising creatinine"}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/ward/patients/vanco-2").text
    assert "rising creatinine" in page and "750 mg q12h" in page


def test_pharmacist_cannot_decide(ward):
    _, client = ward
    csrf = login(client, "pharmacist")
    run_id = _recommendation(client, "vanco-1")
    r = client.post(f"/ward/recommendations/{run_id}/decide",
                    data={"csrf_token": csrf, "choice": "accept", "patient": "vanco-1"})
    assert r.status_code == 403


def test_measurement_form_updates_the_twin(ward):
    _, client = ward
    csrf = login(client, "clinician")
    before = client.get("/ward/patients/icu-1/chart.json").json()
    r = client.post("/ward/patients/icu-1/measurements", data={"csrf_token": csrf, "time": "2.05", "value": "7.4"},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Recorded G 7.4" in r.text
    after = client.get("/ward/patients/icu-1/chart.json").json()
    assert after["n_measurements"] == before["n_measurements"] + 1 and after["revision"] != before["revision"]
    r = client.post("/ward/patients/icu-1/measurements", data={"csrf_token": csrf, "time": "x", "value": "7"},
                    headers={"accept": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "time"


def test_trials_page_says_no_trials_yet(ward):
    _, client = ward
    login(client, "researcher")
    r = client.get("/ward/trials")
    assert r.status_code == 200 and 'id="no-trials"' in r.text


def test_forest_plot_from_a_stored_trial_result(ward):
    import sqlalchemy as sa

    from medtwin.io.service_tables import jobs_table

    app, client = ward
    result = {"overall": {"estimate": -0.8, "low": -1.1, "high": -0.5, "n": 400},
              "subgroups": [{"label": "eGFR < 60", "estimate": -1.2, "low": -1.8, "high": -0.6, "n": 120}]}
    now = "2026-12-04T00:00:00+00:00"
    with app.state.stores.engine.begin() as conn:
        conn.execute(jobs_table.insert().values(id="t-1", kind="trial", status="done", done=1, total=1,
                                                spec=json.dumps({"name": "demo trial"}), result=json.dumps(result),
                                                owner="researcher", created_at=now, updated_at=now))
    login(client, "researcher")
    page = client.get("/ward/trials/t-1").text
    figure = json.loads(re.search(r'<script type="application/json" id="forest-figure">(.*?)</script>', page,
                                  re.S).group(1))
    assert figure["data"][0]["y"] == ["overall (n=400)", "eGFR < 60 (n=120)"]
    assert figure["data"][0]["error_x"]["arrayminus"] == pytest.approx([0.3, 0.6])
    assert client.get("/ward/trials/nope").status_code == 404


def test_plotly_js_is_served_with_long_cache(ward):
    _, client = ward
    r = client.get("/ward/plotly.js")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"] and len(r.content) > 1_000_000
    assert client.get("/static/htmx.min.js").text.startswith("/*! htmx 2.0.4")


def test_demo_users_are_documented_on_the_login_page_only_in_demo_mode(ward):
    app, client = ward
    client.cookies.clear()
    assert "Demo accounts" not in client.get("/ward/login").text
    assert {u[0] for u in DEMO_USERS} == {"clinician", "pharmacist", "researcher", "auditor", "admin"}
