"""``faucet report`` as text for a terminal (at most 100 columns, sparklines for the
figures over time, colour only on a TTY) and as JSON. Both are drawn from the report dict
``report_sections.build_report`` makes.

Pure: the caller passes the write function and says whether colour is wanted.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from faucet.telemetry.report_spec import CRASH_LOOKBACK, SLOW_MIN_CALLS, iso

WIDTH = 100
BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60
MAX_CRASHES = 20  # listed in the text report


def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH) -> str:
    """One block per value (``values`` longer than ``width`` are merged by their maximum),
    scaled from 0 to the largest; None (no data) is a space."""
    if len(values) > width:
        step = len(values) / width
        values = [_max(values[int(i * step):int((i + 1) * step)]) for i in range(width)]
    top = max((v for v in values if v is not None), default=0)
    if not top:
        return "".join(" " if v is None else BLOCKS[0] for v in values)
    return "".join(" " if v is None else BLOCKS[min(len(BLOCKS) - 1, int(v / top * len(BLOCKS)))]
                   for v in values)


def _max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def to_json(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report with times as ISO 8601 strings (UTC, Z): what ``--json`` prints."""
    return json.loads(json.dumps(report, default=_json_value))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return iso(value)
    raise TypeError(f"not JSON: {value!r}")


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def duration(seconds: float | None) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, ``3.0 d``."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size * 1.5:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def worker_name(route: str | None, worker_id: int | None) -> str:
    name = f"Worker::{worker_id}" if worker_id is not None else "(no worker)"
    return f"{route} {name}" if route else name


def endpoint_name(entry: Mapping[str, Any]) -> str:
    route = (entry["route"] or "").rstrip("/")
    return f"{entry['method']} {route}{entry['path']}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class _Text:
    def __init__(self, write: Callable[[str], Any], color: bool) -> None:
        self.write, self.color = write, color

    def line(self, text: str = "") -> None:
        self.write(_clip(text, WIDTH) + "\n")

    def heading(self, text: str) -> None:
        self.write("\n")
        if self.color:
            self.write(f"\x1b[1m{_clip(text, WIDTH)}\x1b[0m\n")
        else:
            self.line(text)
            self.line("-" * len(text))

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]], first: int) -> None:
        """Columns right-aligned but the first (``first`` wide at most, clipped)."""
        rows = [list(row) for row in rows]
        if not rows:
            self.line("  (none)")
            return
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        widths[0] = min(widths[0], first)
        for row in [header, *rows]:
            cells = [_clip(str(row[0]), widths[0]).ljust(widths[0])]
            cells += [str(cell).rjust(width) for cell, width in zip(row[1:], widths[1:],
                                                                    strict=True)]
            self.line("  " + "  ".join(cells).rstrip())


def render_text(report: Mapping[str, Any], write: Callable[[str], Any], *,
                color: bool = False) -> None:
    """The whole report, line by line, through ``write``."""
    out = _Text(write, color)
    spec, health = report["report"], report["health"]
    filters = ", ".join(f"{key} {spec[key]}" for key in ("namespace", "version", "route")
                        if spec[key] is not None) or "all namespaces"
    out.line(f"faucet report {spec['from']} .. {spec['to']} ({filters})")
    _health(out, report)
    _over_time(out, report)
    _endpoints(out, report)
    out.heading("Status codes")
    out.table(["status", "count", "share"],
              ([str(s["status"]), number(s["count"]), percent(s["share"])]
               for s in report["status_codes"]), 10)
    _workers(out, report)
    _crashes(out, report)
    _capacity(out, report)
    _usage(out, report)
    if health["requests"] == 0 and report["sessions"]["count"] == 0:
        out.line()
        out.line("No requests in this window: check --since/--from/--to and --namespace "
                 "(the default namespace is telemetry.namespace).")


def _health(out: _Text, report: Mapping[str, Any]) -> None:
    health, spec = report["health"], report["report"]
    gateway = health["gateway_5xx"]
    out.heading("Health")
    out.line(f"  requests   {number(health['requests'])}  "
             f"({number(health['rate_per_second'], 2)}/s over {duration(health['span_seconds'])}"
             " with traffic)")
    out.line(f"  5xx        {number(health['errors_5xx'])} ({percent(health['error_rate'])}): "
             f"app {number(health['app_5xx'])}, 502 {number(gateway['502'])}, "
             f"503 {number(gateway['503'])}, 504 {number(gateway['504'])}; "
             f"answered with no worker {number(health['no_worker_5xx'])}")
    out.line(f"  latency    p50 {number(health['p50_ms'], 1)} ms   p95 "
             f"{number(health['p95_ms'], 1)} ms   p99 {number(health['p99_ms'], 1)} ms   "
             f"max {number(health['max_ms'])} ms")
    apdex = "-" if health["apdex"] is None else f"{health['apdex']:.3f}"
    out.line(f"  Apdex      {apdex} (T = {spec['apdex_t_seconds']:g} s: within T satisfied, "
             "within 4T tolerating, slower or 5xx frustrated)")
    exits = health["worker_exits"]
    out.line("  worker exits  " + (number(exits) if exits is not None
                                    else "unknown (no faucet_log_events table)"))


