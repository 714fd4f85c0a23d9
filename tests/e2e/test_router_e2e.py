"""``faucet router --conf FILE`` as a user runs it: Plumber, Shiny and FastAPI behind one
address, with real workers, the access log, log rotation and telemetry rows.

Each faucet here is a subprocess started from a directory below the route file's, so the
relative ``workdir``s only resolve against the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from faucet.lifecycle.deploy import free_port
from faucet.proxy.health import HEALTH_PATH
from tests.helpers import (
    FASTAPI,
    PLUMBER,
    SHINY,
    faucet_process,
    kill_session,
    leftover_processes,
    wait_until,
)
from tests.pg import query


def write_router(folder: Path, *routes: tuple[str, str, Path, int]) -> Path:
    """A frouter.toml in ``folder`` whose workdirs are relative to it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "frouter.toml"
    path.write_text("\n".join(
        f'[[route]]\nroute = "{route}"\nserver_type = "{kind}"\nworkers = {workers}\n'
        f'workdir = "{os.path.relpath(workdir, folder)}"\n'
        for route, kind, workdir, workers in routes))
    return path


class Router(NamedTuple):
    proc: subprocess.Popen
    url: str
    log: Path

    def log_lines(self, needle: str) -> list[str]:
        """The log file's lines containing ``needle``, once there is one."""
        def found():
            try:
                text = self.log.read_text()
            except FileNotFoundError:  # renamed, and not yet reopened
                return []
            return [line for line in text.splitlines() if needle in line]
        return wait_until(found, f"{needle!r} in {self.log}", timeout=10)


@contextlib.contextmanager
def router(conf: Path, *flags: str, workers: int, env: dict | None = None) -> Iterator[Router]:
    """``faucet router --conf conf`` logging to a file beside it (only: nobody reads the
    stderr pipe), once ``workers`` are online. On leaving: SIGTERM, exit 0 and no worker
    process (uv's children included) left."""
    url = f"http://127.0.0.1:{free_port()}"
    log = conf.parent / "faucet.log"
    cwd = conf.parent / "started" / "from" / "here"
    cwd.mkdir(parents=True)
    proc = faucet_process("router", "--conf", str(conf), "--host", url.removeprefix("http://"),
                          "--log-file", str(log), "--log-stderr", "false", *flags, env=env,
                          cwd=cwd)

    def online() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"faucet exited with {proc.returncode}:\n{proc.stderr.read()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(url + HEALTH_PATH).json()["online"] == workers
        return False

    served = Router(proc, url, log)
    try:
        wait_until(online, f"{workers} workers online")
        yield served
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        wait_until(lambda: not leftover_processes(proc), "workers gone", timeout=5)
    finally:
        # The workers have sessions of their own: only faucet can stop them.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        kill_session(proc)


@pytest.fixture(scope="module")
def apps(tmp_path_factory, fastapi_env) -> Iterator[Router]:  # noqa: F811
    """Plumber at /api/, Shiny at /shiny/, FastAPI at /py/ and at the exact route /whoami,
    logging JSON lines."""
    conf = write_router(tmp_path_factory.mktemp("apps") / "conf",
                        ("/api/", "plumber", PLUMBER, 2), ("/shiny/", "shiny", SHINY, 1),
                        ("/py/", "fast-api", FASTAPI, 2), ("/whoami", "fast-api", FASTAPI, 1))
    with router(conf, "--log-format", "json", workers=6, env=fastapi_env) as served:
        yield served


@pytest.fixture
def client(apps: Router) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apps.url, timeout=30) as client:
        yield client


def test_prefix_is_stripped_and_forwarded(client):
    assert client.get("/api/echo?msg=x").json() == {"msg": ["x"]}
    assert client.get("/api/headers").json()["x-forwarded-prefix"] == ["/api"]
    assert client.get("/py/echo", params={"msg": "y"}).json() == {"msg": "y"}
    assert client.get("/py/").json()["path"] == "/"
    shiny = client.get("/shiny/")
    assert shiny.status_code == 200 and "faucet + Shiny" in shiny.text
    # shiny routes are sticky by default, with a cookie of their own
    assert "FAUCET_LB_COOKIE_shiny" in shiny.cookies


