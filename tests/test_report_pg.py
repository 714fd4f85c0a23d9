"""faucet report against the real PostgreSQL: rows with known values in a fresh schema,
and every figure checked against an answer this test works out on its own (sorted
values for percentiles, a scan over every instant for concurrency, a filter for the
minute before each crash)."""

import datetime
import ipaddress
import json
import uuid

import psycopg
import pytest

from faucet.cli import main
from faucet.sinks.pg_conninfo import connection_settings
from faucet.telemetry.report_query import ReportUnavailable, read_report
from faucet.telemetry.report_spec import ReportSpec, Window
from faucet.telemetry.table_init import SQL_DIR
from tests.pg import query
from tests.test_report import brute_percentile

pytest_plugins = ["tests.pg"]
UTC = datetime.UTC
T0 = datetime.datetime.now(UTC).replace(microsecond=0) - datetime.timedelta(hours=2)
ms = datetime.timedelta(milliseconds=1)


def row(worker, path, status, elapsed, at, *, namespace="shop", version="1.0", route=None,
        ip="10.0.0.1", method="GET"):
    return (uuid.uuid4(), namespace, version, f"Worker::{worker}" if worker else None, route,
            worker, ipaddress.ip_address(ip), method, path, None, "HTTP/1.1", status, "test",
            elapsed, at)


def dataset():
    """(rows, exits): HTTP rows and worker_exit times, T0 .. T0 + 1 h."""
    rows = []
    # Worker 1: 40 GETs of /users/N, elapsed 10, 20 .. 400 ms, one per 30 s; every 8th a 500.
    for i in range(1, 41):
        rows.append(row(1, f"/users/{i}", 500 if i % 8 == 0 else 200, i * 10,
                        T0 + datetime.timedelta(seconds=30 * i)))
    # Worker 2: 25 POSTs to /orders/<uuid>/items, elapsed 1000 + 40 * i.
    for i in range(25):
        rows.append(row(2, f"/orders/{uuid.uuid4()}/items", 200, 1000 + 40 * i,
                        T0 + datetime.timedelta(seconds=31 * i + 7), method="POST",
                        ip=f"10.0.0.{i % 5 + 2}", version="1.1"))
    # Four overlapping requests at T0 + 40 min: in progress together from +40:00.300 to
    # +40:00.500 (the peak, 4), on workers 1 and 2 and faucet's own 503s.
    peak = T0 + datetime.timedelta(minutes=40)
    for worker, start_ms, end_ms, status in ((1, 0, 500, 200), (2, 100, 900, 502),
                                             (None, 200, 700, 503), (None, 300, 600, 503)):
        rows.append(row(worker, "/busy", status, end_ms - start_ms, peak + end_ms * ms))
    # Touching is not overlapping: one ends exactly when the next begins.
    touch = T0 + datetime.timedelta(minutes=50)
    rows += [row(1, "/t", 200, 1000, touch), row(2, "/t", 200, 1000, touch + 1000 * ms)]
    # Shiny sessions (101): long, and never in a latency figure.
    for minutes in (5, 15, 45):
        rows.append(row(2, "/websocket/", 101, minutes * 60_000,
                        T0 + datetime.timedelta(minutes=55)))
    inside = list(rows)
    # Outside the report: another namespace, and before the window.
    rows.append(row(1, "/users/1", 500, 99_999, T0 + datetime.timedelta(minutes=1),
                    namespace="other"))
    rows.append(row(1, "/users/1", 500, 99_999, T0 - datetime.timedelta(hours=3)))
    exits = [T0 + datetime.timedelta(seconds=30 * 20 + 5)]  # worker 1, 5 s after /users/20
    return rows, inside, exits


def load(dsn, rows, exits, log_table=True):
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor().copy("COPY faucet_http_events FROM STDIN") as copy:
            for values in rows:
                copy.write_row(values)
        if log_table:
            for at in exits:
                conn.execute(
                    "INSERT INTO faucet_log_events (namespace, version, target, time, event_id, "
                    "level, event_type, message, body, worker_route, worker_id) VALUES "
                    "('shop', '1.0', 'faucet', %s, %s, 'error', 'worker_exit', 'exited', "
                    "%s, NULL, 1)",
                    (at, uuid.uuid4(), json.dumps({"status": "killed by SIGKILL",
                                                   "returncode": -9, "uptime": 600.5,
                                                   "stderr_tail": ["a", "Killed"]})))
                conn.execute(
                    "INSERT INTO faucet_log_events (namespace, target, time, event_type, "
                    "message, level, worker_id) VALUES ('shop', 'faucet', %s, "
                    "'worker_restart', 'restarting', 'info', 1)", (at,))


def peak_by_scan(http_rows):
    """Most rows in progress at any instant (in progress over [time - elapsed, time)),
    checked at every start, and the first instant reaching it."""
    intervals = [(r[14] - r[13] * ms, r[14]) for r in http_rows]
    best = (0, None)
    for start, _end in sorted(intervals):
        count = sum(1 for s, e in intervals if s <= start < e)
        if count > best[0]:
            best = (count, start)
    return best


def report_for(dsn, **spec):
    window = Window(T0 - datetime.timedelta(minutes=5), T0 + datetime.timedelta(hours=1))
    settings = connection_settings(dsn, None, None, statement_timeout=30)
    return read_report(settings, ReportSpec(window, **({"namespace": "shop"} | spec)))


