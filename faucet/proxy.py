"""The ASGI front door: pick a worker, forward the exchange, answer errors in HTTP.

Every outcome is an HTTP response: 400 for a bad client-IP header (``--ip-from``), 404
for no route, 503 + Retry-After when no worker frees up in time, 502 when the worker
breaks the exchange before answering, 504 when it does not answer within
``response_timeout``. Each exchange becomes one telemetry event.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import attrs
import trio
from attrs import define

from faucet.backend import Backend
from faucet.balancer import (
    BadClientIp,
    client_ip,
    cookie_for_index,
    cookie_key,
    ip_key,
    parse_cookie,
    set_cookie_header,
)
from faucet.config import Config
from faucet.dispatch import Dispatcher, Lease, QueueFull
from faucet.events import HttpEvent, uuid7
from faucet.front import ResponseRejected, http_date
from faucet.http1 import LAST_CHUNK, encode_chunk, encode_head
from faucet.logs import log_access
from faucet.router import Redirect, RouteTable
from faucet.strategy import Strategy
from faucet.telemetry import Recorder
from faucet.upstream import UpstreamError, UpstreamPool

HEALTH_PATH = "/__faucet__/health"
RETRY_AFTER = b"5"
# RFC 9110 7.6.1: connection-specific fields never forwarded (plus those that
# Connection names). ``expect`` is answered by the front door on the client side.
HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection te trailer transfer-encoding upgrade expect".split()
)


@define(eq=False)
class Mount:
    """One app behind the proxy: its workers, their connection pools and its dispatcher.
    ``route`` is None in ``faucet start`` mode."""

    route: str | None
    dispatcher: Dispatcher
    pools: list[UpstreamPool]

    @property
    def backends(self) -> list[Backend]:
        return self.dispatcher.backends


@define(eq=False)
class Admitted:
    """A request that has a backend: what forwarding it needs, and its slot to release."""

    mount: Mount
    lease: Lease
    request: _Request
    path: bytes  # as the worker sees it
    query: bytes
    prefix: bytes | None  # the route's mount point, for X-Forwarded-Prefix
    ip: object
    draft: EventDraft
    chosen: float  # perf_counter when the backend was chosen (telemetry's elapsed)
    released: bool = False

    @property
    def backend(self) -> Backend:
        return self.lease.backend

    def release(self, worker_seconds: float | None = None) -> None:
        """Give the backend's slot back, once: early when the worker has answered (with
        how long it took), else when the exchange ends."""
        if not self.released:
            self.released = True
            self.mount.dispatcher.release(self.lease, worker_seconds)


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


@define(slots=True)
class _Request:
    """What the proxy reads from the client's request in one pass over its headers."""

    headers: list[tuple[bytes, bytes]]
    has_body: bool
    chunked: bool = False  # body without Content-Length: sent on with chunked framing
    forwarded_for: bytes | None = None
    real_ip: bytes | None = None
    host: bytes | None = None
    cookie: uuid.UUID | None = None
    user_agent: str | None = None
    proto: bytes | None = None
    forwarded_host: bytes | None = None


def hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The fields of ``headers`` never forwarded: RFC 9110's connection-specific ones
    plus any that a Connection header names (lower-case names expected)."""
    named = [token.strip().lower() for name, value in headers if name == b"connection"
             for token in value.split(b",")]
    return HOP_BY_HOP.union(named) if named else HOP_BY_HOP


def read_request(scope_headers: Sequence[tuple[bytes, bytes]]) -> _Request:
    """Split the client's headers into those forwarded and those faucet acts on."""
    dropped = hop_by_hop(scope_headers)
    request = _Request(headers=[], has_body=False)
    forwarded = request.headers
    for name, value in scope_headers:
        if name == b"content-length":
            request.has_body = value.strip() != b"0"
        elif name == b"transfer-encoding":
            request.has_body = request.chunked = True
        if name in dropped:
            continue
        if name == b"x-forwarded-for":
            request.forwarded_for = value
            continue  # rewritten below, with the client appended
        if name == b"x-forwarded-proto":
            request.proto = value
            continue
        if name == b"x-forwarded-host":
            request.forwarded_host = value
            continue
        if name == b"x-real-ip":
            request.real_ip = value
        elif name == b"host":
            request.host = value
        elif name == b"cookie":
            request.cookie = request.cookie or parse_cookie(value)
        elif name == b"user-agent":
            request.user_agent = value.decode("latin-1")
        forwarded.append((name, value))
    return request


