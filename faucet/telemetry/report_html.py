"""``faucet report --html FILE``: one self-contained page (uPlot's script and style inlined
from faucet/static, the data embedded as JSON), so it opens anywhere without a network
and can be mailed or archived as one file. Each section says in a sentence what it shows,
for readers who have never seen faucet.

Pure apart from reading the packaged uPlot files.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from faucet.telemetry.report_render import (
    duration,
    endpoint_name,
    number,
    percent,
    to_json,
    worker_name,
)
from faucet.telemetry.report_spec import CRASH_LOOKBACK, SLOW_MIN_CALLS, iso

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; font-size: 1.25em; }
p.note { color: #555; max-width: 60em; margin-top: .2em; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.card b { display: block; font-size: 1.4em; }
table { border-collapse: collapse; margin-top: .5em; }
th, td { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f6; }
td.path { font-family: ui-monospace, monospace; max-width: 36em; overflow-wrap: anywhere; }
td { max-width: 28em; overflow-wrap: anywhere; }
.chart { margin: 1em 0; }
"""

SCRIPT = """
const data = JSON.parse(document.getElementById('report-data').textContent);
const t = data.over_time.map(b => Date.parse(b.start) / 1000);
const width = Math.min(1000, document.documentElement.clientWidth - 60);
function chart(id, title, series, values, extra) {
  const opts = { title, width, height: 220, series: [{}].concat(series),
                 tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
                 axes: [{}, { size: 60 }], ...(extra || {}) };
  new uPlot(opts, [t].concat(values), document.getElementById(id));
}
chart('chart-requests', 'Requests and 5xx per bucket',
      [{ label: 'requests', stroke: '#2b6cb0', fill: 'rgba(43,108,176,.1)' },
       { label: '5xx', stroke: '#c53030' }],
      [data.over_time.map(b => b.requests), data.over_time.map(b => b.errors_5xx)]);
chart('chart-latency', 'p95 latency per bucket (ms)',
      [{ label: 'p95 ms', stroke: '#6b46c1' }], [data.over_time.map(b => b.p95_ms)]);
chart('chart-busy', 'Busy workers per bucket (mean)',
      [{ label: 'busy workers', stroke: '#2f855a', fill: 'rgba(47,133,90,.1)' },
       { label: 'workers', stroke: '#999', dash: [4, 4] }],
      [data.over_time.map(b => b.busy_workers),
       data.over_time.map(() => data.capacity.workers_seen)]);
"""


