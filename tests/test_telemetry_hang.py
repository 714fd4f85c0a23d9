"""A telemetry database that hangs, seen from outside: faucet (a subprocess, with the
stand-in worker, no R) shows it in the health endpoint, and SIGTERM still ends it."""

from __future__ import annotations

import datetime
import time
import uuid

import httpx
from psycopg.conninfo import make_conninfo

from faucet.app import free_port
from tests.helpers import PLUMBER, ROOT, faucet_process, kill_session
from tests.pg import query
from tests.test_postgres_sink import lock_table, silent_listener
from tests.test_telemetry_e2e import stop, wait_ready

STANDIN = str(ROOT / "tests" / "standin" / "Rscript")
SECRET = "pw-hang-Secret-5521"
SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
WAITING_ON_A_LOCK = SESSIONS + " AND wait_event_type = 'Lock'"


def start(port: int, *args: str):
    return faucet_process("start", "--dir", str(PLUMBER), "--rscript", STANDIN,
                          "--workers", "1", "--host", f"127.0.0.1:{port}",
                          "--telemetry-flush-interval", "0.01", "--telemetry-flush-timeout", "1",
                          *args)


def wait_until(condition, timeout: float = 30) -> None:
    """Poll ``condition()`` (a real state outside this process) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_sigterm_ends_faucet_while_a_statement_waits_on_a_lock(pg_dsn):
    """statement_timeout far away: only the flush deadline can end the COPY's wait."""
    name = f"faucet-hang-{uuid.uuid4().hex[:8]}"
    port = free_port()
    proc = start(port, "--telemetry-postgres-string", make_conninfo(pg_dsn, application_name=name),
                 "--telemetry-statement-timeout", "600")
    try:
        read = wait_ready(proc)
        locker = lock_table(pg_dsn)
        try:
            assert httpx.get(f"http://127.0.0.1:{port}/x").status_code == 200
            wait_until(lambda: query(pg_dsn, WAITING_ON_A_LOCK, (name,)) == [(1,)])
            _out, err = stop(proc, read)
        finally:
            locker.close()
    finally:
        kill_session(proc)
    assert "1 events not written before the flush deadline" in err
    assert "0 events written, 0 dropped, 1 failed" in err
    # The abandoned COPY sends no rows, even now that the lock is gone.
    wait_until(lambda: query(pg_dsn, SESSIONS, (name,)) == [(0,)])
    assert query(pg_dsn, "SELECT count(*) FROM faucet_http_events") == [(0,)]


def test_health_shows_a_database_that_never_answers_and_sigterm_ends_faucet():
    port = free_port()
    with silent_listener() as db_port:
        proc = start(port, "--telemetry-connect-timeout", "2", "--telemetry-postgres-string",
                     f"postgresql://postgres:{SECRET}@127.0.0.1:{db_port}/test")
        try:
            read = wait_ready(proc)
            assert "unreachable at start-up (connection timeout expired)" in read
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                assert client.get("/x").status_code == 200

                def telemetry() -> dict:
                    return client.get("/__faucet__/health").json()["telemetry"]

                wait_until(lambda: telemetry()["sink_status"] == "hung")
                health = telemetry()
            out, err = stop(proc, read)
        finally:
            kill_session(proc)
    assert (health["sink_available"], health["last_error"]) == (
        False, "connection timeout expired")
    assert datetime.datetime.fromisoformat(health["last_error_at"]).tzinfo == datetime.UTC
    assert "telemetry sink 'postgres' hung: connection timeout expired" in err
    assert "1 events not written before the flush deadline" in err
    assert SECRET not in err and SECRET not in out

