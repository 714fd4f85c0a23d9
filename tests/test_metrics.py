"""/__faucet__/metrics: the counts kept per exchange, the collectors that read the pool at
scrape time, the access rule, and the text faucet serves as Prometheus's parser reads it."""

from __future__ import annotations

import contextlib
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from faucet.config.routes import RouteConfig
from faucet.errors import ConfigError
from faucet.lifecycle.deploy import free_port
from faucet.proxy.router import RouteTable
from faucet.telemetry.metrics import (
    DURATION_BUCKETS,
    FINE_BUCKETS,
    Histogram,
    RequestMetrics,
    Timeline,
)
from tests.helpers import STANDIN, config_for, run_faucet


def samples(text: str) -> dict[str, list]:
    """Metric samples by sample name, from the text exposition format."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict, name: str, **labels) -> float:
    matching = [s.value for s in found.get(name, []) if labels.items() <= s.labels.items()]
    assert matching, f"no {name}{labels} in {sorted(found)}"
    return sum(matching)


# -- the pure parts --------------------------------------------------------------------


def test_histogram_counts_a_value_on_a_bound_in_that_bucket_and_estimates_quantiles():
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.sum == pytest.approx(2.65)
    assert Histogram((1.0,)).quantile(0.5) is None
    fine = Histogram(FINE_BUCKETS)
    for i in range(1, 101):
        fine.observe(i / 1000)  # 1 ms .. 100 ms
    assert fine.quantile(0.5) == pytest.approx(0.050, rel=0.15)
    assert fine.quantile(0.99) == pytest.approx(0.099, rel=0.15)


def test_exchanges_become_prometheus_text_with_bounded_labels():
    metrics = RequestMetrics()
    metrics.exchange("/api/", "1", "GET", 200, 0.02, 0.001)
    metrics.exchange("/api/", "1", "GET", 200, 0.2, 0.0)
    metrics.exchange("/api/", "", "BREW", 404, 0.0001, None)  # faucet's own answer
    metrics.exchange("/app/", "2", "GET", 101, 600.0, 0.0)  # a WebSocket connection ended
    metrics.worker_started("/api/", 0.7)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    found = samples(generate_latest(registry).decode())
    assert value(found, "faucet_http_requests_total", route="/api/", worker="1", method="GET",
                 code="200") == 2
    assert value(found, "faucet_http_requests_total", worker="", method="OTHER",
                 code="404") == 1
    assert value(found, "faucet_http_request_duration_seconds_bucket", route="/api/",
                 worker="1", le="0.025") == 1
    assert value(found, "faucet_http_request_duration_seconds_count", route="/api/") == 3
    assert len(found["faucet_http_request_duration_seconds_bucket"]) == \
        2 * (len(DURATION_BUCKETS) + 1)  # two (route, worker) pairs; 101 is not among them
    assert value(found, "faucet_http_queue_wait_seconds_count", route="/api/") == 2
    assert value(found, "faucet_websocket_session_duration_seconds_sum", route="/app/") == 600
    assert value(found, "faucet_worker_start_duration_seconds_count", route="/api/") == 1


def test_the_timeline_keeps_a_bounded_ring_of_steps():
    timeline = Timeline(step=5, keep=3)
    metrics = RequestMetrics(timeline)
    for status in (200, 200, 503, 302):
        metrics.exchange("", "1", "GET", status, 0.01, 0.0)
    row = timeline.close(1000.0, {"in_flight": 1})
    assert row["rps"]["2xx"] == pytest.approx(0.4) and row["rps"]["5xx"] == pytest.approx(0.2)
    assert row["requests"] == 4 and row["errors_5xx"] == 1 and row["in_flight"] == 1
    assert row["p50"] == pytest.approx(0.01, rel=0.25)
    for at in (1005.0, 1010.0, 1015.0):
        empty = timeline.close(at, {})
    assert empty["requests"] == 0 and empty["p95"] is None
    assert [r["t"] for r in timeline.rows] == [1005.0, 1010.0, 1015.0]


# -- served by faucet ------------------------------------------------------------------


async def scrape(client: httpx.AsyncClient) -> dict[str, list]:
    response = await client.get("/__faucet__/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_count_requests_and_read_the_pool_at_scrape_time():
    routes = [RouteConfig(route="/api/", server_type="plumber", workers=2)]
    config = config_for(rscript=str(STANDIN), route=routes)
    async with run_faucet(config, routes=RouteTable(routes)) as faucet, \
            faucet.client() as client:
        for _ in range(4):
            assert (await client.get("/api/hello")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.request("PROPFIND", "/api/x")).status_code == 200
        found = await scrape(client)
        backends = faucet.backends()
    assert value(found, "faucet_http_requests_total", route="/api/", method="GET",
                 code="200") == 4
    assert value(found, "faucet_http_requests_total", route="", worker="", code="404") == 1
    assert value(found, "faucet_http_requests_total", method="OTHER") == 1
    assert value(found, "faucet_http_request_duration_seconds_count", route="/api/") == 5
    assert value(found, "faucet_http_queue_wait_seconds_count", route="/api/") == 5
    for backend in backends:
        worker = str(backend.worker_id)
        assert value(found, "faucet_worker_up", route="/api/", worker=worker) == 1
        assert value(found, "faucet_http_requests_in_flight", worker=worker) == 0
        assert value(found, "faucet_worker_restarts_total", worker=worker) == 0
        assert value(found, "faucet_worker_resident_memory_bytes", worker=worker) > 1e6
        assert value(found, "faucet_worker_cpu_seconds_total", worker=worker) >= 0
    assert value(found, "faucet_worker_start_duration_seconds_count", route="/api/") == 2
    assert value(found, "faucet_http_requests_queued", route="/api/") == 0
    assert value(found, "faucet_websocket_sessions", route="/api/") == 0
    assert value(found, "faucet_telemetry_events_total", outcome="dropped") == 0
    assert value(found, "faucet_telemetry_sink_up") == 1
    assert value(found, "faucet_telemetry_queue_events") == 0
    assert value(found, "faucet_build_info") == 1
    assert not any(key in sample.labels for samples_ in found.values() for sample in samples_
                   for key in ("path", "ip", "user_agent"))


async def test_openmetrics_is_served_to_a_scraper_that_asks_for_it():
    async with run_faucet(config_for(workers=1, rscript=str(STANDIN))) as faucet, \
            faucet.client() as client:
        response = await client.get("/__faucet__/metrics",
                                    headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.mark.parametrize(("overrides", "status", "says"), [
    ({"health_details": "none"}, 403, "health_details = 'none'"),
    ({"metrics": False}, 404, "metrics = false"),
])
async def test_the_main_port_refuses_metrics_with_the_reason(overrides, status, says):
    config = config_for(workers=1, rscript=str(STANDIN), **overrides)
    async with run_faucet(config) as faucet, faucet.client() as client:
        for path in ("/__faucet__/metrics", "/__faucet__/dashboard",
                     "/__faucet__/dashboard.json"):
            response = await client.get(path)
            assert response.status_code == status
            assert says in response.text


async def test_metrics_listen_serves_them_on_their_own_address_only():
    listen = f"127.0.0.1:{free_port()}"
    config = config_for(workers=1, rscript=str(STANDIN), metrics_listen=listen)
    async with run_faucet(config) as faucet, faucet.client() as client, \
            httpx.AsyncClient(base_url=f"http://{listen}") as own:
        assert (await client.get("/hello")).status_code == 200
        moved = await client.get("/__faucet__/metrics")
        assert moved.status_code == 404 and listen in moved.text
        found = await scrape(own)
        assert value(found, "faucet_http_requests_total", code="200") == 1
        assert (await own.get("/__faucet__/dashboard")).status_code == 200
        assert (await own.get("/hello")).status_code == 404


@contextlib.contextmanager
def listening_port():
    """A loopback port something listens on, for the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_busy_address_for_metrics_listen_is_a_config_error():
    with listening_port() as port:
        config = config_for(workers=1, rscript=str(STANDIN),
                            metrics_listen=f"127.0.0.1:{port}")
        with pytest.RaisesGroup(pytest.RaisesExc(ConfigError, match="metrics_listen"),
                                flatten_subgroups=True):
            async with run_faucet(config):
                pass
