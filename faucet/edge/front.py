"""The front door's listener: plain HTTP/1.1 served here, upgrades handed to hypercorn.

Why not hypercorn for every request: measured here with a trivial ASGI app, hypercorn's
HTTP/1.1 path costs ~0.42 ms of CPU per request (a task, a channel and an idle-timer task
per request, two writes per response), while one task per connection parsing requests and
calling the app inline costs ~0.10 ms. On a 2-core box where R needs ~1.5 ms per request,
that difference is ~15% of faucet's throughput. So requests are parsed here (llhttp, see
``faucet.edge.http11``) and the ASGI app is called in the connection's own task; a
response's head and first body piece leave in one write.

The app is faucet's Proxy: ``serve_http(request, receive, send)`` for a request on this
path (a ``faucet.http.request.Request`` built here from the parsed head, no ASGI scope dict),
``refused(request, status)`` for a request refused here (413, 431, 400 for ambiguous
framing), so every answer is accounted for, and the ASGI callable for hypercorn.

hypercorn keeps everything else: a request that asks for an ``Upgrade`` (WebSocket, h2c)
or a connection that opens with the HTTP/2 preface is handed to hypercorn's own connection
server, with the bytes already read replayed first. Its config supplies the binds, the
keep-alive timeout, the head size limit and the graceful timeout.

Shutdown: from ``closing`` on, each response says ``Connection: close``; a connection
whose last response did not (it began before) stays open and answers its next request
so. At ``stopping``: stop accepting, close the connections that wait for a request none
of whose bytes has arrived, serve the rest, then cancel what is left after the graceful
timeout. Between the two, a connection is never closed right after a response that let
the client keep it (a load balancer may be sending it the next request that moment).
"""

from __future__ import annotations

import array
import errno
import fcntl
import logging
import re
import termios
from http import HTTPStatus

import trio
from attrs import frozen

from faucet.edge.h2_protocol import H2Rules
from faucet.edge.http11 import (
    END,
    BadRequest,
    InvalidResponse,
    RequestHead,
    RequestParser,
    ResponseFramer,
)
from faucet.edge.hypercorn_adapter import HandOff, HypercornConfig, listeners
from faucet.errors import BadRequestBody, ResponseRejected
from faucet.http import socket_io
from faucet.http.headers import http_date
from faucet.http.request import Request, parse_request_line
from faucet.ratelimit import RateLimit

log = logging.getLogger("faucet.front")
RECEIVE_SIZE = 65536
H2_PREFACE = b"PRI * HTTP/2.0"
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
_DISCONNECT = {"type": "http.disconnect"}
_HEAD_END = re.compile(rb"\n\r?\n")  # where a head ends (read on, and let the parser judge)
_HEAD_TOO_LARGE = "Request Header Fields Too Large: the head is over %d bytes"
_NO_H2C = ("HTTP Version Not Supported: HTTP/1.x here; cleartext HTTP/2 is served only, "
           "with the setting h2c, from the start of a connection")


# accept() errors that mean "out of resources for now": wait and try again.
_ACCEPT_CAPACITY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY = 0.1  # seconds
SLOT_RECHECK = 0.1  # seconds, at the cap with a client waiting and no head to give up
ERROR_LOG_EVERY = 10.0  # seconds between two log lines about one recurring error


@frozen
class Limits:
    """What clients may ask of the front door."""

    max_body: int = 1024 ** 3  # bytes of request body (413 above it)
    max_connections: int = 4096  # open client connections (more wait in the backlog)
    head_timeout: float = 10.0  # seconds for a whole request head, once begun (408)
    send_timeout: float = 60.0  # seconds a client may take to accept a write
    h2c: bool = False  # cleartext HTTP/2 (prior knowledge or Upgrade: h2c) is served
    h2_max_streams: int = 100  # requests under way on one HTTP/2 connection
    h2_max_resets: int = 100  # streams one HTTP/2 connection may reset before GOAWAY


