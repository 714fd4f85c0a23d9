"""The report's sections, computed from what ``report_query`` read: histogram rows (keys,
``elapsed``, count) and a few finished figures. Every key of ``faucet report --json``
is made here; docs/insight.md says what each one means.

Pure: no I/O, so each figure is tested against hand-counted rows without a database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from faucet.telemetry.report_spec import (
    GATEWAY_STATUSES,
    SLOW_MIN_CALLS,
    WEBSOCKET_STATUS,
    ReportSpec,
    apdex,
    bucket_starts,
    normalise_path,
    ratio,
)
from faucet.telemetry.report_stats import Tally, tally_by

Row = Mapping[str, Any]


def build_report(spec: ReportSpec, found: Mapping[str, Any]) -> dict[str, Any]:
    """``found``: ``main`` and ``over_time`` histogram rows, ``endpoints`` (from
    ``group_endpoints``), ``capacity``
    (peak concurrency and when), ``usage`` (distinct clients), ``log_events`` (None
    without the table, else ``crashes`` and ``lifecycle`` rows), ``timescaledb``."""
    main = found["main"]
    http = [row for row in main if row["status"] != WEBSOCKET_STATUS]
    health = _health(spec, http)
    workers = _workers(http, health["requests"])
    endpoints, slowest = _endpoints(found["endpoints"], health["busy_ms"], spec.top)
    log_events = found["log_events"]
    report = {
        "report": {**spec.describe(), "timescaledb": found.get("timescaledb"),
                   "log_events": log_events is not None},
        "health": health,
        "over_time": _over_time(spec, found["over_time"]),
        "endpoints": endpoints,
        "slowest": slowest,
        "status_codes": _status_codes(main),
        "workers": workers,
        "capacity": {**found["capacity"],
                     "mean_busy_workers": ratio(health["busy_ms"] / 1000,
                                                health["span_seconds"]),
                     "workers_seen": len(workers)},
        "sessions": _sessions([row for row in main if row["status"] == WEBSOCKET_STATUS]),
        "usage": dict(found["usage"] or {"distinct_clients": 0}),
        "versions": _versions(main),
        "crashes": None,
    }
    if log_events is not None:
        report["crashes"] = [dict(row) for row in log_events["crashes"]]
        _add_lifecycle(report, log_events["lifecycle"])
    return report


def _health(spec: ReportSpec, http: Sequence[Row]) -> dict[str, Any]:
    total = Tally()
    satisfied = tolerating = errors_4xx = no_worker = 0
    gateway = Counter({code: 0 for code in GATEWAY_STATUSES})
    limit = spec.apdex_t * 1000
    for row in http:
        n, status, elapsed = row["n"], row["status"], row["elapsed"]
        total.add(elapsed, n, n if status >= 500 else 0)
        if status < 500:
            satisfied += n if elapsed <= limit else 0
            tolerating += n if limit < elapsed <= 4 * limit else 0
        errors_4xx += n if 400 <= status < 500 else 0
        no_worker += n if status >= 500 and row["worker_id"] is None else 0
        if status in gateway:
            gateway[status] += n
    p50, p95, p99 = total.percentiles(0.5, 0.95, 0.99)
    first = min((row["first_start"] for row in http), default=None)
    last = max((row["last_end"] for row in http), default=None)
    span = _span(spec, first, last)
    return {
        "requests": total.requests, "rate_per_second": ratio(total.requests, span),
        "errors_5xx": total.errors_5xx, "error_rate": ratio(total.errors_5xx, total.requests),
        "gateway_5xx": {str(code): count for code, count in gateway.items()},
        "no_worker_5xx": no_worker,
        "app_5xx": total.errors_5xx - sum(gateway.values()),
        "errors_4xx": errors_4xx,
        "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": total.max_ms,
        "apdex": apdex(satisfied, tolerating, total.requests),
        "busy_ms": total.busy_ms, "first_start": first, "last_end": last,
        "span_seconds": span,
        "worker_exits": None,  # from faucet_log_events, when it exists
    }  # fmt: skip


def _span(spec: ReportSpec, first, last) -> float:
    """Seconds of the window that had traffic: from the first request's start to the
    last one's end, within the window (at least 1 s). Rates and utilisation use it, so a
    24-hour report of a server that started an hour ago does not dilute them."""
    if first is None or last is None:
        return spec.window.seconds
    start, end = max(first, spec.window.start), min(last, spec.window.end)
    return max(1.0, (end - start).total_seconds())


def _over_time(spec: ReportSpec, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per bucket: requests, 5xx, p95, busy workers (each request's time counted in the
    bucket it ended in, over the bucket's length) and WebSocket sessions that ended."""
    width = spec.bucket_seconds
    tallies = tally_by(rows, lambda row: row["start"], errors="e5",
                       keep=lambda row: not row["ws"])
    sessions = Counter()
    for row in rows:
        if row["ws"]:
            sessions[row["start"]] += row["n"]
    buckets = []
    for start in bucket_starts(spec.window, width):
        tally = tallies.get(start) or Tally()
        buckets.append({"start": start, "requests": tally.requests,
                        "errors_5xx": tally.errors_5xx, "p95_ms": tally.percentiles(0.95)[0],
                        "busy_workers": tally.busy_ms / 1000 / width,
                        "sessions_ended": sessions[start]})
    return buckets


