"""``faucet report``'s reading: read-only, repeatable-read transactions (every section
sees the same rows) under the telemetry statement timeout, a handful of aggregate queries
over ``faucet_http_events`` (and ``faucet_log_events`` when it exists); the rows go to
``report_sections.build_report``, which makes the report dict.

Every query filters on ``time`` first: ``faucet telemetry init`` creates the index on it
(sql/faucet_http_events.sql). The queries return histograms (counts per key and
``elapsed``), from which the percentiles are computed exactly; rows with status 101 are
WebSocket sessions (their ``elapsed`` is the session's length).

Blocking: a plain sync command, never run on the event loop.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from faucet.redact import error_text
from faucet.sinks.pg_conninfo import ConnectionSettings
from faucet.telemetry.report_sections import build_report, group_endpoints
from faucet.telemetry.report_spec import CRASH_LOOKBACK, WEBSOCKET_STATUS, ReportSpec

HTTP = sql.Identifier("faucet_http_events")
LOG = sql.Identifier("faucet_log_events")
# The histograms and the concurrency sweep (two million events for a million rows) fit
# in memory with this, where the server's default (4 MB) spills them to disk. SET LOCAL:
# for the report's own transaction only.
WORK_MEM = "256MB"


class ReportUnavailable(Exception):
    """The database could not be read (unreachable, no table, too slow); the message says
    what to do. Never holds a password."""


def bucket_expression(width: int, timescale: bool) -> sql.Composable:
    """The start of ``time``'s bucket: TimescaleDB's ``time_bucket`` when the extension is
    installed, else PostgreSQL's ``date_bin`` (14+); both aligned on 2000-01-01 UTC."""
    name = "time_bucket" if timescale else "date_bin"
    return sql.SQL("{}({}::interval, time, TIMESTAMPTZ '2000-01-01 00:00:00+00')").format(
        sql.SQL(name), sql.Literal(f"{width} seconds"))


def _filters(spec: ReportSpec, *, alias: str = "",
             route: bool = True) -> tuple[sql.Composable, dict[str, Any]]:
    """WHERE for the window and the filters given (the others are left out entirely, so
    the planner sees only conditions that narrow)."""
    prefix = f"{alias}." if alias else ""
    parts = [sql.SQL(prefix + "time >= %(start)s"), sql.SQL(prefix + "time < %(end)s")]
    params: dict[str, Any] = {"start": spec.window.start, "end": spec.window.end}
    for column, value in (("namespace", spec.namespace), ("version", spec.version),
                          ("worker_route", spec.route if route else None)):
        if value is not None:
            parts.append(sql.SQL(f"{prefix}{column} = %({column})s"))
            params[column] = value
    return sql.SQL(" AND ").join(parts), params




# Each query groups the window's rows by its keys and ``elapsed`` and counts them: the
# percentiles are computed exactly from these counts (report_stats), so each section
# costs one pass over the rows and no sort of them.
MAIN = """
    SELECT worker_route COLLATE "C" AS route, worker_id, version COLLATE "C" AS version,
           status, elapsed, count(*) AS n,
           min(time - elapsed * INTERVAL '1 millisecond') AS first_start, max(time) AS last_end
    FROM {http} WHERE {where} GROUP BY 1, 2, 3, 4, 5"""
OVER_TIME = """
    SELECT {bucket} AS start, status = %(ws)s AS ws, elapsed, count(*) AS n,
           count(*) FILTER (WHERE status >= 500) AS e5
    FROM {http} WHERE {where} GROUP BY 1, 2, 3"""
ENDPOINTS = """
    SELECT worker_route COLLATE "C" AS route, method COLLATE "C" AS method,
           path COLLATE "C" AS path, elapsed, count(*) AS n,
           count(*) FILTER (WHERE status >= 500) AS e5
    FROM {http} WHERE {where} AND status <> %(ws)s GROUP BY 1, 2, 3, 4"""
CLIENTS = """
    SELECT count(*) AS distinct_clients
    FROM (SELECT DISTINCT ip_addr FROM {http} WHERE {where} AND ip_addr IS NOT NULL) c"""
