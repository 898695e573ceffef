"""The ward in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright, no browser download).

A uvicorn server runs the service app in a background thread on a free loopback port, on a temporary SQLite
database with a small demo ward; the test logs in, opens a patient, sees the forecast chart (plotly SVG), posts
measurements (through the page's form, and from another client) and watches the chart update over server-sent
events, accepts one recommendation and overrides another with a reason, and finds both decisions in the audit
trail.  Screenshots go to ``$MEDTWIN_ARTEFACTS`` (or the test's tmp folder; the path is printed).

Skipped when /usr/bin/chromium or playwright is missing, unless MEDTWIN_REQUIRE_CHROMIUM=1 (set by .ci/run).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MEDTWIN_CHROMIUM", "/usr/bin/chromium"))


def _browser_or_skip():
    missing = None
    if not CHROMIUM.exists():
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install playwright; the test extra has it)"
    if missing:
        if os.environ.get("MEDTWIN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"MEDTWIN_REQUIRE_CHROMIUM=1 but {missing}")
        pytest.skip(missing)


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


def start_ward(home: Path, **seeding):
    """A demo-ward app on a SQLite file under *home* (seeded once the server has started)."""
    from medtwin.service.app import create_app
    from medtwin.service.settings import ServiceSettings

    return create_app(ServiceSettings(database_url=f"sqlite:///{home}/ward.db", home=str(home), secret_key="b" * 32,
                                      log_level="WARNING"))


def _measured(page) -> int:
    return page.evaluate("""() => {
        const el = document.getElementById('forecast-chart');
        const t = (el && el.data || []).find(d => d.name === 'measured');
        return t ? t.x.length : -1; }""")


def _login(page, url: str, role: str) -> None:
    from medtwin.service.demo import demo_password

    page.goto(f"{url}/ward/login")
    page.get_by_label("User name").fill(role)
    page.get_by_label("Password").fill(demo_password(role))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_ward_in_chromium(tmp_path):
    _browser_or_skip()
    import httpx
    from playwright.sync_api import expect, sync_playwright

    from medtwin.service import demo

    shots = Path(os.environ.get("MEDTWIN_ARTEFACTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"browser screenshots: {shots}")
    app = start_ward(tmp_path)
    with LiveServer(app) as url, sync_playwright() as p:
        demo.seed_demo(app, n_vanco=2, n_icu=1, icu_hours=2.0, console=None)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
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
        page.get_by_label("G (mmol/L)").fill("7.9")
        page.get_by_role("button", name="Record measurement").click()
        expect(page.locator("#live-status")).to_contain_text("Recorded G 7.9")
        page.wait_for_function(f"document.getElementById('forecast-chart').data.find(d => d.name === 'measured')"
                               f".x.length === {n0 + 1}", timeout=10_000)
        # a reading sent by another client (a monitor): only the server-sent event tells this page
        token = httpx.post(f"{url}/auth/token", data={"username": "pharmacist",
                                                      "password": demo.demo_password("pharmacist")}).json()
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