def _static(name: str) -> str:
    return resources.files("faucet").joinpath(f"static/{name}").read_text()


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], code_first: bool = False) -> str:
    rows = list(rows)
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [f"<td{' class=path' if code_first and i == 0 else ''}>"
                 f"{html.escape(str(cell))}</td>" for i, cell in enumerate(row)]
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _card(label: str, value: str) -> str:
    return f'<div class="card">{html.escape(label)}<b>{html.escape(value)}</b></div>'


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page as a string."""
    spec, health, capacity = report["report"], report["health"], report["capacity"]
    sessions, e = report["sessions"], html.escape
    filters = ", ".join(f"{key} {spec[key]}" for key in ("namespace", "version", "route")
                        if spec[key] is not None) or "all namespaces"
    endpoint_header = ["endpoint", "calls", "share of time", "p50 ms", "p95 ms", "max ms", "5xx"]

    def endpoint_rows(entries):
        return ([endpoint_name(x), number(x["calls"]), percent(x["share"]),
                 number(x["p50_ms"], 1), number(x["p95_ms"], 1), number(x["max_ms"]),
                 number(x["errors_5xx"])] for x in entries)

    span = health["span_seconds"]
    crashes = report["crashes"]
    if crashes is None:
        crash_html = ("<p>Not available: the database has no <code>faucet_log_events</code> "
                      "table, where faucet records each worker's exit.</p>")
    else:
        crash_html = _table(
            ["time", "worker", "exit", "uptime", "last stderr line",
             f"requests in {CRASH_LOOKBACK} s before", "5xx", "slowest path"],
            ([iso(c["time"]), worker_name(c["route"], c["worker_id"]),
              f"{c['exit_status'] or ''} (code {c['returncode']})",
              duration(c["uptime_seconds"]), c["last_stderr"] or "", number(c["requests_before"]),
              number(c["errors_5xx_before"]),
              f"{c['slowest_path']} ({number(c['slowest_ms'])} ms)" if c["slowest_path"] else ""]
             for c in crashes))
    data = json.dumps(to_json(report)).replace("<", "\\u003c")
    gateway = health["gateway_5xx"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>faucet report {e(spec['from'])} to {e(spec['to'])}</title>",
        f"<style>{_static('uplot.min.css')}{STYLE}</style></head><body>",
        f"<h1>Traffic report: {e(spec['from'])} to {e(spec['to'])}</h1>",
        f"<p class=note>{e(filters)}. faucet runs R web apps (Plumber APIs, Shiny apps) as a "
        "pool of R processes, the <em>workers</em>, behind one web server, and records every "
        "request: which worker answered, with what status, after how long. This page sums "
        "those records up. Times are UTC.</p>",
        "<h2>Health</h2><div class=cards>",
        _card("requests", number(health["requests"])),
        _card("per second", number(health["rate_per_second"], 2)),
        _card("server errors (5xx)", f"{number(health['errors_5xx'])} "
                                     f"({percent(health['error_rate'])})"),
        _card("median", f"{number(health['p50_ms'], 1)} ms"),
        _card("p95", f"{number(health['p95_ms'], 1)} ms"),
        _card("p99", f"{number(health['p99_ms'], 1)} ms"),
        _card("Apdex", "-" if health["apdex"] is None else f"{health['apdex']:.3f}"),
        _card("worker exits", "unknown" if health["worker_exits"] is None
              else number(health["worker_exits"])),
        "</div>",
        f"<p class=note>p95 means 95% of requests took at most that long. Apdex (0 to 1) "
        f"counts a request answered within {spec['apdex_t_seconds']:g} s as satisfied, "
        "within four times that as half, anything slower or failed as zero. Of the 5xx, "
        f"{number(health['app_5xx'])} came from the app; 502 ({number(gateway['502'])}), "
        f"503 ({number(gateway['503'])}) and 504 ({number(gateway['504'])}) are what faucet "
        "answers when a worker breaks off, none is free in time, or one does not answer in "
        f"time ({number(health['no_worker_5xx'])} were answered with no worker at all). "
        "WebSocket sessions are counted under Usage, not here.</p>",
        f"<h2>Over time</h2><p class=note>Per {duration(spec['bucket_seconds'])} bucket. A "
        "worker busy for the whole bucket counts as one busy worker.</p>",
        "<div class=chart id=chart-requests></div><div class=chart id=chart-latency></div>",
        "<div class=chart id=chart-busy></div>",
        "<h2>Endpoints by total time</h2><p class=note>Where the workers' time went: method "
        "and path, with numeric path segments shown as :id and UUIDs as :uuid.</p>",
        _table(endpoint_header, endpoint_rows(report["endpoints"]), code_first=True),
        f"<h2>Slowest endpoints</h2><p class=note>By p95, among endpoints called at least "
        f"{SLOW_MIN_CALLS} times.</p>",
        _table(endpoint_header, endpoint_rows(report["slowest"]), code_first=True),
        "<h2>Status codes</h2>",
        _table(["status", "count", "share"], ([s["status"], number(s["count"]),
                                              percent(s["share"])]
                                             for s in report["status_codes"])),
        "<h2>Workers</h2><p class=note>Each R process: its requests, the seconds it spent "
        "answering them, that time as a share of the period with traffic, and how often it "
        "exited and was restarted.</p>",
        _table(["worker", "requests", "share", "busy seconds", "utilisation", "p95 ms", "5xx",
                "exits", "restarts"],
               ([worker_name(w["route"], w["worker_id"]), number(w["requests"]),
                 percent(w["share"]), number(w["busy_seconds"], 1),
                 percent(w["busy_seconds"] / span if span else None), number(w["p95_ms"], 1),
                 number(w["errors_5xx"]), number(w["exits"]), number(w["restarts"])]
                for w in report["workers"])),
        f"<h2>Crashes</h2><p class=note>Each time a worker process ended, with what it "
        f"served in the {CRASH_LOOKBACK} seconds before.</p>",
        crash_html,
        "<h2>Capacity</h2>",
        f"<p>At most <b>{capacity['peak_concurrency']}</b> requests were in progress at once, "
        f"first at {e(iso(capacity['peak_at']) or '-')}. On average "
        f"{number(capacity['mean_busy_workers'], 2)} workers were busy, of "
        f"{capacity['workers_seen']} that served requests.</p>",
        "<h2>Usage</h2>",
        f"<p>{number(report['usage']['distinct_clients'])} distinct client addresses. "
        f"{number(sessions['count'])} WebSocket (Shiny) sessions: median length "
        f"{duration(sessions['p50_seconds'])}, 90% shorter than "
        f"{duration(sessions['p90_seconds'])}, {number(sessions['session_hours'], 1)} "
        "session-hours in all.</p>",
        _table(["version", "requests", "5xx rate", "p50 ms", "p95 ms", "sessions"],
               ([v["version"] or "(none)", number(v["requests"]), percent(v["error_rate"]),
                 number(v["p50_ms"], 1), number(v["p95_ms"], 1), number(v["sessions"])]
                for v in report["versions"])),
        f'<script type="application/json" id="report-data">{data}</script>',
        f"<script>{_static('uplot.min.js')}</script><script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
