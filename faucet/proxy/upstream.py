"""Keep-alive HTTP/1.1 connections from the proxy to one worker (``http1`` framing on
trio sockets).

httpuv writes a response's head and body in two ``write()`` calls without TCP_NODELAY,
so on a reused connection the body waits for our delayed ACK (~44 ms per request).
Setting TCP_QUICKACK before every receive removes that stall (Linux re-arms delayed ACKs,
hence every time). Measured here: keep-alive with QUICKACK saves R 0-10% CPU against a new
connection per request, and saves the proxy the connect cost.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Awaitable, Callable

import trio

from faucet.http import socket_io
from faucet.http.http1 import (
    LAST_CHUNK,
    ChunkedDecoder,
    Response,
    UpstreamProtocolError,
    encode_chunk,
    parse_head,
)
from faucet.pool.backend import Backend

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
RECEIVE_SIZE = 65536
MAX_IDLE = 16
_FAILURES = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
_TCP = (socket.AF_INET, socket.AF_INET6)
# Methods whose request may be sent again when a reused connection failed while sending
# it (RFC 9110 9.2.1 safe methods). Others are never replayed: a POST, PUT, PATCH or
# DELETE that may have reached R runs at most once.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# The next piece of a request body and whether more follows (the proxy reads the client).
BodySource = Callable[[], Awaitable[tuple[bytes, bool]]]
# Held from a request's first byte sent until its answer head (faucet.http.client_cancel).
Committed = Callable[[], contextlib.AbstractContextManager]
# Opens a stream to a worker's port: the network seam (tests pass socket pairs).
Connect = Callable[[int], Awaitable[trio.SocketStream]]


class UpstreamError(Exception):
    """The worker could not be reached or broke the exchange (the proxy answers 502)."""


class ClosedBeforeAnswer(UpstreamError):
    """The worker closed the connection before sending a single byte of a response: on
    a reused connection, the keep-alive race (it closed an idle connection just as the
    request went out)."""


class UpstreamConnection:
    """One keep-alive HTTP/1.1 connection to a worker: send bytes, read a response."""

    __slots__ = ("stream", "incarnation", "sent_all", "_sock", "_quickack", "_poller", "_buffer",
                 "_left", "_chunks", "_open_ended", "_idle", "_asked")

    def __init__(self, stream: trio.SocketStream, incarnation: int):
        self.stream = stream
        self.incarnation = incarnation
        self.sent_all = False  # the last send completed (the worker may have the request)
        self._sock = stream.socket
        self._quickack = _QUICKACK is not None and self._sock.family in _TCP
        # For ``quiet``: registered once, so each reuse costs one poll(2) and no objects.
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN | select.POLLPRI)
        self._buffer = bytearray()
        self._idle = True  # no exchange under way, or the last one completed cleanly
        self._left: int | None = 0
        self._chunks: ChunkedDecoder | None = None
        self._open_ended = False
        self._asked = False  # a request just went out whole; nothing read since

    async def send(self, data: bytes) -> None:
        self._idle = False
        self.sent_all = False
        try:
            await socket_io.send_all(self.stream, data)
            self.sent_all = True
            self._asked = not self._buffer
        except _FAILURES as exc:
            raise UpstreamError(f"sending to the worker failed: {exc!r}") from exc

    async def _receive(self) -> bool:
        """Append what the worker sent to the buffer; False at end of stream."""
        if self._quickack:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        try:
            if self._asked:  # R cannot have answered yet: wait, rather than a read that fails
                self._asked = False
                data = await socket_io.receive_after_wait(self.stream, RECEIVE_SIZE)
            else:
                data = await socket_io.receive_some(self.stream, RECEIVE_SIZE)
        except _FAILURES as exc:
            raise UpstreamError(f"the worker broke the connection: {exc!r}") from exc
        self._buffer += data
        return bool(data)

    async def _receive_answer(self) -> None:
        """More of a response head; ClosedBeforeAnswer when the connection ends (closed
        or reset) before its first byte."""
        try:
            if await self._receive():
                return
            problem = "the worker closed the connection without answering"
        except UpstreamError as exc:
            if self._buffer:
                raise
            problem = str(exc)
        raise (UpstreamError if self._buffer else ClosedBeforeAnswer)(problem)

    async def response_head(self, method: str) -> Response:
        """The final response head (informational 1xx ones are skipped)."""
        try:
            while True:
                response = parse_head(self._buffer, method)
                if response is None:
                    await self._receive_answer()
                elif 100 <= response.status < 200 and response.status != 101:
                    continue
                else:
                    break
        except UpstreamProtocolError as exc:
            raise UpstreamError(f"invalid response from the worker: {exc}") from exc
        self._left = response.length
        self._chunks = ChunkedDecoder() if response.chunked else None
        self._open_ended = response.length is None and not response.chunked
        # Provisional: true once the body is complete. Never after HEAD: some servers
        # (plumber on 404/405) send a body anyway, which would poison the next exchange.
        self._idle = response.keep_alive and method != "HEAD"
        return response

    async def body_chunk(self) -> bytes:
        """The next piece of the response body; b"" once it is complete."""
        try:
            while True:
                if self._chunks is not None:
                    data = self._chunks.feed(self._buffer)
                    if data or self._chunks.done:
                        return data
                elif self._open_ended:
                    if self._buffer:
                        data = bytes(self._buffer)
                        self._buffer.clear()
                        return data
                else:
                    if not self._left:
                        return b""
                    if self._buffer:
                        data = bytes(self._buffer[: self._left])
                        del self._buffer[: len(data)]
                        self._left -= len(data)
                        return data
                if not await self._receive():
                    if self._open_ended:
                        self._open_ended = False
                        self._left = 0
                        return b""
                    raise UpstreamError("the worker closed the connection mid-response")
        except UpstreamProtocolError as exc:
            raise UpstreamError(f"invalid response body from the worker: {exc}") from exc

    async def read_body(self) -> bytes:
        """The rest of the response body, whole (for bodies of a known, bounded length)."""
        parts = []
        while chunk := await self.body_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def reusable(self) -> bool:
        """Only after a complete exchange the worker agreed to keep alive."""
        complete = (self._chunks.done if self._chunks is not None else self._left == 0)
        return self._idle and complete and not self._buffer

    def quiet(self) -> bool:
        """Nothing is waiting to be read: no stray bytes, no close from the worker. Checked
        before a pooled connection is reused; a connection with unread bytes never is."""
        return not self._buffer and not self._poller.poll(0)

    def close(self) -> None:
        """Drop the connection at once (sync, so it is safe in any cleanup path)."""
        self._sock.close()


async def open_worker_stream(port: int) -> trio.SocketStream:
    """A TCP connection to a worker on loopback, with Nagle off (requests leave whole)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return stream


