"""The three shipped credibility reports, generated and opened in headless Chromium (Debian's, via Playwright).

Skipped when /usr/bin/chromium or playwright is missing, unless MEDTWIN_REQUIRE_CHROMIUM=1 (set by .ci/run,
which installs Debian chromium): in CI this test must run.
"""

from __future__ import annotations

import pytest

from medtwin.io.access import OpenData
from medtwin.models import get_model

CONTEXTS = ("pk1_iv_pheno", "vancomycin_auc24", "icu_glucose")


@pytest.mark.slow
def test_three_reports_open_and_screenshot_in_chromium(small, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    from medtwin.credibility import credibility_report

    pages = {}
    for name in CONTEXTS:
        cou = small(name)
        report = credibility_report(get_model(cou.model), cou, access=OpenData("public teaching data"))
        path = tmp_path / name / "index.html"
        path.parent.mkdir()
        path.write_text(report.html, encoding="utf-8")
        pages[name] = (path, report)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        for name, (path, report) in pages.items():
            page.goto(path.as_uri())
            assert page.title().startswith(f"Credibility report: {report.model}")
            headings = page.locator("h2").all_inner_texts()
            assert [h.split(".")[0] for h in headings] == ["1", "2", "3", "4", "5", "6", "7"]
            assert page.locator("figure svg").count() >= 4  # the inline figures render as SVG elements
            box = page.locator("figure svg").first.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 50
            shot = tmp_path / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
        browser.close()
    verification = {name: r.verdicts["verification"] for name, (_, r) in pages.items()}
    assert verification == dict.fromkeys(CONTEXTS, "pass")
    assert pages["vancomycin_auc24"][1].verdicts["validation"] == "no evidence"
