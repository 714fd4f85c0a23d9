"""faucet_log_events in a real PostgreSQL: the sink's COPY, the schema check, and an R
plumber worker's event lines and lifecycle arriving as rows (slow: needs R)."""

from __future__ import annotations

import re
import uuid

import attrs
import httpx
import pytest
import trio

from faucet.config import TelemetryConfig
from faucet.telemetry import serve_telemetry
from faucet.telemetry_init import SQL_DIR, init_table
from tests.helpers import make_event, served, wait_until
from tests.pg import query, start_up_error
from tests.test_app_events import marker, r_fields
from tests.test_telemetry import log_event

# The Rust faucet's table: faucet's without worker_route and worker_id.
RUST_TABLE = """CREATE TABLE faucet_log_events (namespace TEXT, version TEXT, target TEXT,
    time TIMESTAMPTZ NOT NULL, event_id UUID, parent_event_id UUID, level TEXT,
    event_type TEXT, message TEXT, body JSONB)"""


def tables(dsn: str) -> set[str]:
    rows = query(dsn, "SELECT table_name FROM information_schema.tables "
                      "WHERE table_schema = current_schema()")
    return {name for (name,) in rows}


def test_telemetry_init_creates_both_tables_and_may_run_again(pg_empty_dsn):
    init_table(pg_empty_dsn, None, None, timescale=False)
    init_table(pg_empty_dsn, None, None, timescale=False)
    assert tables(pg_empty_dsn) == {"faucet_http_events", "faucet_log_events"}
    assert (SQL_DIR / "faucet_log_events.sql").is_file()


async def test_a_mixed_batch_lands_in_both_tables(pg_dsn):
    parent = uuid.uuid4()
    logs = [
        log_event(1),
        attrs.evolve(log_event(2), parent_event_id=parent, body={"user": [7], "ok": True},
                     worker_route="/api/", worker_id=None, version="9"),
    ]
    config = TelemetryConfig(postgres_string=pg_dsn, batch_size=10)
    async with trio.open_nursery() as nursery:
        recorder = await nursery.start(serve_telemetry, config)
        for event in (make_event(1), logs[0], make_event(2), logs[1]):
            recorder.record(event)
        recorder.close()
    assert recorder.statistics().written == 4
    assert query(pg_dsn, "SELECT elapsed FROM faucet_http_events ORDER BY 1") == [(1,), (2,)]
    rows = query(pg_dsn, "SELECT * FROM faucet_log_events ORDER BY message")
    # The event's fields are the table's columns, in order (body as JSON).
    assert rows == [attrs.astuple(event, recurse=False) for event in logs]


async def test_a_log_table_from_the_rust_server_is_a_config_error(pg_empty_dsn):
    query(pg_empty_dsn, (SQL_DIR / "faucet_http_events.sql").read_text())
    query(pg_empty_dsn, RUST_TABLE)
    message = await start_up_error(pg_empty_dsn)
    assert "table faucet_log_events does not match" in message
    assert "worker_route (text) is missing; worker_id (integer) is missing" in message


async def test_a_missing_log_table_is_a_config_error(pg_empty_dsn):
    query(pg_empty_dsn, (SQL_DIR / "faucet_http_events.sql").read_text())
    assert re.search("table faucet_log_events not found.*telemetry init",
                     await start_up_error(pg_empty_dsn))


PLUMBER = """
#* @get /hello
function() {
  cat(sprintf("%s\\n", MARKER), file = stderr())
  cat("a plain line\\n", file = stderr())
  "hi"
}
"""


@pytest.mark.slow
def test_an_r_worker_event_line_becomes_a_row_with_its_worker(pg_dsn, tmp_path):
    """A real plumber worker writes the R package's line (the package is not installed
    here, so the app writes the marker itself, as faucet::info() would)."""
    event_id = uuid.uuid4()
    line = marker(r_fields(event_id=[str(event_id)], body={"n": [3]}))
    r_string = '"' + line.replace("\\", "\\\\").replace('"', '\\"') + '"'
    (tmp_path / "plumber.R").write_text(PLUMBER.replace("MARKER", r_string))
    with served("start", "--dir", str(tmp_path), "--workers", "2",
                "--telemetry-postgres-string", pg_dsn, "--telemetry-namespace", "ns",
                "--telemetry-flush-interval", "0.05", online=2) as faucet:
        with httpx.Client(base_url=faucet.url) as client:
            assert [client.get("/hello").json() for _ in range(2)] == [["hi"], ["hi"]]
        app_rows = wait_until(lambda: query(
            pg_dsn, "SELECT namespace, target, worker_id, worker_route, level, event_type, "
                    "message, body FROM faucet_log_events WHERE event_id = %s ORDER BY worker_id",
            (event_id,)) or None, "the app's events are written")
        _out, err = faucet.stop()
    assert {row[2] for row in app_rows} <= {1, 2}
    assert app_rows[0] == ("ns", "shiny", app_rows[0][2], None, "info", "log",
                           "user 7 logged in", {"n": [3]})
    assert "a plain line" in err and "faucet_event" not in err  # event lines are not logged
    # Joined to the request that caused it, by worker.
    joined = query(pg_dsn, "SELECT count(*) FROM faucet_log_events l JOIN faucet_http_events h "
                           "ON h.worker_id = l.worker_id AND h.namespace = l.namespace "
                           "WHERE l.event_id = %s AND h.path = '/hello'", (event_id,))
    assert joined[0][0] >= 1
    life = query(pg_dsn, "SELECT worker_id, event_type, target, body->>'pid' IS NOT NULL "
                         "FROM faucet_log_events WHERE target = 'faucet' ORDER BY worker_id, time")
    assert life == [(1, "worker_start", "faucet", True), (1, "worker_online", "faucet", True),
                    (2, "worker_start", "faucet", True), (2, "worker_online", "faucet", True)]