def test_figures_match_independent_answers(pg_dsn):
    rows, inside, exits = dataset()
    load(pg_dsn, rows, exits)
    report = report_for(pg_dsn)
    http = [r for r in inside if r[11] != 101]
    elapsed = [r[13] for r in http]

    health = report["health"]
    assert health["requests"] == len(http) == 71
    assert health["errors_5xx"] == 5 + 1 + 2
    assert health["gateway_5xx"] == {"502": 1, "503": 2, "504": 0}
    assert health["no_worker_5xx"] == 2
    for key, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        assert health[key] == pytest.approx(brute_percentile(elapsed, fraction))
    # ...and PostgreSQL's own percentile_cont over the rows agrees.
    (p95,) = query(pg_dsn, "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY elapsed) "
                           "FROM faucet_http_events WHERE namespace = 'shop' AND status <> 101 "
                           "AND time >= %s", (T0 - datetime.timedelta(minutes=5),))[0]
    assert health["p95_ms"] == pytest.approx(p95)
    assert health["worker_exits"] == 1

    capacity = report["capacity"]
    expected_peak, expected_at = peak_by_scan(http)
    assert (capacity["peak_concurrency"], capacity["peak_at"]) == (expected_peak, expected_at)
    assert expected_peak == 4

    (crash,) = report["crashes"]
    before = [r for r in http if r[5] == 1 and exits[0] - datetime.timedelta(seconds=60)
              < r[14] <= exits[0]]
    assert crash["requests_before"] == len(before) == 2  # /users/19 and /users/20
    assert crash["errors_5xx_before"] == sum(r[11] >= 500 for r in before) == 0
    assert (crash["returncode"], crash["last_stderr"], crash["worker_id"]) == (-9, "Killed", 1)
    assert crash["slowest_path"] == "/users/20" and crash["uptime_seconds"] == 600.5

    endpoints = {(e["method"], e["path"]): e for e in report["endpoints"]}
    users = endpoints[("GET", "/users/:id")]
    user_elapsed = [r[13] for r in http if r[8].startswith("/users/")]
    assert users["calls"] == 40 and users["total_ms"] == sum(user_elapsed)
    assert users["p95_ms"] == pytest.approx(brute_percentile(user_elapsed, 0.95))
    assert users["errors_5xx"] == 5
    orders = endpoints[("POST", "/orders/:uuid/items")]
    assert orders["calls"] == 25 and report["endpoints"][0] is orders  # most total time
    totals = [e["total_ms"] for e in report["endpoints"]]
    assert totals == sorted(totals, reverse=True)
    assert [e["path"] for e in report["slowest"]] == ["/orders/:uuid/items", "/users/:id"]

    workers = {w["worker_id"]: w for w in report["workers"]}
    assert workers[1]["requests"] == sum(r[5] == 1 for r in http)
    assert workers[1]["busy_seconds"] == sum(r[13] for r in http if r[5] == 1) / 1000
    assert (workers[1]["exits"], workers[1]["restarts"]) == (1, 1)
    assert workers[2]["errors_5xx"] == 1 and None not in workers

    sessions = report["sessions"]
    assert sessions["count"] == 3 and sessions["p50_seconds"] == 15 * 60
    assert sessions["session_hours"] == pytest.approx(65 / 60)
    assert report["usage"]["distinct_clients"] == 6
    assert {s["status"]: s["count"] for s in report["status_codes"]} == {
        200: 63, 500: 5, 502: 1, 503: 2, 101: 3}
    assert sum(b["requests"] for b in report["over_time"]) == len(http)
    assert [v["version"] for v in report["versions"]] == ["1.1", "1.0"]  # first seen first


def test_filters_and_other_namespaces(pg_dsn):
    rows, _inside, exits = dataset()
    load(pg_dsn, rows, exits)
    assert report_for(pg_dsn, version="1.1")["health"]["requests"] == 25
    assert report_for(pg_dsn, namespace="other")["health"]["requests"] == 1
    assert report_for(pg_dsn, route="/api/")["health"]["requests"] == 0
    assert report_for(pg_dsn, namespace=None)["health"]["requests"] == 72


def test_without_faucet_log_events(pg_empty_dsn):
    """A database with only the documented faucet_http_events table."""
    query(pg_empty_dsn, (SQL_DIR / "faucet_http_events.sql").read_text())
    rows, _inside, exits = dataset()
    load(pg_empty_dsn, rows, exits, log_table=False)
    report = report_for(pg_empty_dsn)
    assert report["crashes"] is None and report["health"]["worker_exits"] is None
    assert report["health"]["requests"] == 71 and report["workers"][0]["exits"] is None


def test_no_table_is_a_clear_error(pg_empty_dsn):
    with pytest.raises(ReportUnavailable, match="faucet telemetry init"):
        report_for(pg_empty_dsn)


def test_init_creates_the_time_index(pg_dsn):
    assert query(pg_dsn, "SELECT indexdef FROM pg_indexes WHERE indexname = "
                         "'faucet_http_events_time_idx'")[0][0].endswith("USING btree (\"time\")")


def test_command_line_json_and_errors(pg_dsn, capsys):
    rows, _inside, exits = dataset()
    load(pg_dsn, rows, exits)
    window = ["--from", (T0 - datetime.timedelta(minutes=5)).isoformat(),
              "--to", (T0 + datetime.timedelta(hours=1)).isoformat()]
    with pytest.raises(SystemExit) as info:
        main(["report", "--telemetry-postgres-string", pg_dsn, "--telemetry-namespace", "shop",
              "--json", *window])
    assert info.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["health"]["requests"] == 71 and data["capacity"]["peak_concurrency"] == 4

    with pytest.raises(SystemExit) as info:
        main(["report", "--telemetry-postgres-string", pg_dsn, "--since", "5 parsecs"])
    assert info.value.code == 2
    assert "--since = '5 parsecs'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["report"])
    assert info.value.code == 2
    assert "telemetry.postgres_string" in capsys.readouterr().err
