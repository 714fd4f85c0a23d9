"""The ASGI app behind the front door: admit a request (client IP, route, a worker),
forward it, and answer every failure in HTTP.

Every outcome is an HTTP response: 400 for a bad client-IP header (``--ip-from``), 404
for no route, 503 + Retry-After when no worker frees up in time, 502 when the worker
breaks the exchange before answering, 504 when it does not answer within
``response_timeout``. Each exchange becomes one access-log line and one telemetry event.
"""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Sequence

import trio
from attrs import define

from faucet.config.settings import Config
from faucet.config.strategy import Strategy
from faucet.errors import BadRequestBody, ResponseRejected
from faucet.http.asgi import ClientGone, handshake_responder, peer, respond
from faucet.http.headers import ClientRequest, read_request, response_headers, upstream_headers
from faucet.http.http1 import encode_head
from faucet.http.ws_budget import WebSocketBudget
from faucet.pool.backend import Backend
from faucet.pool.balancer import (
    BadClientIp,
    client_ip,
    cookie_for_index,
    cookie_key,
    ip_key,
    parse_cookie,
    set_cookie_header,
)
from faucet.pool.dispatch import Lease, QueueFull
from faucet.proxy.accounting import EventDraft, record_exchange
from faucet.proxy.health import HEALTH_PATH, health
from faucet.proxy.mount import Mount
from faucet.proxy.request_body import RequestBody
from faucet.proxy.router import Redirect, RouteTable
from faucet.proxy.shiny.page_script import SCRIPT_SUFFIX, page_request_headers, with_script
from faucet.proxy.shiny.session_host import SessionHost
from faucet.proxy.shiny.sessions import (
    BY_STRATEGY,
    Placement,
    Refused,
    full_page,
    with_session_id,
)
from faucet.proxy.spool import ResponseSpool
from faucet.proxy.upstream import UpstreamError
from faucet.proxy.websocket import open_session, relay, worker_handshake
from faucet.telemetry.recorder import Recorder

RETRY_AFTER = b"5"
SESSIONS_RETRY_AFTER = 10  # seconds, when every worker has max_sessions sessions


@define(eq=False)
class Arrival:
    """A request faucet will serve: who sent it, which app, and its telemetry draft."""

    request: ClientRequest
    ip: object
    mount: Mount
    path: bytes  # as the worker sees it
    query: bytes
    prefix: bytes | None  # the route's mount point, for X-Forwarded-Prefix
    draft: EventDraft
    started: float  # perf_counter when the request arrived
    cookie: uuid.UUID | None = None  # the client's sticky cookie (cookie-hash)
    placement: Placement = BY_STRATEGY  # a Shiny app's session, if the request has one


@define(eq=False)
class Admitted:
    """A request that has a backend: what forwarding it needs, and its slot to release."""

    arrival: Arrival
    lease: Lease | None  # None: a reconnect for a session faucet no longer holds
    chosen: float  # perf_counter when the backend was chosen (telemetry's elapsed)
    released: bool = False

    @property
    def backend(self) -> Backend | None:
        return self.lease.backend if self.lease is not None else None

    @property
    def target(self) -> bytes:
        """The request target as the worker sees it."""
        arrival = self.arrival
        return arrival.path + b"?" + arrival.query if arrival.query else arrival.path

    def release(self, worker_seconds: float | None = None) -> None:
        """Give the backend's slot back, once: early when the worker has answered (with
        how long it took), else when the exchange ends."""
        if not self.released and self.lease is not None:
            self.released = True
            self.arrival.mount.dispatcher.release(self.lease, worker_seconds)