def group_endpoints(rows: Iterable[Row]) -> dict[tuple, Tally]:
    """One ``Tally`` per route, method and normalised path, from histogram rows (one per
    distinct path and elapsed: hundreds of thousands when paths carry ids)."""
    tallies: dict[tuple, Tally] = {}
    for row in rows:
        key = (row["route"], row["method"], normalise_path(row["path"]))
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = Tally()
        tally.add(row["elapsed"], row["n"], row["e5"])
    return tallies


def _endpoints(tallies: Mapping[tuple, Tally], total_ms: int,
               top: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``top`` endpoints by total time, and the ``top`` by p95 among those called at
    least ``SLOW_MIN_CALLS`` times."""
    entries = []
    for (route, method, path), tally in tallies.items():
        p50, p95 = tally.percentiles(0.5, 0.95)
        entries.append({"route": route, "method": method, "path": path,
                        "calls": tally.requests, "total_ms": tally.busy_ms,
                        "share": ratio(tally.busy_ms, total_ms), "p50_ms": p50, "p95_ms": p95,
                        "max_ms": tally.max_ms, "errors_5xx": tally.errors_5xx})
    name = lambda e: (e["route"] or "", e["method"], e["path"])  # noqa: E731
    by_total = sorted(entries, key=lambda e: (-e["total_ms"], -e["calls"], name(e)))
    busy = [e for e in entries if e["calls"] >= SLOW_MIN_CALLS]
    by_p95 = sorted(busy, key=lambda e: (-e["p95_ms"], -e["total_ms"], name(e)))
    return by_total[:top], by_p95[:top]


def _status_codes(rows: Sequence[Row]) -> list[dict[str, Any]]:
    counts = Counter()
    for row in rows:
        counts[row["status"]] += row["n"]
    total = sum(counts.values())
    return [{"status": status, "count": count, "share": ratio(count, total)}
            for status, count in sorted(counts.items())]


def _workers(http: Sequence[Row], requests: int) -> list[dict[str, Any]]:
    """Per worker (route and id); requests faucet answered without a worker are not here
    (they are health's ``no_worker_5xx``)."""
    tallies = tally_by(http, lambda row: (row["route"], row["worker_id"]),
                       keep=lambda row: row["worker_id"] is not None)
    return [{"route": route, "worker_id": worker_id, "requests": tally.requests,
             "share": ratio(tally.requests, requests), "busy_seconds": tally.busy_ms / 1000,
             "p95_ms": tally.percentiles(0.95)[0], "errors_5xx": tally.errors_5xx,
             "exits": None, "restarts": None}
            for (route, worker_id), tally in sorted(tallies.items(), key=_worker_order)]


def _worker_order(item) -> tuple:
    (route, worker_id), _tally = item
    return route is not None, route or "", worker_id or 0


def _sessions(ws: Sequence[Row]) -> dict[str, Any]:
    """WebSocket sessions (Shiny's among them): rows with status 101, ``elapsed`` their
    length."""
    tally = tally_by(ws, lambda row: None).get(None) or Tally()
    p50, p90 = tally.percentiles(0.5, 0.9)
    return {"count": tally.requests,
            "p50_seconds": p50 / 1000 if p50 is not None else None,
            "p90_seconds": p90 / 1000 if p90 is not None else None,
            "session_hours": tally.busy_ms / 3_600_000}


def _versions(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Each version side by side (HTTP figures, and its WebSocket sessions)."""
    http = tally_by(rows, lambda row: row["version"],
                    keep=lambda row: row["status"] != WEBSOCKET_STATUS)
    sessions = Counter()
    first: dict[Any, Any] = {}
    for row in rows:
        version = row["version"]
        if row["status"] == WEBSOCKET_STATUS:
            sessions[version] += row["n"]
        if version not in first or row["last_end"] < first[version]:
            first[version] = row["last_end"]
    result = []
    for version in sorted(first, key=lambda v: (first[v], v or "")):
        tally = http.get(version) or Tally()
        p50, p95 = tally.percentiles(0.5, 0.95)
        result.append({"version": version, "requests": tally.requests,
                       "errors_5xx": tally.errors_5xx,
                       "error_rate": ratio(tally.errors_5xx, tally.requests),
                       "p50_ms": p50, "p95_ms": p95, "sessions": sessions[version]})
    return result


def _add_lifecycle(report: dict[str, Any], lifecycle: Sequence[Row]) -> None:
    """Exits and restarts per worker into ``workers`` (a worker that exited without
    serving a request gets a row of its own) and the total into ``health``."""
    by_worker = {(row["route"], row["worker_id"]): row for row in lifecycle}
    workers = report["workers"]
    for worker in workers:
        found = by_worker.pop((worker["route"], worker["worker_id"]), None)
        worker["exits"] = found["exits"] if found else 0
        worker["restarts"] = found["restarts"] if found else 0
    for (route, worker_id), row in by_worker.items():
        workers.append({"route": route, "worker_id": worker_id, "requests": 0, "share": 0.0,
                        "busy_seconds": 0.0, "p95_ms": None, "errors_5xx": 0,
                        "exits": row["exits"], "restarts": row["restarts"]})
    workers.sort(key=lambda w: (w["route"] is not None, w["route"] or "", w["worker_id"] or 0))
    report["health"]["worker_exits"] = sum(row["exits"] for row in lifecycle)
