"""The app behind the front door: faucet's own endpoints, then admission, forwarding and
WebSocket sessions (each in a module of its own). Every outcome is an HTTP response, and
each exchange becomes one access-log line and one telemetry event.

The front door calls ``serve_http`` with a typed ``Request`` for plain HTTP/1.1, and
``refused`` for what it answers itself; hypercorn (upgrades, HTTP/2) calls the ASGI
``__call__``, whose scope is adapted to the same ``Request``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import trio

from faucet.config.settings import Config
from faucet.errors import BadRequestBody
from faucet.http.asgi import ClientGone, respond
from faucet.http.request import Request
from faucet.http.ws_budget import WebSocketBudget
from faucet.proxy.admission import Admission, AdmissionSettings
from faucet.proxy.forwarding import Forwarder, ForwardingSettings, answer_bad_body
from faucet.proxy.health import HEALTH_PATH, READY_PATH, health, readiness
from faucet.proxy.insight import INSIGHT_PATHS, Insight, answer_insight
from faucet.proxy.mount import Mount
from faucet.proxy.router import RouteTable
from faucet.proxy.shiny.page_script import SCRIPT_SUFFIX
from faucet.proxy.shiny.session_host import SessionHost
from faucet.proxy.upgrade import Upgrades, UpgradeSettings
from faucet.telemetry.recorder import Recorder


class Proxy:
    """What the front door (faucet.edge.front, hypercorn for upgrades) serves."""

    def __init__(self, config: Config, mounts: Sequence[Mount], recorder: Recorder,
                 stopping: trio.Event, websockets: WebSocketBudget, sessions: SessionHost,
                 routes: RouteTable | None = None,
                 deploy_status: Callable[[], dict] = dict, insight: Insight | None = None,
                 draining: trio.Event | None = None):
        """``deploy_status``: health's view of reloads (faucet.lifecycle.deploy); ``insight``:
        metrics and the dashboard (faucet.proxy.insight), None when off; ``draining``:
        set once a shutdown has begun (readiness then fails)."""
        self.draining = draining if draining is not None else stopping
        self.config = config
        self.deploy_status = deploy_status
        self.mounts = list(mounts)
        self.recorder = recorder
        self.websockets = websockets
        self.sessions = sessions
        self.insight = insight  # metrics and dashboard; None with metrics = false
        self.admission = Admission(AdmissionSettings.of(config), mounts, recorder, sessions, routes,
                                   insight.metrics if insight is not None else None)
        self.forwarder = Forwarder(ForwardingSettings.of(config))
        self.upgrades = Upgrades(UpgradeSettings.of(config), self.admission, self.forwarder,
                                 websockets, sessions, stopping)

    def install(self, mounts: Sequence[Mount], routes: RouteTable | None) -> None:
        """A reload's new apps and routes, together (no checkpoint between the two)."""
        self.mounts = list(mounts)
        self.admission.mounts = self.mounts
        self.admission.routes = routes
        if self.insight is not None:
            self.insight.install(self.mounts)

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.serve_http(Request.from_scope(scope), receive, send)
        elif kind == "websocket":
            await self.upgrades.serve(Request.from_scope(scope), receive, send)

    def refused(self, request: Request, status: int) -> None:
        """The front door answered ``request`` itself (413, 431, 400, 408): record it."""
        self.admission.refused(request, status)

    async def serve_http(self, request: Request, receive, send) -> None:
        started = time.perf_counter()
        path = request.path
        if path == READY_PATH:
            status, body = readiness(self.mounts, self.draining.is_set())
            await respond(send, status, json.dumps(body).encode(), b"application/json")
            return
        if path == HEALTH_PATH:
            status, body = health(self.mounts, self.recorder.statistics(),
                                  self.websockets.statistics(), self.sessions.statistics(),
                                  self.deploy_status(), details=self.admission.trusts(request))
            await respond(send, status, json.dumps(body).encode(), b"application/json")
            return
        if path in INSIGHT_PATHS:
            await answer_insight(self.insight, request, send, self.admission.trusts(request),
                                 self.config)
            return
        if (path.endswith(SCRIPT_SUFFIX)  # under any path of a Shiny app only
                and (mount := self.admission.locate(request.raw_path)[0]) is not None
                and mount.session_app):
            await respond(send, 200, self.sessions.script, b"text/javascript",
                          extra=[(b"cache-control", b"no-cache")])
            return
        admission = self.admission
        arrival = await admission.arrive(request, send, started)
        if arrival is None:
            return
        try:
            body = await self.forwarder.buffer_body(arrival, receive)
            admitted = await admission.claim(arrival, send)
        except (BadRequestBody, ClientGone) as exc:
            admission.record(arrival.draft, await answer_bad_body(exc, send), None, started)
            return
        except trio.Cancelled:
            if _given_up(request):  # an HTTP/2 reset before a worker had the request
                admission.record(arrival.draft, 499, None, started)
            raise
        if admitted is None:
            return
        backend = admitted.backend
        status = 0
        try:
            status = await self.forwarder.forward(admitted, body, send)
        except BadRequestBody as exc:
            # The client's fault, found while its body went on: the worker never got a
            # complete request, so the event names no worker.
            backend = None
            status = await answer_bad_body(exc, send)
        except ClientGone:
            status = 499
        finally:
            admitted.release()
            if not status and _given_up(request):
                status = 499
            admission.record(arrival.draft, status, backend, admitted.chosen)


def _given_up(request: Request) -> bool:
    """Whether the client gave the request up (an HTTP/2 stream it reset)."""
    return request.cancel is not None and request.cancel.given_up