# Peak concurrency: each HTTP row is in progress over [time - elapsed, time). Its start
# and end become one integer each, microseconds * 2 (+1 for a start), so one sort puts
# an end before a start at the same instant (touching requests do not overlap) and the
# running sum of +1/-1 is the number in progress. A row with elapsed 0 is in progress
# for no time and is left out.
PEAK = """
    SELECT running AS peak_concurrency, ev FROM (
        SELECT ev, sum(CASE WHEN ev %% 2 = 1 THEN 1 ELSE -1 END)
                   OVER (ORDER BY ev ROWS UNBOUNDED PRECEDING) AS running
        FROM (SELECT (date_part('epoch', time) * 1e6)::int8 * 2 - elapsed * 2000 + 1 AS ev
              FROM {http} WHERE {where} AND status <> %(ws)s AND elapsed > 0
              UNION ALL
              SELECT (date_part('epoch', time) * 1e6)::int8 * 2
              FROM {http} WHERE {where} AND status <> %(ws)s AND elapsed > 0) e) r
    ORDER BY running DESC, ev LIMIT 1"""
LOG_COLUMNS = """
    SELECT array_agg(attname::text) AS names FROM pg_attribute
    WHERE attrelid = to_regclass('faucet_log_events') AND attnum > 0 AND NOT attisdropped"""
# Every worker_exit in the window, with what that worker served in the minute before it:
# its HTTP rows (same route and worker, same namespace) whose time is in (exit - 60 s, exit].
CRASHES = """
    SELECT l.time, x.worker_route AS route, x.worker_id,
           (l.body ->> 'returncode')::int AS returncode,
           (l.body ->> 'uptime')::float8 AS uptime_seconds,
           l.body ->> 'status' AS exit_status,
           l.body -> 'stderr_tail' ->> -1 AS last_stderr,
           b.requests AS requests_before, b.errors_5xx AS errors_5xx_before,
           b.slowest_path, b.slowest_ms
    FROM {log} l
    CROSS JOIN LATERAL (SELECT {columns}) x
    LEFT JOIN LATERAL (
        SELECT count(*) AS requests,
               count(*) FILTER (WHERE h.status >= 500) AS errors_5xx,
               (array_agg(h.path ORDER BY h.elapsed DESC, h.time))[1] AS slowest_path,
               max(h.elapsed) AS slowest_ms
        FROM {http} h
        WHERE h.time > l.time - %(lookback)s AND h.time <= l.time
          AND h.status <> %(ws)s AND h.worker_id = x.worker_id
          AND h.worker_route IS NOT DISTINCT FROM x.worker_route
          AND h.namespace IS NOT DISTINCT FROM l.namespace) b ON true
    WHERE {log_where} AND l.event_type = 'worker_exit'
    ORDER BY l.time"""
LIFECYCLE = """
    SELECT x.worker_route AS route, x.worker_id,
           count(*) FILTER (WHERE l.event_type = 'worker_exit') AS exits,
           count(*) FILTER (WHERE l.event_type = 'worker_restart') AS restarts
    FROM {log} l CROSS JOIN LATERAL (SELECT {columns}) x
    WHERE {log_where} AND l.event_type IN ('worker_exit', 'worker_restart')
    GROUP BY 1, 2"""


