"""faucet's Prometheus metrics and the dashboard's recent history (pure: no trio, no I/O).

The request path pays for one dict increment and a bisect or two per exchange
(``RequestMetrics.exchange``): counts and histograms are plain numbers here, with no
locks and no label lookups, and become Prometheus metric families only when someone
scrapes (``collect``). What mirrors state that lives elsewhere (workers, queues, the
telemetry pipeline) is read at scrape time by collectors, never updated per request.

Label values are bounded: a route from the configuration, a worker number, one of nine
methods (others become ``OTHER``) and a status code. Never a path, an address or a user
agent.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# Seconds. An R request's tail is long: a model fit or a report can take a minute or two.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0)
# Most requests find a worker at once: the low end matters.
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0)
# A WebSocket connection (a Shiny page) lasts from seconds to a working day.
SESSION_BUCKETS = (1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
                   28800.0)
# From spawn to accepting connections: R takes about half a second, a big app much more.
START_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# The dashboard's percentiles: 1 ms to ~2 min in steps of 25% (an estimate within 12%).
FINE_BUCKETS = tuple(0.001 * 1.25**i for i in range(54))

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                     "PATCH"})
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")

# The dashboard keeps the last 15 minutes in 5-second steps.
STEP = 5.0
KEEP = 180


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


class Histogram:
    """Counts per bucket (``le`` semantics: a value equal to a bound counts in it) and
    their sum; the last count is for values above every bound."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (``le``, values at most that), ending with ``+Inf``."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), total))
        return out

    def quantile(self, q: float) -> float | None:
        """An estimate of the ``q`` quantile: linear within the bucket it falls in (the
        top bucket answers its lower bound); None without values."""
        total = self.count
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                if index == len(self.bounds):
                    return self.bounds[-1]
                low = self.bounds[index - 1] if index else 0.0
                return low + (self.bounds[index] - low) * (rank - seen) / count
            seen += count
        return self.bounds[-1]


