"""cookie-hash placement (issue 10): browsers without a cookie are placed by load, and in
router mode each route keeps its own cookie. Stand-in workers (tests/standin/Rscript),
no R."""

from collections import Counter
from http.cookies import SimpleCookie

import attrs

from faucet.config.routes import RouteConfig
from faucet.config.strategy import Strategy
from faucet.pool.sticky import LB_COOKIE, StickyCookie, cookie_key, sticky_index
from faucet.proxy.router import RouteTable
from tests.helpers import ROOT, config_for, run_faucet

STANDIN = str(ROOT / "tests" / "standin" / "Rscript")


def worker_of(set_cookie: str, workers: int) -> int:
    """The 1-based worker a Set-Cookie value maps to."""
    morsel = next(iter(SimpleCookie(set_cookie).values()))
    value = StickyCookie(morsel.key, morsel["path"]).read(
        f"{morsel.key}={morsel.value}".encode())
    return sticky_index(cookie_key(value), workers) + 1


async def test_fresh_browsers_behind_one_address_spread_over_the_workers():
    """Behind a reverse proxy every browser has the same address: hashing it put all 20
    on one worker. Placed by load, they spread evenly."""
    config = config_for(workers=2, strategy="cookie-hash", rscript=STANDIN)
    async with run_faucet(config) as faucet, faucet.client() as client:
        placed = Counter()
        for _ in range(20):
            client.cookies.clear()  # a new browser
            response = await client.get("/page")
            placed[worker_of(response.headers["set-cookie"], 2)] += 1
            assert response.text == f"worker {worker_of(response.headers['set-cookie'], 2)}"
    assert placed == {1: 10, 2: 10}


async def test_each_route_has_its_own_cookie_name_and_path(tmp_path):
    routes = [RouteConfig(route=route, server_type="plumber", workers=2,
                          strategy=Strategy.COOKIE_HASH, workdir=str(tmp_path))
              for route in ("/a/", "/b/")]
    config = attrs.evolve(config_for(rscript=STANDIN), route=routes)
    async with run_faucet(config, routes=RouteTable(routes)) as faucet, \
            faucet.client() as client:
        a = SimpleCookie((await client.get("/a/x")).headers["set-cookie"])
        b = SimpleCookie((await client.get("/b/x")).headers["set-cookie"])
        (name_a, morsel_a), = a.items()
        (name_b, morsel_b), = b.items()
        assert (name_a, morsel_a["path"]) == (LB_COOKIE + "_a", "/a")
        assert (name_b, morsel_b["path"]) == (LB_COOKIE + "_b", "/b")
        # A client's cookie for one route says nothing about the other route.
        client.cookies.clear()
        client.cookies.set(name_a, morsel_a.value, path="/a")
        assert "set-cookie" not in (await client.get("/a/y")).headers
        assert "set-cookie" in (await client.get("/b/y")).headers


def test_start_mode_and_the_root_route_keep_the_rust_servers_cookie():
    assert StickyCookie.for_route(None) == StickyCookie.for_route("/") == StickyCookie()
    assert StickyCookie().name == "FAUCET_LB_COOKIE" and StickyCookie().path == "/"
    assert StickyCookie.for_route("/api/v1/").name == "FAUCET_LB_COOKIE_api_v1"
