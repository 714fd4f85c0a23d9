"""The rps strategy from the outside: its settings in every place and a faucet whose pool
grows under load, with stand-in workers (the Rust server's example files with real R
workers are in tests/e2e/test_rps.py)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from faucet.config.cpus import available_cpus
from faucet.config.routes import load_routes
from faucet.config.settings import load_config
from faucet.config.strategy import Strategy
from faucet.errors import ConfigError
from faucet.lifecycle.plan import plan_router, plan_start
from faucet.pool.autoscale import Policy
from faucet.proxy.health import HEALTH_PATH
from tests.helpers import PLUMBER, SHINY, STANDIN, config_for, run_faucet, until

# The route tables of the Rust repository's examples/plumber-autoscale-rps/frouter.toml
# and examples/faucet-router-example-main/frouter.toml: the keys and values its users have.
AUTOSCALE_RPS_ROUTES = """
[[route]]
route = "/api1/"
workers = 4
server_type = "plumber"
workdir = "./api1"
strategy = "rps"
max_rps = 10

[[route]]
route = "/api2/"
workers = 2
server_type = "plumber"
workdir = "./api2"
strategy = "rps"
max_rps = 5
"""
ROUTER_EXAMPLE_ROUTES = """
[[route]]
route = "/sliders/"
workers = 1
server_type = "shiny"
workdir = "./sliders"

[[route]]
route = "/text/"
workers = 1
server_type = "shiny"
app_dir = "./text"

[[route]]
route = "/qmd/"
workers = 1
server_type = "quarto-shiny"
workdir = "./qmd"
qmd = "old_faithful.qmd"

[[route]]
route = "/api/"
workers = 4
server_type = "plumber"
workdir = "./api"
strategy = "rps"
max_rps = 1

[[route]]
route = "/"
workers = 1
server_type = "shiny"
strategy = "cookie-hash"
"""


def autoscale_rps_example(folder: Path) -> Path:
    """The Rust autoscale example's tree: two Plumber APIs (ours) and its frouter.toml."""
    for api in ("api1", "api2"):
        (folder / api).mkdir(parents=True)
        shutil.copy(PLUMBER / "plumber.R", folder / api)
    (folder / "frouter.toml").write_text(AUTOSCALE_RPS_ROUTES)
    return folder / "frouter.toml"


def router_example(folder: Path) -> Path:
    """The Rust router example's tree: Shiny apps, a Quarto document, a Plumber API (ours),
    and its frouter.toml."""
    for shiny in ("sliders", "text", "."):
        (folder / shiny).mkdir(parents=True, exist_ok=True)
        shutil.copy(SHINY / "app.R", folder / shiny)
    (folder / "api").mkdir()
    shutil.copy(PLUMBER / "plumber.R", folder / "api")
    (folder / "qmd").mkdir()
    (folder / "qmd" / "old_faithful.qmd").write_text("---\nserver: shiny\n---\n")
    (folder / "frouter.toml").write_text(ROUTER_EXAMPLE_ROUTES)
    return folder / "frouter.toml"


def problems(environ=None, overrides=None, path=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {}, overrides or {})
    return info.value.problems


def test_max_rps_has_one_name_in_file_env_and_flag(tmp_path):
    path = tmp_path / "faucet.toml"
    path.write_text('strategy = "rps"\nmax_rps = 3\nmin_workers = 2\nworkers = 4\n'
                    "scale_down_after = 60\n")
    config = load_config(path, {}, {})
    assert (config.max_rps, config.min_workers, config.scale_down_after) == (3.0, 2, 60.0)
    assert load_config(path, {"FAUCET_MAX_RPS": "7.5"}, {}).max_rps == 7.5
    assert load_config(path, {"FAUCET_MAX_RPS": "7.5"}, {"max_rps": "9"}).max_rps == 9.0
    assert plan_start(attrs.evolve(config, dir=str(PLUMBER))).apps[0].scaling == Policy(
        max_rps=3.0, min_workers=2, max_workers=4, scale_down_after=60.0,
        max_starting=available_cpus())


def test_rps_needs_max_rps_and_min_workers_within_workers():
    assert problems(environ={"FAUCET_STRATEGY": "rps"}) == [
        "max_rps: required with strategy = 'rps' (from FAUCET_STRATEGY): the requests per "
        "second one worker should take, e.g. 10"]
    assert problems(overrides={"strategy": "rps", "max_rps": "0"}) == [
        "max_rps = 0.0 (from --max-rps): must be a number greater than 0"]
    assert problems(environ={"FAUCET_MAX_RPS": "nan"}) == [
        "max_rps = nan (from FAUCET_MAX_RPS): must be a number greater than 0"]
    assert problems(overrides={"workers": "2", "min_workers": "3"}) == [
        "min_workers = 3 (from --min-workers): must be at most workers (2)"]


def test_only_rps_apps_scale_and_shiny_stays_sticky(caplog):
    plumber = plan_start(config_for(strategy="least-busy")).apps[0]
    assert plumber.strategy is Strategy.LEAST_BUSY and plumber.scaling is None
    with caplog.at_level(logging.WARNING, "faucet"):
        shiny = plan_start(config_for(dir=str(SHINY), strategy="rps", max_rps=5)).apps[0]
    assert shiny.strategy is Strategy.COOKIE_HASH and shiny.scaling is None
    assert "strategy = 'rps' is not sticky" in caplog.text


