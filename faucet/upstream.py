"""Keep-alive HTTP/1.1 connections from the proxy to one worker (``http1`` framing on
trio sockets).

httpuv writes a response's head and body in two ``write()`` calls without TCP_NODELAY,
so on a reused connection the body waits for our delayed ACK (~44 ms per request).
Setting TCP_QUICKACK before every receive removes that stall (Linux re-arms delayed ACKs,
hence every time). Measured here: keep-alive with QUICKACK saves R 0-10% CPU against a new
connection per request, and saves the proxy the connect cost.
"""

from __future__ import annotations

import socket

import trio

from faucet.backend import Backend
from faucet.http1 import ChunkedDecoder, Response, UpstreamProtocolError, parse_head

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
RECEIVE_SIZE = 65536
MAX_IDLE = 16
_FAILURES = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class UpstreamError(Exception):
    """The worker could not be reached or broke the exchange (the proxy answers 502)."""


class UpstreamConnection:
    """One keep-alive HTTP/1.1 connection to a worker: send bytes, read a response."""

    __slots__ = ("stream", "generation", "_sock", "_buffer", "_left", "_chunks", "_open_ended",
                 "_idle")

    def __init__(self, stream: trio.SocketStream, generation: int):
        self.stream = stream
        self.generation = generation
        self._sock = stream.socket
        self._buffer = bytearray()
        self._idle = True  # no exchange under way, or the last one completed cleanly
        self._left: int | None = 0
        self._chunks: ChunkedDecoder | None = None
        self._open_ended = False

    async def send(self, data: bytes) -> None:
        self._idle = False
        try:
            await self.stream.send_all(data)
        except _FAILURES as exc:
            raise UpstreamError(f"sending to the worker failed: {exc!r}") from exc

    async def _receive(self) -> bool:
        """Append what the worker sent to the buffer; False at end of stream."""
        if _QUICKACK is not None:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        try:
            data = await self.stream.receive_some(RECEIVE_SIZE)
        except _FAILURES as exc:
            raise UpstreamError(f"the worker broke the connection: {exc!r}") from exc
        self._buffer += data
        return bool(data)

    async def response_head(self, method: str) -> Response:
        """The final response head (informational 1xx ones are skipped)."""
        try:
            while True:
                response = parse_head(self._buffer, method)
                if response is None:
                    if not await self._receive():
                        raise UpstreamError("the worker closed the connection without answering")
                elif 100 <= response.status < 200 and response.status != 101:
                    continue
                else:
                    break
        except UpstreamProtocolError as exc:
            raise UpstreamError(f"invalid response from the worker: {exc}") from exc
        self._left = response.length
        self._chunks = ChunkedDecoder() if response.chunked else None
        self._open_ended = response.length is None and not response.chunked
        self._idle = response.keep_alive  # provisional: true once the body is complete
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

    def reusable(self) -> bool:
        """Only after a complete exchange the worker agreed to keep alive."""
        complete = (self._chunks.done if self._chunks is not None else self._left == 0)
        return self._idle and complete and not self._buffer

    def close(self) -> None:
        """Drop the connection at once (sync, so it is safe in any cleanup path)."""
        self._sock.close()


class UpstreamPool:
    """Idle keep-alive connections to one backend, dropped when the worker restarts."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._idle: list[UpstreamConnection] = []

    async def connection(self) -> tuple[UpstreamConnection, bool]:
        """An idle connection (True: reused) or a new one (False)."""
        generation = self.backend.generation
        while self._idle:
            conn = self._idle.pop()
            if conn.generation == generation:
                return conn, True
            conn.close()
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", self.backend.port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.backend.target} "
                                f"(127.0.0.1:{self.backend.port}): {exc.strerror}") from exc
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return UpstreamConnection(stream, generation), False

    def put_back(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange completed cleanly; close anything else."""
        if (conn.reusable() and conn.generation == self.backend.generation
                and len(self._idle) < MAX_IDLE):
            self._idle.append(conn)
        else:
            conn.close()
