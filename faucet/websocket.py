"""WebSocket pass-through for every app kind.

hypercorn terminates the client's leg; faucet opens its own leg to the chosen worker
(wsproto over a trio TCP stream) and runs two pumps in one nursery, one per direction.
Whichever side ends first decides how the other is closed: a close code and reason are
carried across, a worker that breaks the connection closes the client with 1011, a
message over ``max_message_size`` closes both legs with 1009, and a cancelled session
(faucet shutting down) closes both with 1001. Each leg answers its own pings and
negotiates its own compression. The worker's in-flight slot is held for the handshake
only. One telemetry event per session: 101 and the session's length when upgraded, else
the HTTP status the client got. docs/websockets.md has the why of each choice.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections import deque
from functools import partial

import hypercorn.config
import hypercorn.protocol.h2
import hypercorn.protocol.h11
import trio
import wsproto
from attrs import frozen
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from faucet.backend import Backend
from faucet.proxy import hop_by_hop, respond

log = logging.getLogger("faucet.websocket")
# Handshake headers each leg writes for itself (wsproto writes Host from ``Request.host``).
_HANDSHAKE = frozenset({b"host", b"sec-websocket-key", b"sec-websocket-version",
                        b"sec-websocket-protocol", b"sec-websocket-extensions",
                        b"sec-websocket-accept"})
# hypercorn's own limit on the client's leg when ``max_message_size`` is unset.
DEFAULT_MAX_MESSAGE = hypercorn.config.Config.websocket_max_message_size
RECEIVE_SIZE = 65536
CLOSE_GRACE = 1.0
# Codes that describe a close but may not be sent in a close frame (RFC 6455 7.4.1).
_LOCAL_ONLY = frozenset({1006, 1015})
_UPSTREAM_FAILURES = (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                      LocalProtocolError, RemoteProtocolError)


class WorkerGone(Exception):
    """The worker's connection broke, closed without a close frame, or broke protocol."""


@frozen
class _End:
    """How a session ends: the close still owed to each side (None: nothing to send)."""

    client: tuple[int, str | None] | None
    worker: CloseConnection | None


_SHUTDOWN = _End((1001, "faucet is shutting down"),
                 CloseConnection(1001, "faucet is shutting down"))
_WORKER_GONE = _End((1011, "the worker went away"), None)


async def proxy_websocket(proxy, scope, receive, send) -> None:
    """Serve one ASGI ``websocket`` scope: admit it like HTTP, then relay the session."""
    started = time.perf_counter()
    if (await receive())["type"] != "websocket.connect":
        return  # the client left before the handshake reached us
    deny = partial(_deny, send)
    # The handshake as the HTTP GET it is: telemetry's method, X-Forwarded-Proto's scheme.
    scope = {**scope, "method": "GET", "scheme": "https" if scope["scheme"] == "wss" else "http"}
    admitted = await proxy.admit(scope, deny, started)
    if admitted is None:
        return
    backend, request, draft = admitted.backend, admitted.request, admitted.draft
    path, query, status = admitted.path, admitted.query, 0
    try:
        headers = [(name, value) for name, value in proxy.upstream_headers(
            scope, request, admitted.ip, admitted.prefix, draft.request_uuid)
            if name not in _HANDSHAKE]
        handshake = Request(
            host=(request.host or b"localhost").decode("latin-1"),
            target=(path + b"?" + query if query else path).decode("latin-1"),
            extra_headers=headers, subprotocols=scope["subprotocols"],
            extensions=[PerMessageDeflate()] if _offers_deflate(scope["headers"]) else [])
        try:
            with trio.fail_after(proxy.config.response_timeout):
                worker, status = await _open_worker(backend, handshake, send)
        except trio.TooSlowError:
            status = await respond(deny, 504, b"Gateway Timeout: the worker did not answer "
                                   b"the upgrade within "
                                   + f"{proxy.config.response_timeout:g}s\n".encode())
            return
        finally:
            # The slot covers the handshake, not the session (docs/websockets.md).
            admitted.release()
        if worker is not None:
            await _relay(worker, receive, send,
                         proxy.config.max_message_size or DEFAULT_MAX_MESSAGE, proxy.stopping)
    finally:
        proxy.record(draft, status, backend, admitted.chosen)


