"""hypercorn's HTTP/2 connection (h2c, when the setting is on) with the limits faucet's
HTTP/1.1 path has. The one other module besides ``hypercorn_adapter`` that imports
hypercorn; ``install_h2`` puts these classes where hypercorn looks them up.

- Rapid reset (CVE-2023-44487): a stream the client resets cancels its request
  (``faucet.http.client_cancel``): out of the queue, no worker exchange if none was
  sent. A stream opened and reset in one read never reaches the app at all. Each
  connection owes one for each stream it reset before the answer and pays one back
  for each request it let finish; owing more than ``max_resets`` gets GOAWAY
  (ENHANCE_YOUR_CALM) and the connection closes, as nginx 1.25.3+ and Envoy do.
- Fan-out: a connection may have ``max_streams`` requests under way in faucet, reset
  ones still running included (hypercorn counts only open streams, which a reset frees);
  every request beyond its first also takes one of ``max_connections``' slots. A stream
  over either gets RST_STREAM(REFUSED_STREAM), which a client may retry.
- Flow control: hypercorn's stream buffer woke the writer whenever a send found no
  window (it popped zero bytes), so a client granting none had whole responses buffered.
  Here a send waits while its stream holds more than two frames, and a send waiting
  ``send_timeout`` resets the stream (CANCEL) and cancels the request.
- Heads: ``faucet.http.h2_head`` checks each request head (400, 431) before hypercorn
  decodes it; the answer is recorded like the HTTP/1.1 path's refusals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import h2.errors
import h2.events
import h2.exceptions
import hypercorn.protocol
import hypercorn.protocol.h2
import priority
import trio
from attrs import define
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.events import Closed
from hypercorn.protocol.events import Body, EndBody, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import BUFFER_LOW_WATER, H2Protocol, StreamBuffer
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream

from faucet.http.client_cancel import ClientCancel
from faucet.http.h2_head import head_refusal
from faucet.http.request import CANCEL_EXTENSION, Request
from faucet.ratelimit import RateLimit

log = logging.getLogger("faucet.front")
ABUSE_LOG_EVERY = 10.0  # seconds between two log lines about connections closed for resets


@define
class H2Rules:
    """What one HTTP/2 connection may ask of faucet (docs/edge.md)."""

    max_streams: int = 100  # requests under way at once, reset ones included
    max_resets: int = 100  # streams reset before their answer, net of those answered
    max_head: int = 16 * 1024  # bytes of a request head, as on HTTP/1.1 (431 above)
    send_timeout: float = 60.0  # seconds a send may wait for the client's window
    slots: trio.Semaphore | None = None  # max_connections': one per request beyond the first
    refused: Callable[[Request, int], None] | None = None  # records a refused head


class EdgeApp(ASGIWrapper):
    """The ASGI app as hypercorn calls it, carrying the rules for its HTTP/2 connections."""

    def __init__(self, app, rules: H2Rules):
        super().__init__(app)
        self.rules = rules


class _GiveUp(StreamEvent):
    """From a stream to its connection: the client took no data for ``send_timeout``."""


class _FlowBuffer(StreamBuffer):
    """hypercorn's per-stream send buffer, waking the writer only once the buffer itself
    is under the low-water mark (hypercorn checks the size of what it popped, and pops
    nothing when the window is shut, so the writer was always woken)."""

    async def pop(self, max_length: int) -> bytes:
        data = bytes(self.buffer[:max_length])
        del self.buffer[:max_length]
        if len(self.buffer) < BUFFER_LOW_WATER:
            await self._paused.set()
        if not self.buffer:
            await self._is_empty.set()
        return data


class _Cancellable:
    """Runs one stream's app inside its ClientCancel's scope, which the scope's
    ``extensions`` carry to faucet's Request."""

    def __init__(self, app, cancel: ClientCancel):
        self.app = app
        self.cancel = cancel

    async def __call__(self, scope, receive, send, sync_spawn, call_soon) -> None:
        scope["extensions"][CANCEL_EXTENSION] = self.cancel
        try:
            with self.cancel.scope:
                await self.app(scope, receive, send, sync_spawn, call_soon)
        finally:
            self.cancel.finish()
            _drain(receive)