class Proxy:
    """The ASGI application the front door (faucet.front, hypercorn for upgrades) serves."""

    def __init__(self, config: Config, mounts: Sequence[Mount], recorder: Recorder,
                 on_websocket, stopping: trio.Event, routes: RouteTable | None = None):
        """``on_websocket(proxy, scope, receive, send)`` serves WebSocket scopes
        (faucet.websocket builds on this module, so it is handed in); ``stopping`` is set
        when a shutdown begins, so open WebSocket sessions close at once."""
        self.config = config
        self.on_websocket = on_websocket
        self.stopping = stopping
        self.mounts = list(mounts)
        self.recorder = recorder
        self.routes = routes
        self.trust_forwarded = config.ip_from != "client"

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.on_websocket(self, scope, receive, send)

    def health(self) -> tuple[int, dict]:
        workers = [b.state() for m in self.mounts for b in m.backends]
        online = sum(w["online"] for w in workers)
        body = {"status": "ok" if online else "unavailable", "online": online,
                "workers": workers,
                "queued": sum(m.dispatcher.queued() for m in self.mounts),
                "telemetry": attrs.asdict(self.recorder.statistics())}
        return (200 if online else 503), body

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
            status, body = self.health()
            await respond(send, status, json.dumps(body).encode(), b"application/json")
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
        finally:
            admitted.release()
            self.record(admitted.draft, status, backend, admitted.chosen)

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
        key = self.sticky_key(dispatcher.strategy, request, ip)
        try:
            # Most requests find a worker at once, without the cost of a cancel scope.
            lease = dispatcher.try_acquire(key, job=path)
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
                        time.perf_counter())

    def sticky_key(self, strategy: Strategy, request: _Request, ip) -> int | None:
        if strategy == Strategy.COOKIE_HASH and request.cookie is not None:
            return cookie_key(request.cookie)
        if strategy.sticky and ip is not None:
            # A browser's first requests carry no cookie yet: hashing its address puts
            # them all on the worker its new cookie will point to.
            return ip_key(ip)
        return None

    def upstream_headers(self, scope, request: _Request, ip, prefix, request_uuid) -> list:
        """The client's end-to-end headers plus faucet's X-Forwarded-* and request id."""
        headers = request.headers
        client = str(ip) if ip is not None else None
        if request.forwarded_for is not None and client is not None:
            headers.append((b"x-forwarded-for", request.forwarded_for + b", " + client.encode()))
        elif request.forwarded_for is not None:
            headers.append((b"x-forwarded-for", request.forwarded_for))
        elif client is not None:
            headers.append((b"x-forwarded-for", client.encode()))
        trusted = self.trust_forwarded
        headers.append((b"x-forwarded-proto", request.proto if trusted and request.proto
                        else scope["scheme"].encode()))
        host = request.forwarded_host if trusted and request.forwarded_host else request.host
        if host is not None:
            headers.append((b"x-forwarded-host", host))
        else:
            headers.append((b"host", b"localhost"))
        if prefix is not None:
            headers.append((b"x-forwarded-prefix", prefix))
        headers.append((b"faucet-request-uuid", str(request_uuid).encode()))
        if request.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        return headers

    async def forward(self, scope, receive, send, admitted: Admitted, extra) -> int:
        """Send the request to the admitted backend and stream its response back; the
        status sent. The backend's slot is released as soon as the worker has answered
        completely, before the last write to the client, so a queued request can reach
        the (single-threaded) R process without waiting on the client."""
        request, path, query = admitted.request, admitted.path, admitted.query
        target = path + b"?" + query if query else path
        method = scope["method"]
        head = encode_head(method, target, self.upstream_headers(
            scope, request, admitted.ip, admitted.prefix, admitted.draft.request_uuid))
        backend = admitted.backend
        pool = admitted.mount.pools[backend.index]
        try:
            with trio.fail_after(self.config.response_timeout):
                conn, response = await _exchange(pool, head, method, receive, request)
        except trio.TooSlowError:
            return await respond(send, 504, b"Gateway Timeout: the worker did not answer within "
                                 + f"{self.config.response_timeout:g}s\n".encode())
        except UpstreamError as exc:
            return await respond(send, 502, f"Bad Gateway: {exc}\n".encode())
        except ClientGone:
            return 499
        try:
            await send({"type": "http.response.start", "status": response.status,
                        "headers": _response_headers(response.headers) + extra})
            # One chunk of lookahead: the last one goes out with more_body=False, which
            # saves hypercorn a whole message per response (most bodies are one chunk).
            body = await conn.body_chunk()
            while chunk := await conn.body_chunk():
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
        """The exchange's access-log line and telemetry event."""
        elapsed = (time.perf_counter() - since) * 1000
        scope = draft.scope
        http_version = "HTTP/" + scope["http_version"]
        raw_path = (scope.get("raw_path") or draft.path).decode("latin-1")
        query = draft.query.decode("latin-1")
        log_access(str(draft.ip) if draft.ip else "-", scope["method"],
                   raw_path + "?" + query if query else raw_path, http_version, status,
                   draft.user_agent, elapsed, backend.worker_id if backend else None,
                   draft.route)
        recorder = self.recorder
        if recorder.enabled:
            recorder.record(HttpEvent(
                request_uuid=draft.request_uuid,
                namespace=recorder.namespace,
                version=recorder.version,
                target=backend.target if backend else None,
                worker_route=draft.route,
                worker_id=backend.worker_id if backend else None,
                ip_addr=draft.ip,
                method=scope["method"],
                path=draft.path.decode("latin-1"),
                query_params=query or None,
                http_version=http_version,
                status=status,
                user_agent=draft.user_agent,
                elapsed=round(elapsed),
                time=datetime.now(UTC),
            ))