class _Worker:
    """faucet's leg to the worker: a wsproto client on one TCP stream. Both pumps send on
    it (messages one way, pongs and close replies the other), so sends take a lock."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self._pending: deque = deque()
        self._send_lock = trio.Lock()

    async def send(self, event) -> None:
        try:
            async with self._send_lock:
                await self.stream.send_all(self.ws.send(event))
        except _UPSTREAM_FAILURES as exc:
            raise WorkerGone(f"sending to the worker failed: {exc!r}") from exc

    async def next_event(self):
        """The worker's next wsproto event; WorkerGone when the connection ends without one."""
        try:
            while not self._pending:
                data = await self.stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise WorkerGone("the worker closed the connection without a close frame")
                self.ws.receive_data(data)
                self._pending.extend(self.ws.events())
        except _UPSTREAM_FAILURES as exc:
            raise WorkerGone(f"the worker broke the connection: {exc!r}") from exc
        return self._pending.popleft()


async def _open_worker(backend: Backend, handshake: Request, send) -> tuple[_Worker | None, int]:
    """Connect and upgrade. Accepted: the client is accepted with the worker's subprotocol
    and headers, (worker, 101). Refused: the worker's HTTP response is relayed to the
    client, (None, its status). Unreachable: 502, (None, 502)."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", backend.port)
    except OSError as exc:
        return None, await respond(partial(_deny, send), 502, f"Bad Gateway: cannot connect "
                                   f"to {backend.target}: {exc.strerror}\n".encode())
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    worker = _Worker(stream)
    upgraded = False
    try:
        await worker.send(handshake)
        reply = await worker.next_event()
        if isinstance(reply, AcceptConnection):
            await send({"type": "websocket.accept", "subprotocol": reply.subprotocol,
                        "headers": _back_to_client(reply.extra_headers)})
            upgraded = True
            return worker, 101
        await _deny(send, {"type": "http.response.start", "status": reply.status_code,
                           "headers": _back_to_client(reply.headers)})
        more = reply.has_body
        while more:
            chunk = await worker.next_event()
            more = not chunk.body_finished
            await _deny(send, {"type": "http.response.body", "body": chunk.data,
                               "more_body": more})
        if not reply.has_body:
            await _deny(send, {"type": "http.response.body", "body": b""})
        return None, reply.status_code
    except WorkerGone as exc:
        return None, await respond(partial(_deny, send), 502, f"Bad Gateway: {exc}\n".encode())
    finally:
        if not upgraded:
            with trio.CancelScope(shield=True):
                await stream.aclose()


async def _relay(worker: _Worker, receive, send, limit: int, stopping: trio.Event) -> None:
    """Pump both ways until one side ends, then close the other (shielded, bounded). A
    shutdown ends the session with 1001 on both sides at once: a session can last hours,
    and a graceful shutdown should not wait its whole timeout for it."""
    end = _SHUTDOWN
    try:
        end = await _first_to_end(partial(_client_to_worker, receive, worker),
                                  partial(_worker_to_client, worker, send, limit),
                                  partial(_until, stopping))
    finally:
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            if end.worker is not None:
                with contextlib.suppress(WorkerGone):
                    await worker.send(end.worker)
            await worker.stream.aclose()
            if end.client is not None:
                code, reason = end.client
                await send({"type": "websocket.close", "code": code, "reason": reason})


async def _until(stopping: trio.Event) -> _End:
    await stopping.wait()
    return _SHUTDOWN


async def _first_to_end(*pumps) -> _End:
    """Run the pumps together; the first to return ends the others and names the end."""
    ends: list[_End] = []

    async def run(pump, cancel_scope: trio.CancelScope) -> None:
        ends.append(await pump())
        cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for pump in pumps:
            nursery.start_soon(run, pump, nursery.cancel_scope)
    return ends[0]


async def _client_to_worker(receive, worker: _Worker) -> _End:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            # hypercorn 0.18 reports most client closes as 1006, which no frame may carry.
            code = message.get("code", 1005)
            reason = message.get("reason")
            if code in _LOCAL_ONLY:
                code, reason = 1001, "the client went away"
            return _End(None, CloseConnection(code, reason))
        text = message.get("text")
        try:
            await worker.send(TextMessage(text) if text is not None
                              else BytesMessage(message["bytes"]))
        except WorkerGone as exc:
            log.warning("websocket: %s", exc)
            return _WORKER_GONE


async def _worker_to_client(worker: _Worker, send, limit: int) -> _End:
    """Reassemble the worker's messages (hypercorn sends whole messages) up to ``limit``."""
    parts: list = []
    size = 0
    try:
        while True:
            event = await worker.next_event()
            if isinstance(event, Message):
                size += len(event.data)
                if size > limit:
                    reason = f"a message from the worker exceeds {limit} bytes"
                    return _End((1009, reason), CloseConnection(1009, reason))
                parts.append(event.data)
                if event.message_finished:
                    await send({"type": "websocket.send", **(
                        {"text": "".join(parts)} if isinstance(event, TextMessage)
                        else {"bytes": b"".join(parts)})})
                    parts, size = [], 0
            elif isinstance(event, Ping):
                await worker.send(event.response())
            elif isinstance(event, CloseConnection):
                return _End((event.code, event.reason), event.response())
    except WorkerGone as exc:
        log.warning("websocket: %s", exc)
        return _WORKER_GONE


