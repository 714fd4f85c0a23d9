"""A Python client that speaks faucet's reconnect protocol as reconnect.js does, for the
session tests and bench/shiny_sessions: it opens Shiny's WebSocket with ``sessionId``,
``attempt`` and ``received``, answers ``ping``, pings back while some of its messages are
unacknowledged, and on ``connect`` after a drop resumes: it sends again those of its
messages faucet says it has not had (``resume:N``)."""

from __future__ import annotations

import uuid
from collections import deque

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url


class SessionGone(Exception):
    """faucet closed the connection instead of resuming (the close code is ``code``)."""

    def __init__(self, code: int, reason: str | None):
        super().__init__(f"{code} {reason}")
        self.code = code


class ResumingClient:
    """One page's Shiny session at ``url`` (ws://host:port/.../websocket/)."""

    def __init__(self, url: str):
        self.url = url
        self.session_id = uuid.uuid4()
        self.attempt = 0
        self.received: list[str | bytes] = []  # faucet's data messages, in order
        self.sent = 0
        self.unacked: deque[str] = deque()  # our last messages not known to have arrived
        self.pings: deque[int] = deque()  # self.sent at each of our pings not yet answered
        self.ws: WebSocketConnection | None = None

    async def connect(self, nursery: trio.Nursery) -> None:
        """Open (or reopen) the connection, resuming after the first time; SessionGone
        when faucet closes it instead."""
        query = (f"?sessionId={self.session_id}&attempt={self.attempt}"
                 f"&received={len(self.received)}")
        resuming = self.attempt > 0
        self.attempt += 1
        self.pings.clear()
        self.ws = await connect_websocket_url(nursery, self.url + query)
        if resuming:
            try:
                first = await self.ws.get_message()
            except ConnectionClosed as exc:
                raise SessionGone(exc.reason.code, exc.reason.reason) from None
            assert first.startswith("resume:"), first
            self._acked(int(first.removeprefix("resume:")))
            for message in self.unacked:
                await self.ws.send_message(message)

    async def send(self, message: str) -> None:
        self.sent += 1
        self.unacked.append(message)
        await self.ws.send_message(message)

    async def receive(self) -> str | bytes:
        """faucet's next data message (pings and pongs handled on the way)."""
        while True:
            message = await self.ws.get_message()
            if message == "ping":
                await self.ws.send_message("pong")
                if self.unacked and self.sent not in self.pings:
                    self.pings.append(self.sent)
                    await self.ws.send_message("ping")
            elif message == "pong":
                if self.pings:
                    self._acked(self.pings.popleft())
            else:
                self.received.append(message)
                return message

    async def close_code(self) -> int:
        """Read until faucet closes the connection; its close code."""
        try:
            while True:
                await self.receive()
        except ConnectionClosed as exc:
            return exc.reason.code

    def _acked(self, up_to: int) -> None:
        first = self.sent - len(self.unacked) + 1
        for _ in range(max(0, up_to - first + 1)):
            self.unacked.popleft()
