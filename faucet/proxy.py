"""The ASGI app behind the front door: admit a request (client IP, route, a worker),
forward it, and answer every failure in HTTP.

Every outcome is an HTTP response: 400 for a bad client-IP header (``--ip-from``), 404
for no route, 503 + Retry-After when no worker frees up in time, 502 when the worker
breaks the exchange before answering, 504 when it does not answer within
``response_timeout``. Each exchange becomes one access-log line and one telemetry event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import trio
from attrs import define

from faucet.accounting import EventDraft, record_exchange
from faucet.asgi import ClientGone, body_piece, handshake_responder, peer, respond
from faucet.backend import Backend
from faucet.balancer import (
    BadClientIp,
    client_ip,
    cookie_for_index,
    cookie_key,
    ip_key,
    set_cookie_header,
)
from faucet.config import Config
from faucet.dispatch import Lease, QueueFull
from faucet.errors import BadRequestBody, ResponseRejected
from faucet.headers import ClientRequest, read_request, response_headers, upstream_headers
from faucet.health import HEALTH_PATH, health
from faucet.http1 import encode_head
from faucet.hypercorn_adapter import DEFAULT_MAX_MESSAGE
from faucet.mount import Mount
from faucet.page_script import SCRIPT_SUFFIX, with_script
from faucet.router import Redirect, RouteTable
from faucet.session_host import SessionHost
from faucet.sessions import BY_STRATEGY, Placement, Reservation, full_page, with_session_id
from faucet.strategy import Strategy
from faucet.telemetry import Recorder
from faucet.upstream import UpstreamError
from faucet.websocket import open_session, relay, worker_handshake

RETRY_AFTER = b"5"
SESSIONS_RETRY_AFTER = 10  # seconds, when every worker has max_sessions sessions


@define(eq=False)
class Admitted:
    """A request that has a backend: what forwarding it needs, and its slot to release."""

    mount: Mount
    lease: Lease | None  # None: a reconnect for a session faucet no longer holds
    request: ClientRequest
    path: bytes  # as the worker sees it
    query: bytes
    prefix: bytes | None  # the route's mount point, for X-Forwarded-Prefix
    ip: object
    draft: EventDraft
    chosen: float  # perf_counter when the backend was chosen (telemetry's elapsed)
    placement: Placement = BY_STRATEGY  # a Shiny app's session, if the request has one
    released: bool = False

    @property
    def backend(self) -> Backend | None:
        return self.lease.backend if self.lease is not None else None

    @property
    def target(self) -> bytes:
        """The request target as the worker sees it."""
        return self.path + b"?" + self.query if self.query else self.path

    def release(self, worker_seconds: float | None = None) -> None:
        """Give the backend's slot back, once: early when the worker has answered (with
        how long it took), else when the exchange ends."""
        if not self.released and self.lease is not None:
            self.released = True
            self.mount.dispatcher.release(self.lease, worker_seconds)


class Proxy:
    """The ASGI application the front door (faucet.front, hypercorn for upgrades) serves."""

    def __init__(self, config: Config, mounts: Sequence[Mount], recorder: Recorder,
                 stopping: trio.Event, sessions: SessionHost,
                 routes: RouteTable | None = None):
        """``stopping`` is set when a shutdown begins, so open WebSocket sessions close
        at once; ``sessions`` holds the Shiny apps' sessions."""
        self.config = config
        self.stopping = stopping
        self.sessions = sessions
        self.mounts = list(mounts)
        self.recorder = recorder
        self.routes = routes
        self.trust_forwarded = config.ip_from != "client"
        self.max_message = config.max_message_size or DEFAULT_MAX_MESSAGE

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
                                  self.sessions.statistics())
            await respond(send, status, json.dumps(body).encode(), b"application/json")
            return
        if scope["path"].endswith(SCRIPT_SUFFIX):  # Shiny's reconnect script, under any prefix
            await respond(send, 200, self.sessions.script, b"text/javascript",
                          extra=[(b"cache-control", b"no-cache")])
            return
        admitted = await self.admit(scope, send, started)
        if admitted is None:
            return
        dispatcher = admitted.mount.dispatcher
        backend = admitted.backend
        extra = []
        if dispatcher.strategy == Strategy.COOKIE_HASH and (admitted.lease.moved or
                                                     admitted.request.cookie is None):
            count = len(dispatcher.backends)
            extra.append((b"set-cookie",
                          set_cookie_header(cookie_for_index(backend.index, count))))
        status = 0
        try:
            status = await self.forward(scope, receive, send, admitted, extra)
        except BadRequestBody as exc:
            # The client's fault, found while its body went on: the worker never got a
            # complete request, so the event names no worker.
            backend = None
            status = await respond(send, exc.status, f"{exc}\n".encode())
        finally:
            admitted.release()
            self.record(admitted.draft, status, backend, admitted.chosen)

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
        admitted = await self.admit(scope, deny, started)
        if admitted is None:
            return
        placement = admitted.placement
        # A new Shiny session counts on its worker from now on (faucet.sessions.Reservation).
        reservation = Reservation(admitted.backend) if placement.opens else None
        status = 0
        try:
            if placement.session is not None or placement.refusal == "gone":
                # A Shiny session's reconnect: faucet.session_host resumes it or refuses it.
                admitted.release()
                status = 101
                await self.sessions.join(placement, scope, receive, send)
                return
            handshake = worker_handshake(admitted.request, admitted.target,
                                         self.headers_for(scope, admitted), scope)
            try:
                with trio.fail_after(self.config.response_timeout):
                    worker, status = await open_session(admitted.backend, handshake, send)
            except trio.TooSlowError:
                status = await respond(deny, 504, b"Gateway Timeout: the worker did not "
                                       b"answer the upgrade within "
                                       + f"{self.config.response_timeout:g}s\n".encode())
                return
            finally:
                admitted.release()  # the slot covers the handshake, not the session
            if worker is not None and reservation is not None:
                await self.sessions.open(placement, reservation, worker, receive, send)
            elif worker is not None:
                await relay(worker, receive, send, self.max_message, self.stopping)
        finally:
            if reservation is not None:
                reservation.release()
            self.record(admitted.draft, status, admitted.backend, admitted.chosen)

    async def admit(self, scope, send, started: float) -> Admitted | None:
        """Everything before the worker: the client's IP, the route and a backend.

        Refusals (400, 404, 308, 503) are answered through ``send`` and recorded here;
        ``send`` may be a WebSocket handshake's HTTP-response adapter.
        """
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
        dispatcher = mount.dispatcher
        # -- Shiny apps: faucet.sessions places sessions and what belongs to them --
        placement = self.sessions.place(mount, scope, path) if mount.session_app else BY_STRATEGY
        if placement.refusal == "full":
            status = await respond(send, 503, full_page(SESSIONS_RETRY_AFTER), b"text/html",
                                   extra=[(b"retry-after", str(SESSIONS_RETRY_AFTER).encode())])
            self.record(draft, status, None, started)
            return None
        if placement.refusal == "gone":
            return Admitted(mount, None, request, path, query, prefix, ip, draft,
                            time.perf_counter(), placement)
        # -- end of the Shiny hook --
        key = self.sticky_key(dispatcher.strategy, request, ip)
        try:
            # Most requests find a worker at once, without the cost of a cancel scope.
            lease = (dispatcher.try_acquire_on(placement.backend, job=path)
                     if placement.backend is not None else None)
            lease = lease or dispatcher.try_acquire(key, job=path)
            if lease is None:
                with trio.fail_after(self.config.worker_wait_timeout):
                    lease = await dispatcher.acquire(key, job=path)
        except (trio.TooSlowError, QueueFull) as exc:
            why = ("the queue of waiting requests is full" if isinstance(exc, QueueFull)
                   else f"no worker was free within {self.config.worker_wait_timeout:g}s")
            status = await respond(send, 503, f"Service Unavailable: {why}\n".encode(),
                                   extra=[(b"retry-after", RETRY_AFTER)])
            self.record(draft, status, None, started)
            return None
        return Admitted(mount, lease, request, path, query, prefix, ip, draft,
                        time.perf_counter(), placement)

    def sticky_key(self, strategy: Strategy, request: ClientRequest, ip) -> int | None:
        if strategy == Strategy.COOKIE_HASH and request.cookie is not None:
            return cookie_key(request.cookie)
        if strategy.sticky and ip is not None:
            # A browser's first requests carry no cookie yet: hashing its address puts
            # them all on the worker its new cookie will point to.
            return ip_key(ip)
        return None

    def headers_for(self, scope, admitted: Admitted) -> list[tuple[bytes, bytes]]:
        """The headers the worker receives for an admitted request (a Shiny app's with
        the session's FAUCET_SESSION_ID)."""
        headers = upstream_headers(admitted.request, scheme=scope["scheme"], peer=peer(scope),
                                   trust_forwarded=self.trust_forwarded,
                                   prefix=admitted.prefix,
                                   request_uuid=admitted.draft.request_uuid)
        if admitted.mount.session_app:
            headers = with_session_id(headers, admitted.placement.session_id)
        return headers

    async def forward(self, scope, receive, send, admitted: Admitted, extra) -> int:
        """Send the request to the admitted backend and stream its response back; the
        status sent. The backend's slot is released as soon as the worker has answered
        completely, before the last write to the client, so a queued request can reach
        the (single-threaded) R process without waiting on the client."""
        request = admitted.request
        method = scope["method"]
        body = (lambda: body_piece(receive)) if request.has_body else None
        try:
            if scope["http_version"] == "2" and request.content_length is None:
                body = await _h2_body(request, receive)
        except ClientGone:
            return 499
        head = encode_head(method, admitted.target, self.headers_for(scope, admitted))
        pool = admitted.mount.pools[admitted.backend.index]
        try:
            with trio.fail_after(self.config.response_timeout):
                conn, response = await pool.exchange(head, method, body, request.chunked)
                source = conn  # where the body comes from
                if admitted.mount.session_app:  # a Shiny page gets the reconnect script
                    response, source = await with_script(response, conn)
        except trio.TooSlowError:
            return await respond(send, 504, b"Gateway Timeout: the worker did not answer within "
                                 + f"{self.config.response_timeout:g}s\n".encode())
        except UpstreamError as exc:
            return await respond(send, 502, f"Bad Gateway: {exc}\n".encode())
        except ClientGone:
            return 499
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": response_headers(response.headers) + extra})
            # One chunk of lookahead: the last one goes out with more_body=False, which
            # saves the front a whole message per response (most bodies are one chunk).
            body = await source.body_chunk()
            while chunk := await source.body_chunk():
                await send({"type": "http.response.body", "body": body, "more_body": True})
                body = chunk
            pool.put_back(conn)
            conn = None
            admitted.release(time.perf_counter() - admitted.chosen)
            await send({"type": "http.response.body", "body": body, "more_body": False})
        except ResponseRejected:
            return 502  # the front answered it: the worker's head is not valid HTTP
        finally:
            if conn is not None:
                pool.put_back(conn)  # closes it: the exchange did not complete
        return response.status

    def record(self, draft: EventDraft, status: int, backend: Backend | None,
               since: float) -> None:
        record_exchange(self.recorder, draft, status, backend, since)


async def _h2_body(request: ClientRequest, receive):
    """The body source of an HTTP/2 request without content-length (HTTP/2 frames bodies
    itself): None when it has none, else one that starts with the piece read here, and
    the request goes to the worker chunked."""
    first = await body_piece(receive)
    if first == (b"", False):
        return None
    request.has_body = request.chunked = True
    pending = [first]

    async def next_piece() -> tuple[bytes, bool]:
        return pending.pop() if pending else await body_piece(receive)

    return next_piece
