"""``/__faucet__/metrics`` (Prometheus) and ``/__faucet__/dashboard`` (a live page with its
JSON view): what reads the pool, the sessions and the telemetry pipeline at scrape time,
the dashboard's worker history, and the answers.

Both are shown to whom ``health_details`` allows (loopback clients by default) on the main
port, or, when ``metrics_listen`` is set, to everyone who reaches that address and not on
the main port. ``metrics = false`` turns both off (and the per-request counting with them).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from importlib import resources

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from faucet.config.settings import Config
from faucet.http.asgi import respond
from faucet.http.request import Request
from faucet.pool.backend import Backend
from faucet.proxy.mount import Mount
from faucet.proxy.shiny.session_host import SessionHost
from faucet.telemetry.metrics import BuildInfo, RequestMetrics, TelemetryCollector, Timeline
from faucet.telemetry.recorder import Recorder

log = logging.getLogger("faucet.insight")

METRICS_PATH = "/__faucet__/metrics"
DASHBOARD_PATH = "/__faucet__/dashboard"
DASHBOARD_JSON_PATH = "/__faucet__/dashboard.json"
INSIGHT_PATHS = frozenset({METRICS_PATH, DASHBOARD_PATH, DASHBOARD_JSON_PATH})
RECENT_EVENTS = 50  # worker events the dashboard lists
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def process_usage(pid: int) -> tuple[int, float] | None:
    """(resident bytes, CPU seconds used) of process ``pid`` from /proc; None when it is
    gone or /proc has no such file (not Linux). Only that process: an R worker's own
    children are not counted."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command's closing parenthesis: state is field 0, utime 11, stime 12, rss 21.
    return int(fields[21]) * PAGE_SIZE, (int(fields[11]) + int(fields[12])) / TICKS


def _label(route: str | None) -> str:
    return route or ""


class WorkerHistory:
    """Every worker's recent life for the dashboard, told by each ``Backend``'s
    ``on_event``: when its process started, CPU use over the last step, and the last
    ``RECENT_EVENTS`` changes of all workers. Start durations go to ``metrics``."""

    def __init__(self, metrics: RequestMetrics | None):
        self.metrics = metrics
        self.spawned: dict[Backend, tuple[float, float]] = {}  # (monotonic, wall clock)
        self.events: deque[dict] = deque(maxlen=RECENT_EVENTS)
        self.usage: dict[Backend, tuple[int, float, float]] = {}  # rss, cpu s, cpu share

    def watch(self, backends: Iterable[Backend]) -> None:
        for backend in backends:
            backend.on_event = self.tell

    def tell(self, backend: Backend, change: str, detail: str | None) -> None:
        if change == "spawned":
            self.spawned[backend] = (time.monotonic(), time.time())
            self.usage.pop(backend, None)
        elif change == "online" and backend in self.spawned and self.metrics is not None:
            self.metrics.worker_started(_label(backend.route),
                                        time.monotonic() - self.spawned[backend][0])
        elif change in ("exited", "stopped"):
            self.spawned.pop(backend, None)
            self.usage.pop(backend, None)
        self.events.append({"t": time.time(), "route": backend.route,
                            "worker": backend.worker_id, "event": change, "detail": detail,
                            "pid": backend.pid})

    def sample(self, backends: Iterable[Backend], seconds: float) -> None:
        """Read each running worker's memory and CPU (the share of one core it used over
        the last ``seconds``)."""
        for backend in backends:
            if backend.pid is None or backend not in self.spawned:
                continue
            usage = process_usage(backend.pid)
            if usage is None:
                continue
            rss, cpu = usage
            before = self.usage.get(backend)
            share = (cpu - before[1]) / seconds if before is not None and seconds > 0 else 0.0
            self.usage[backend] = (rss, cpu, max(share, 0.0))

    def row(self, backend: Backend, now: float) -> dict:
        """The dashboard's worker table row."""
        spawned = self.spawned.get(backend)
        usage = self.usage.get(backend)
        return {**backend.state(),
                "uptime": now - spawned[1] if spawned and backend.pid is not None else None,
                "rss": usage[0] if usage else None,
                "cpu": usage[2] if usage else None}


