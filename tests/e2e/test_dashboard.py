"""/__faucet__/dashboard in headless Chromium against a faucet subprocess with stand-in
workers that exit now and then.

The test needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package;
never run ``playwright install``. FAUCET_DASHBOARD_SCREENSHOT=PATH keeps its screenshot
there (docs/img/dashboard.png is made so, with FAUCET_DASHBOARD_TRAFFIC=60).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import PLUMBER, STANDIN, served

CHROMIUM = "/usr/bin/chromium"


ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


PNG = b"\x89PNG\r\n\x1a\n"


def traffic(url: str, seconds: float) -> int:
    """Requests from four clients for ``seconds``; the count sent."""
    deadline = time.monotonic() + seconds

    def client(index: int) -> int:
        sent = 0
        with httpx.Client(base_url=url, timeout=5) as http:
            while time.monotonic() < deadline:
                try:
                    http.get(f"/echo?client={index}")
                except httpx.TimeoutException:
                    pass  # every worker restarting at once: the page shows that too
                sent += 1
                time.sleep(0.01)
        return sent

    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(client, range(4)))


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
def test_the_dashboard_shows_history_tiles_workers_and_events(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    seconds = float(os.environ.get("FAUCET_DASHBOARD_TRAFFIC", "6"))
    # Each stand-in worker exits after so many requests: restarts and failures to show.
    exit_after = os.environ.get("FAUCET_DASHBOARD_EXIT_AFTER", "300")
    # Quiet: nobody reads faucet's stderr once it listens, and a full pipe would stop it.
    with served("--log-level", "info,faucet.access=off", "start", "--dir",
                str(PLUMBER), "--rscript", str(STANDIN), "--workers", "3",
                online=3, env={"STANDIN_EXIT_AFTER": exit_after}) as faucet:
        assert traffic(faucet.url, seconds) > 100
        # At least one 5-second step has closed since the traffic began.
        time.sleep(max(0.0, 5.5 - seconds))
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 1180})
                errors = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(faucet.url + "/__faucet__/dashboard")
                expect(page.locator("#status")).to_contain_text("updated", timeout=10_000)
                tiles = page.locator(".tile")
                expect(tiles).to_have_count(8)
                expect(tiles.nth(5)).to_contain_text("/ 3")
                expect(page.locator("#workers tr")).to_have_count(3)
                expect(page.locator("#events")).to_contain_text("restarting")
                # Three charts drawn, with history already there when the page opened.
                expect(page.locator(".uplot canvas")).to_have_count(3)
                assert page.evaluate("fetch('dashboard.json').then(r => r.json())"
                                     ".then(v => v.history.filter(r => r.requests).length)") >= 1
                page.wait_for_timeout(2500)  # one more poll: the page keeps updating
                assert "updated" in page.locator("#status").inner_text()
                shot = Path(os.environ.get("FAUCET_DASHBOARD_SCREENSHOT")
                            or tmp_path / "dashboard.png")
                page.screenshot(path=str(shot), full_page=True)
                assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 20_000
                assert errors == []
            finally:
                browser.close()