def test_exact_route_reaches_the_worker_as_root(client):
    answer = client.get("/whoami").json()
    assert answer == {"worker": "1", "path": "/", "prefix": "/whoami"}
    assert client.get("/whoami/").status_code == 404


def test_no_match_is_a_short_404_and_bare_prefix_redirects(client):
    missing = client.get("/nope/x")
    assert missing.status_code == 404 and len(missing.content) < 100
    redirect = client.get("/api?x=1&y=2")
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/api/?x=1&y=2")
    assert client.get("/shiny").headers["location"] == "/shiny/"


def test_worker_ids_are_1_based_per_route(client):
    api = {client.get("/api/worker").json()["worker"][0] for _ in range(4)}
    py = {client.get("/py/").json()["worker"] for _ in range(4)}
    assert api == py == {"1", "2"}
    assert client.get("/whoami").json()["worker"] == "1"


def test_json_access_line(apps, client):
    client.get("/api/echo?msg=x", headers={"user-agent": "e2e-json/1"})
    (line,) = apps.log_lines('"user_agent": "e2e-json/1"')
    entry = json.loads(line)
    assert entry["elapsed_ms"] > 0 and entry["worker_id"] in (1, 2)
    assert {k: entry[k] for k in ("logger", "client", "method", "path", "http_version",
                                  "status", "target", "route")} == {
        "logger": "faucet.access", "client": "127.0.0.1", "method": "GET",
        "path": "/api/echo?msg=x", "http_version": "HTTP/1.1", "status": 200,
        "target": f"[/api/]::Worker::{entry['worker_id']}", "route": "/api/"}


def test_telemetry_rows_carry_the_route(tmp_path, pg_dsn):
    conf = write_router(tmp_path, ("/api/", "plumber", PLUMBER, 1))
    with router(conf, "--telemetry-postgres-string", pg_dsn, workers=1) as served:
        with httpx.Client(base_url=served.url) as client:
            assert client.get("/api/echo?msg=x").status_code == 200
            assert client.get("/nope").status_code == 404
    # Stopped: the events still queued are flushed on the way out.
    rows = query(pg_dsn, "SELECT worker_route, worker_id, target, path, query_params, status "
                         "FROM faucet_http_events ORDER BY time")
    assert rows == [("/api/", 1, "Worker::1", "/echo", "msg=x", 200),
                    (None, None, None, "/nope", None, 404)]


def test_log_rotation_at_the_size_limit_and_a_text_access_line(tmp_path):
    conf = write_router(tmp_path, ("/api/", "plumber", PLUMBER, 1))
    limit = 20_000  # "20k", powers of 1000 as the Rust server reads sizes
    with router(conf, "--max-log-file-size", "20k", "--log-file-backups", "2",
                workers=1) as served, httpx.Client(base_url=served.url) as client:
        long_path = "/nope/" + "x" * 400
        for _ in range(200):  # ~500 bytes a line: ~5 files' worth
            client.get(long_path)
        client.get("/api/echo?msg=x", headers={"user-agent": "e2e-text/1"})
        (line,) = served.log_lines('"e2e-text/1"')
    assert re.fullmatch(r'\S+Z INFO    faucet\.access: 127\.0\.0\.1 "GET /api/echo\?msg=x '
                        r'HTTP/1\.1" 200 "e2e-text/1" \d+\.\dms \[/api/\]::Worker::1', line)
    logs = sorted(p.name for p in tmp_path.glob("faucet.log*"))
    assert logs == ["faucet.log", "faucet.log.1", "faucet.log.2"]
    for name in logs:
        assert (tmp_path / name).stat().st_size <= limit
    for backup in logs[1:]:
        assert (tmp_path / backup).stat().st_size > limit - 600  # full, less one line


def test_sigusr1_reopens_the_log_file_after_a_rename(tmp_path):
    conf = write_router(tmp_path, ("/api/", "plumber", PLUMBER, 1))
    with router(conf, workers=1) as served, httpx.Client(base_url=served.url) as client:
        client.get("/before-rename")
        served.log_lines("/before-rename")
        served.log.rename(tmp_path / "faucet.log.old")
        served.proc.send_signal(signal.SIGUSR1)
        served.log_lines("log file reopened on SIGUSR1")
        client.get("/after-rename")
        served.log_lines("/after-rename")
    old = (tmp_path / "faucet.log.old").read_text()
    assert "/before-rename" in old and "/after-rename" not in old
