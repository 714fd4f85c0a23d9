"""A telemetry database that hangs, seen from outside: faucet (a subprocess, with the
stand-in worker, no R) shows it in the health endpoint, and SIGTERM still ends it."""

from __future__ import annotations

import contextlib
import datetime
import uuid

import httpx
from psycopg.conninfo import make_conninfo

from tests.helpers import PLUMBER, STANDIN, served, wait_until
from tests.pg import query
from tests.test_postgres_sink import lock_table, silent_listener

SECRET = "pw-hang-Secret-5521"
SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
WAITING_ON_A_LOCK = SESSIONS + " AND wait_event_type = 'Lock'"


def hanging_faucet(*args: str):
    return served("start", "--dir", str(PLUMBER), "--rscript", str(STANDIN), "--workers", "1",
                  "--telemetry-flush-interval", "0.01", "--telemetry-flush-timeout", "1",
                  *args, online=1)


def test_sigterm_ends_faucet_while_a_statement_waits_on_a_lock(pg_dsn):
    """statement_timeout far away: only the flush deadline can end the COPY's wait."""
    name = f"faucet-hang-{uuid.uuid4().hex[:8]}"
    with hanging_faucet("--telemetry-postgres-string",
                        make_conninfo(pg_dsn, application_name=name),
                        "--telemetry-statement-timeout", "600") as faucet:
        locker = lock_table(pg_dsn)
        with contextlib.closing(locker):
            assert httpx.get(f"{faucet.url}/x").status_code == 200
            wait_until(lambda: query(pg_dsn, WAITING_ON_A_LOCK, (name,)) == [(1,)],
                       "the COPY waits on the lock")
            _out, err = faucet.stop()
    assert "1 events not written before the flush deadline" in err
    assert "0 events written, 0 dropped, 1 failed" in err
    # The abandoned COPY sends no rows, even now that the lock is gone.
    wait_until(lambda: query(pg_dsn, SESSIONS, (name,)) == [(0,)], "its session ends")
    assert query(pg_dsn, "SELECT count(*) FROM faucet_http_events") == [(0,)]


def test_health_shows_a_database_that_never_answers_and_sigterm_ends_faucet():
    with silent_listener() as db_port, hanging_faucet(
            "--telemetry-connect-timeout", "2", "--telemetry-postgres-string",
            f"postgresql://postgres:{SECRET}@127.0.0.1:{db_port}/test") as faucet:
        with httpx.Client(base_url=faucet.url) as client:
            assert client.get("/x").status_code == 200

            def telemetry() -> dict:
                return client.get("/__faucet__/health").json()["telemetry"]

            wait_until(lambda: telemetry()["sink_status"] == "hung", "health says hung")
            health = telemetry()
        out, err = faucet.stop()
    assert "unreachable at start-up (connection timeout expired)" in err
    assert (health["sink_available"], health["last_error"]) == (
        False, "connection timeout expired")
    assert datetime.datetime.fromisoformat(health["last_error_at"]).tzinfo == datetime.UTC
    assert "telemetry sink 'postgres' hung: connection timeout expired" in err
    assert "1 events not written before the flush deadline" in err
    assert SECRET not in err and SECRET not in out
