"""Path -> route matching (pure)."""

from faucet.config.routes import RouteConfig
from faucet.proxy.router import Redirect, RouteMatch, RouteTable


def table(*routes: str) -> RouteTable:
    return RouteTable([RouteConfig(route=r, server_type="plumber") for r in routes])


def test_prefix_route_strips_the_prefix():
    found = table("/api/").match("/api/x/y")
    assert isinstance(found, RouteMatch)
    assert (found.index, found.path, found.prefix, found.config.route) == (
        0,
        "/x/y",
        "/api",
        "/api/",
    )
    assert table("/api/").match("/api/").path == "/"


def test_exact_route_reaches_worker_as_root():
    routes = table("/health", "/")
    assert routes.match("/health") == RouteMatch(0, routes.routes[0], "/", "/health")
    assert routes.match("/health/x").index == 1


def test_root_route_keeps_the_path():
    assert table("/").match("/a/b") == RouteMatch(0, table("/").routes[0], "/a/b", "")


def test_bare_prefix_redirects_even_before_a_later_catch_all():
    assert table("/api/", "/").match("/api") == Redirect("/api/")
    assert table("/app/").match("/apple") is None


def test_first_match_wins_and_no_match_is_none():
    routes = table("/api/v2/", "/api/")
    assert routes.match("/api/v2/x").index == 0
    assert routes.match("/api/v3/x").index == 1
    assert routes.match("/other") is None
    assert routes.match("/API/x") is None
