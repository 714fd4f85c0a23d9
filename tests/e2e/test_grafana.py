"""examples/grafana/faucet-dashboard.json: every PromQL expression in it, evaluated by a
real Prometheus (Debian's ``prometheus`` package) that scrapes a faucet started here with
stand-in workers, through Prometheus's HTTP API."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess

import httpx
import pytest
import trio

from faucet.config.routes import RouteConfig
from faucet.lifecycle.deploy import free_port
from faucet.proxy.router import RouteTable
from tests.helpers import ROOT, STANDIN, config_for, run_faucet

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus")
DASHBOARD = ROOT / "examples" / "grafana" / "faucet-dashboard.json"
# What Grafana puts in place of the dashboard's variables.
VARIABLES = {"$route": ".*", "$__rate_interval": "20s", "$__range": "5m"}
# Expressions that are empty unless something happened that this test does not cause:
# a 5xx answer, a Shiny app, a WebSocket that ended.
MAY_BE_EMPTY = re.compile(r'code=~"5\.\."|faucet_shiny_sessions|websocket_session_duration')
SCRAPES = 5


def expressions(dashboard: dict) -> list[str]:
    """Every PromQL expression: the panels' targets and the variables' queries
    (``label_values(metric, label)`` as the PromQL Grafana would run for it)."""
    found = [target["expr"] for panel in dashboard["panels"]
             for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)",
                                         variable["query"]["query"]).groups()
            found.append(f"count by ({label}) ({metric})")
    return found


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr.replace("${1}", ""), expr
    return expr


async def test_every_dashboard_expression_evaluates_against_faucet_metrics(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard)
    assert len(exprs) >= 25
    routes = [RouteConfig(route="/api/", server_type="plumber", workers=2)]
    config = config_for(rscript=str(STANDIN), route=routes)
    async with run_faucet(config, routes=RouteTable(routes)) as faucet, \
            faucet.client() as client, trio.open_nursery() as nursery:
        nursery.start_soon(traffic, client)
        async with prometheus_scraping(tmp_path, faucet.url.removeprefix("http://")) as api, \
                httpx.AsyncClient(base_url=api, timeout=10) as prometheus:
            await scraped(prometheus, SCRAPES)
            results = {expr: await query(prometheus, substitute(expr)) for expr in exprs}
        nursery.cancel_scope.cancel()
    empty = [expr for expr, result in results.items()
             if not result and not MAY_BE_EMPTY.search(expr)]
    assert empty == []
    up = results['sum(faucet_worker_up{route=~"$route"})']
    assert float(up[0]["value"][1]) == 2


async def traffic(client: httpx.AsyncClient) -> None:
    """Requests to a route, and one that matches none (faucet's 404), until cancelled."""
    while True:
        await client.get("/api/echo")
        await client.get("/elsewhere")
        await trio.sleep(0.02)


@contextlib.asynccontextmanager
async def prometheus_scraping(folder, target: str):
    """Prometheus scraping ``target``'s metrics every second, for the block: its API's base
    URL. Killed afterwards."""
    port = free_port()
    (folder / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: faucet\n    metrics_path: /__faucet__/metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n")
    process = await trio.lowlevel.open_process(
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        with trio.move_on_after(5, shield=True):
            await process.wait()


async def scraped(prometheus: httpx.AsyncClient, count: int) -> None:
    """Until Prometheus holds ``count`` scrapes of faucet (20 s at most)."""
    with trio.fail_after(20):
        while True:
            try:
                result = await query(prometheus, "count_over_time(faucet_build_info[1m])")
            except httpx.TransportError:
                result = []  # not listening yet
            if result and float(result[0]["value"][1]) >= count:
                return
            await trio.sleep(0.5)


async def query(prometheus: httpx.AsyncClient, expr: str) -> list:
    """An instant query's result; an error names the expression and Prometheus's reason."""
    response = await prometheus.get("/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]
