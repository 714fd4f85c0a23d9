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
import math
from collections import deque
from functools import partial

import trio
import wsproto
from attrs import frozen
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

from faucet.http.asgi import handshake_responder, respond
from faucet.http.headers import Headers, RequestHeaders, hop_by_hop
from faucet.http.request import Request as ClientRequest
from faucet.http.ws_budget import WebSocketBudget
from faucet.pool.backend import Backend
from faucet.proxy.upstream import open_worker_stream

log = logging.getLogger("faucet.websocket")
# Handshake headers each leg writes for itself (wsproto writes Host from ``Request.host``).
_HANDSHAKE = frozenset({b"host", b"sec-websocket-key", b"sec-websocket-version",
                        b"sec-websocket-protocol", b"sec-websocket-extensions",
                        b"sec-websocket-accept"})
RECEIVE_SIZE = 65536
CLOSE_GRACE = 1.0
# Codes that describe a close but may not be sent in a close frame (RFC 6455 7.4.1).
_LOCAL_ONLY = frozenset({1006, 1015})
_UPSTREAM_FAILURES = (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                      LocalProtocolError, RemoteProtocolError)


class WorkerGone(Exception):
    """The worker's connection broke, closed without a close frame, or broke protocol."""


class MessageTooBig(Exception):
    """A message from the worker exceeds ``max_message_size``."""


@frozen
class _End:
    """How a session ends: the close still owed to each side (None: nothing to send)."""

    client: tuple[int, str | None] | None
    worker: CloseConnection | None


_SHUTDOWN = _End((1001, "faucet is shutting down"),
                 CloseConnection(1001, "faucet is shutting down"))
_WORKER_GONE = _End((1011, "the worker went away"), None)


def worker_handshake(request: ClientRequest, fields: RequestHeaders, target: bytes,
                     headers: Headers) -> Request:
    """faucet's handshake to the worker: the client's path, subprotocols and headers
    (less those each leg writes for itself), deflate when the client offered it."""
    return Request(
        host=(fields.host or b"localhost").decode("latin-1"),
        target=target.decode("latin-1"),
        extra_headers=[(name, value) for name, value in headers if name not in _HANDSHAKE],
        subprotocols=list(request.subprotocols),
        extensions=[PerMessageDeflate()] if _offers_deflate(request.headers) else [])


