"""Router mode: which ``[[route]]`` a request path belongs to, and the path its worker sees.

The routes arrive checked and normalised (``routes_config``); this module only matches.
Pure: no trio, no sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from faucet.config.routes import RouteConfig


class RouteMatch(NamedTuple):
    """A routed request: forward ``path`` (+ the query) to route ``index``'s workers."""

    index: int
    config: RouteConfig
    # What the worker sees; always starts with '/'.
    path: str
    # Where the app is mounted, for ``X-Forwarded-Prefix``; '' for the route '/'.
    prefix: str


class Redirect(NamedTuple):
    """``/api`` asked of a route ``/api/``: answer 308 to ``location`` (+ the query)."""

    location: str


class RouteTable:
    """First matching route wins, in file order.

    A route ending in '/' is a prefix: ``/api/x`` on ``/api/`` reaches the worker as ``/x``.
    Any other route matches only its exact path, which reaches the worker as ``/`` (as
    in the Rust server). ``match`` takes the path without the query string; pass the raw
    (still percent-encoded) path so the worker receives exactly what the client sent.
    """

    def __init__(self, routes: Sequence[RouteConfig]):
        self.routes = tuple(routes)
        # Per route: (route, mount prefix, index, config, the ready answer of an exact route).
        self._entries = tuple(
            (config.route, config.route[:-1], index, config, None)
            if config.route.endswith("/")
            else (
                config.route,
                config.route,
                index,
                config,
                RouteMatch(index, config, "/", config.route),
            )
            for index, config in enumerate(self.routes)
        )

    def match(self, path: str) -> RouteMatch | Redirect | None:
        for route, mount, index, config, exact in self._entries:
            if exact is not None:
                if path == route:
                    return exact
            elif path.startswith(route):
                return RouteMatch(index, config, path[len(mount) :], mount)
            elif path == mount:
                return Redirect(route)
        return None
