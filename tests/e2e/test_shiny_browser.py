"""The bundled Shiny example in headless Chromium through faucet (3 workers).

Needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package; never run
``playwright install``. A plain sync test: playwright's async API is asyncio-only, so
faucet runs as a subprocess here.
"""

import shutil
import uuid

import pytest

from faucet.pool.sticky import LB_COOKIE, cookie_key, sticky_index
from tests.helpers import SHINY, served

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WORKERS = 3


@pytest.fixture
def faucet_url():
    with served("start", "--dir", str(SHINY), "--workers", str(WORKERS),
                online=WORKERS) as faucet:
        yield faucet.url


def cookie_for(worker: int) -> str:
    """A FAUCET_LB_COOKIE value that cookie-hash maps to ``worker`` (1-based)."""
    while sticky_index(cookie_key(value := uuid.uuid4()), WORKERS) != worker - 1:
        pass
    return str(value)


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
def test_two_browsers_keep_their_sessions_on_their_workers(faucet_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            first = browser.new_context().new_page()
            first.goto(faucet_url)
            expect(first.locator("#greeting")).to_have_text("Hello, world!", timeout=20_000)
            home = int(first.locator("#worker").inner_text())
            # A second browser whose cookie points at another worker.
            second_context = browser.new_context()
            second_context.add_cookies([{"name": LB_COOKIE, "url": faucet_url,
                                         "value": cookie_for(home % WORKERS + 1)}])
            second = second_context.new_page()
            second.goto(faucet_url)
            expect(second.locator("#worker")).to_have_text(str(home % WORKERS + 1),
                                                           timeout=20_000)

            for page, name in ((first, "Ann"), (second, "Bob")):
                page.locator("#name").fill(name)
                expect(page.locator("#greeting")).to_have_text(f"Hello, {name}!")
            for page, worker in ((first, home), (second, home % WORKERS + 1)):
                page.reload()  # a new Shiny session: the cookie brings it back
                expect(page.locator("#greeting")).to_have_text("Hello, world!")
                expect(page.locator("#worker")).to_have_text(str(worker))
            second.screenshot(path=tmp_path / "shiny.png")
            assert (tmp_path / "shiny.png").stat().st_size > 0
        finally:
            browser.close()