async def _deny(send, message: dict) -> None:
    """Send an ``http.response.*`` message as the handshake's HTTP answer (hypercorn's
    ``websocket.http.response`` extension), so ``respond`` serves both kinds of scope."""
    await send({**message, "type": "websocket." + message["type"]})


def _back_to_client(headers) -> list[tuple[bytes, bytes]]:
    lowered = [(name.lower(), value) for name, value in headers]
    dropped = hop_by_hop(lowered) | _HANDSHAKE
    return [(name, value) for name, value in lowered if name not in dropped]


def _offers_deflate(headers) -> bool:
    return any(name == b"sec-websocket-extensions" and b"permessage-deflate" in value.lower()
               for name, value in headers)


class _CloseCodeWSStream(WSStream):
    """hypercorn 0.18 reports every close the client starts, and its own 1009, to the app
    as 1006 (pgjones/hypercorn#127). This stream remembers the close frame it sent while
    the app was connected (the echo of the client's close, or its own 1009) and reports
    that code and reason instead, so they reach the worker."""

    _close_frame: tuple[int, str | None] | None = None

    async def _send_wsproto_event(self, event) -> None:
        if isinstance(event, CloseConnection) and self.state is ASGIWebsocketState.CONNECTED:
            self._close_frame = (event.code, event.reason)
        await super()._send_wsproto_event(event)

    async def handle(self, event) -> None:
        if (isinstance(event, StreamClosed) and self._close_frame is not None
                and not self.closed and self.app_put is not None):
            self.closed = True
            code, reason = self._close_frame
            await self.app_put({"type": "websocket.disconnect", "code": code, "reason": reason})
        else:
            await super().handle(event)


def install_close_code_fix() -> None:
    """Make hypercorn's HTTP/1.1 and HTTP/2 protocols use ``_CloseCodeWSStream``; call
    once before serving (idempotent)."""
    hypercorn.protocol.h11.WSStream = _CloseCodeWSStream
    hypercorn.protocol.h2.WSStream = _CloseCodeWSStream