class _Reader:
    """One connection's share of a report, inside its read-only transaction."""

    def __init__(self, conn: psycopg.Connection, spec: ReportSpec) -> None:
        self.conn = conn
        self.spec = spec
        self.where, self.params = _filters(spec)
        self.params |= {"ws": WEBSOCKET_STATUS,
                        "lookback": datetime.timedelta(seconds=CRASH_LOOKBACK)}

    def rows(self, query: str, **fields: sql.Composable) -> list[dict[str, Any]]:
        fields = {"http": HTTP, "log": LOG, "where": self.where, **fields}
        return self.conn.execute(sql.SQL(query).format(**fields), self.params).fetchall()

    def one(self, query: str, **fields: sql.Composable) -> dict[str, Any] | None:
        found = self.rows(query, **fields)
        return found[0] if found else None

    def peak(self) -> dict[str, Any]:
        """Peak concurrency and the instant it was first reached (UTC)."""
        row = self.one(PEAK)
        if row is None:
            return {"peak_concurrency": 0, "peak_at": None}
        micros = (row["ev"] - 1) // 2
        at = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            microseconds=micros)
        return {"peak_concurrency": int(row["peak_concurrency"]), "peak_at": at}

    def log_events(self) -> dict[str, Any] | None:
        """Crashes and exits/restarts per worker; None without faucet_log_events."""
        found = self.one(LOG_COLUMNS)
        if not found or not found["names"]:
            return None
        columns = set(found["names"])
        fields = {"columns": _worker_columns(columns), "log_where": self._log_where(columns)}
        return {"crashes": self.rows(CRASHES, **fields),
                "lifecycle": self.rows(LIFECYCLE, **fields)}

    def _log_where(self, columns: set[str]) -> sql.Composable:
        """The filters on faucet_log_events ``l``; by route only if it has the column
        (the Rust server's table has not: then a route filter keeps nothing)."""
        where, _params = _filters(self.spec, alias="l", route=False)
        if self.spec.route is not None:
            where = sql.SQL("{} AND {}").format(where, sql.SQL(
                "l.worker_route = %(worker_route)s" if "worker_route" in columns else "false"))
        return where


def _worker_columns(columns: set[str]) -> sql.Composable:
    """``worker_route, worker_id`` of ``l``, NULL where the table lacks them."""
    return sql.SQL(", ").join(
        sql.SQL(f"l.{name}" if name in columns else f"NULL::{kind}") + sql.SQL(f" AS {name}")
        for name, kind in (("worker_route", "text"), ("worker_id", "int")))


def read_report(settings: ConnectionSettings, spec: ReportSpec) -> dict[str, Any]:
    """The report (see docs/insight.md for each key). ReportUnavailable when the database
    cannot be read.

    Two connections share one snapshot (``pg_export_snapshot``), so every figure describes
    the same rows while the concurrency sweep, the costliest query, runs beside the rest.
    """
    where = settings.describe()
    try:
        with _transaction(settings, spec, None) as (main, snapshot), \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            side = pool.submit(_side, settings, spec, snapshot)
            found = {
                "main": main.rows(MAIN),
                # Grouped here, while the other connection is still at work.
                "endpoints": group_endpoints(main.rows(ENDPOINTS)),
                "log_events": main.log_events(),
                "usage": main.one(CLIENTS),
            }
            found |= side.result()
    except psycopg.errors.UndefinedTable:
        raise ReportUnavailable(
            f"no table faucet_http_events in {where} (looked up through search_path); "
            "create it with `faucet telemetry init`, or point --telemetry-postgres-string "
            "at the database faucet writes to") from None
    except psycopg.errors.QueryCanceled:
        raise ReportUnavailable(
            f"a report query on {where} ran past telemetry.statement_timeout; narrow the "
            "window (--since, --from/--to) or allow more with "
            "--telemetry-statement-timeout SECONDS") from None
    except psycopg.Error as exc:
        raise ReportUnavailable(f"reading telemetry from {where}: {error_text(exc)}") from None
    return build_report(spec, found)


def _side(settings: ConnectionSettings, spec: ReportSpec, snapshot: str) -> dict[str, Any]:
    with _transaction(settings, spec, snapshot) as (side, _snapshot):
        timescale = side.one("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        bucket = bucket_expression(spec.bucket_seconds, timescale is not None)
        return {"timescaledb": timescale and timescale["extversion"],
                "over_time": side.rows(OVER_TIME, bucket=bucket),
                "capacity": side.peak()}


@contextlib.contextmanager
def _transaction(settings: ConnectionSettings, spec: ReportSpec,
                 snapshot: str | None) -> Iterator[tuple[_Reader, str]]:
    """A connection in a read-only repeatable-read transaction, as a ``_Reader`` with its
    snapshot's id; given a ``snapshot``, it sees exactly that one."""
    with settings.connect() as conn:
        conn.row_factory = dict_row
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            if snapshot:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                    sql.Literal(snapshot)))
            else:
                snapshot = conn.execute("SELECT pg_export_snapshot() AS s").fetchone()["s"]
            conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            conn.execute("SET LOCAL jit = off")  # compiling costs more than it saves here
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            yield _Reader(conn, spec), snapshot
