"""``faucet report --html``'s page in headless Chromium with every network request refused:
the page must draw its charts from what it carries (uPlot is inlined from the wheel).

Needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package; never run
``playwright install``. Set FAUCET_REPORT_SCREENSHOT=path to keep the screenshot.
"""

import os
import shutil

import pytest

from faucet.telemetry.report_html import render_html
from tests.test_report import sample_report

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
def test_html_report_draws_its_charts_offline(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(sample_report()), encoding="utf-8")
    refused, errors = [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file:")
                       else (refused.append(route.request.url), route.abort()))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_file.as_uri())
            page.wait_for_selector("#chart-busy canvas", timeout=10_000)
            assert page.locator(".uplot canvas").count() == 3
            assert page.locator("h2", has_text="Crashes").count() == 1
            screenshot = os.environ.get("FAUCET_REPORT_SCREENSHOT") or str(tmp_path / "r.png")
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    assert errors == [] and refused == []