class PoolCollector:
    """Gauges that mirror the pool's state, read when scraped (never updated per request)."""

    def __init__(self, mounts: Sequence[Mount], sessions: SessionHost | None):
        self.mounts = mounts
        self.sessions = sessions

    def collect(self) -> Iterable[Metric]:
        worker = ["route", "worker"]
        inflight = GaugeMetricFamily("faucet_http_requests_in_flight",
                                     "Requests a worker has now", labels=worker)
        up = GaugeMetricFamily("faucet_worker_up", "1 while a worker takes requests",
                               labels=worker)
        restarts = CounterMetricFamily("faucet_worker_restarts",
                                       "Times a worker's process was restarted", labels=worker)
        rss = GaugeMetricFamily("faucet_worker_resident_memory_bytes",
                                "A worker process's resident memory", labels=worker)
        cpu = CounterMetricFamily("faucet_worker_cpu_seconds", "CPU time of a worker's "
                                  "current process (starts again at a restart)", labels=worker)
        queued = GaugeMetricFamily("faucet_http_requests_queued",
                                   "Requests waiting for a worker", labels=["route"])
        websockets = GaugeMetricFamily("faucet_websocket_sessions",
                                       "Open WebSocket sessions (Shiny's included)",
                                       labels=["route"])
        for mount in self.mounts:
            route = _label(mount.route)
            queued.add_metric([route], mount.dispatcher.queued())
            websockets.add_metric([route], sum(b.sessions for b in mount.every_backend()))
            for backend in mount.every_backend():
                labels = [route, str(backend.worker_id)]
                inflight.add_metric(labels, backend.inflight)
                up.add_metric(labels, 1 if backend.online else 0)
                restarts.add_metric(labels, backend.restarts)
                usage = process_usage(backend.pid) if backend.pid is not None else None
                if usage is not None:
                    rss.add_metric(labels, usage[0])
                    cpu.add_metric(labels, usage[1])
        yield from (inflight, up, restarts, rss, cpu, queued, websockets)
        if self.sessions is not None:
            yield self._shiny()

    def _shiny(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "faucet_shiny_sessions", "Shiny sessions faucet holds: connected, or waiting "
            "for their page to reconnect", labels=["route", "state"])
        counts = {(_label(m.route), state): 0 for m in self.mounts if m.session_app
                  for state in ("connected", "waiting")}
        for live in self.sessions.registry:
            key = (_label(live.state.backend.route), "connected" if live.attached else "waiting")
            counts[key] = counts.get(key, 0) + 1
        for labels, count in sorted(counts.items()):
            family.add_metric(list(labels), count)
        return family


