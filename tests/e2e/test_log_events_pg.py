"""An R plumber worker's event lines and lifecycle arriving as rows of faucet_log_events
in a real PostgreSQL."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers import served, wait_until
from tests.pg import query
from tests.test_app_events import marker, r_fields

PLUMBER_R = """
#* @get /hello
function() {
  cat(sprintf("%s\\n", MARKER), file = stderr())
  cat("a plain line\\n", file = stderr())
  "hi"
}
"""


def test_an_r_worker_event_line_becomes_a_row_with_its_worker(pg_dsn, tmp_path):
    """A real plumber worker writes the R package's line (the package is not installed
    here, so the app writes the marker itself, as faucet::info() would)."""
    event_id = uuid.uuid4()
    line = marker(r_fields(event_id=[str(event_id)], body={"n": [3]}))
    r_string = '"' + line.replace("\\", "\\\\").replace('"', '\\"') + '"'
    (tmp_path / "plumber.R").write_text(PLUMBER_R.replace("MARKER", r_string))
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