@define(slots=True)
class EventDraft:
    """What is known of an exchange before the response: its telemetry event's inputs."""

    scope: dict
    path: bytes  # as the worker sees it
    query: bytes
    ip: object
    user_agent: str | None
    route: str | None
    request_uuid: uuid.UUID = attrs.Factory(uuid7)


async def _exchange(pool: UpstreamPool, head: bytes, method: str, receive,
                    request: _Request):
    """Send the request and read the response head.

    The first piece of the body is read before the worker is contacted so that head and
    body leave in one write; a request held whole in memory that finds its pooled
    connection closed by the worker is retried once on a new connection.
    """
    payload, more = head, False
    if request.has_body:
        data, more = await _body_piece(receive)
        payload += _frame(data, more, request.chunked)
    while True:
        conn, reused = await pool.connection()
        try:
            await conn.send(payload)
            streamed = more
            while more:
                data, more = await _body_piece(receive)
                await conn.send(_frame(data, more, request.chunked))
            return conn, await conn.response_head(method)
        except UpstreamError:
            conn.close()
            if reused and not streamed:
                continue
            raise
        except BaseException:
            conn.close()
            raise


async def _body_piece(receive) -> tuple[bytes, bool]:
    """The next piece of the client's request body and whether more follows."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    return message.get("body", b""), message.get("more_body", False)


def _frame(data: bytes, more: bool, chunked: bool) -> bytes:
    if not chunked:
        return data
    return (encode_chunk(data) if data else b"") + (b"" if more else LAST_CHUNK)


def _response_headers(headers) -> list[tuple[bytes, bytes]]:
    dropped = hop_by_hop(headers)
    out = [(name, value) for name, value in headers if name not in dropped]
    if not any(name == b"date" for name, _ in out):
        out.append((b"date", http_date()))
    return out


async def respond(send, status: int, body: bytes, content_type: bytes = b"text/plain",
                  extra: Sequence[tuple[bytes, bytes]] = ()) -> int:
    """A response faucet writes itself; returns the status for telemetry."""
    headers = [(b"content-type", content_type + (b"; charset=utf-8"
                                                 if content_type == b"text/plain" else b"")),
               (b"content-length", str(len(body)).encode()), (b"date", http_date()),
               *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


def peer(scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
