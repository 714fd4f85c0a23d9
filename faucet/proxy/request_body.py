"""The client's request body on its way to a worker.

A slow upload must not hold a (single-threaded) R worker: a body that fits in
``buffer_size`` is read whole before a worker is claimed (as nginx's
``proxy_request_buffering``), and goes on with a Content-Length. A longer one is streamed
after the buffered part, chunked unless the client gave its length. Time spent waiting on
the client never counts against the worker's ``response_timeout`` (the caller's clock
is paused meanwhile), and the client must send something every ``idle_timeout`` seconds
(408 otherwise, as nginx's ``client_body_timeout``).
"""

from __future__ import annotations

import math

import trio

from faucet.errors import BadRequestBody
from faucet.http.asgi import body_piece


class RequestBody:
    """Reads one request's body from ASGI ``receive``; ``next_piece`` feeds the upstream
    exchange (``faucet.upstream.BodySource``)."""

    def __init__(self, receive, idle_timeout: float):
        self._receive = receive
        self._idle_timeout = idle_timeout
        self._buffered: list[bytes] = []
        self._size = 0
        self.complete = False  # every byte of the body is in the buffer
        self._clock: trio.CancelScope | None = None
        self._clock_span = math.inf

    @property
    def size(self) -> int:
        """Bytes buffered (the whole body's length once ``complete``)."""
        return self._size

    async def prefetch(self, buffer_size: int) -> None:
        """Read until the body is complete or more than ``buffer_size`` bytes are held."""
        while not self.complete and self._size <= buffer_size:
            data, more = await self._read()
            if data:
                self._buffered.append(data)
                self._size += len(data)
            self.complete = not more

    def pause_while_reading(self, clock: trio.CancelScope, span: float) -> None:
        """While waiting on the client, ``clock`` (the worker's deadline) stands still;
        after each piece it restarts with ``span`` seconds."""
        self._clock, self._clock_span = clock, span

    async def next_piece(self) -> tuple[bytes, bool]:
        """The next piece to send upstream and whether more follows."""
        if self._buffered:
            data = b"".join(self._buffered)
            self._buffered.clear()
            return data, not self.complete
        if self.complete:
            return b"", False
        clock = self._clock
        if clock is not None:
            clock.deadline = math.inf
        try:
            data, more = await self._read()
        finally:
            if clock is not None:
                clock.deadline = trio.current_time() + self._clock_span
        self.complete = not more
        return data, more

    async def _read(self) -> tuple[bytes, bool]:
        with trio.move_on_after(self._idle_timeout):
            return await body_piece(self._receive)
        raise BadRequestBody(408, f"Request Timeout: no request body data for "
                                  f"{self._idle_timeout:g}s")
