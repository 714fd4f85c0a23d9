"""What faucet takes from hypercorn (its version pin touches only this and ``h2_protocol``,
which holds the HTTP/2 connection's limits).

faucet's front door (faucet.front) serves plain HTTP/1.1 itself and hands upgrades
(WebSocket, h2c) and HTTP/2 connections to hypercorn's connection server, which uses
hypercorn internals: ``TCPServer``, ``WorkerContext``, the WebSocket stream class.
"""

from __future__ import annotations

import logging

import hypercorn.config
import hypercorn.protocol.h2
import hypercorn.protocol.h11
import trio
from hypercorn.protocol.events import Body, Data, StreamClosed
from hypercorn.protocol.ws_stream import (
    ASGIWebsocketState,
    FrameTooLargeError,
    WebsocketBuffer,
    WSStream,
)
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr
from wsproto.events import CloseConnection

from faucet.config.settings import Config
from faucet.edge.h2_protocol import EdgeApp, H2Rules, install_h2
from faucet.http.ws_budget import WebSocketBudget

HypercornConfig = hypercorn.config.Config


def hypercorn_config(config: Config) -> HypercornConfig:
    """The one adapter from our validated config to hypercorn's (its own loader would
    silently ignore unknown keys)."""
    hc = HypercornConfig()
    hc.bind = [config.host]
    # The workers' responses carry their own Date; hypercorn's would make two.
    hc.include_date_header = False
    hc.include_server_header = False
    hc.graceful_timeout = config.shutdown_timeout
    hc.keep_alive_timeout = config.keep_alive_timeout  # hypercorn's connections and ours
    hc.websocket_max_message_size = config.max_message_size
    hc.h2_max_concurrent_streams = config.h2_max_streams  # advertised; h2_protocol enforces
    hc.accesslog = None
    hc.errorlog = logging.getLogger("faucet.hypercorn")
    hc.backlog = 1024
    return hc


def listeners(config: HypercornConfig) -> tuple[list[trio.SocketListener], list[str]]:
    """Listening sockets for ``config.bind`` and their URLs."""
    out, urls = [], []
    for sock in config.create_sockets().insecure_sockets:
        sock.listen(config.backlog)
        out.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        urls.append("http://" + repr_socket_addr(sock.family, sock.getsockname()))
    return out, urls


class HandOff:
    """Serves the rest of a client connection with hypercorn's connection server."""

    def __init__(self, app, config: HypercornConfig, rules: H2Rules | None = None):
        install_h2()
        self._app = EdgeApp(app, rules if rules is not None else H2Rules())
        self._config = config
        self._context = WorkerContext(None)

    async def serve(self, stream) -> None:
        """``stream``: the client's stream (the bytes faucet already read replayed first)."""
        await TCPServer(self._app, self._config, self._context, ConnectionState({}), stream)

    async def close_idle(self) -> None:
        """Shutdown: hypercorn's idle connections close."""
        await self._context.terminated.set()


class _BudgetedBuffer(WebsocketBuffer):
    """hypercorn's buffer of a client's unfinished message, charged to the shared
    WebSocketBudget: hypercorn alone lets every connection hold up to the per-message
    limit (16 MiB by default), so 20 connections grew faucet by 300 MiB."""

    def __init__(self, max_length: int, budget: WebSocketBudget):
        super().__init__(max_length)
        self.budget = budget

    def extend(self, event) -> None:
        size = len(event.data)
        if not self.budget.take(size):
            raise FrameTooLargeError()
        before = self.length
        try:
            super().extend(event)
        finally:
            self.budget.give(size - (self.length - before))  # whatever was not kept

    def clear(self) -> None:
        self.budget.give(self.length)
        super().clear()


class _FaucetWSStream(WSStream):
    """hypercorn's WebSocket stream with three changes.

    Close codes: hypercorn 0.18 reports every close the client starts, and its own 1009,
    to the app as 1006 (pgjones/hypercorn#127). This stream remembers the close frame it
    sent while the app was connected (the echo of the client's close, or its own 1009)
    and reports that code and reason instead, so they reach the worker.

    Memory: the unfinished message is charged to ``budget`` (set by ``install``).

    One answer to the handshake: bytes a client sends before the handshake is answered
    (RFC 6455 4.1 forbids it) made hypercorn write its own 400 at once, even while the
    app's answer was being written; two answers on one h11 connection raised
    LocalProtocolError out of the connection (which used to end faucet). Here whoever
    answers the handshake holds ``_answering``, and early bytes wait for the app's answer:
    after an accept they are frames like any other, after an HTTP answer they are
    dropped, and with no answer yet the client gets the 400 and the app a disconnect.
    """

    budget = WebSocketBudget(memory=1 << 62, max_websockets=1 << 62)
    _close_frame: tuple[int, str | None] | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.buffer = _BudgetedBuffer(self.buffer.max_length, self.budget)
        self._answering = trio.Lock()

    async def app_send(self, message) -> None:
        if self.state is ASGIWebsocketState.CONNECTED:
            await super().app_send(message)
            return
        async with self._answering:
            await super().app_send(message)

    async def _send_wsproto_event(self, event) -> None:
        if isinstance(event, CloseConnection) and self.state is ASGIWebsocketState.CONNECTED:
            self._close_frame = (event.code, event.reason)
        await super()._send_wsproto_event(event)

    async def handle(self, event) -> None:
        if isinstance(event, (Body, Data)) and not self.closed and not self.handshake.accepted:
            await self._early_data(event)
            return
        if isinstance(event, StreamClosed):
            self.buffer.clear()  # a message the client never finished
        if (isinstance(event, StreamClosed) and self._close_frame is not None
                and not self.closed and self.app_put is not None):
            self.closed = True
            code, reason = self._close_frame
            await self.app_put({"type": "websocket.disconnect", "code": code, "reason": reason})
        else:
            await super().handle(event)


    async def _early_data(self, event) -> None:
        async with self._answering:
            accepted, refused = self.handshake.accepted, False
            if not accepted and not self.closed and self.state is ASGIWebsocketState.HANDSHAKE:
                self.closed = refused = True  # from here the app's messages go nowhere
                await self._send_error_response(400)
        if refused and self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": 1006})
        elif accepted:  # the app accepted while these bytes waited: they are frames
            await super().handle(event)


def install_websocket_stream(budget: WebSocketBudget) -> None:
    """Make hypercorn's HTTP/1.1 and HTTP/2 protocols use ``_FaucetWSStream`` charging
    ``budget``; call before serving (idempotent)."""
    _FaucetWSStream.budget = budget
    hypercorn.protocol.h11.WSStream = _FaucetWSStream
    hypercorn.protocol.h2.WSStream = _FaucetWSStream
