"""Shiny sessions held across dropped connections: the I/O (the decisions are in
faucet.sessions, the why in docs/shiny.md).

The WebSockets of a shiny or quarto-shiny app run through here instead of
``websocket.relay``. The worker's leg of a session belongs to a session task in faucet's
own nursery, not to the client's connection:

- the session task reads the worker's messages into the session's outbox and writes the
  client's messages, handed to it through a bounded channel, to the worker. It ends the
  session when the worker closes or dies, when no client comes back within
  ``reconnect_grace``, when the absent client's messages outgrow the buffer, or when
  faucet shuts down;
- a client leg (one connection hypercorn serves) hands the client's messages to that
  channel and writes the outbox from where the client is. With the reconnect script, it
  pings every ``heartbeat_interval`` and takes a client silent for ``heartbeat_timeout``
  for gone; a leg that ends without the client closing on purpose leaves the session
  waiting for the next one.

A reconnect with the same session id takes the session over (a leg still attached is
closed first), learns how many of its messages reached the session (``resume:N``; a
message counts once the channel has accepted it, which is atomic, so the count is exact
wherever a leg is cut) and gets the outbox from its ``received`` on. Without the script
(no ``sessionId`` in the query) a session ends with its connection, as before.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence

import trio
from attrs import frozen
from wsproto.events import CloseConnection

from faucet.config.settings import Config
from faucet.http.request import Request
from faucet.http.ws_budget import WebSocketBudget
from faucet.pool.backend import Backend
from faucet.proxy.mount import Mount
from faucet.proxy.shiny.page_script import script_body
from faucet.proxy.shiny.session_events import SessionEvents
from faucet.proxy.shiny.sessions import (
    BUFFER_FULL,
    CLIENT_LOST,
    CROWDED_OUT,
    FAILED,
    GRACE_OVER,
    NO_HEARTBEAT,
    PING,
    PONG,
    REDEPLOYED,
    REPLACED,
    RESUME,
    SESSION_GONE,
    SHUTTING_DOWN,
    WORKER_GONE,
    Budget,
    Ending,
    Message,
    Outbox,
    Placement,
    Refused,
    Registry,
    Reservation,
    SessionState,
    SessionStatistics,
    client_closed,
    config_token,
    greediest,
    message_too_big,
    place,
    worker_closed,
)
from faucet.proxy.websocket import (
    CLOSE_GRACE,
    IDLE_CLOSE,
    IdleTimer,
    MessageTooBig,
    WorkerGone,
    WorkerLeg,
    client_message,
    first_to_end,
    worker_message,
)

log = logging.getLogger("faucet.sessions")
INBOX = 64  # client messages waiting for the worker; the client leg waits beyond that
_DELIBERATE = frozenset({1000, 1001, 1005})  # the client closed: its page went away


class LiveSession:
    """One session faucet holds: its state, the worker's leg, and what its client legs
    and its task wait on."""

    def __init__(self, state: SessionState, worker: WorkerLeg, reservation: Reservation):
        self.state = state
        self.worker = worker
        self.reservation = reservation  # its id and its count on its worker
        self.to_worker, self.inbox = trio.open_memory_channel[Message](INBOX)
        self.news = trio.Event()  # set (and replaced) when the outbox grows or it ends
        self.attachment = trio.Event()  # set (and replaced) when a leg attaches or detaches
        # The leg attached; the first one attaches at once, so the session never starts
        # its grace period before its first client is served.
        self.leg: trio.CancelScope | None = trio.CancelScope()
        self.asked: Ending | None = None  # the client ended it
        self.ask = trio.Event()

    @property
    def attached(self) -> bool:
        return self.leg is not None

    def wake(self) -> None:
        event, self.news = self.news, trio.Event()
        event.set()

    def attach(self, scope: trio.CancelScope) -> None:
        self.leg = scope
        self._changed()

    def detach(self, scope: trio.CancelScope) -> None:
        if self.leg is scope:
            self.leg = None
            self._changed()

    def end(self, ending: Ending) -> None:
        """Someone other than the session's task ends it: its client closed on purpose,
        or it was crowded out of the shared buffer."""
        self.asked = ending
        self.ask.set()

    def _changed(self) -> None:
        event, self.attachment = self.attachment, trio.Event()
        event.set()


class _ClientLeg:
    """One client connection of a session. Only its writer task sends on it: the reader
    and the heartbeat leave a pong owed or a ping due and wake the writer, so the task
    that takes the client's messages never waits on a send (a reader waiting to answer a
    ping behind a blocked send, while hypercorn waited for that reader to take the
    client's disconnect, held zombie sessions until restart). A ping records how many of
    the outbox's messages went out before it, which its pong will acknowledge. A send the
    client has not taken within ``send_timeout`` ends the leg."""

    def __init__(self, send, sent: int, send_timeout: float, wake, idle: IdleTimer):
        self._send = send
        self._timeout = send_timeout
        self.idle = idle  # without the reconnect script: no message either way ends it
        self.wake = wake  # tells the writer there is something to send
        self.sent = sent  # the outbox's messages sent on this leg (or had before it)
        self.pings: deque[int] = deque()  # ``sent`` at each ping not yet answered
        self.pongs = 0  # pongs owed to the client
        self.ping_due = False
        self.closed = False

    async def send(self, message: Message, number: int | None = None) -> bool:
        """Send ``message``, the outbox's message ``number`` if it is one; False when the
        client took no write within ``send_timeout``."""
        self.idle.touch()
        with trio.move_on_after(self._timeout):
            await self._send(client_message(message))
            if number is not None:
                self.sent = number
            return True
        return False

    async def ping(self) -> bool:
        self.ping_due = False
        self.pings.append(self.sent)
        return await self.send(PING)

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})


@frozen
class SessionSettings:
    """What the session host reads of the settings (sizes in bytes, times in seconds;
    None: no limit)."""

    max_sessions: int | None
    max_sessions_per_client: int | None
    reconnect_buffer: int  # per session
    reconnect_buffer_total: int
    reconnect_grace: float
    reconnect_grace_unused: float  # for a session that never finished its first exchange
    heartbeat_interval: float
    heartbeat_timeout: float
    max_message_size: int
    send_timeout: float
    idle_timeout: float  # websocket_idle_timeout

    @classmethod
    def of(cls, config: Config) -> SessionSettings:
        return cls(config.max_sessions, config.max_sessions_per_client,
                   int(config.reconnect_buffer), int(config.reconnect_buffer_total),
                   config.reconnect_grace, config.reconnect_grace_unused,
                   config.heartbeat_interval, config.heartbeat_timeout,
                   int(config.max_message_size), config.send_timeout,
                   config.websocket_idle_timeout)


class SessionHost:
    """Holds the Shiny sessions of every app: run ``run`` in a nursery that outlives the
    client connections, then ``open`` a session per new WebSocket and ``join`` it."""

    def __init__(self, settings: SessionSettings, stopping: trio.Event, websockets: WebSocketBudget,
                 events: SessionEvents | None = None):
        """``websockets`` bounds the memory of messages still arriving, as for every
        WebSocket; the sessions' own buffers have budgets of their own. ``events``
        records each session's opening, reconnects and end (None: not recorded)."""
        self.websockets = websockets
        self.events = events
        self.registry = Registry(settings.max_sessions_per_client)
        self.budget = Budget(settings.reconnect_buffer_total)
        self.per_session = settings.reconnect_buffer
        self.grace = settings.reconnect_grace
        self.interval = settings.heartbeat_interval
        self.timeout = settings.heartbeat_timeout
        self.max_sessions = settings.max_sessions
        self.max_message = settings.max_message_size
        self.send_timeout = settings.send_timeout
        self.idle_timeout = settings.idle_timeout
        self.grace_unused = min(settings.reconnect_grace_unused, settings.reconnect_grace)
        self.stopping = stopping
        self.script = script_body({"heartbeatTimeout": round(self.timeout * 1000)})
        self._room = trio.Event()  # set (and replaced) when buffered bytes are freed
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Hold sessions until cancelled (each one ends by itself once ``stopping`` is set)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(len(self.registry),
                                 sum(not live.attached for live in self.registry),
                                 self.budget.used)

    def end_on(self, backends: Sequence[Backend]) -> int:
        """End the sessions held on ``backends`` (a generation a reload retired, once
        ``drain_timeout`` has passed): their pages reconnect and reload onto the new
        code. How many were ended."""
        ending = [live for live in self.registry if live.state.backend in backends]
        for live in ending:
            live.end(REDEPLOYED)
        return len(ending)

    def place(self, mount: Mount, request: Request, path: bytes,
              preferred: Backend | None = None) -> Placement:
        return place(self.registry, mount.backends, self.max_sessions,
                     websocket=request.websocket, method=request.method, path=path,
                     query=request.query, headers=request.headers, preferred=preferred)

    def reserve(self, placement: Placement, backend: Backend,
                client: object = None) -> Reservation | Refused:
        """Hold a new session's id on ``backend`` (see Registry.reserve)."""
        return self.registry.reserve(placement.key, backend, client)

    async def open(self, placement: Placement, reservation: Reservation, worker: WorkerLeg,
                   receive, send) -> None:
        """A new session on ``worker`` (its client already accepted): hold it (which
        ends the reservation), and serve its first client leg until that ends."""
        state = SessionState(placement.session_id, reservation.backend, Outbox(self.budget),
                             placement.resumable)
        live = LiveSession(state, worker, reservation)
        await self._nursery.start(self._run, live)
        await self._serve_leg(live, live.leg, receive, send, 0, resumed=False)

    async def join(self, placement: Placement, request: Request, receive, send) -> None:
        """A reconnect: resume the session it names, or tell its page to reload."""
        live = placement.session
        offered = request.subprotocols
        subprotocol = None
        if live is not None:
            subprotocol = live.worker.subprotocol if live.worker.subprotocol in offered else None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        if (live is None or live.state.ending is not None
                or not live.state.outbox.holds_after(placement.received)):
            await send({"type": "websocket.close", "code": SESSION_GONE,
                        "reason": "faucet: the session expired"})
            return
        leg_scope = trio.CancelScope()
        while live.leg is not None:  # an older leg is still attached: close it first
            live.leg.cancel()
            await live.attachment.wait()
        live.attach(leg_scope)
        log.info("session %s: client reconnected (worker %d)", live.state.id,
                 live.state.backend.worker_id)
        if self.events is not None:
            self.events.reconnected(live.state, placement.received)
        await self._serve_leg(live, leg_scope, receive, send, placement.received,
                              resumed=True)

    # -- the session task ------------------------------------------------------------

    async def _run(self, live: LiveSession, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Hold the session until one of its parts ends it; then close the worker's leg.
        A failure of faucet's own ends this session only, never the others."""
        state = live.state
        self.registry.add(live, live.reservation)
        if self.events is not None:
            self.events.opened(state)
        ending = SHUTTING_DOWN  # if cancelled (an immediate shutdown)
        try:
            task_status.started()
            ending = await first_to_end(
                lambda: self._from_worker(live), lambda: self._to_worker(live),
                lambda: self._keep_waiting(live), lambda: self._asked(live),
                self._until_stopping)
        except* Exception:
            log.exception("session %s: faucet failed", state.id)
            ending = FAILED
        finally:
            state.ending = ending
            self.registry.remove(live, live.reservation)
            state.outbox.release()
            self._freed()
            live.wake()
            log.info("session %s ended on worker %d: %s", state.id, state.backend.worker_id,
                     ending.why)
            if self.events is not None:
                self.events.ended(state, ending.why)
            with trio.move_on_after(CLOSE_GRACE, shield=True):
                if ending.worker is not None:
                    try:
                        await live.worker.send(CloseConnection(*ending.worker))
                    except WorkerGone:
                        pass
                await live.worker.stream.aclose()

    async def _from_worker(self, live: LiveSession) -> Ending:
        state = live.state
        try:
            while True:
                message = await live.worker.receive_message(self.max_message, self.websockets)
                if isinstance(message, CloseConnection):
                    return worker_closed(message.code, message.reason)
                if state.token is None and (token := config_token(message)) is not None:
                    self.registry.bind_token(live, token)
                while not state.outbox.admits(len(message), self.per_session):
                    if not live.attached:
                        return BUFFER_FULL
                    if state.outbox.shared_budget_short(len(message)):
                        self._crowd_out(live)
                        if state.outbox.admits(len(message), self.per_session):
                            break
                    await self._room.wait()  # until acknowledgements free some
                state.outbox.append(message)
                live.wake()
        except MessageTooBig as exc:
            return message_too_big(str(exc))
        except WorkerGone as exc:
            log.warning("session %s: %s", state.id, exc)
            return WORKER_GONE

    async def _to_worker(self, live: LiveSession) -> Ending:
        while True:
            message = await live.inbox.receive()
            try:
                await live.worker.send(worker_message(message))
            except WorkerGone as exc:
                log.warning("session %s: %s", live.state.id, exc)
                return WORKER_GONE

    async def _keep_waiting(self, live: LiveSession) -> Ending:
        """Ends the session once it has had no client for ``reconnect_grace`` (at once
        without the reconnect script)."""
        while True:
            while live.attached:
                await live.attachment.wait()
            if not live.state.resumable:
                return live.asked or CLIENT_LOST
            # A page that never sent a message (not even Shiny's init) is likely gone.
            grace = self.grace if live.state.forwarded else self.grace_unused
            log.info("session %s: client away; waiting up to %gs for it", live.state.id,
                     grace)
            self._freed()  # a session over its buffer bound without a client ends now
            with trio.move_on_after(grace):
                while not live.attached:
                    await live.attachment.wait()
                continue
            return GRACE_OVER

    async def _asked(self, live: LiveSession) -> Ending:
        await live.ask.wait()
        return live.asked

    async def _until_stopping(self) -> Ending:
        await self.stopping.wait()
        return SHUTTING_DOWN

    def _crowd_out(self, asking: LiveSession) -> None:
        """The shared budget is full while ``asking`` needs room: the session holding
        the most of it (more than ``asking``) ends, and its buffer is freed at once."""
        sessions = {live.state: live for live in self.registry if live.asked is None}
        hog = greediest(sessions, asking.state)
        if hog is None:
            return
        live = sessions[hog]
        log.warning("session %s: ends, holding %d bytes unacknowledged while session %s "
                    "needed room in reconnect_buffer_total", hog.id, hog.outbox.size,
                    asking.state.id)
        hog.outbox.release()
        live.end(CROWDED_OUT)
        self._freed()

    def _freed(self) -> None:
        event, self._room = self._room, trio.Event()
        event.set()

    # -- a client leg ----------------------------------------------------------------

    async def _serve_leg(self, live: LiveSession, scope: trio.CancelScope, receive, send,
                         received: int, *, resumed: bool) -> None:
        """Serve one client leg until the client goes, the session ends or a newer leg
        takes over; then close the client as that calls for."""
        leg = _ClientLeg(send, received, self.send_timeout, live.wake,
                         IdleTimer(self.idle_timeout))
        close = SHUTTING_DOWN.client_close(live.state.resumable)  # if cancelled
        try:
            with scope:
                if resumed and not await leg.send(f"{RESUME}{live.state.forwarded}"):
                    close = None
                else:
                    close = await first_to_end(lambda: self._read_client(live, leg, receive),
                                               lambda: self._write_client(live, leg),
                                               lambda: self._heartbeat(live, leg))
            if scope.cancelled_caught:
                close = (REPLACED, "faucet: a newer connection took over")
        finally:
            live.detach(scope)
            if close is not None:
                with trio.move_on_after(CLOSE_GRACE, shield=True):
                    await leg.close(*close)

    async def _read_client(self, live: LiveSession, leg: _ClientLeg,
                           receive) -> tuple[int, str] | None:
        """The client's messages into the session; the close to send when the leg ends
        (None: the client has gone). It never sends: a ping leaves a pong owed."""
        state = live.state
        timeout = self.timeout if state.resumable else math.inf
        while True:
            message = None
            with trio.move_on_after(timeout):
                message = await receive()
            if message is None:
                log.info("session %s: no heartbeat from the client for %gs", state.id, timeout)
                return (NO_HEARTBEAT, "faucet: no heartbeat from the client")
            leg.idle.touch()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", 1005)
                if code in _DELIBERATE or not state.resumable:
                    live.end(client_closed(code, message.get("reason")))
                return None
            data = message.get("text")
            data = message.get("bytes") if data is None else data
            if state.resumable and data == PING:
                leg.pongs += 1  # after everything before it was handed on
                leg.wake()
            elif state.resumable and data == PONG:
                if leg.pings:
                    state.outbox.ack(leg.pings.popleft())
                    self._freed()
            else:
                await live.to_worker.send(data)
                state.forwarded += 1

    async def _write_client(self, live: LiveSession,
                            leg: _ClientLeg) -> tuple[int, str] | None:
        """Everything the client gets: pongs owed, pings due (early when the
        unacknowledged messages fill half the buffer) and the outbox from where the client
        is; once the session ends, the close its client gets. None: the client took no
        write within ``send_timeout``."""
        state = live.state
        outbox = state.outbox
        while True:
            news = live.news
            if leg.pongs:
                leg.pongs -= 1
                sent = await leg.send(PONG)
            elif leg.ping_due or (state.resumable and outbox.size > self.per_session // 2
                                  and (not leg.pings or leg.pings[-1] < leg.sent)):
                sent = await leg.ping()
            elif leg.sent < outbox.last and (state.ending is None or state.ending.deliver):
                number = leg.sent + 1
                sent = await leg.send(outbox.get(number), number)
                if sent and not state.resumable:
                    outbox.ack(number)
                    self._freed()
            elif state.ending is not None:
                return state.ending.client_close(state.resumable)
            else:
                await news.wait()
                continue
            if not sent:
                log.info("session %s: the client took no write for %gs", state.id,
                         self.send_timeout)
                return None

    async def _heartbeat(self, live: LiveSession, leg: _ClientLeg) -> tuple[int, str]:
        """A ping due every ``heartbeat_interval`` (with the reconnect script). Without
        it, the close once no message went either way for ``websocket_idle_timeout``."""
        if not live.state.resumable:
            await leg.idle.expired()
            log.info("session %s: idle for %gs", live.state.id, leg.idle.timeout)
            return IDLE_CLOSE
        while True:
            await trio.sleep(self.interval)
            leg.ping_due = True
            leg.wake()