def frame(data: bytes, more: bool, chunked: bool) -> bytes:
    """A piece of request body as it goes to the worker (chunked when the client's was)."""
    if not chunked:
        return data
    return (encode_chunk(data) if data else b"") + (b"" if more else LAST_CHUNK)


class UpstreamPool:
    """Idle keep-alive connections to one backend, dropped when the worker restarts, and
    the request/response exchange over them."""

    def __init__(self, backend: Backend, connect: Connect = open_worker_stream):
        self.backend = backend
        self._connect = connect
        self._idle: list[UpstreamConnection] = []

    async def connection(self) -> tuple[UpstreamConnection, bool]:
        """An idle connection (True: reused) or a new one (False)."""
        incarnation = self.backend.incarnation
        while self._idle:
            conn = self._idle.pop()
            if conn.incarnation == incarnation and conn.quiet():
                return conn, True
            conn.close()
        try:
            stream = await self._connect(self.backend.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.backend.target} "
                                f"(127.0.0.1:{self.backend.port}): {exc.strerror}") from exc
        return UpstreamConnection(stream, incarnation), False

    async def exchange(self, head: bytes, method: str, body: BodySource | None,
                       chunked: bool, committed: Committed = contextlib.nullcontext,
                       ) -> tuple[UpstreamConnection, Response]:
        """Send one request and read its response head; the caller reads the body from
        the connection and hands it to ``put_back``.

        The first piece of the body is read before the worker is contacted so that head
        and body leave in one write. A request is sent again, on a new connection, only
        when its method is safe, it was held whole in memory, and on a reused connection
        the send failed or the worker closed without a byte of answer (RFC 9112 9.3.1).
        A POST, PUT, PATCH or DELETE that may have reached the worker is never sent
        again: the client gets 502.

        ``committed`` is entered from the first byte sent until the answer head is read:
        the stretch a client's reset must not cut (faucet.http.client_cancel).
        """
        payload, more = head, False
        if body is not None:
            data, more = await body()
            payload += frame(data, more, chunked)
        replayable = method in SAFE_METHODS and not more
        while True:
            conn, reused = await self.connection()
            try:
                with committed():
                    await conn.send(payload)
                    while more:
                        data, more = await body()
                        await conn.send(frame(data, more, chunked))
                    return conn, await conn.response_head(method)
            except UpstreamError as exc:
                conn.close()
                sent = not isinstance(exc, ClosedBeforeAnswer) and conn.sent_all
                if reused and replayable and not sent:
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    def put_back(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange completed cleanly; close anything else."""
        if (conn.reusable() and conn.incarnation == self.backend.incarnation
                and len(self._idle) < MAX_IDLE):
            self._idle.append(conn)
        else:
            conn.close()