async def serve(app, config: HypercornConfig, stopping: trio.Event, limits: Limits = Limits(),
                *, closing: trio.Event | None = None,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` on ``config.bind`` until ``stopping`` is set and the connections have
    drained (or ``config.graceful_timeout`` has passed). From ``closing`` on (default:
    ``stopping``), each response says ``Connection: close``. Started with the bound URLs."""
    bound, binds = listeners(config)
    front = Front(app, config, stopping, limits, closing)
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            for listener in bound:
                accepting.start_soon(front.accept, listener, connections)
            task_status.started(binds)
            await stopping.wait()
            accepting.cancel_scope.cancel()
        await front.close_idle()
        connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout


class Front:
    """The per-connection HTTP/1.1 loop, and what shutdown needs to reach idle ones."""

    def __init__(self, app, config: HypercornConfig, stopping: trio.Event, limits: Limits,
                 closing: trio.Event | None = None):
        self.app = app
        self.limits = limits
        self.stopping = stopping
        # from then on, no connection is kept alive
        self.closing = closing if closing is not None else stopping
        self.keep_alive = config.keep_alive_timeout
        self.max_head = config.h11_max_incomplete_size
        # connections between requests, before a byte of the next head has arrived
        self.waiting: dict[trio.CancelScope, trio.SocketStream] = {}
        self.slots = trio.Semaphore(limits.max_connections)
        self.hand_off = HandOff(app, config, H2Rules(
            max_streams=limits.h2_max_streams, max_resets=limits.h2_max_resets,
            max_head=self.max_head, send_timeout=limits.send_timeout, slots=self.slots,
            refused=getattr(app, "refused", None)))
        self.accept_errors = RateLimitedLog(ERROR_LOG_EVERY)
        self.connection_errors = RateLimitedLog(ERROR_LOG_EVERY)
        self.unparsed = RateLimitedLog(ERROR_LOG_EVERY)
        self.shed = RateLimitedLog(ERROR_LOG_EVERY)
        # Connections waiting for (the rest of) a request head, oldest first: the ones
        # given up when every slot is taken and a new client waits (``_slot``).
        self.heads: dict[trio.CancelScope, None] = {}

    async def accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections while fewer than ``max_connections`` are open (the rest wait
        in the kernel's backlog). Running out of file descriptors or memory is logged at
        most once per ``ERROR_LOG_EVERY`` seconds, with a count, and retried. The
        listener closes when this is cancelled (shutdown: no new connections)."""
        async with listener:
            await self._accept(listener, nursery)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            await self._slot(listener)
            try:
                stream = await listener.accept()
            except OSError as exc:
                self.slots.release()
                if exc.errno not in _ACCEPT_CAPACITY:
                    raise
                self.accept_errors.note(f"cannot accept connections: {exc.strerror}; "
                                        "raise the open-file limit or lower max_connections")
                await trio.sleep(ACCEPT_RETRY)
                continue
            nursery.start_soon(self.serve_connection, stream)

    async def _slot(self, listener: trio.SocketListener) -> None:
        """A connection slot for the next client. At the cap, once a client waits in the
        backlog, the oldest connection that has not finished a request head gives its
        slot up (as HAProxy and nginx drop idle ones): slow or idle heads holding every
        slot (slowloris beyond the fd budget) must not keep new clients out."""
        while True:
            try:
                self.slots.acquire_nowait()
                return
            except trio.WouldBlock:
                pass
            await trio.lowlevel.wait_readable(listener.socket)  # a client is waiting
            if self.slots.value == 0 and self.heads:
                oldest = next(iter(self.heads))
                del self.heads[oldest]
                oldest.cancel()
                self.shed.note("at max_connections: closed the oldest connection that had "
                               "not finished a request head, for a new client")
            # Its slot comes back as it closes; else look again (a head may begin).
            with trio.move_on_after(SLOT_RECHECK):
                await self.slots.acquire()
                return

    async def close_idle(self) -> None:
        """Shutdown: close the connections waiting for a request that has not begun. One
        whose next request is already in the kernel, unread, is served instead (its
        answer says ``Connection: close``): closing it would reset it under the request
        its client just sent."""
        for scope, stream in list(self.waiting.items()):
            if not _unread(stream):
                scope.cancel()
        await self.hand_off.close_idle()

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        """Serve one client connection. Whatever goes wrong in it ends it alone: it is
        logged (at most once per ``ERROR_LOG_EVERY`` seconds, with a count) and closed,
        and every other connection, the workers and faucet carry on."""
        try:
            await self._serve(stream)
        except _BROKEN:
            pass  # the client went away
        except Exception as exc:
            self.connection_errors.note("a client connection failed and was closed", exc)
        finally:
            self.slots.release()
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        client = stream.socket.getpeername()[:2]
        parser = RequestParser()
        events = parser.events
        raw = bytearray()  # the bytes read since the last request was answered
        first = True  # nothing read yet: HTTP/2 with prior knowledge may begin here only
        while True:
            if not events:  # the next request head is still to be read
                data = await self._receive_head(stream, raw)
                if data is None:
                    await self._refuse(stream, raw, client, 408, "Request Timeout: the "
                                       f"request head took over {self.limits.head_timeout:g}s")
                    return
                if not data:  # end of stream, keep-alive timeout or shutdown
                    return
                if not raw and data.startswith(H2_PREFACE):
                    if first and self.limits.h2c:
                        await self._hand_off(stream, data)
                    else:
                        await self._refuse(stream, data, client, 505, _NO_H2C)
                    return
                first = False
                raw += data
                try:
                    parser.feed(data)
                except BadRequest as exc:
                    await self._refuse(stream, raw, client, exc.status, str(exc))
                    return
                if not events and len(raw) > self.max_head:
                    await self._refuse(stream, raw, client, 431, _HEAD_TOO_LARGE % self.max_head)
                    return
                continue
            head = events.popleft()
            request = _request(head, client)
            refusal = self._refusal(head)
            if refusal is not None:
                self.app.refused(request, refusal[0])
                await _send_quietly(stream, _plain(*refusal))
                return
            if head.upgrade and self._upgrades(head):
                await self._hand_off(stream, _head_bytes(head) + parser.upgrade_rest)
                return
            exchange = _Exchange(head, parser, stream, self.closing, self.limits)
            await self._call_app(exchange, request)
            # Not "or closing": a response that went out without Connection: close (closing
            # came while it was being served) lets the client reuse the connection at
            # once; it stays open for that request, answered with Connection: close.
            if not exchange.reusable():
                return
            raw = bytearray()

    def _upgrades(self, head: RequestHead) -> bool:
        """Whether the request leaves this path for hypercorn: a WebSocket handshake, or
        h2c when it is on. Any other ``Upgrade`` is served here as plain HTTP/1.1 (the
        header is hop-by-hop and never reaches the worker), so it keeps this path's
        limits instead of gaining hypercorn's lack of a send timeout."""
        for name, value in head.headers:
            if name == b"upgrade":
                token = value.strip().lower()
                return token == b"websocket" or (token == b"h2c" and self.limits.h2c)
        return False

    def _refusal(self, head: RequestHead) -> tuple[int, str] | None:
        """The answer to a request head that must not reach an app, if any: one over the
        head limit however it arrived (the size check while reading sees only heads
        still incomplete), a body declared over ``max_body``, or a body behind an
        ``Upgrade`` served here (the parser hands what follows such a head over whole)."""
        size = len(head.target)
        declared = 0
        for name, value in head.headers:  # one pass: this runs for every request
            size += len(name) + len(value) + 4
            if name == b"content-length":
                declared = int(value)
        if size > self.max_head:
            return 431, _HEAD_TOO_LARGE % self.max_head
        if declared > self.limits.max_body:
            return 413, f"Content Too Large: the body is over {self.limits.max_body} bytes"
        if head.upgrade and head.has_body and not self._upgrades(head):
            return 400, "Bad Request: a body behind an Upgrade faucet does not serve"
        return None

    async def _refuse(self, stream: trio.SocketStream, head: bytes | bytearray, client,
                      status: int, text: str) -> None:
        """Answer a head refused before h11 could parse it whole (400, 408, 431):
        recorded when its request line parses, else one rate-limited log line."""
        request = parse_request_line(bytes(head[:8192]), client)
        if request is not None:
            self.app.refused(request, status)
        elif head:
            self.unparsed.note(f"answered {status} to a client whose request line does "
                               "not parse (not recorded)")
        await _send_quietly(stream, _plain(status, text))

    async def _receive_head(self, stream: trio.SocketStream, begun: bytearray) -> bytes | None:
        """Bytes that end the request head ``begun`` holds the start of (or a new one).

        b"" when the client closes, the keep-alive timeout passes before a head begins, or
        shutdown closes the connection before a head begins; None when a head misses its
        deadline, ``head_timeout`` after its first byte (a total, not reset by each byte:
        slowloris). Bytes are gathered here until the head's blank line arrives (or the
        head is over the limit), so a head trickled a byte at a time costs one read each,
        not a parse and a timer each. A head begun before shutdown is read and served.
        """
        if self.stopping.is_set() and not begun:
            return b""
        got = bytearray()
        if not begun:  # on a kept-alive connection the next head is often there already
            data = socket_io.receive_now(stream, RECEIVE_SIZE)
            if data is not None:
                got += data
                if not data or self._head_ends(begun, got, data):
                    return data
        timeout = self.limits.head_timeout if begun or got else self.keep_alive
        with trio.CancelScope(deadline=trio.current_time() + timeout) as scope:
            if not (begun or got):
                self.waiting[scope] = stream
            self.heads[scope] = None
            try:
                while True:
                    data = await socket_io.receive_some(stream, RECEIVE_SIZE)
                    if not data:
                        return bytes(got)
                    if not begun and not got:  # the head's first byte: its clock starts
                        scope.deadline = trio.current_time() + self.limits.head_timeout
                        self.waiting.pop(scope, None)  # a request: no longer idle
                    got += data
                    if self._head_ends(begun, got, data):
                        return bytes(got)
            finally:
                self.waiting.pop(scope, None)
                self.heads.pop(scope, None)
        if begun or got:  # its deadline (or, at max_connections, its slot) was taken
            begun += got  # for the 408's record of the request line
            return None
        return b""

    def _head_ends(self, begun: bytearray, got: bytearray, data: bytes) -> bool:
        """Whether ``data``, just added to ``got``, ends the head (or takes it over the
        limit). The HTTP/2 preface ends with a blank line too."""
        return bool(_HEAD_END.search(begun[-3:] + got[-len(data) - 3:])
                    or len(begun) + len(got) > self.max_head)

    async def _call_app(self, exchange: _Exchange, request: Request) -> None:
        try:
            await self.app.serve_http(request, exchange.receive, exchange.send)
        except ResponseRejected:
            pass
        except Exception:
            log.exception("faucet: error while serving %s %s", request.method,
                          request.raw_path.decode("latin-1"))
        if not exchange.complete:
            await exchange.fail()

    async def _hand_off(self, stream: trio.SocketStream, data: bytes | bytearray) -> None:
        """Let hypercorn serve the rest of the connection, starting with ``data``."""
        await self.hand_off.serve(Replay(stream, bytes(data), self.limits.send_timeout))


def _request(head: RequestHead, client) -> Request:
    path, _, query = head.target.partition(b"?")
    return Request(method=head.method.decode("ascii"), raw_path=path, query=query,
                   http_version=head.http_version, scheme="http", client=client,
                   headers=head.headers)


def _head_bytes(head: RequestHead) -> bytes:
    """The request head written out again, for hypercorn to read an upgrade from."""
    lines = [b"%s %s HTTP/%s\r\n" % (head.method, head.target, head.http_version.encode())]
    lines += [b"%s: %s\r\n" % header for header in head.headers]
    lines.append(b"\r\n")
    return b"".join(lines)


class _Exchange:
    """One request/response on a connection: the ASGI ``receive`` and ``send``."""

    __slots__ = ("head", "parser", "stream", "closing", "body_left", "send_timeout", "status",
                 "headers", "framer", "body_done", "continued", "started", "complete", "gone")

    def __init__(self, head: RequestHead, parser: RequestParser, stream: trio.SocketStream,
                 closing: trio.Event, limits: Limits):
        self.head = head
        self.parser = parser
        self.stream = stream
        self.closing = closing
        self.body_left = limits.max_body
        self.send_timeout = limits.send_timeout
        self.status = 500
        self.headers: list = []
        self.framer = ResponseFramer()
        events = parser.events
        self.body_done = bool(events) and events[0] is END  # no body: its end came with it
        if self.body_done:
            events.popleft()
        self.continued = False  # "100 Continue" was sent
        self.started = False  # the response head has been written
        self.complete = False  # the whole response has been written
        self.gone = False  # the client's connection broke

    async def receive(self) -> dict:
        """The next piece of the request body, or ``http.disconnect`` once the client has
        gone (or the body has been read; faucet never waits for a disconnect).
        BadRequestBody when the body is malformed, cut short or over the limit."""
        if self.gone or self.body_done:
            return _DISCONNECT
        events = self.parser.events
        if self.head.expects_continue and not self.continued and not events:
            self.continued = True
            await self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not events:
            try:
                data = await socket_io.receive_some(self.stream, RECEIVE_SIZE)
            except _BROKEN:
                data = b""
            if not data:
                raise BadRequestBody(400, "Bad Request: the connection closed before the "
                                     "end of the request body")
            try:
                self.parser.feed(data)
            except BadRequest as exc:
                raise BadRequestBody(exc.status, str(exc)) from None
        event = events.popleft()
        if event is END:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.body_left -= len(event)
        if self.body_left < 0:
            raise BadRequestBody(413, "Content Too Large: the body is over the limit")
        return {"type": "http.request", "body": event, "more_body": True}

    async def send(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body" or self.complete:
            return
        framer = self.framer
        out = b""
        try:
            if not self.started:
                self.started = True
                head = self.head
                # shutting down, or a request body left unread: no next request here
                keep_alive = (head.keep_alive and not head.upgrade and self.body_done
                              and not self.closing.is_set())
                try:
                    out = framer.head(self.status, _REASONS.get(self.status, b""),
                                      self.headers, head.method, head.http_version, keep_alive)
                except InvalidResponse as exc:
                    self.complete = True
                    await self._write(_plain(502, f"Bad Gateway: invalid response head ({exc})"))
                    raise ResponseRejected(str(exc)) from exc
            out += framer.body(message.get("body", b""))
            if not message.get("more_body", False):
                out += framer.end()
                self.complete = True
        except InvalidResponse:
            framer.keep_alive = False  # the response is cut short: the connection ends
            raise
        await self._write(out)

    async def fail(self) -> None:
        """End an exchange the app left unfinished: a 500 if nothing was sent yet."""
        self.complete = True
        self.framer.keep_alive = False
        if not self.started:
            self.started = True
            await self._write(_plain(500, "Internal Server Error"))

    def reusable(self) -> bool:
        """After the app returns: whether the connection can serve another request."""
        return not self.gone and self.complete and self.body_done and self.framer.keep_alive

    async def _write(self, data: bytes) -> None:
        """Write to the client; one that has gone, or has not taken a write within
        ``send_timeout``, is given up on: the app goes on, its writes go nowhere, and the
        connection closes (the app, and the R worker behind it, are never held)."""
        if self.gone:
            return
        try:
            rest = socket_io.send_now(self.stream, data)  # most writes go at once: no timer
            if not rest:
                return
            with trio.move_on_after(self.send_timeout):
                await socket_io.send_all(self.stream, rest)
                return
        except _BROKEN:
            pass
        self.gone = True


def _plain(status: int, text: str) -> bytes:
    """A whole response faucet's front writes itself, closing the connection."""
    body = (text + "\n").encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\ndate: %s\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), http_date(), body))


def _unread(stream: trio.SocketStream) -> bool:
    """Whether bytes the client sent wait in the kernel, not yet read."""
    pending = array.array("i", [0])
    try:
        fcntl.ioctl(stream.socket.fileno(), termios.FIONREAD, pending)
    except OSError:
        return False
    return pending[0] > 0


async def _send_quietly(stream: trio.SocketStream, data: bytes) -> None:
    """Write a last answer; a client already gone does not matter."""
    try:
        await stream.send_all(data)
    except _BROKEN:
        pass


class RateLimitedLog(RateLimit):
    """Logs a recurring error at most once per ``every`` seconds, with how many times it
    happened since the last line (not a traceback each time)."""

    def note(self, message: str, exc: BaseException | None = None) -> None:
        """One more occurrence; ``exc``'s traceback goes with the lines that are logged."""
        if (count := self.due()) is not None:
            log.error("%s (%d occurrences since the last report)", message, count,
                      exc_info=exc)


class Replay:
    """The client's stream as hypercorn's connection server sees it: the bytes faucet
    already read come first. (No ``do_handshake``: hypercorn takes it for plain TCP.)

    hypercorn serialises its own writes but calls ``send_eof`` outside that lock, so a
    close racing a write raised trio.BusyResourceError out of the connection; here every
    write and the EOF take turns. A write the client has not taken within
    ``send_timeout`` breaks the stream, as on faucet's own HTTP/1.1 path (hypercorn has
    no send timeout of its own).
    """

    def __init__(self, stream: trio.SocketStream, data: bytes, send_timeout: float):
        self._stream = stream
        self._data = data
        self._send_timeout = send_timeout
        self._sending = trio.Lock()
        self.socket = stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._data:
            data, self._data = self._data, b""
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data) -> None:
        async with self._sending:
            with trio.move_on_after(self._send_timeout):
                await self._stream.send_all(data)
                return
        await self._stream.aclose()
        raise trio.BrokenResourceError(f"the client took no write for {self._send_timeout:g}s")

    async def send_eof(self) -> None:
        async with self._sending:
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()