class Proxy:
    """The ASGI application the front door (faucet.front, hypercorn for upgrades) serves."""

    def __init__(self, config: Config, mounts: Sequence[Mount], recorder: Recorder,
                 stopping: trio.Event, websockets: WebSocketBudget, sessions: SessionHost,
                 routes: RouteTable | None = None):
        """``stopping`` is set when a shutdown begins, so open WebSocket sessions close
        at once; ``websockets`` bounds their number and memory; ``sessions`` holds the
        Shiny apps' sessions."""
        self.websockets = websockets
        self.sessions = sessions
        self.config = config
        self.stopping = stopping
        self.mounts = list(mounts)
        self.recorder = recorder
        self.routes = routes
        self.trust_forwarded = config.ip_from != "client"
        self.max_message = config.max_message_size
        self.buffer_size = config.proxy_buffer_size
        self.spool_size = config.max_spool_size

    def health_details(self, scope) -> bool:
        """Whether this client may see worker pids and ports (``health_details``)."""
        setting = self.config.health_details
        if setting != "loopback":
            return setting == "all"
        address = peer(scope)
        return address is not None and ipaddress.ip_address(address).is_loopback

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)

    def locate(self, scope) -> tuple[Mount | None, bytes, bytes | None, bytes | None]:
        """(mount, path as the worker sees it, mount prefix, redirect location)."""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if self.routes is None:
            return self.mounts[0], raw_path, None, None
        found = self.routes.match(raw_path.decode("latin-1"))
        if found is None:
            return None, raw_path, None, None
        if isinstance(found, Redirect):
            return None, raw_path, None, found.location.encode("latin-1")
        return (self.mounts[found.index], found.path.encode("latin-1"),
                found.prefix.encode("latin-1") or None, None)

    async def http(self, scope, receive, send) -> None:
        started = time.perf_counter()
        if scope["path"] == HEALTH_PATH:
            status, body = health(self.mounts, self.recorder.statistics(),
                                  self.websockets.statistics(), self.sessions.statistics(),
                                  details=self.health_details(scope))
            await respond(send, status, json.dumps(body).encode(), b"application/json")
            return
        if (scope["path"].endswith(SCRIPT_SUFFIX)  # under any path of a Shiny app only
                and (mount := self.locate(scope)[0]) is not None and mount.session_app):
            await respond(send, 200, self.sessions.script, b"text/javascript",
                          extra=[(b"cache-control", b"no-cache")])
            return
        arrival = await self.arrive(scope, send, started)
        if arrival is None:
            return
        body = await self.buffer_body(scope, receive, send, arrival)
        if body is False:
            return
        admitted = await self.claim(arrival, send)
        if admitted is None:
            return
        dispatcher = arrival.mount.dispatcher
        backend = admitted.backend
        extra = []
        if dispatcher.strategy == Strategy.COOKIE_HASH and (admitted.lease.moved or
                                                            arrival.cookie is None):
            count = len(dispatcher.backends)
            extra.append((b"set-cookie", set_cookie_header(
                cookie_for_index(backend.index, count), arrival.mount.cookie)))
        status = 0
        try:
            status = await self.forward(scope, send, admitted, body, extra)
        except BadRequestBody as exc:
            # The client's fault, found while its body went on: the worker never got a
            # complete request, so the event names no worker.
            backend = None
            status = await respond(send, exc.status, f"{exc}\n".encode())
        except ClientGone:
            status = 499
        finally:
            admitted.release()
            self.record(arrival.draft, status, backend, admitted.chosen)

    async def websocket(self, scope, receive, send) -> None:
        """Admit the handshake like HTTP, open the worker's leg, relay the session. One
        telemetry event per session: 101 when upgraded, else the HTTP status sent."""
        started = time.perf_counter()
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake reached us
        deny = handshake_responder(send)
        # The handshake as the HTTP GET it is: telemetry's method, X-Forwarded-Proto's scheme.
        scope = {**scope, "method": "GET",
                 "scheme": "https" if scope["scheme"] == "wss" else "http"}
        arrival = await self.arrive(scope, deny, started)
        if arrival is None:
            return
        if not arrival.mount.websockets:
            status = await respond(deny, 400, b"Bad Request: this app serves no WebSockets\n")
            self.record(arrival.draft, status, None, started)
            return
        refused = self.websockets.open_session(arrival.ip)
        if refused is not None:
            status = await respond(deny, 503, f"Service Unavailable: {refused}\n".encode(),
                                   extra=[(b"retry-after", RETRY_AFTER)])
            self.record(arrival.draft, status, None, started)
            return
        try:
            await self.websocket_session(scope, receive, send, deny, arrival)
        finally:
            self.websockets.close_session(arrival.ip)

    async def websocket_session(self, scope, receive, send, deny, arrival: Arrival) -> None:
        """One admitted WebSocket: a Shiny session resumed or opened, or a plain relay;
        ``deny`` answers the handshake in HTTP."""
        admitted = await self.claim(arrival, deny)
        if admitted is None:
            return
        placement = arrival.placement
        # A new Shiny session holds its id and counts on its worker from now on
        # (faucet.sessions.Reservation); a taken id or a client over its limit is refused.
        reservation = (self.sessions.reserve(placement, admitted.backend, arrival.ip)
                       if placement.opens else None)
        if isinstance(reservation, Refused):
            admitted.release()
            status = await respond(deny, reservation.status, f"{reservation.reason}\n".encode())
            self.record(arrival.draft, status, None, admitted.chosen)
            return
        status = 0
        try:
            if placement.session is not None or placement.refusal == "gone":
                # A Shiny session's reconnect: faucet.session_host resumes it or refuses it.
                admitted.release()
                status = 101
                await self.sessions.join(placement, scope, receive, send)
                return
            handshake = worker_handshake(arrival.request, admitted.target,
                                         self.headers_for(scope, arrival), scope)
            try:
                with trio.fail_after(self.config.response_timeout):
                    worker, status = await open_session(admitted.backend, handshake, send)
            except trio.TooSlowError:
                admitted.backend.note_timeout()
                status = await respond(deny, 504, b"Gateway Timeout: the worker did not "
                                       b"answer the upgrade within "
                                       + f"{self.config.response_timeout:g}s\n".encode())
                return
            finally:
                admitted.release()  # the slot covers the handshake, not the session
            if worker is not None and reservation is not None:
                await self.sessions.open(placement, reservation, worker, receive, send)
            elif worker is not None:
                admitted.backend.session_opened()
                try:
                    await relay(worker, receive, send, self.max_message, self.stopping,
                                self.websockets, self.config.websocket_idle_timeout)
                finally:
                    admitted.backend.session_closed()
        finally:
            if reservation is not None:
                reservation.release()
            self.record(arrival.draft, status, admitted.backend, admitted.chosen)

    async def arrive(self, scope, send, started: float) -> Arrival | None:
        """The client's IP and the route. Refusals (400, 404, 308) are answered through
        ``send`` and recorded here; ``send`` may be a WebSocket handshake's responder."""
        request = read_request(scope["headers"])
        try:
            ip = client_ip(peer(scope), self.config.ip_from, request.forwarded_for,
                           request.real_ip)
        except BadClientIp as exc:
            await respond(send, 400, f"Bad Request: {exc}\n".encode())
            return None
        mount, path, prefix, redirect = self.locate(scope)
        query = scope["query_string"]
        draft = EventDraft(scope, path, query, ip, request.user_agent,
                           mount.route if mount else None)
        if mount is None:
            if redirect is not None:
                location = redirect + (b"?" + query if query else b"")
                status = await respond(send, 308, b"", extra=[(b"location", location)])
            else:
                status = await respond(send, 404, b"Not Found: no route matches this path\n")
            self.record(draft, status, None, started)
            return None
        cookie = None
        if mount.dispatcher.strategy == Strategy.COOKIE_HASH and request.cookies:
            cookie = parse_cookie(request.cookies, mount.cookie)
        # -- Shiny apps: faucet.sessions places sessions and what belongs to them --
        # (a new session goes where the client's sticky cookie points, while there is room)
        preferred = (mount.dispatcher.sticky_backend(cookie_key(cookie))
                     if cookie is not None else None)
        placement = (self.sessions.place(mount, scope, path, preferred)
                     if mount.session_app else BY_STRATEGY)
        if placement.refusal == "full":
            status = await respond(send, 503, full_page(SESSIONS_RETRY_AFTER), b"text/html",
                                   extra=[(b"retry-after", str(SESSIONS_RETRY_AFTER).encode())])
            self.record(draft, status, None, started)
            return None
        return Arrival(request, ip, mount, path, query, prefix, draft, started, cookie,
                       placement)

    async def buffer_body(self, scope, receive, send, arrival: Arrival):
        """The request body read up to ``proxy_buffer_size`` before a worker is claimed,
        so a slow upload does not hold one: a RequestBody, None without a body, or False
        when the client failed (answered and recorded here)."""
        request = arrival.request
        unframed = scope["http_version"] == "2" and request.content_length is None
        if not (request.has_body or unframed):
            return None
        body = RequestBody(receive, self.config.client_body_timeout)
        try:
            await body.prefetch(self.buffer_size)
        except BadRequestBody as exc:
            status = await respond(send, exc.status, f"{exc}\n".encode())
            self.record(arrival.draft, status, None, arrival.started)
            return False
        except ClientGone:
            self.record(arrival.draft, 499, None, arrival.started)
            return False
        if body.complete:  # goes on with its length, whatever the client's framing
            request.chunked = False
            request.has_body = body.size > 0
            request.content_length = str(body.size).encode() if body.size or not unframed \
                else None
            return body if body.size else None
        if request.content_length is None:
            request.chunked = True  # HTTP/2 frames bodies itself; HTTP/1.1 needs chunks
        return body

    async def claim(self, arrival: Arrival, send) -> Admitted | None:
        """A backend for the request; 503 + Retry-After (answered and recorded here) when
        none frees up within ``worker_wait_timeout`` or the queue is full."""
        dispatcher = arrival.mount.dispatcher
        placement = arrival.placement
        if placement.refusal == "gone":  # a reconnect faucet refuses: no worker needed
            return Admitted(arrival, None, time.perf_counter())
        key = self.sticky_key(dispatcher.strategy, arrival)
        try:
            # Most requests find a worker at once, without the cost of a cancel scope; a
            # Shiny session's requests go to its worker (faucet.sessions.place).
            lease = (dispatcher.try_acquire_on(placement.backend, job=arrival.path)
                     if placement.backend is not None else None)
            lease = lease or dispatcher.try_acquire(key, job=arrival.path)
            if lease is None:
                with trio.fail_after(self.config.worker_wait_timeout):
                    lease = await dispatcher.acquire(key, job=arrival.path)
        except (trio.TooSlowError, QueueFull) as exc:
            why = ("the queue of waiting requests is full" if isinstance(exc, QueueFull)
                   else f"no worker was free within {self.config.worker_wait_timeout:g}s")
            status = await respond(send, 503, f"Service Unavailable: {why}\n".encode(),
                                   extra=[(b"retry-after", RETRY_AFTER)])
            self.record(arrival.draft, status, None, arrival.started)
            return None
        return Admitted(arrival, lease, time.perf_counter())

    def sticky_key(self, strategy: Strategy, arrival: Arrival) -> int | None:
        """The key a sticky strategy maps to a worker; None places the request by load
        (a browser without a cookie yet gets one for the worker chosen)."""
        if strategy == Strategy.COOKIE_HASH:
            return cookie_key(arrival.cookie) if arrival.cookie is not None else None
        if strategy == Strategy.IP_HASH and arrival.ip is not None:
            return ip_key(arrival.ip)
        return None

    def headers_for(self, scope, arrival: Arrival) -> list[tuple[bytes, bytes]]:
        """The headers the worker receives for a request (a Shiny app's with the session's
        FAUCET_SESSION_ID, and a page it asks for uncompressed: faucet.page_script)."""
        headers = upstream_headers(arrival.request, scheme=scope["scheme"], peer=peer(scope),
                                   trust_forwarded=self.trust_forwarded, prefix=arrival.prefix,
                                   request_uuid=arrival.draft.request_uuid)
        if arrival.mount.session_app:
            headers = page_request_headers(
                with_session_id(headers, arrival.placement.session_id), scope["method"])
        return headers

    async def forward(self, scope, send, admitted: Admitted, body: RequestBody | None,
                      extra) -> int:
        """Send the request to the admitted backend and stream its response back; the
        status sent. The backend's slot is released as soon as the worker has answered
        completely, before the client has read the answer: a response up to
        ``proxy_buffer_size`` is read whole first, a longer one goes through a spool of
        that much memory and up to ``max_spool_size`` on disk, so a slow reader holds a
        worker only for what exceeds both."""
        arrival = admitted.arrival
        method = scope["method"]
        head = encode_head(method, admitted.target, self.headers_for(scope, arrival))
        pool = arrival.mount.pools[admitted.backend.index]
        timeout = self.config.response_timeout
        with trio.move_on_after(timeout) as clock:
            if body is not None:
                body.pause_while_reading(clock, timeout)
            try:
                conn, response = await pool.exchange(
                    head, method, body.next_piece if body is not None else None,
                    arrival.request.chunked)
                # A Shiny page gets the reconnect script: (response, whole body) or None.
                page = await with_script(response, conn) if arrival.mount.session_app else None
            except UpstreamError as exc:
                return await respond(send, 502, f"Bad Gateway: {exc}\n".encode())
        if clock.cancelled_caught:
            admitted.backend.note_timeout()
            return await respond(send, 504, b"Gateway Timeout: the worker did not answer within "
                                 + f"{timeout:g}s\n".encode())
        admitted.backend.note_answer()
        if page is not None:
            response = page[0]
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": response_headers(response.headers) + extra})
            if page is not None or (response.length is not None
                                    and response.length <= self.buffer_size):
                data = page[1] if page is not None else await conn.read_body()
                self._done(pool, conn, admitted)
                conn = None
                await send({"type": "http.response.body", "body": data, "more_body": False})
            else:
                conn, pumped = None, conn  # the pump owns it now
                await self._pump(pool, pumped, admitted, send)
        except ResponseRejected:
            return 502  # the front answered it: the worker's head is not valid HTTP
        finally:
            if conn is not None:
                pool.put_back(conn)  # closes it: the exchange did not complete
        return response.status

    def _done(self, pool, conn, admitted: Admitted) -> None:
        """The worker's response has been read whole: its connection and slot are free."""
        pool.put_back(conn)
        admitted.release(time.perf_counter() - admitted.chosen)

    async def _pump(self, pool, conn, admitted: Admitted, send) -> None:
        """Relay a long or open-ended response body through a ResponseSpool: one task
        reads the worker (and frees it once the body is complete), the other writes to
        the client at the client's pace."""
        spool = ResponseSpool(self.buffer_size, self.spool_size)

        async def read_worker() -> None:
            try:
                while chunk := await conn.body_chunk():
                    await spool.put(chunk)
            except BaseException:
                pool.put_back(conn)  # closes it: the exchange did not complete
                raise
            spool.close()
            self._done(pool, conn, admitted)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_worker)
                while chunk := await spool.get():
                    await send({"type": "http.response.body", "body": chunk,
                                "more_body": True})
        finally:
            await spool.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def record(self, draft: EventDraft, status: int, backend: Backend | None,
               since: float) -> None:
        record_exchange(self.recorder, draft, status, backend, since)
