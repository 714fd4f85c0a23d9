"""The first hour's docs say what the code does (issue 19): each test reads a page and
checks it against the code that does what it describes."""

import datetime
import re
import subprocess
import uuid

import pytest

from faucet.cli import split_runner
from faucet.pool.sticky import StickyCookie
from faucet.workers.app_events import parse_line
from faucet.workers.supervisor import line_level
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def test_logging_md_shows_each_worker_line_at_the_level_faucet_logs_it():
    text = (DOCS / "logging.md").read_text().split("## Text format")[1].split("```")[1]
    lines = [line for line in text.splitlines() if "faucet.worker:" in line]
    assert len(lines) >= 2
    for line in lines:
        _, level, _, _target, message = line.split(maxsplit=4)
        assert logging_name(line_level(message, 20)) == level, line


def logging_name(level: int) -> str:
    return {20: "INFO", 30: "WARNING"}[level]


@pytest.mark.parametrize(("line", "level"), [
    ("Running plumber API at http://127.0.0.1:41231", 20),  # R's banner, on stderr
    ("Listening on http://127.0.0.1:40001", 20),
    ("Warning: Error in renderText: boom", 30),
    ("Error in f(): object 'x' not found", 30),
    ("Warning message:", 30),
    ("ERROR:    Exception in ASGI application", 30),  # uvicorn
])
def test_worker_stderr_is_info_unless_it_says_warning_or_error(line, level):
    assert line_level(line, 20) == level


def test_strategies_md_names_the_router_modes_cookies_as_set():
    text = " ".join((DOCS / "strategies.md").read_text().split())
    value = uuid.UUID(int=0)
    header = StickyCookie.for_route("/shiny/").set_header(value).decode()
    assert header.replace(str(value), "<uuid>") in text
    sales = StickyCookie.for_route("/apps/sales-v2/")
    assert f"`{sales.name}` on `Path={sales.path}`" in text
    root = StickyCookie.for_route("/")
    assert f"`{root.name}` on `Path={root.path}`" in text


def test_readme_links_work_on_the_package_page_and_name_installed_docs():
    """No relative links (they break on the package index); every docs page the README
    names is one `faucet docs` prints (tests/e2e/test_wheel.py: the wheel carries them)."""
    assert re.findall(r"\]\((?!https?://|#)[^)]*\)", README) == []
    for page in set(re.findall(r"`docs/([a-z-]+)\.md`", README)):
        assert (DOCS / f"{page}.md").is_file()
        assert (ROOT / "faucet" / "docs" / f"{page}.md").read_text() == (
            DOCS / f"{page}.md").read_text()


def test_readme_opens_with_the_two_set_up_commands():
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert blocks[:2] == [".ci/setup example && .venv/bin/faucet start --dir examples/plumber "
                          "--workers 2", ".ci/setup test && .venv/bin/python -m pytest"]


def test_flags_after_rscript_and_uv_go_to_the_program_as_the_readme_says():
    assert "except for `faucet rscript` and `faucet uv`" in README
    assert split_runner(["rscript", "--workers", "2"]) == (["rscript"], ["--workers", "2"])
    assert split_runner(["--rscript", "/R", "rscript", "-e", "1"]) == (
        ["--rscript", "/R", "rscript"], ["-e", "1"])


def test_telemetry_md_r_snippet_writes_an_event_faucet_reads():
    """The app-events docs' R code (no R package needed) against faucet's parser."""
    text = (DOCS / "telemetry.md").read_text()
    (code,) = re.findall(r"```r\n(.*?)```", text, re.S)
    result = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    event = parse_line(result.stderr.strip(), namespace="n", version=None, worker_id=1,
                       worker_route=None, now=datetime.datetime.now(datetime.UTC))
    assert event is not None and event.message == "user 7 logged in"
