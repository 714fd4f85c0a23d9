"""faucet_log_events in a real PostgreSQL: the sink's COPY, the schema check, and the
tables users already have (only the documented faucet_http_events, or the Rust
server's). An R worker's events arriving as rows: tests/e2e/test_log_events_pg.py."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from faucet.config.settings import TelemetryConfig
from faucet.events import Event
from faucet.telemetry.recorder import TelemetryStatistics, serve_telemetry
from faucet.telemetry.table_init import SQL_DIR, init_table
from tests.helpers import PLUMBER, STANDIN, make_event, served, until, wait_until
from tests.pg import query, start_up_error
from tests.test_telemetry import log_event

# The DDL users have, verbatim: faucet_http_events as the telemetry documentation gives it
# (no faucet_log_events), and the Rust server's postgres.sql (ixpantia/faucet), whose
# faucet_log_events lacks worker_route and worker_id.
DOCUMENTED_HTTP_TABLE = (Path(__file__).parent / "sql" / "seed_http_events.sql").read_text()
RUST_TABLES = (Path(__file__).parent / "sql" / "rust_postgres.sql").read_text()


def tables(dsn: str) -> set[str]:
    rows = query(dsn, "SELECT table_name FROM information_schema.tables "
                      "WHERE table_schema = current_schema()")
    return {name for (name,) in rows}


def test_telemetry_init_creates_both_tables_and_may_run_again(pg_empty_dsn):
    init_table(pg_empty_dsn, None, None, timescale=False)
    init_table(pg_empty_dsn, None, None, timescale=False)
    assert tables(pg_empty_dsn) == {"faucet_http_events", "faucet_log_events"}
    assert (SQL_DIR / "faucet_log_events.sql").is_file()


async def record_all(dsn: str, events: list[Event], **config) -> TelemetryStatistics:
    """Record ``events`` with the postgres sink on ``dsn`` and shut it down."""
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(
            serve_telemetry, TelemetryConfig(postgres_string=dsn, **config))
        for event in events:
            recorder.record(event)
        recorder.close()
    return recorder.statistics()


def mixed(logs: list[Event]) -> list[Event]:
    """An HTTP event before each of ``logs`` (elapsed 1, 2, ...)."""
    return [event for i, log in enumerate(logs, 1) for event in (make_event(i), log)]


def http_elapsed(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT elapsed FROM faucet_http_events ORDER BY 1")


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_mixed_batch_lands_in_both_tables(pg_dsn):
    parent = uuid.uuid4()
    logs = [
        log_event(1),
        attrs.evolve(log_event(2), parent_event_id=parent, body={"user": [7], "ok": True},
                     worker_route="/api/", worker_id=None, version="9"),
    ]
    assert (await record_all(pg_dsn, mixed(logs), batch_size=10)).written == 4
    assert http_elapsed(pg_dsn) == [(1,), (2,)]
    rows = query(pg_dsn, "SELECT * FROM faucet_log_events ORDER BY message")
    # The event's fields are the table's columns, in order (body as JSON).
    assert rows == [attrs.astuple(event, recurse=False) for event in logs]


async def test_the_rust_servers_log_table_is_written_without_the_worker_columns(
        pg_empty_dsn, caplog):
    query(pg_empty_dsn, RUST_TABLES)
    logs = [log_event(1), attrs.evolve(log_event(2), worker_route="/api/", worker_id=3)]
    stats = await record_all(pg_empty_dsn, mixed(logs))
    assert (stats.written, stats.failed) == (4, 0)
    assert http_elapsed(pg_empty_dsn) == [(1,), (2,)]
    rows = query(pg_empty_dsn, "SELECT * FROM faucet_log_events ORDER BY message")
    assert rows == [attrs.astuple(event, recurse=False)[:10] for event in logs]
    assert messages(caplog, logging.WARNING) == []


async def test_without_a_log_table_http_events_are_written_and_log_events_logged(
        pg_empty_dsn, caplog):
    """The documented DDL, and nothing else: one warning, however many batches."""
    caplog.set_level(logging.INFO, logger="faucet.telemetry")
    query(pg_empty_dsn, DOCUMENTED_HTTP_TABLE)
    stats = await record_all(pg_empty_dsn, mixed([log_event(1), log_event(2)]), batch_size=1)
    assert (stats.written, stats.failed) == (4, 0)
    assert http_elapsed(pg_empty_dsn) == [(1,), (2,)]
    [warning] = messages(caplog, logging.WARNING)
    assert "table faucet_log_events not found" in warning
    assert "create it with `faucet telemetry init`" in warning
    logged = [m for m in messages(caplog, logging.INFO) if "not stored" in m]
    assert len(logged) == 2 and all('"type": "log"' in m for m in logged)
    assert '"message": "event 1"' in logged[0] and '"message": "event 2"' in logged[1]


async def test_a_log_table_dropped_while_running_sends_the_batch_to_the_log(pg_dsn, caplog):
    caplog.set_level(logging.INFO, logger="faucet.telemetry")
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(
            serve_telemetry, TelemetryConfig(postgres_string=pg_dsn, batch_size=1))
        recorder.record(log_event(1))
        await until(lambda: recorder.statistics().written == 1)
        await trio.to_thread.run_sync(query, pg_dsn, "DROP TABLE faucet_log_events")
        recorder.record(log_event(2))
        recorder.record(make_event(3))
        recorder.close()
    assert (recorder.statistics().written, recorder.statistics().failed) == (3, 0)
    assert http_elapsed(pg_dsn) == [(3,)]
    assert any('"message": "event 2"' in m for m in messages(caplog, logging.INFO))


async def test_a_log_table_with_a_column_faucet_cannot_write_is_a_config_error(pg_empty_dsn):
    query(pg_empty_dsn, DOCUMENTED_HTTP_TABLE)
    query(pg_empty_dsn, "CREATE TABLE faucet_log_events (namespace TEXT, worker_id TEXT)")
    message = await start_up_error(pg_empty_dsn)
    assert "table faucet_log_events does not match" in message
    assert "body (jsonb) is missing" in message
    assert "worker_id is text, expected integer" in message
    assert "worker_route" not in message  # it may be missing


def test_faucet_starts_on_the_documented_http_table_alone(pg_empty_dsn):
    """As a new user would: the Rust spelling of the option, the documented DDL."""
    query(pg_empty_dsn, DOCUMENTED_HTTP_TABLE)
    with served("start", "--dir", str(PLUMBER), "--rscript", STANDIN, "--workers", "1",
                "--pg-con-string", pg_empty_dsn, "--telemetry-flush-interval", "0.05",
                online=1) as faucet:
        assert httpx.get(faucet.url + "/").status_code == 200
        wait_until(lambda: http_elapsed(pg_empty_dsn), "the request is written")
        _out, err = faucet.stop()
    assert err.count("faucet telemetry init") == 1
    assert '"event_type": "worker_online"' in err  # the worker's life, logged instead




