"""The dashboard: the ward in real headless Chromium, and every page route with FastAPI's TestClient.

One small demo ward is served for the whole module by uvicorn in a background thread on a free loopback port
(temporary SQLite database): 3 vancomycin patients with recorded recommendations (``vanco-3`` withdrew research
consent) and 1 ICU patient with 2 h of 5-minute readings.  The browser test (Debian's /usr/bin/chromium driven
by Playwright, no browser download) logs in, opens a patient, sees the forecast chart (plotly SVG), posts
measurements (through the page's form, and from another client) and watches the chart update over server-sent
events, accepts one recommendation and overrides another with a reason, and finds both decisions in the audit
trail; screenshots go to ``$MEDTWIN_ARTEFACTS`` (or the test's tmp folder; the path is printed).  It is
skipped when /usr/bin/chromium or playwright is missing, unless MEDTWIN_REQUIRE_CHROMIUM=1 (set by .ci/run).
The TestClient tests (on the same app) check roles, consent, CSRF and form validation.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from medtwin.service.demo import DEMO_USERS, demo_password


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The service app under uvicorn in a thread (``with LiveServer(app) as url: ...``)."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    """(app, url) of the module's demo ward, served by uvicorn; page tests use ``TestClient(app)`` on it."""
    from medtwin.service import demo
    from medtwin.service.app import create_app
    from medtwin.service.settings import ServiceSettings

    home = tmp_path_factory.mktemp("ward")
    app = create_app(ServiceSettings(database_url=f"sqlite:///{home}/ward.db", home=str(home), secret_key="b" * 32,
                                     log_level="WARNING", password_time_cost=1, password_memory_kib=8192))
    with LiveServer(app) as url:
        demo.seed_demo(app, n_vanco=3, n_icu=1, icu_hours=2.0, console=None)
        yield app, url


def _measured(page) -> int:
    return page.evaluate("""() => {
        const el = document.getElementById('forecast-chart');
        const t = (el && el.data || []).find(d => d.name === 'measured');
        return t ? t.x.length : -1; }""")