def _over_time(out: _Text, report: Mapping[str, Any]) -> None:
    buckets = report["over_time"]
    width = report["report"]["bucket_seconds"]
    out.heading(f"Over time ({duration(width)} buckets, {len(buckets)} of them)")
    for label, key, digits in (("requests", "requests", 0), ("5xx", "errors_5xx", 0),
                               ("p95 ms", "p95_ms", 0), ("busy workers", "busy_workers", 2)):
        values = [b[key] for b in buckets]
        peak = _max(values)
        out.line(f"  {label:<13}{sparkline(values)}  max {number(peak, digits)}")
    if buckets:
        out.line(f"  {'':<13}{iso(buckets[0]['start'])} .. {iso(buckets[-1]['start'])}")


def _endpoints(out: _Text, report: Mapping[str, Any]) -> None:
    header = ["endpoint", "calls", "time", "p50 ms", "p95 ms", "max ms", "5xx"]

    def rows(entries):
        return ([endpoint_name(e), number(e["calls"]), percent(e["share"]),
                 number(e["p50_ms"], 1), number(e["p95_ms"], 1), number(e["max_ms"]),
                 number(e["errors_5xx"])] for e in entries)

    out.heading("Endpoints by total time (digits -> :id, UUIDs -> :uuid)")
    out.table(header, rows(report["endpoints"]), 50)
    out.heading(f"Slowest endpoints by p95 (at least {SLOW_MIN_CALLS} calls)")
    out.table(header, rows(report["slowest"]), 50)


def _workers(out: _Text, report: Mapping[str, Any]) -> None:
    span = report["health"]["span_seconds"]
    out.heading("Workers")
    out.table(["worker", "requests", "share", "busy s", "busy", "p95 ms", "5xx", "exits",
               "restarts"],
              ([worker_name(w["route"], w["worker_id"]), number(w["requests"]),
                percent(w["share"]), number(w["busy_seconds"], 1),
                percent(w["busy_seconds"] / span if span else None), number(w["p95_ms"], 1),
                number(w["errors_5xx"]), number(w["exits"]), number(w["restarts"])]
               for w in report["workers"]), 40)


def _crashes(out: _Text, report: Mapping[str, Any]) -> None:
    crashes = report["crashes"]
    out.heading("Crashes (worker exits)")
    if crashes is None:
        out.line("  not available: no faucet_log_events table (`faucet telemetry init` "
                 "creates it; faucet then records each worker's exit)")
        return
    if not crashes:
        out.line("  none")
        return
    if len(crashes) > MAX_CRASHES:
        out.line(f"  {len(crashes)} exits; the last {MAX_CRASHES} (--json lists all):")
    for crash in crashes[-MAX_CRASHES:]:
        out.line(f"  {iso(crash['time'])}  {worker_name(crash['route'], crash['worker_id'])}  "
                 f"{crash['exit_status'] or 'exit'} (return code {crash['returncode']}) after "
                 f"{duration(crash['uptime_seconds'])}")
        out.line(f"      last stderr: {crash['last_stderr'] or '(none)'}")
        slowest = (f"; slowest {crash['slowest_path']} {number(crash['slowest_ms'])} ms"
                   if crash["slowest_path"] else "")
        out.line(f"      in the {CRASH_LOOKBACK} s before: {number(crash['requests_before'])} "
                 f"requests, {number(crash['errors_5xx_before'])} 5xx{slowest}")


def _capacity(out: _Text, report: Mapping[str, Any]) -> None:
    capacity = report["capacity"]
    out.heading("Capacity")
    out.line(f"  peak concurrency  {capacity['peak_concurrency']} requests in progress at "
             f"{iso(capacity['peak_at']) or '-'}")
    out.line(f"  busy workers      {number(capacity['mean_busy_workers'], 2)} on average, of "
             f"{capacity['workers_seen']} workers that served requests")


def _usage(out: _Text, report: Mapping[str, Any]) -> None:
    sessions, usage = report["sessions"], report["usage"]
    out.heading("Usage")
    out.line(f"  distinct clients  {number(usage['distinct_clients'])}")
    out.line(f"  WebSocket (Shiny) sessions  {number(sessions['count'])}: median "
             f"{duration(sessions['p50_seconds'])}, p90 {duration(sessions['p90_seconds'])}, "
             f"{number(sessions['session_hours'], 1)} session-hours")
    out.heading("Versions")
    out.table(["version", "requests", "5xx", "p50 ms", "p95 ms", "sessions"],
              ([v["version"] or "(none)", number(v["requests"]), percent(v["error_rate"]),
                number(v["p50_ms"], 1), number(v["p95_ms"], 1), number(v["sessions"])]
               for v in report["versions"]), 30)
