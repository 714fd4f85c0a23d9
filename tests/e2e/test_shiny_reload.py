"""A Shiny session in Chromium keeps its R process across a reload (issue 17 item 1): the
open page goes on talking to the old generation's R process, with its state, while a page
opened after the reload gets the new code from a new process.

Real R (a copy of examples/shiny-counter, whose page shows its R process id) and Debian's
chromium through playwright's sync API, so faucet runs as a subprocess and gets SIGHUP.
"""

import json
import shutil
import signal
from unittest.mock import ANY
from urllib.request import urlopen

import pytest

from tests.e2e.test_shiny_browser import ARGS, CHROMIUM
from tests.helpers import ROOT, alive, served, wait_until

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                 reason="needs Debian's chromium")]
COUNTER = ROOT / "examples" / "shiny-counter"
TITLE = 'titlePanel("faucet + Shiny: a counter that survives reconnects")'
WAIT = 30_000  # ms: Playwright's deadline for what R does (a busy 2-core box)


def write_code(folder, version: str) -> None:
    """The counter's app.R, its title naming ``version`` (the "code" a reload replaces)."""
    source = (COUNTER / "app.R").read_text()
    assert TITLE in source
    (folder / "app.R").write_text(source.replace(TITLE, f'titlePanel("counter, code {version}")'))


def generations(url: str) -> dict[int, tuple[str, int]]:
    """Each worker's generation: its state and R process id, as health shows them."""
    with urlopen(url + "/__faucet__/health", timeout=5) as answer:
        workers = json.load(answer)["workers"]
    return {w["generation"]: (w["state"], w["pid"]) for w in workers}



def test_an_open_session_keeps_its_r_process_across_a_reload(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    folder = tmp_path / "app"
    folder.mkdir()
    write_code(folder, "v1")
    with (served("start", "--dir", str(folder), "--workers", "1",
                 "--pid-file", str(tmp_path / "faucet.pid"), online=1) as faucet,
          sync_api.sync_playwright() as playwright):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            old = browser.new_context().new_page()
            old.goto(faucet.url)
            expect(old.locator("h2")).to_have_text("counter, code v1", timeout=WAIT)
            expect(old.locator("#pid")).not_to_be_empty(timeout=WAIT)
            old_pid = int(old.locator("#pid").inner_text())
            for count in ("1", "2"):
                old.get_by_role("button", name="Add one").click()
                expect(old.locator("#count")).to_have_text(count, timeout=WAIT)

            write_code(folder, "v2")
            faucet.proc.send_signal(signal.SIGHUP)
            # (Not the page's HTML: shiny itself re-reads a changed app.R for new pages.)
            wait_until(lambda: generations(faucet.url) == {
                0: ("draining (reloaded)", old_pid), 1: ("online", ANY)},
                "the new generation online, the old one draining", timeout=120)
            new_pid = generations(faucet.url)[1][1]
            assert new_pid != old_pid

            # The open page: the same R process, its state carried on.
            old.get_by_role("button", name="Add one").click()
            expect(old.locator("#count")).to_have_text("3", timeout=WAIT)
            expect(old.locator("#pid")).to_have_text(str(old_pid))
            assert alive(old_pid)

            # A page opened now: the new code, in a new process, with a count of its own.
            new = browser.new_context().new_page()
            new.goto(faucet.url)
            expect(new.locator("h2")).to_have_text("counter, code v2", timeout=WAIT)
            expect(new.locator("#pid")).to_have_text(str(new_pid), timeout=WAIT)
            new.get_by_role("button", name="Add one").click()
            expect(new.locator("#count")).to_have_text("1", timeout=WAIT)

            # The old page still answers from its process after the new one opened.
            old.get_by_role("button", name="Add one").click()
            expect(old.locator("#count")).to_have_text("4", timeout=WAIT)
            expect(old.locator("#pid")).to_have_text(str(old_pid))
        finally:
            browser.close()
        faucet.stop()