class WorkerLeg:
    """faucet's leg to the worker: a wsproto client on one TCP stream. Both pumps send on
    it (messages one way, pongs and close replies the other), so sends take a lock."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.subprotocol: str | None = None  # the one the worker accepted
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

    async def receive_message(self, limit: int,
                              budget: WebSocketBudget) -> str | bytes | CloseConnection:
        """The worker's next whole message (its frames reassembled, pings answered on the
        way), or its close frame. Its fragments are charged to ``budget`` (shared by all
        sessions) until it is whole; MessageTooBig beyond ``limit`` bytes or the budget."""
        parts: list = []
        size = 0
        try:
            while True:
                event = await self.next_event()
                if isinstance(event, Message):
                    if size + len(event.data) > limit:
                        raise MessageTooBig(f"a message from the worker exceeds {limit} bytes")
                    if not budget.take(len(event.data)):
                        raise MessageTooBig("faucet's WebSocket memory is exhausted")
                    size += len(event.data)
                    parts.append(event.data)
                    if event.message_finished:
                        return ("".join(parts) if isinstance(event, TextMessage)
                                else b"".join(parts))
                elif isinstance(event, Ping):
                    await self.send(event.response())
                elif isinstance(event, CloseConnection):
                    return event
        finally:
            budget.give(size)


async def open_session(backend: Backend, handshake: Request, send) -> tuple[WorkerLeg | None, int]:
    """Connect and upgrade. Accepted: the client is accepted with the worker's subprotocol
    and headers, (worker, 101). Refused: the worker's HTTP response is relayed to the
    client, (None, its status). Unreachable: 502, (None, 502)."""
    deny = handshake_responder(send)
    try:
        stream = await open_worker_stream(backend.port)
    except OSError as exc:
        return None, await respond(deny, 502, f"Bad Gateway: cannot connect "
                                   f"to {backend.target}: {exc.strerror}\n".encode())
    worker = WorkerLeg(stream)
    upgraded = False
    try:
        await worker.send(handshake)
        reply = await worker.next_event()
        if isinstance(reply, AcceptConnection):
            await send({"type": "websocket.accept", "subprotocol": reply.subprotocol,
                        "headers": _back_to_client(reply.extra_headers)})
            worker.subprotocol = reply.subprotocol
            upgraded = True
            return worker, 101
        await deny({"type": "http.response.start", "status": reply.status_code,
                           "headers": _back_to_client(reply.headers)})
        more = reply.has_body
        while more:
            chunk = await worker.next_event()
            more = not chunk.body_finished
            await deny({"type": "http.response.body", "body": chunk.data,
                               "more_body": more})
        if not reply.has_body:
            await deny({"type": "http.response.body", "body": b""})
        return None, reply.status_code
    except WorkerGone as exc:
        return None, await respond(deny, 502, f"Bad Gateway: {exc}\n".encode())
    finally:
        if not upgraded:
            with trio.CancelScope(shield=True):
                await stream.aclose()


class IdleTimer:
    """Ends a WebSocket that carries no message either way for ``timeout`` seconds (as
    nginx's ``proxy_read_timeout`` does): whoever moves a message calls ``touch``, which
    moves the deadline of the scope ``expired`` waits in."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._scope = trio.CancelScope(deadline=trio.current_time() + timeout)

    def touch(self) -> None:
        self._scope.deadline = trio.current_time() + self.timeout

    async def expired(self) -> None:
        """Returns once ``timeout`` has passed since the last ``touch``."""
        with self._scope:
            await trio.sleep_forever()


IDLE_CLOSE = (1001, "faucet: idle timeout")


async def relay(worker: WorkerLeg, receive, send, limit: int, stopping: trio.Event,
                budget: WebSocketBudget, idle_timeout: float = math.inf) -> None:
    """Pump both ways until one side ends, then close the other (shielded, bounded). A
    shutdown ends the session with 1001 on both sides at once: a session can last hours,
    and a graceful shutdown should not wait its whole timeout for it. No message either
    way for ``idle_timeout`` closes both with 1001."""
    end = _SHUTDOWN
    idle = IdleTimer(idle_timeout)
    try:
        end = await first_to_end(partial(_client_to_worker, receive, worker, idle),
                                 partial(_worker_to_client, worker, send, limit, budget, idle),
                                 partial(_until, stopping), partial(_idle, idle))
    finally:
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            if end.worker is not None:
                with contextlib.suppress(WorkerGone):
                    await worker.send(end.worker)
            await worker.stream.aclose()
            if end.client is not None:
                code, reason = end.client
                await send({"type": "websocket.close", "code": code, "reason": reason})


async def _idle(idle: IdleTimer) -> _End:
    await idle.expired()
    return _End(IDLE_CLOSE, CloseConnection(*IDLE_CLOSE))


async def _until(stopping: trio.Event) -> _End:
    await stopping.wait()
    return _SHUTDOWN


async def first_to_end(*pumps):
    """Run the pumps together; the first to return ends the others and names the end."""
    ends: list = []

    async def run(pump, cancel_scope: trio.CancelScope) -> None:
        ends.append(await pump())
        cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for pump in pumps:
            nursery.start_soon(run, pump, nursery.cancel_scope)
    return ends[0]


async def _client_to_worker(receive, worker: WorkerLeg, idle: IdleTimer) -> _End:
    while True:
        message = await receive()
        idle.touch()
        if message["type"] == "websocket.disconnect":
            # hypercorn 0.18 reports most client closes as 1006, which no frame may carry.
            code = message.get("code", 1005)
            reason = message.get("reason")
            if code in _LOCAL_ONLY:
                code, reason = 1001, "the client went away"
            return _End(None, CloseConnection(code, reason))
        text = message.get("text")
        try:
            await worker.send(worker_message(text if text is not None else message["bytes"]))
        except WorkerGone as exc:
            log.warning("websocket: %s", exc)
            return _WORKER_GONE


async def _worker_to_client(worker: WorkerLeg, send, limit: int,
                            budget: WebSocketBudget, idle: IdleTimer) -> _End:
    """Relay the worker's whole messages (hypercorn sends whole messages) up to ``limit``
    bytes each, and within what ``budget`` has left for all sessions."""
    try:
        while True:
            message = await worker.receive_message(limit, budget)
            if isinstance(message, CloseConnection):
                return _End((message.code, message.reason), message.response())
            idle.touch()
            await send(client_message(message))
    except MessageTooBig as exc:
        return _End((1009, str(exc)), CloseConnection(1009, str(exc)))
    except WorkerGone as exc:
        log.warning("websocket: %s", exc)
        return _WORKER_GONE


def client_message(message: str | bytes) -> dict:
    """The ASGI message that sends ``message`` to the client."""
    if isinstance(message, str):
        return {"type": "websocket.send", "text": message}
    return {"type": "websocket.send", "bytes": message}


def worker_message(message: str | bytes) -> TextMessage | BytesMessage:
    """The wsproto event that sends ``message`` to the worker."""
    return TextMessage(message) if isinstance(message, str) else BytesMessage(message)


def _back_to_client(headers) -> list[tuple[bytes, bytes]]:
    lowered = [(name.lower(), value) for name, value in headers]
    dropped = hop_by_hop(lowered) | _HANDSHAKE
    return [(name, value) for name, value in lowered if name not in dropped]


def _offers_deflate(headers) -> bool:
    return any(name == b"sec-websocket-extensions" and b"permessage-deflate" in value.lower()
               for name, value in headers)