class Insight:
    """The metrics registry, the dashboard's timeline and worker history, and the answers
    to both endpoints."""

    def __init__(self, mounts: Sequence[Mount], recorder: Recorder,
                 sessions: SessionHost | None, version: str):
        self.mounts = list(mounts)
        self.recorder = recorder
        self.sessions = sessions
        self.metrics = RequestMetrics(Timeline())
        self.workers = WorkerHistory(self.metrics)
        self.workers.watch(self.backends)
        self.registry = CollectorRegistry(auto_describe=False)
        self.pool = PoolCollector(self.mounts, sessions)
        for collector in (self.metrics, self.pool,
                          TelemetryCollector(recorder.statistics), BuildInfo(version)):
            self.registry.register(collector)
        self.page = dashboard_page()

    @property
    def backends(self) -> list[Backend]:
        """Every worker, those a reload is draining included."""
        return [b for m in self.mounts for b in m.every_backend()]

    def install(self, mounts: Sequence[Mount]) -> None:
        """A reload's apps (faucet.lifecycle.deploy): what the metrics and the dashboard read."""
        self.mounts = self.pool.mounts = list(mounts)

    # -- the dashboard's clock ---------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Close a timeline step every ``step`` seconds (on the wall clock's multiples of
        it, so rows line up across restarts) until cancelled."""
        timeline = self.metrics.timeline
        step = timeline.step
        due = (time.time() // step + 1) * step
        task_status.started()
        while True:
            await trio.sleep(max(due - time.time(), 0))
            self.workers.sample(self.backends, step)
            timeline.close(due, self.gauges())
            due += step
            if due < time.time():  # the loop fell behind (a suspended process): skip ahead
                due = (time.time() // step + 1) * step

    def gauges(self) -> dict:
        """The pool's state now, as a timeline row carries it."""
        sessions = self.sessions.statistics() if self.sessions is not None else None
        return {"in_flight": sum(b.inflight for b in self.backends),
                "queued": sum(m.dispatcher.queued() for m in self.mounts),
                "online": sum(b.online for b in self.backends),
                "workers": len(self.backends),
                "shiny_sessions": sessions.live if sessions else 0,
                "websockets": sum(b.sessions for b in self.backends)}

    # -- the answers ---------------------------------------------------------------------

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format the scraper asked for (``Accept``)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def view(self) -> dict:
        """The dashboard's JSON: tiles (the last complete step and the state now), the
        history, the workers and their recent events."""
        now = time.time()
        rows = list(self.metrics.timeline.rows)
        last = rows[-1] if rows else None
        gauges = self.gauges()
        telemetry = self.recorder.statistics()
        return {
            "now": now,
            "step": self.metrics.timeline.step,
            "tiles": {
                "rps": sum(last["rps"].values()) if last else 0.0,
                "errors_5xx": (last["errors_5xx"] / last["requests"]
                               if last and last["requests"] else 0.0),
                "p95": last["p95"] if last else None,
                **gauges,
                "sink": str(telemetry.sink_status),
                "telemetry_queued": telemetry.queued + telemetry.pending,
                "telemetry_dropped": telemetry.dropped,
            },
            "history": rows,
            "workers": [self.workers.row(b, now) for b in self.backends],
            "events": list(reversed(self.workers.events)),
        }

    async def answer(self, request: Request, send) -> int:
        path = request.path
        if path == METRICS_PATH:
            accept = next((v.decode("latin-1") for k, v in request.headers if k == b"accept"),
                          "")
            body, content_type = self.exposition(accept)
            return await respond(send, 200, body, content_type.encode())
        if path == DASHBOARD_JSON_PATH:
            return await respond(send, 200, json.dumps(self.view()).encode(),
                                 b"application/json", extra=[(b"cache-control", b"no-store")])
        return await respond(send, 200, self.page, b"text/html; charset=utf-8",
                             extra=[(b"cache-control", b"no-store")])


def dashboard_page() -> bytes:
    """The dashboard: one HTML page with uPlot's script and styles put inside it."""
    static = resources.files("faucet") / "static"
    page = (static / "dashboard.html").read_text()
    page = page.replace("/*UPLOT_CSS*/", (static / "uplot.min.css").read_text())
    page = page.replace("/*UPLOT_JS*/", (static / "uplot.min.js").read_text())
    return page.encode()


async def answer_insight(insight: Insight | None, request: Request, send, trusted: bool,
                         config: Config) -> int:
    """An insight path on the main port: the answer, or why there is none (404 when off or
    served elsewhere, 403 for a client ``health_details`` does not allow)."""
    if insight is None or config.metrics_listen:
        where = (f"on {config.metrics_listen} (metrics_listen)" if config.metrics_listen
                 else "not at all (metrics = false)")
        return await respond(send, 404, f"Not Found: faucet serves its metrics and "
                             f"dashboard {where}\n".encode())
    if not trusted:
        return await respond(send, 403, f"Forbidden: faucet's metrics and dashboard are not "
                             f"shown to this client (health_details = "
                             f"{config.health_details!r})\n".encode())
    return await insight.answer(request, send)


class InsightApp:
    """What the front door serves on ``metrics_listen``: the insight paths, to everyone
    reaching that address."""

    def __init__(self, insight: Insight):
        self.insight = insight

    async def serve_http(self, request: Request, receive, send) -> None:
        if request.path in INSIGHT_PATHS:
            await self.insight.answer(request, send)
        else:
            await respond(send, 404, b"Not Found: this address serves "
                          + ", ".join(sorted(INSIGHT_PATHS)).encode() + b"\n")

    def refused(self, request: Request, status: int) -> None:
        """The front door answered a bad request itself: nothing to count here."""

    async def __call__(self, scope, receive, send) -> None:
        """ASGI, for what the front door hands to hypercorn (HTTP/2; no WebSockets here)."""
        if scope["type"] == "http":
            await self.serve_http(Request.from_scope(scope), receive, send)