def _login(page, url: str, role: str) -> None:
    page.goto(f"{url}/ward/login")
    page.get_by_label("User name").fill(role)
    page.get_by_label("Password").fill(demo_password(role))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_ward_in_chromium(ward, tmp_path, chromium):
    import httpx
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("MEDTWIN_ARTEFACTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots: {shots}")
    app, url = ward
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        _login(page, url, "clinician")
        expect(page.get_by_role("heading", name="Patients")).to_be_visible()
        page.screenshot(path=str(shots / "ward.png"))

        # a live ICU twin: the forecast chart is drawn by plotly (SVG) and follows new measurements
        page.get_by_role("link", name=app.state.services.patients.get("icu-1")["display_name"]).click()
        page.wait_for_selector("#forecast-chart svg.main-svg")
        page.wait_for_function("document.getElementById('forecast-chart').getAttribute('data-live') === 'open'")
        n0 = _measured(page)
        assert n0 == 24
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
            .filter(e => !(e.labels && e.labels.length)).map(e => e.name)""")
        assert unlabelled == []  # every form field has a label (keyboard and screen-reader users)
        assert page.locator("#live-status[aria-live=polite]").count() == 1
        page.get_by_label("G (mmol/L)", exact=True).fill("7.9")
        page.get_by_role("button", name="Record measurement").click()
        expect(page.locator("#live-status")).to_contain_text("7.9")
        page.wait_for_function(f"document.getElementById('forecast-chart').data.find(d => d.name === 'measured')"
                               f".x.length === {n0 + 1}", timeout=10_000)
        # a reading sent by another client (a monitor): only the server-sent event tells this page
        token = httpx.post(f"{url}/auth/token", data={"username": "pharmacist",
                                                      "password": demo_password("pharmacist")}).json()
        r = httpx.post(f"{url}/ward/patients/icu-1/measurements", data={"time": "2.2", "value": "8.3"},
                       headers={"Authorization": f"Bearer {token['access_token']}", "HX-Request": "true"})
        assert r.status_code == 200, r.text
        page.wait_for_function(f"document.getElementById('forecast-chart').data.find(d => d.name === 'measured')"
                               f".x.length === {n0 + 2}", timeout=10_000)
        expect(page.locator("#live-status")).to_contain_text("8.3")
        page.screenshot(path=str(shots / "icu-twin.png"), full_page=True)

        # vancomycin: accept one recommendation, override another with a reason
        page.goto(f"{url}/ward/patients/vanco-1")
        page.wait_for_selector("#forecast-chart svg.main-svg")
        page.locator("#accept-form").get_by_role("button", name="Accept").click()
        expect(page.locator(".flash")).to_contain_text("Decision recorded: accept")
        page.goto(f"{url}/ward/patients/vanco-2")
        form = page.locator("#change-form")
        form.get_by_label("Dose (mg)").fill("750")
        form.get_by_label("Interval (h)").fill("12")
        form.get_by_role("button", name="Override").click()  # the browser refuses: the reason is required
        assert page.locator(".flash").count() == 0
        form.get_by_label("Reason (required)").fill("creatinine rising since this morning")
        form.get_by_role("button", name="Override").click()
        expect(page.locator(".flash")).to_contain_text("Decision recorded: override")
        expect(page.locator("#decisions")).to_contain_text("creatinine rising since this morning")
        page.screenshot(path=str(shots / "vancomycin-twin.png"), full_page=True)

        # the auditor finds both decisions in the audit trail; the clinician may not see it
        page.goto(f"{url}/ward/audit")
        assert "Not allowed" in page.title()
        page.get_by_role("button", name="Log out").click()
        _login(page, url, "auditor")
        expect(page.locator("#chain-status")).to_contain_text("verified")
        page.get_by_label("Action").select_option("decision.record")
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("#audit tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("clinician")
        page.screenshot(path=str(shots / "audit.png"), full_page=True)
        browser.close()
    assert all((shots / f).stat().st_size > 10_000 for f in ("ward.png", "icu-twin.png", "vancomycin-twin.png",
                                                             "audit.png"))


# ---------------------------------------------------------------------------------------------- TestClient
def _client(ward):
    from fastapi.testclient import TestClient

    return TestClient(ward[0])  # the served app (its lifespan already ran under uvicorn)


def login(client, role: str) -> str:
    """Log *role*'s demo user in through the login form; return the page's CSRF token."""
    client.cookies.clear()
    r = client.post("/ward/login", data={"username": role, "password": demo_password(role)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.get("/auth/me").json()["csrf_token"]


def test_login_page_and_wrong_password(ward):
    client = _client(ward)
    client.cookies.clear()
    assert client.get("/ward/login").status_code == 200
    r = client.post("/ward/login", data={"username": "clinician", "password": "nope"})
    assert r.status_code == 401 and "Wrong user name or password" in r.text
    r = client.get("/ward", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ward/login?next=")


@pytest.mark.parametrize("role, allowed", [("clinician", True), ("pharmacist", True), ("researcher", True),
                                           ("auditor", False), ("admin", False)])
def test_patient_pages_by_role(ward, role, allowed):
    client = _client(ward)
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
    table = re.search(r'<table class="grid" id="forecast-table">.*?</table>', patient.text, re.S).group(0)
    assert table.count("<tr>") >= 10  # the numbers behind the chart, readable without JavaScript
    assert ("accept-form" in patient.text) == (role == "clinician")  # only a clinician decides


@pytest.mark.parametrize("role, allowed", [("auditor", True), ("admin", True), ("clinician", False),
                                           ("pharmacist", False), ("researcher", False)])
def test_audit_page_by_role(ward, role, allowed):
    client = _client(ward)
    login(client, role)
    r = client.get("/ward/audit")
    assert r.status_code == (200 if allowed else 403)
    if allowed:
        assert "Hash chain and signatures verified" in r.text and "run.record" in r.text


def test_researcher_cannot_read_patient_who_withdrew_research_consent(ward):
    client = _client(ward)
    login(client, "researcher")
    listing = client.get("/ward").text
    row = re.search(r"<tr>\s*<th scope=\"row\">Grace Hopper</th>.*?</tr>", listing, re.S)
    assert row is not None and "deny" in row.group(0)  # listed, not linked, no data
    assert client.get("/ward/patients/vanco-3").status_code == 403
    assert client.get("/ward/patients/vanco-1").status_code == 200
    login(client, "clinician")
    assert client.get("/ward/patients/vanco-3").status_code == 200  # treatment is still consented


def test_chart_json_for_live_twin(ward):
    client = _client(ward)
    login(client, "clinician")
    payload = client.get("/ward/patients/icu-1/chart.json").json()
    names = [t["name"] for t in payload["figure"]["data"]]
    assert names.count("measured") == 1 and "90 % band" in names and "50 % band" in names
    assert payload["n_measurements"] >= 24  # 2 h of 5-minute readings (and what the browser test added)


def test_form_posts_need_the_csrf_token(ward):
    client = _client(ward)
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
    return re.search(r"Run <code>([0-9a-f-]+)</code>", page).group(1)


def test_override_without_reason_is_422_naming_the_field(ward):
    client = _client(ward)
    csrf = login(client, "clinician")
    run_id = _recommendation(client, "vanco-3")
    r = client.post(f"/ward/recommendations/{run_id}/decide",
                    data={"csrf_token": csrf, "choice": "override", "patient": "vanco-3", "dose_mg": "750",
                          "reason": "  "})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "reason"
    r = client.post(f"/ward/recommendations/{run_id}/decide",
                    data={"csrf_token": csrf, "choice": "override", "patient": "vanco-3", "dose_mg": "750",
                          "interval_h": "12", "reason": "rising creatinine"}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/ward/patients/vanco-3").text
    assert "rising creatinine" in page and "750 mg q12h" in page


def test_modify_within_the_constraints_and_beyond(ward):
    client = _client(ward)
    csrf = login(client, "clinician")
    run_id = _recommendation(client, "vanco-3")
    form = {"csrf_token": csrf, "choice": "modify", "patient": "vanco-3", "reason": "vial sizes"}
    r = client.post(f"/ward/recommendations/{run_id}/decide", data={**form, "dose_mg": "5000"},
                    headers={"accept": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "dose_mg"  # above the 3,000 mg maximum
    assert "hard constraints" in r.json()["detail"][0]["message"]
    r = client.post(f"/ward/recommendations/{run_id}/decide", data={**form, "dose_mg": "1000", "interval_h": "24"},
                    follow_redirects=False)
    assert r.status_code == 303
    assert "<strong>modify</strong> by clinician" in client.get("/ward/patients/vanco-3").text


def test_pharmacist_cannot_decide(ward):
    client = _client(ward)
    csrf = login(client, "pharmacist")
    run_id = _recommendation(client, "vanco-1")
    r = client.post(f"/ward/recommendations/{run_id}/decide",
                    data={"csrf_token": csrf, "choice": "accept", "patient": "vanco-1"})
    assert r.status_code == 403


def test_measurement_form_updates_the_twin(ward):
    client = _client(ward)
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
    client = _client(ward)
    login(client, "researcher")
    r = client.get("/ward/trials")
    assert r.status_code == 200 and 'id="no-trials"' in r.text


def test_forest_plot_from_a_stored_trial_result(ward):
    import sqlalchemy as sa

    from medtwin.io.service_tables import jobs_table

    app, client = ward[0], _client(ward)
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
    client = _client(ward)
    r = client.get("/ward/plotly.js")
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"] and len(r.content) > 1_000_000
    assert client.get("/static/htmx.min.js").text.startswith("/*! htmx 2.0.4")


def test_demo_users_are_documented_on_the_login_page_only_in_demo_mode(ward):
    app, client = ward[0], _client(ward)
    client.cookies.clear()
    assert "Demo accounts" not in client.get("/ward/login").text
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"demo": True})
    try:
        page = client.get("/ward/login").text
    finally:
        app.state.settings = settings
    assert "Demo accounts (demo only)" in page
    assert all(f"{login} / {demo_password(role)} ({role})" in page for login, role, _ in DEMO_USERS)