def _drain(receive) -> None:
    """Empty an ended app's queue: hypercorn's reader may be blocked putting into it
    (a body nobody reads any more), and with it every stream of the connection."""
    channel = receive.__self__  # hypercorn's MemoryReceiveChannel.receive
    try:
        while True:
            channel.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
        pass


class _FaucetHTTPStream(HTTPStream):
    """hypercorn's HTTP stream whose request its client can cancel (a reset, the
    connection's end) and whose sends wait for the client at most ``send_timeout``."""

    def __init__(self, app, *args, **kwargs) -> None:
        super().__init__(app, *args, **kwargs)
        self.cancel = ClientCancel()
        self.app = _Cancellable(app, self.cancel)
        rules = getattr(app, "rules", None)
        self.send_timeout = rules.send_timeout if rules is not None else H2Rules.send_timeout

    async def handle(self, event) -> None:
        if isinstance(event, StreamClosed):
            if self.state is not ASGIHTTPState.CLOSED:  # before the answer was complete
                self.cancel.give_up()
            if self.cancel.finished:  # nobody to tell
                self.closed = True
                return
        elif isinstance(event, (Body, EndBody)) and self.cancel.finished:
            return
        await super().handle(event)
        if self.closed and not self.cancel.finished and getattr(self, "app_put", None) is None:
            self.cancel.finish()  # answered without an app (hypercorn's 404)

    async def app_send(self, message) -> None:
        if message is None or self.closed:
            await super().app_send(message)
            return
        with trio.move_on_after(self.send_timeout):
            await super().app_send(message)
            return
        await self.send(_GiveUp(stream_id=self.stream_id))


