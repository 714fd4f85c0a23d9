"""Shiny sessions that survive the network, in headless Chromium with real R: the counter
example (examples/shiny-counter) through a Forwarder the tests cut, freeze and restore.

Needs Debian's chromium (/usr/bin/chromium) and the ``playwright`` package, like
tests/e2e/test_shiny_browser.py; faucet runs as a subprocess (playwright's sync API).
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

from tests.e2e.test_shiny_browser import ARGS, CHROMIUM
from tests.forwarder import ThreadedForwarder
from tests.helpers import ROOT, faucet_process, kill_session

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                 reason="needs Debian's chromium")]
COUNTER = ROOT / "examples" / "shiny-counter"
WAIT = 20_000  # ms: Playwright's deadline for what R and the reconnects do


@attrs.define
class Counter:
    """faucet serving the counter (a new faucet after each ``start``), and the forwarder
    a browser reaches it through."""

    tmp_path: Path
    flags: tuple[str, ...]
    workers: int
    procs: list = attrs.Factory(list)
    url: str = ""  # the current faucet itself
    log: Path | None = None
    forwarder: ThreadedForwarder | None = None

    @property
    def ticks(self) -> Path:
        return self.tmp_path / "ticks"

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.forwarder.port}/"

    def start(self) -> None:
        """Start a faucet, wait for its workers and point the forwarder at it."""
        self.log = self.tmp_path / f"faucet-{len(self.procs)}.log"
        self.procs.append(faucet_process(
            "start", "--dir", str(COUNTER), "--workers", str(self.workers), "--host",
            "127.0.0.1:0", "--log-file", str(self.log), *self.flags,
            env={"COUNTER_TICKS_FILE": str(self.ticks)}))
        self.until(lambda: self.log.exists() and "faucet listening on" in self.log.read_text(),
                   60)
        self.url = re.search(r"faucet listening on (\S+)", self.log.read_text()).group(1)
        self.until(lambda: self.health()["online"] == self.workers, 60)
        if self.forwarder is not None:
            self.forwarder.retarget("127.0.0.1", int(self.url.rsplit(":", 1)[1]))

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
    app = Counter(tmp_path, flags, workers)
    try:
        app.start()
        with ThreadedForwarder("127.0.0.1", int(app.url.rsplit(":", 1)[1])) as forwarder:
            app.forwarder = forwarder
            yield app
    finally:
        for proc in app.procs:
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
        app.forwarder.freeze()  # packets dropped: no FIN, no RST
        app.until(lambda: app.health()["sessions"]["waiting"] == 1)  # faucet saw silence
        expect(page.locator("#faucet-reconnecting")).to_be_visible(timeout=WAIT)  # and the page
        app.forwarder.thaw()
        page.click("#add")
        expect(page.locator("#count")).to_have_text("2", timeout=WAIT)
        expect(page.locator("#faucet-reconnecting")).to_have_count(0)
        assert token(page) == before


def test_pages_carry_the_script_and_r_sees_the_session_id(tmp_path):
    with counter_faucet(tmp_path) as app, counter_page(app) as (page, expect):
        session_id = page.evaluate("Shiny.shinyapp.$socket.sessionId")
        expect(page.locator("#session")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"),
                                                      timeout=WAIT)
        # faucet's id for the session, derived from the page's: never the page's own
        assert page.locator("#session").inner_text() != session_id
        for encoding in ("gzip", "identity"):  # a browser's page load: asked uncompressed
            request = Request(app.url + "/", headers={"Accept-Encoding": encoding,
                                                      "Accept": "text/html,*/*;q=0.8"})
            with urlopen(request, timeout=10) as answer:
                assert answer.headers.get("Content-Encoding") is None
                assert b'<script src="__faucet__/reconnect.js"></script></head>' in answer.read()
        request = Request(app.url + "/shared/shiny.min.js", headers={"Accept-Encoding": "gzip"})
        with urlopen(request, timeout=10) as answer:  # other responses are left as they are
            assert answer.headers.get("Content-Encoding") == "gzip"


def test_a_restarted_faucet_reloads_the_page_into_a_fresh_session(tmp_path):
    with counter_faucet(tmp_path) as app, counter_page(app) as (page, expect):
        page.click("#add")
        expect(page.locator("#count")).to_have_text("1")
        before = token(page)
        app.procs[-1].send_signal(signal.SIGTERM)  # a graceful shutdown: 1012 to the page
        app.procs[-1].wait(30)
        expect(page.locator("#faucet-reconnecting")).to_have_text("Restarting\u2026",
                                                                timeout=WAIT)
        with page.expect_navigation(timeout=WAIT):  # the new faucet cannot resume: reload
            app.start()
        expect(page.locator("#count")).to_have_text("0", timeout=WAIT)
        assert token(page) != before