def test_the_rust_example_router_files_load_as_they_are(tmp_path):
    autoscale = load_routes(autoscale_rps_example(tmp_path / "autoscale"))
    assert [(r.route, r.strategy, r.max_rps, r.min_workers, r.workers) for r in autoscale] == [
        ("/api1/", Strategy.RPS, 10.0, 1, 4), ("/api2/", Strategy.RPS, 5.0, 1, 2)]
    routes = load_routes(router_example(tmp_path / "router"))
    plan = plan_router(config_for(), routes)
    assert [(app.route.route, app.strategy, app.scaling) for app in plan.apps] == [
        ("/sliders/", Strategy.COOKIE_HASH, None),
        ("/text/", Strategy.COOKIE_HASH, None),
        ("/qmd/", Strategy.COOKIE_HASH, None),
        ("/api/", Strategy.RPS, Policy(max_rps=1.0, min_workers=1, max_workers=4,
                                       max_starting=available_cpus())),
        ("/", Strategy.COOKIE_HASH, None),
    ]


async def health(client: httpx.AsyncClient) -> dict:
    return (await client.get(HEALTH_PATH)).json()


async def burst(client: httpx.AsyncClient, path: str, count: int,
                answers: list[httpx.Response] | None = None) -> list[httpx.Response]:
    """``count`` requests to ``path`` at once; their responses (also appended to
    ``answers``)."""
    answers = [] if answers is None else answers

    async def get():
        answers.append(await client.get(path))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(get)
    return answers


async def test_a_burst_grows_the_pool_and_every_request_is_answered():
    config = config_for(workers=3, strategy="rps", max_rps=2, rscript=str(STANDIN))
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        with trio.fail_after(60):  # a guard against hanging, not a measure of speed
            await faucet.wait_online(1)
        body = await health(client)
        assert [(w["online"], w["state"]) for w in body["workers"]] == [
            (True, "online"), (False, "stopped (scaled down)"), (False, "stopped (scaled down)")]
        # 20 at once for 2 per second per worker, each 0.2 s of work (a burst of requests
        # answered at once would not: nothing for a second worker to do)
        answers = await burst(client, "/sleep", 20)
        assert {response.status_code for response in answers} == {200}
        with trio.fail_after(60):
            await faucet.wait_online(2)
        states = [(w["online"], w["state"]) for w in (await health(client))["workers"]]
        assert states.count((True, "online")) >= 2  # whichever of the two came up first








SCALED_DOWN = (False, "stopped (scaled down)")


async def cold_start(faucet, client: httpx.AsyncClient, path: str = "/",
                     **kwargs) -> tuple[float, httpx.Response]:
    """Seconds from a request to an app scaled to zero to its answer, and the answer."""
    await until(lambda: not any(b.pid for b in faucet.backends()))  # stopped: no change fires
    began = trio.current_time()
    response = await client.get(path, **kwargs)
    return trio.current_time() - began, response


async def test_min_workers_zero_starts_a_worker_for_the_first_request_and_stops_it_idle(
        tmp_path, monkeypatch):
    """Scale to zero with the stand-in: an API client waits for the worker its request
    starts; a browser gets the starting page (503, Retry-After, a meta refresh) while it
    starts, then the app."""
    config = config_for(workers=2, strategy="rps", max_rps=10, min_workers=0,
                        scale_down_after=0.5, rscript=str(STANDIN))
    async with run_faucet(config, wait=False) as faucet, faucet.client() as client:
        body = await health(client)
        assert [(w["online"], w["state"]) for w in body["workers"]] == [SCALED_DOWN] * 2
        seconds, response = await cold_start(faucet, client)
        assert response.status_code == 200 and response.text == "worker 1"
        logging.getLogger("tests").warning("cold start through faucet (stand-in): %.2fs",
                                           seconds)
        # Idle for scale_down_after: stopped again; a browser now.
        gate = tmp_path / "gate"
        os.mkfifo(gate)  # the next worker holds before listening until the gate opens
        monkeypatch.setenv("STANDIN_HOLD", str(gate))
        html = {"accept": "text/html,application/xhtml+xml"}
        seconds, page = await cold_start(faucet, client, headers=html)
        assert page.status_code == 503 and page.headers["retry-after"] == "2"
        assert '<meta http-equiv="refresh" content="2">' in page.text
        assert page.headers["content-type"].startswith("text/html") and seconds < 5
        assert faucet.backends()[0].pid is not None  # the page's request started it
        await trio.to_thread.run_sync(gate.write_bytes, b"")
        again = await client.get("/", headers=html)  # the refresh: waits as API clients do
        assert again.status_code == 200


def test_min_workers_zero_only_with_rps():
    assert problems(overrides={"min_workers": "0"}) == [
        "min_workers = 0 (from --min-workers): 0 (scale to zero) needs strategy = 'rps'; "
        "other strategies keep every worker running"]
    config = load_config(None, {}, {"min_workers": "0", "strategy": "rps", "max_rps": "5"})
    assert config.min_workers == 0


