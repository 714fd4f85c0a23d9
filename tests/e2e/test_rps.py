"""The rps strategy with real R workers: the Rust server's own example router files,
served and scaled, and a Plumber app's cold start from zero."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from faucet.config.routes import load_routes
from faucet.proxy.router import RouteTable
from tests.e2e.test_app_types import QUARTO_STAND_IN
from tests.helpers import PLUMBER, config_for, run_faucet
from tests.test_rps import autoscale_rps_example, burst, cold_start, router_example


def routed(config_path: Path, **overrides):
    """An in-process ``faucet router --conf config_path``, not waiting for workers; a
    request may wait for one as long as the workers a burst starts take to come online."""
    routes = load_routes(config_path)
    config = attrs.evolve(config_for(worker_wait_timeout=300, **overrides), route=routes)
    return run_faucet(config, routes=RouteTable(routes), wait=False)


async def test_the_rust_autoscale_example_serves_and_scales_with_plumber(tmp_path):
    path = autoscale_rps_example(tmp_path)
    async with routed(path) as faucet, faucet.client() as client:
        api1, api2 = faucet.proxy_mounts
        with trio.fail_after(120):  # a guard against hanging, not a measure of speed
            await faucet.wait_until(lambda: api1.backends[0].online and api2.backends[0].online)
        assert (await client.get("/api2/echo", params={"msg": "hi"})).json() == {"msg": ["hi"]}
        assert [b.online for b in api1.backends] == [True, False, False, False]
        answers: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:  # 40 half-second requests at once
            nursery.start_soon(burst, client, "/api1/sleep?s=0.5", 40, answers)
            with trio.fail_after(120):
                await faucet.wait_until(lambda: sum(b.online for b in api1.backends) > 1)
        assert {response.status_code for response in answers} == {200}
        assert [b.online for b in api2.backends] == [True, False]  # not its load
        # The pool keeps its workers for scale_down_after (30 s): requests spread over them.
        answers = await burst(client, "/api1/sleep?s=0.5", 8)
        assert len({response.json()["worker"][0] for response in answers}) > 1


async def test_the_rust_router_example_serves_every_route(tmp_path):
    path = router_example(tmp_path)
    quarto = tmp_path / "bin" / "quarto"
    quarto.parent.mkdir()
    quarto.write_text(QUARTO_STAND_IN)
    quarto.chmod(0o755)
    async with routed(path, quarto=str(quarto)) as faucet, \
            faucet.client() as client:
        with trio.fail_after(120):  # a guard against hanging, not a measure of speed
            await faucet.wait_until(lambda: all(m.backends[0].online
                                                for m in faucet.proxy_mounts))
        for page in ("/sliders/", "/text/", "/"):
            response = await client.get(page)
            assert response.status_code == 200 and "faucet + Shiny" in response.text
        assert (await client.get("/qmd/")).json()["argv"][-1] == "old_faithful.qmd"
        api = faucet.proxy_mounts[3]
        assert [b.online for b in api.backends] == [True, False, False, False]
        # max_rps = 1, and the pool grows only while its workers are busy: clients that
        # keep the one worker busy until more come online (one per CPU at a time)
        answers: list[httpx.Response] = []
        with trio.fail_after(120):  # a guard against hanging, not a measure of speed
            while sum(b.online for b in api.backends) < 2:
                await burst(client, "/api/echo?msg=x", 8, answers)
        assert {response.status_code for response in answers} == {200}


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
async def test_scale_to_zero_cold_start_with_plumber():
    """The cold start docs/strategies.md quotes: a request to a plumber app scaled to
    zero, answered once the worker it starts is online."""
    config = config_for(workers=1, strategy="rps", max_rps=10, min_workers=0,
                        scale_down_after=0.5, dir=str(PLUMBER))
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        times = []
        for _ in range(3):
            seconds, response = await cold_start(faucet, client, "/echo?msg=hi")
            assert response.status_code == 200, response.text
            times.append(seconds)
        logging.getLogger("tests").warning("cold start through faucet (plumber): %s",
                                           ", ".join(f"{t:.2f}s" for t in times))