class FaucetH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 connection with faucet's limits (see the module docstring)."""

    abuse_log = RateLimit(ABUSE_LOG_EVERY)

    def __init__(self, app, *args, **kwargs) -> None:
        super().__init__(app, *args, **kwargs)
        self.rules: H2Rules = getattr(app, "rules", None) or H2Rules()
        self.live = 0  # requests under way in faucet, reset or not
        self.slots_held = 0  # taken from max_connections for requests beyond the first
        self.reset_debt = 0
        self.resets = 0  # every premature reset, for the log
        self.shut = False  # GOAWAY sent for too many resets
        self.admitted: set[int] = set()  # streams counted in ``live`` but not created yet

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        await super()._handle_events(self._screen(events))
        if self.shut and not self.closed:
            await self.send(Closed())

    def _screen(self, events: list[h2.events.Event]) -> list[h2.events.Event]:
        """The events hypercorn may act on: requests refused here, and streams opened and
        reset in this same read, are answered or dropped without reaching the app."""
        if self.shut:
            return []
        reset_here = {event.stream_id for event in events
                      if isinstance(event, h2.events.StreamReset) and event.remote_reset}
        dropped: set[int] = set()
        kept = []
        terminated = self.context.terminated.is_set()  # hypercorn refuses new streams
        for event in events:
            if self.shut:  # GOAWAY: nothing after it is served
                break
            stream_id = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.RequestReceived) and not terminated:
                if stream_id in reset_here or not self._admit(event):
                    dropped.add(stream_id)
                    continue
            elif stream_id in dropped:
                if isinstance(event, h2.events.DataReceived):  # the connection's window
                    self.connection.acknowledge_received_data(event.flow_controlled_length,
                                                              stream_id)
                elif isinstance(event, h2.events.StreamReset) and event.remote_reset:
                    self._premature_reset()
                continue
            elif (isinstance(event, h2.events.StreamReset) and event.remote_reset
                  and stream_id in self.streams):
                self._premature_reset()
            kept.append(event)
        return kept

    def _admit(self, event: h2.events.RequestReceived) -> bool:
        """Whether a new stream's request goes to the app; else it is answered or refused
        here (the caller drops the stream's other events)."""
        refusal = head_refusal(event.headers, self.rules.max_head)
        if refusal is not None:
            self._answer(event, *refusal)
            return False
        slots = self.rules.slots
        if self.live >= self.rules.max_streams:
            self._refuse_stream(event.stream_id)
            return False
        if self.live >= 1 and slots is not None:
            try:
                slots.acquire_nowait()
            except trio.WouldBlock:
                self._refuse_stream(event.stream_id)
                return False
            self.slots_held += 1
        self.live += 1
        self.admitted.add(event.stream_id)
        return True

    async def _create_stream(self, request: h2.events.RequestReceived) -> None:
        if request.stream_id in self.admitted:
            self.admitted.discard(request.stream_id)
        else:  # the request of an HTTP/1.1 Upgrade: h2c, the connection's first
            self.live += 1
        await super()._create_stream(request)
        stream = self.streams.get(request.stream_id)
        cancel = getattr(stream, "cancel", None)
        if cancel is None or cancel.finished:  # a WebSocket, or already over
            self._finished(cancel)
            return
        # hypercorn starts the app's task with start_soon: it has not run yet.
        cancel.on_finish = lambda: self._finished(cancel)

    def _finished(self, cancel: ClientCancel | None) -> None:
        """A request of this connection is no longer under way."""
        self.live -= 1
        if self.slots_held > max(self.live - 1, 0):
            self.slots_held -= 1
            self.rules.slots.release()
        if cancel is not None and not cancel.given_up:
            self.reset_debt = max(self.reset_debt - 1, 0)

    def _premature_reset(self) -> None:
        """The client reset a stream before its answer: past the budget, GOAWAY."""
        self.resets += 1
        self.reset_debt += 1
        if self.reset_debt > self.rules.max_resets and not self.shut:
            self.shut = True
            self.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            if (count := self.abuse_log.due()) is not None:
                client = self.client[0] if self.client else "?"
                log.warning("closed an HTTP/2 connection from %s that reset %d streams "
                            "before their answer (rapid reset; h2_max_resets = %d); %d such "
                            "connection(s) since the last line", client, self.resets,
                            self.rules.max_resets, count)

    def _refuse_stream(self, stream_id: int) -> None:
        self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

    def _answer(self, event: h2.events.RequestReceived, status: int, text: str) -> None:
        """Answer a refused head on its stream; the request body, if any, is not read."""
        stream_id = event.stream_id
        body = (text + "\n").encode()
        if self.connection.local_flow_control_window(stream_id) < len(body):
            body = b""
        self.connection.send_headers(stream_id, [
            (b":status", str(status).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode())], end_stream=not body)
        if body:
            self.connection.send_data(stream_id, body, end_stream=True)
        if event.stream_ended is None:  # the client is still sending: stop it
            self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        if self.rules.refused is not None:
            self.rules.refused(_record_of(event.headers, self.client), status)

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, _GiveUp):
            await self._give_up(event.stream_id)
        else:
            await super().stream_send(event)

    async def _give_up(self, stream_id: int) -> None:
        """A client that took no data for ``send_timeout``: reset the stream, free what
        its buffer holds (hypercorn's sending task removes the buffer itself), and cancel
        the request."""
        try:
            self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass  # already closed
        buffer = self.stream_buffers.get(stream_id)
        if buffer is not None:
            await buffer.close()
            try:
                self.priority.unblock(stream_id)
            except priority.MissingStreamError:
                pass
            await self.has_data.set()
        await self._flush()
        await self._close_stream(stream_id)


def _record_of(headers, client) -> Request:
    """What telemetry records of a refused HTTP/2 head (bytes shown as latin-1)."""
    pseudo = {name: value for name, value in headers if name.startswith(b":")}
    path, _, query = pseudo.get(b":path", b"").partition(b"?")
    method = pseudo.get(b":method", b"").decode("latin-1")
    return Request(method=method, raw_path=path, query=query, http_version="2",
                   scheme="http", client=client,
                   headers=[(n, v) for n, v in headers if not n.startswith(b":")])


def install_h2() -> None:
    """Make hypercorn serve HTTP/2 with these classes (idempotent)."""
    hypercorn.protocol.H2Protocol = FaucetH2Protocol
    hypercorn.protocol.h2.HTTPStream = _FaucetHTTPStream
    hypercorn.protocol.h2.StreamBuffer = _FlowBuffer
