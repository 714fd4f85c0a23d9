"""Admission: which app a request is for, who sent it, and which worker takes it.

Every refusal on the way is an HTTP answer, given and recorded here: 400 for a bad
client-IP header (``--ip-from``), 404 for no route, 308 to a route's canonical prefix,
503 when every worker of a Shiny app holds ``max_sessions``, 503 + Retry-After when no
worker frees up in time or the queue is full, and a "starting" page for a browser while
an app scaled to zero starts its first worker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import trio
from attrs import define, frozen

from faucet.config.settings import Config
from faucet.config.strategy import Strategy
from faucet.http.asgi import respond, retry_page, wants_html
from faucet.http.client_ip import BadClientIp, IPAddress, client_ip
from faucet.http.headers import RequestHeaders, read_request
from faucet.http.request import Request
from faucet.pool.backend import Backend, Phase, failing_to_start
from faucet.pool.dispatch import Lease, QueueFull, Retired
from faucet.pool.sticky import cookie_key, cookie_to_set, sticky_key
from faucet.proxy.accounting import EventDraft, record_exchange
from faucet.proxy.mount import Generation, Mount
from faucet.proxy.router import Redirect, RouteTable
from faucet.proxy.shiny.session_host import SessionHost
from faucet.proxy.shiny.sessions import BY_STRATEGY, Placement, full_page
from faucet.telemetry.metrics import RequestMetrics
from faucet.telemetry.recorder import Recorder

RETRY_AFTER = b"5"
SESSIONS_RETRY_AFTER = 10  # seconds, when every worker has max_sessions sessions
# A browser's page request to an app scaled to zero waits STARTING_WAIT seconds for the
# worker it starts (a Plumber worker is online ~0.6 s after spawn), then gets a page that
# reloads itself every STARTING_REFRESH seconds until the app answers.
STARTING_WAIT = 1.0
STARTING_REFRESH = 2
STARTING_PAGE = retry_page("Starting", "Starting the application",
                           "This application was idle and is starting again; this page "
                           f"reloads itself in {STARTING_REFRESH} seconds.", STARTING_REFRESH)


@define(eq=False)
class Arrival:
    """A request faucet will serve: who sent it, which app, and its telemetry draft."""

    request: Request
    fields: RequestHeaders  # what faucet acts on among its headers, read once
    ip: object
    mount: Mount
    path: bytes  # as the worker sees it
    prefix: bytes | None  # the route's mount point, for X-Forwarded-Prefix
    draft: EventDraft
    started: float  # perf_counter when the request arrived
    cookie: uuid.UUID | None = None  # the client's sticky cookie (cookie-hash)
    placement: Placement = BY_STRATEGY  # a Shiny app's session, if the request has one

    @property
    def target(self) -> bytes:
        """The request target as the worker sees it."""
        query = self.request.query
        return self.path + b"?" + query if query else self.path


@define(eq=False)
class Admitted:
    """A request that has a backend: what forwarding it needs, and its slot to release."""

    arrival: Arrival
    generation: Generation  # the app's deploy the backend belongs to
    lease: Lease | None  # None: a reconnect for a session faucet no longer holds
    chosen: float  # perf_counter when the backend was chosen (telemetry's elapsed)
    released: bool = False

    @property
    def backend(self) -> Backend | None:
        return self.lease.backend if self.lease is not None else None

    def release(self, worker_seconds: float | None = None) -> None:
        """Give the backend's slot back, once: early when the worker has answered (with
        how long it took), else when the exchange ends."""
        if not self.released and self.lease is not None:
            self.released = True
            self.generation.dispatcher.release(self.lease, worker_seconds)

    def sticky_cookie(self) -> list[tuple[bytes, bytes]]:
        """The Set-Cookie a cookie-hash response carries, if the client needs one."""
        arrival = self.arrival
        dispatcher = self.generation.dispatcher
        return cookie_to_set(dispatcher.strategy, arrival.mount.cookie, arrival.cookie,
                             self.lease.moved, self.backend.index, len(dispatcher.backends))


@frozen
class AdmissionSettings:
    """What admission reads of the settings."""

    ip_from: str  # where the client's address comes from
    health_details: str  # who may see faucet's internals: "loopback", "all" or "none"
    worker_wait_timeout: float  # seconds a request may wait for a free worker

    @classmethod
    def of(cls, config: Config) -> AdmissionSettings:
        return cls(config.ip_from, config.health_details, config.worker_wait_timeout)


class Admission:
    """Admits the requests of every app behind the front door."""

    def __init__(self, settings: AdmissionSettings, mounts: Sequence[Mount], recorder: Recorder,
                 sessions: SessionHost, routes: RouteTable | None,
                 metrics: RequestMetrics | None = None):
        self.settings = settings
        self.metrics = metrics  # /__faucet__/metrics's counts; None with metrics = false
        self.mounts = list(mounts)
        self.recorder = recorder
        self.sessions = sessions
        self.routes = routes

    def locate(self, raw_path: bytes) -> tuple[Mount | None, bytes, bytes | None, bytes | None]:
        """(mount, path as the worker sees it, mount prefix, redirect location)."""
        if self.routes is None:
            return self.mounts[0], raw_path, None, None
        found = self.routes.match(raw_path.decode("latin-1"))
        if found is None:
            return None, raw_path, None, None
        if isinstance(found, Redirect):
            return None, raw_path, None, found.location.encode("latin-1")
        return (self.mounts[found.index], found.path.encode("latin-1"),
                found.prefix.encode("latin-1") or None, None)

    def client_of(self, request: Request, fields: RequestHeaders) -> IPAddress | None:
        """The client's address per ``ip_from``, the one faucet uses everywhere (balancing,
        logs, telemetry, who may see health details); BadClientIp when the header it
        names is missing or not an address."""
        return client_ip(request.peer, self.settings.ip_from, fields.forwarded_for,
                         fields.real_ip)

    def trusts(self, request: Request) -> bool:
        """Whether ``request`` may see worker pids and ports, error texts, metrics and the
        dashboard (``health_details``): with ``loopback``, when the client's address (per
        ``ip_from``: behind a proxy on the same host the TCP peer is always loopback) is
        loopback; a missing or bad client-IP header is not."""
        setting = self.settings.health_details
        if setting != "loopback":
            return setting == "all"
        try:
            address = self.client_of(request, read_request(request.headers))
        except BadClientIp:
            return False
        return address is not None and address.is_loopback

    def draft(self, request: Request, fields: RequestHeaders) -> EventDraft:
        """The telemetry draft of a refused ``request`` (a bad client-IP header is
        recorded with the TCP peer's address)."""
        try:
            ip = self.client_of(request, fields)
        except BadClientIp:
            ip = client_ip(request.peer, "client", None, None)
        mount, path, _, _ = self.locate(request.raw_path)
        return EventDraft(request, path, ip, fields.user_agent,
                          mount.route if mount else None)

    def refused(self, request: Request, status: int) -> None:
        """Record a request the front door refused before it reached here."""
        self.record(self.draft(request, read_request(request.headers)), status, None,
                    time.perf_counter())

    async def arrive(self, request: Request, send, started: float) -> Arrival | None:
        """The client's IP and the route. Refusals (400, 404, 308, 503) are answered
        through ``send`` and recorded here; ``send`` may be a WebSocket handshake's
        responder."""
        fields = read_request(request.headers)
        try:
            ip = self.client_of(request, fields)
        except BadClientIp as exc:
            status = await respond(send, 400, f"Bad Request: {exc}\n".encode())
            self.record(self.draft(request, fields), status, None, started)
            return None
        mount, path, prefix, redirect = self.locate(request.raw_path)
        draft = EventDraft(request, path, ip, fields.user_agent,
                           mount.route if mount else None)
        if mount is None:
            if redirect is not None:
                query = request.query
                location = redirect + (b"?" + query if query else b"")
                status = await respond(send, 308, b"", extra=[(b"location", location)])
            else:
                status = await respond(send, 404, b"Not Found: no route matches this path\n")
            self.record(draft, status, None, started)
            return None
        cookie = (mount.cookie.read(fields.cookies)
                  if mount.dispatcher.strategy == Strategy.COOKIE_HASH else None)
        # A Shiny app's session, and what belongs to it (faucet.proxy.shiny): a new
        # session goes where the client's sticky cookie points, while there is room.
        placement = BY_STRATEGY
        if mount.session_app:
            preferred = (mount.dispatcher.sticky_backend(cookie_key(cookie))
                         if cookie is not None else None)
            placement = self.sessions.place(mount, request, path, preferred)
        if placement.refusal == "full":
            status = await respond(send, 503, full_page(SESSIONS_RETRY_AFTER), b"text/html",
                                   extra=[(b"retry-after", str(SESSIONS_RETRY_AFTER).encode())])
            self.record(draft, status, None, started)
            return None
        return Arrival(request, fields, ip, mount, path, prefix, draft, started, cookie,
                       placement)

    async def claim(self, arrival: Arrival, send) -> Admitted | None:
        """A backend for the request; 503 + Retry-After (answered and recorded here) when
        none frees up within ``worker_wait_timeout`` or the queue is full."""
        mount = arrival.mount
        placement = arrival.placement
        if placement.refusal == "gone":  # a reconnect faucet refuses: no worker needed
            return Admitted(arrival, mount.live, None, time.perf_counter())
        key = sticky_key(mount.dispatcher.strategy, arrival.cookie, arrival.ip)
        try:
            # Most requests find a worker at once, without the cost of a cancel scope; a
            # Shiny session's requests go to its worker (faucet.proxy.shiny.sessions),
            # which may be draining after a reload.
            if placement.backend is not None:
                generation = mount.generation_of(placement.backend)
                lease = generation.dispatcher.try_acquire_on(placement.backend,
                                                             job=arrival.path)
                if lease is not None:
                    return Admitted(arrival, generation, lease, time.perf_counter())
            generation = mount.live
            lease = generation.dispatcher.try_acquire(key, job=arrival.path)
            if lease is not None:
                return Admitted(arrival, generation, lease, time.perf_counter())
            # No worker free now: only a request that must wait pays for what follows.
            if failing_to_start(mount.backends):
                status = await respond(send, 503, _cannot_start(mount.backends, arrival.ip),
                                       extra=[(b"retry-after", RETRY_AFTER)])
                self.record(arrival.draft, status, None, arrival.started)
                return None
            cold = _starting(arrival)  # a browser's page while the app is scaled to zero
            with trio.fail_after(STARTING_WAIT if cold else self.settings.worker_wait_timeout):
                while True:  # a reload retires the generation a request waits on
                    generation = mount.live
                    lease = generation.dispatcher.try_acquire(key, job=arrival.path)
                    if lease is None:
                        try:
                            lease = await generation.dispatcher.acquire(key, job=arrival.path)
                        except Retired:
                            continue
                    break
        except (trio.TooSlowError, QueueFull) as exc:
            if cold and not isinstance(exc, QueueFull):  # queued meanwhile: one is starting
                status = await respond(send, 503, STARTING_PAGE, b"text/html",
                                       extra=[(b"retry-after", str(STARTING_REFRESH).encode())])
                self.record(arrival.draft, status, None, arrival.started)
                return None
            why = ("the queue of waiting requests is full" if isinstance(exc, QueueFull)
                   else f"no worker was free within {self.settings.worker_wait_timeout:g}s")
            status = await respond(send, 503, f"Service Unavailable: {why}\n".encode(),
                                   extra=[(b"retry-after", RETRY_AFTER)])
            self.record(arrival.draft, status, None, arrival.started)
            return None
        return Admitted(arrival, generation, lease, time.perf_counter())

    def record(self, draft: EventDraft, status: int, backend: Backend | None,
               since: float) -> None:
        record_exchange(self.recorder, draft, status, backend, since, self.metrics)


def _cannot_start(backends: Sequence[Backend], ip) -> bytes:
    """The 503 of an app whose workers all exit before they accept connections; the last
    line the app wrote (R's error) only for a client on this machine."""
    text = ("Service Unavailable: the app is failing to start (its workers exit before "
            "accepting connections; faucet's log has their output)\n")
    last = next((b.last_output for b in backends if b.last_output), None)
    if last and ip is not None and ip.is_loopback:
        text += f"last error: {last}\n"
    return text.encode()


def _starting(arrival: Arrival) -> bool:
    """A browser asking for a page of an app scaled to zero (rps, ``min_workers = 0``,
    every worker stopped): it waits ``STARTING_WAIT`` (its request in the queue is what
    starts a worker), then gets the starting page. API clients wait as ever."""
    request = arrival.request
    return (request.method == "GET" and not request.websocket
            and wants_html(request.headers)
            and all(b.phase is Phase.STOPPED for b in arrival.mount.live.backends))