def histogram_family(name: str, documentation: str, labels: list[str],
                     histograms: dict[tuple[str, ...], Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in sorted(histograms.items()):
        family.add_metric(list(values), histogram.cumulative(), histogram.sum)
    return family


class Slot:
    """What one dashboard step (``STEP`` seconds) has seen so far."""

    __slots__ = ("classes", "latency")

    def __init__(self) -> None:
        self.classes = [0] * len(STATUS_CLASSES)
        self.latency = Histogram(FINE_BUCKETS)


class Timeline:
    """The dashboard's history: one row per ``step`` seconds, the last ``keep`` of them
    (a bounded ring), and the step being filled."""

    def __init__(self, step: float = STEP, keep: int = KEEP):
        self.step = step
        self.rows: deque[dict] = deque(maxlen=keep)
        self.current = Slot()

    def close(self, at: float, gauges: dict) -> dict:
        """End the current step (``at``: its end, seconds since the epoch) with the
        ``gauges`` sampled now; the row kept."""
        slot, self.current = self.current, Slot()
        rate = {name: count / self.step for name, count in zip(STATUS_CLASSES, slot.classes,
                                                               strict=True)}
        answered = sum(slot.classes)
        row = {
            "t": at,
            "rps": rate,
            "requests": answered,
            "errors_5xx": slot.classes[5],
            "p50": slot.latency.quantile(0.50),
            "p95": slot.latency.quantile(0.95),
            "p99": slot.latency.quantile(0.99),
            **gauges,
        }
        self.rows.append(row)
        return row


class RequestMetrics:
    """Counts and histograms of finished exchanges and worker starts, and the dashboard's
    timeline; ``collect`` makes them metric families (a prometheus_client collector)."""

    def __init__(self, timeline: Timeline | None = None):
        self.timeline = timeline or Timeline()
        # (route, worker, method, code) -> count
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}  # (route, worker)
        self.waits: dict[tuple[str], Histogram] = {}  # (route,)
        self.websockets: dict[tuple[str], Histogram] = {}  # (route,): connection lengths
        self.starts: dict[tuple[str], Histogram] = {}  # (route,): spawn to online

    def exchange(self, route: str, worker: str, method: str, status: int, seconds: float,
                 wait: float | None) -> None:
        """One answered exchange: ``seconds`` from its arrival to its end, ``wait`` of
        them before a worker was chosen (None: it got none). A WebSocket (101) counts
        its connection's length apart, not as a request duration."""
        key = (route, worker, method if method in METHODS else "OTHER", str(status))
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        slot = self.timeline.current
        slot.classes[min(status // 100, 5)] += 1
        if status == 101:
            _histogram(self.websockets, (route,), SESSION_BUCKETS).observe(seconds)
            return
        _histogram(self.durations, (route, worker), DURATION_BUCKETS).observe(seconds)
        slot.latency.observe(seconds)
        if wait is not None:
            _histogram(self.waits, (route,), WAIT_BUCKETS).observe(wait)

    def worker_started(self, route: str, seconds: float) -> None:
        """A worker process accepted connections ``seconds`` after it was spawned."""
        _histogram(self.starts, (route,), START_BUCKETS).observe(seconds)

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "faucet_http_requests", "HTTP exchanges answered (faucet's own answers have "
            "worker=\"\"; a WebSocket counts once, as 101, when it ends)",
            labels=["route", "worker", "method", "code"])
        for values, count in sorted(self.requests.items()):
            requests.add_metric(list(values), count)
        yield requests
        yield histogram_family(
            "faucet_http_request_duration_seconds", "From a request's arrival to the last "
            "byte of its answer (queue wait included)", ["route", "worker"], self.durations)
        yield histogram_family(
            "faucet_http_queue_wait_seconds", "From a request's arrival until a worker was "
            "chosen for it (the wait telemetry's elapsed leaves out)", ["route"], self.waits)
        yield histogram_family(
            "faucet_websocket_session_duration_seconds", "How long WebSocket connections "
            "lasted (a Shiny page's connection; a reconnect counts anew)", ["route"],
            self.websockets)
        yield histogram_family(
            "faucet_worker_start_duration_seconds", "From spawning a worker process to its "
            "accepting connections", ["route"], self.starts)


def _histogram(table: dict, key: tuple, bounds: tuple[float, ...]) -> Histogram:
    histogram = table.get(key)
    if histogram is None:
        histogram = table[key] = Histogram(bounds)
    return histogram


class TelemetryCollector:
    """The telemetry pipeline's counters, read at scrape time from ``statistics()``
    (faucet.telemetry.recorder's ``TelemetryStatistics``)."""

    def __init__(self, statistics: Callable[[], object]):
        self.statistics = statistics

    def collect(self) -> Iterable[Metric]:
        stats = self.statistics()
        events = CounterMetricFamily(
            "faucet_telemetry_events", "Telemetry events by outcome: written by the sink, "
            "dropped (queue full) or failed (rejected, or unwritten at shutdown)",
            labels=["outcome"])
        for outcome in ("written", "dropped", "failed"):
            events.add_metric([outcome], getattr(stats, outcome))
        yield events
        yield GaugeMetricFamily("faucet_telemetry_queue_events", "Telemetry events accepted "
                                "and not yet written (queued or in the batch being written)",
                                value=stats.queued + stats.pending)
        yield GaugeMetricFamily("faucet_telemetry_sink_up", "1 while the telemetry sink's "
                                "last write succeeded, 0 during an outage",
                                value=1 if stats.sink_available else 0)


class BuildInfo:
    """``faucet_build_info{version}``: always 1, for joins and for seeing upgrades."""

    def __init__(self, version: str):
        self.version = version

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("faucet_build_info", "faucet's version", labels=["version"])
        family.add_metric([self.version], 1)
        yield family
