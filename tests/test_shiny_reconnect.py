"""Shiny sessions that survive the network, in headless Chromium with real R: the counter
example (examples/shiny-counter) through a Forwarder the tests cut, stall and restore.

Needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package, like
tests/test_shiny_browser.py; faucet runs as a subprocess (playwright's sync API).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import attrs
import pytest

from tests.forwarder import ThreadedForwarder
from tests.helpers import ROOT, faucet_process, kill_session
from tests.test_shiny_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                 reason="needs Debian's chromium")]
COUNTER = ROOT / "examples" / "shiny-counter"
WAIT = 20_000  # ms: Playwright's deadline for what R and the reconnects do


@attrs.define
class Counter:
    """faucet serving the counter, and the way a browser reaches it."""

    url: str  # faucet itself
    page_url: str  # through the forwarder
    forwarder: ThreadedForwarder
    log: Path
    ticks: Path

    def health(self) -> dict:
        try:
            answer = urlopen(self.url + "/__faucet__/health", timeout=5)
        except HTTPError as exc:  # 503 while no worker is online; the same JSON
            answer = exc
        with answer:
            return json.load(answer)

    def until(self, condition, deadline: float = 20) -> None:
        """Poll a real condition (faucet's log, R's ticks file, health) until it holds."""
        end = time.monotonic() + deadline
        while not condition():
            assert time.monotonic() < end, f"not reached within {deadline}s"
            time.sleep(0.05)

    def r_tick(self) -> int:
        text = self.ticks.read_text().strip() if self.ticks.exists() else ""
        return int(text) if text.isdigit() else 0


@contextlib.contextmanager
def counter_faucet(tmp_path: Path, *flags: str, workers: int = 2):
    log, ticks = tmp_path / "faucet.log", tmp_path / "ticks"
    proc = faucet_process("start", "--dir", str(COUNTER), "--workers", str(workers),
                          "--host", "127.0.0.1:0", "--log-file", str(log), *flags,
                          env={"COUNTER_TICKS_FILE": str(ticks)})
    try:
        app = Counter("", "", None, log, ticks)
        app.until(lambda: log.exists() and "faucet listening on" in log.read_text(), 60)
        app.url = re.search(r"faucet listening on (\S+)", log.read_text()).group(1)
        app.until(lambda: app.health()["online"] == workers, 60)
        port = int(app.url.rsplit(":", 1)[1])
        with ThreadedForwarder("127.0.0.1", port) as forwarder:
            app.forwarder = forwarder
            app.page_url = f"http://127.0.0.1:{forwarder.port}/"
            yield app
    finally:
        kill_session(proc)


@contextlib.contextmanager
def counter_page(app: Counter):
    """A Chromium page on the counter, its session up; and Playwright's ``expect``."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(app.page_url)
            sync_api.expect(page.locator("#count")).to_have_text("0", timeout=WAIT)
            yield page, sync_api.expect
        finally:
            browser.close()


def token(page) -> str:
    """Shiny's own id of the page's session (a new one after every reload)."""
    return page.evaluate("Shiny.shinyapp.config.sessionId")


def test_a_cut_connection_resumes_the_same_session_with_every_update(tmp_path):
    with counter_faucet(tmp_path) as app, counter_page(app) as (page, expect):
        for _ in range(3):
            page.click("#add")
        expect(page.locator("#count")).to_have_text("3")
        before = token(page)
        app.forwarder.cut()
        expect(page.locator("#faucet-reconnecting")).to_be_visible(timeout=WAIT)
        shown = page.evaluate("Math.max(...window.tickLog)")
        app.until(lambda: app.r_tick() > shown + 2)  # R updates the page while it is away
        during = app.r_tick()
        page.click("#add")  # sent once the page is back, and exactly once
        app.forwarder.restore()
        expect(page.locator("#count")).to_have_text("4", timeout=WAIT)
        page.wait_for_function(f"window.tickLog.includes({during})", timeout=WAIT)
        expect(page.locator("#faucet-reconnecting")).to_have_count(0)
        log = page.evaluate("window.tickLog")
        assert log == list(range(log[0], log[0] + len(log)))  # each update once, in order
        assert page.locator("#shiny-disconnected-overlay").count() == 0  # no grey screen
        assert token(page) == before  # the same R session


def test_a_cut_longer_than_reconnect_grace_reloads_into_a_fresh_session(tmp_path):
    with (counter_faucet(tmp_path, "--reconnect-grace", "1") as app,
          counter_page(app) as (page, expect)):
        page.click("#add")
        expect(page.locator("#count")).to_have_text("1")
        before = token(page)
        app.forwarder.cut()
        app.until(lambda: "did not come back within reconnect_grace" in app.log.read_text())
        with page.expect_navigation(timeout=WAIT):  # the script reloads the page
            app.forwarder.restore()
        expect(page.locator("#count")).to_have_text("0", timeout=WAIT)
        assert token(page) != before


def test_a_killed_worker_reloads_the_page_onto_a_live_worker(tmp_path):
    with counter_faucet(tmp_path) as app, counter_page(app) as (page, expect):
        page.click("#add")
        expect(page.locator("#count")).to_have_text("1")
        pid = int(page.locator("#pid").inner_text())
        with page.expect_navigation(timeout=WAIT):
            os.kill(pid, signal.SIGKILL)
        expect(page.locator("#count")).to_have_text("0", timeout=WAIT)
        expect(page.locator("#pid")).to_have_text(re.compile(r"^\d+$"), timeout=WAIT)
        assert int(page.locator("#pid").inner_text()) != pid
        assert page.locator("#shiny-disconnected-overlay").count() == 0


def test_a_half_open_connection_is_found_by_both_heartbeats_and_resumed(tmp_path):
    flags = ("--heartbeat-interval", "0.5", "--heartbeat-timeout", "2")
    with counter_faucet(tmp_path, *flags) as app, counter_page(app) as (page, expect):
        page.click("#add")
        expect(page.locator("#count")).to_have_text("1")
        before = token(page)
        app.forwarder.stall()  # packets dropped: no FIN, no RST
        app.until(lambda: app.health()["sessions"]["waiting"] == 1)  # faucet saw silence
        expect(page.locator("#faucet-reconnecting")).to_be_visible(timeout=WAIT)  # and the page
        app.forwarder.restore()
        page.click("#add")
        expect(page.locator("#count")).to_have_text("2", timeout=WAIT)
        expect(page.locator("#faucet-reconnecting")).to_have_count(0)
        assert token(page) == before


def test_pages_carry_the_script_and_r_sees_the_session_id(tmp_path):
    with counter_faucet(tmp_path) as app, counter_page(app) as (page, expect):
        session_id = page.evaluate("Shiny.shinyapp.$socket.sessionId")
        expect(page.locator("#session")).to_have_text(session_id, timeout=WAIT)
        for encoding in ("gzip", "identity"):
            request = Request(app.url + "/", headers={"Accept-Encoding": encoding})
            with urlopen(request, timeout=10) as answer:
                assert answer.headers.get("Content-Encoding") is None
                assert b'<script src="__faucet__/reconnect.js"></script></head>' in answer.read()
