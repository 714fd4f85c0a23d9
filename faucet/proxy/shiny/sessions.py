"""Shiny sessions that outlive a dropped connection: the decisions, without I/O.

faucet's reconnect script (faucet/static/reconnect.js) opens Shiny's WebSocket with
``sessionId`` (a random UUID kept for the page's life), ``attempt`` and ``received`` (the
worker's messages it has had) in the query. faucet keeps the worker's leg of such a
session open while the client is away (``faucet.proxy.shiny.session_host`` does the
I/O). Here: those parameters, the numbered buffer of the worker's messages and the byte
budget all buffers share, the registry of live sessions (counted per worker, found by
Shiny's own token), where a request of a Shiny app goes, and how a session ends.

The wire protocol beyond Shiny's own messages is four text messages: ``ping`` and
``pong`` both ways (each side answers the other's ping once it has handled everything
received before it, so a pong acknowledges), and ``resume:N`` from faucet at the start of
a resumed leg (N: the client's messages faucet has handed on, so the client sends the
rest again and none twice).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Sequence
from urllib.parse import parse_qsl

from attrs import define, frozen

from faucet.http.asgi import retry_page
from faucet.pool.backend import Backend
from faucet.pool.balancer import least_loaded
from faucet.proxy.shiny.page_script import is_page_load

PING = "ping"
PONG = "pong"
RESUME = "resume:"
# The Rust server's header; httpuv gives it to R as HTTP_FAUCET_SESSION_ID, which the faucet
# R package's get_session_id() reads.
SESSION_HEADER = b"FAUCET_SESSION_ID"
_SESSION_HEADER_NAME = b"faucet-session-id"  # its spelling once case and _/- are folded

# Close codes the reconnect script acts on (4000-4999: private use, RFC 6455 7.4.2).
NO_HEARTBEAT = 4000  # a leg whose other end fell silent (either side): reconnect
SESSION_GONE = 4001  # faucet no longer holds this session: reload the page
WORKER_LOST = 4002  # the session's R process died: reload onto a live worker
REPLACED = 4003  # a newer connection of the same session took over this one
RESTARTING = 1012  # "Service Restart": reconnect once faucet is back (then reload)

Message = str | bytes


@frozen
class ResumeParams:
    """What the reconnect script puts in the WebSocket's query."""

    session_id: uuid.UUID
    attempt: int
    received: int


def resume_params(query: bytes) -> ResumeParams | None:
    """The reconnect script's parameters (names case-insensitive, as the Rust server
    reads them); None for a client without them or with malformed ones."""
    found: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1")):
        found.setdefault(name.lower(), value)
    try:
        session_id = uuid.UUID(found["sessionid"])
        attempt = int(found.get("attempt", "0"))
        received = int(found.get("received", "0"))
    except (KeyError, ValueError):
        return None
    if attempt < 0 or received < 0:
        return None
    return ResumeParams(session_id, attempt, received)


class Budget:
    """Bytes the buffers of all sessions may hold together."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0


class Outbox:
    """The worker's messages for one client, numbered from 1, kept until the client has
    acknowledged them; their size is charged to the shared ``Budget`` (characters for
    text, which is close enough to bytes for a bound)."""

    def __init__(self, budget: Budget):
        self._budget = budget
        self._items: deque[Message] = deque()
        self.acked = 0  # messages 1..acked are acknowledged and gone
        self.size = 0

    @property
    def last(self) -> int:
        """The number of the newest message (0: none yet)."""
        return self.acked + len(self._items)

    def shared_budget_short(self, size: int) -> bool:
        """Whether a message of ``size`` waits for the budget all sessions share (not
        for this outbox's own bound)."""
        return bool(self._items) and self._budget.used + size > self._budget.limit

    def admits(self, size: int, limit: int) -> bool:
        """Whether a message of ``size`` fits this outbox's ``limit`` and the budget. An
        empty outbox takes any one message, so none waits for room it can never have."""
        if not self._items:
            return True
        return self.size + size <= limit and self._budget.used + size <= self._budget.limit

    def append(self, message: Message) -> None:
        self._items.append(message)
        self.size += len(message)
        self._budget.used += len(message)

    def get(self, number: int) -> Message:
        return self._items[number - self.acked - 1]

    def holds_after(self, received: int) -> bool:
        """Whether a client that has ``received`` messages can go on from here."""
        return self.acked <= received <= self.last

    def ack(self, number: int) -> None:
        """Drop the messages up to ``number``: the client has them."""
        while self.acked < number and self._items:
            size = len(self._items.popleft())
            self.size -= size
            self._budget.used -= size
            self.acked += 1

    def release(self) -> None:
        """Give the budget back when the session ends (the messages stay readable, for a
        client leg still delivering them)."""
        self._budget.used -= self.size
        self._budget = Budget(0)
        self.size = 0


@frozen
class Ending:
    """How a session ends: the close its client gets if one is attached (after the
    worker's messages still buffered, when ``deliver``), and the close the worker gets
    (None: the worker is gone, or it closed and was answered). A client without the
    reconnect script gets ``plain`` where set: the codes any WebSocket client knows
    (websocket.relay's), not those that make the script reload or wait."""

    why: str
    client: tuple[int, str] | None
    worker: tuple[int, str] | None
    deliver: bool = True
    plain: tuple[int, str] | None = None

    def client_close(self, resumable: bool) -> tuple[int, str] | None:
        return self.client if resumable or self.plain is None else self.plain


WORKER_GONE = Ending("the worker went away", (WORKER_LOST, "faucet: the worker went away"),
                     None, plain=(1011, "the worker went away"))
GRACE_OVER = Ending("the client did not come back within reconnect_grace",
                    (SESSION_GONE, "faucet: the session expired"),
                    (1001, "the client went away"))
BUFFER_FULL = Ending("the worker's messages for the absent client outgrew the buffer",
                     (SESSION_GONE, "faucet: the session expired"),
                     (1001, "the client went away"))
CROWDED_OUT = Ending("its unacknowledged messages held the most of reconnect_buffer_total "
                     "when another session needed room",
                     (SESSION_GONE, "faucet: the session expired"),
                     (1001, "the client went away"), deliver=False)
CLIENT_LOST = Ending("the client went away", None, (1001, "the client went away"))
FAILED = Ending("faucet failed (see the traceback)", (1011, "faucet: internal error"),
                (1011, "faucet: internal error"), deliver=False)
REDEPLOYED = Ending("the app was reloaded and drain_timeout passed",
                    (RESTARTING, "faucet: the app was reloaded"),
                    (1001, "the app was reloaded"), plain=(1012, "the app was reloaded"))
SHUTTING_DOWN = Ending("faucet is shutting down", (RESTARTING, "faucet is restarting"),
                       (1001, "faucet is shutting down"), deliver=False,
                       plain=(1001, "faucet is shutting down"))


def greediest(states, asking: SessionState) -> SessionState | None:
    """The session to end so that ``asking`` gets room in the shared budget: the one
    holding the most, if it holds more than ``asking`` (a client that never acknowledges
    loses its own session, not another's share). None: ``asking`` holds the most, and
    waits for its own client."""
    hog = max(states, key=lambda state: state.outbox.size, default=None)
    if hog is None or hog is asking or hog.outbox.size <= asking.outbox.size:
        return None
    return hog


def sendable(code: int, reason: str | None) -> tuple[int, str]:
    """A close as the other side may receive it: 1005, 1006 and 1015 describe a close
    but go in no close frame (RFC 6455 7.4.1)."""
    if code == 1005:
        return 1000, reason or ""
    if code in (1006, 1015):
        return 1001, "the client went away"
    return code, reason or ""


def worker_closed(code: int, reason: str | None) -> Ending:
    """The worker closed the session (the app ended it): the client gets its close."""
    close = sendable(code, reason)
    return Ending(f"the worker closed it ({code})", close, close)


def client_closed(code: int, reason: str | None) -> Ending:
    """The client closed the session, or (without the reconnect script) went away."""
    return Ending(f"the client closed it ({code})", None, sendable(code, reason))


def message_too_big(reason: str) -> Ending:
    """A message from the worker over ``max_message_size`` or faucet's WebSocket memory."""
    return Ending(reason, (1009, reason), (1009, reason), deliver=False)


@frozen
class SessionStatistics:
    """The health endpoint's view of the sessions faucet holds."""

    live: int
    waiting: int  # without a client, within reconnect_grace
    buffered: int  # bytes of the workers' messages held for clients


@define(eq=False)
class SessionState:
    """One live Shiny session as the registry sees it."""

    id: uuid.UUID  # the id R sees (FAUCET_SESSION_ID), never the client's
    backend: Backend
    outbox: Outbox
    resumable: bool  # opened by the reconnect script: it may come back after a drop
    forwarded: int = 0  # the client's messages handed on toward the worker
    token: str | None = None  # Shiny's own session id, from its first message
    ending: Ending | None = None


@frozen
class Refused:
    """A new session the registry will not open: the handshake's HTTP answer."""

    status: int
    reason: str


DUPLICATE = Refused(409, "Conflict: a session with this id is open or being opened")


class Registry:
    """Sessions by id, from their placement on a worker to their end, and by Shiny's
    token. A session is counted once on its backend (``Backend.sessions``), by the
    Reservation that holds its id; the registry keeps no count of its own."""

    def __init__(self, per_client: int | None = None, secret: bytes | None = None):
        self.per_client = per_client  # sessions one client address may hold
        # Derives the id R sees from the client's (worker_session_id); per process.
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self._by_id: dict[uuid.UUID, Reservation] = {}
        self._by_token: dict[str, object] = {}
        self._by_client: dict[object, set[uuid.UUID]] = {}

    def __len__(self) -> int:
        return sum(r.session is not None for r in self._by_id.values())

    def __iter__(self):
        return (r.session for r in list(self._by_id.values()) if r.session is not None)

    def get(self, session_id: uuid.UUID):
        """The live session with this (client's) id (None while it is being opened)."""
        reservation = self._by_id.get(session_id)
        return reservation.session if reservation is not None else None

    def by_token(self, token: str):
        return self._by_token.get(token)

    def reserve(self, session_id: uuid.UUID, backend: Backend,
                client: object = None) -> Reservation | Refused:
        """Hold ``session_id`` for a new session on ``backend`` (counted there from now
        on), unless the id is taken or ``client`` (its address) holds ``per_client``."""
        if session_id in self._by_id:
            return DUPLICATE
        held = self._by_client.get(client, ()) if client is not None else ()
        if self.per_client is not None and len(held) >= self.per_client:
            return Refused(503, f"Service Unavailable: this address has {len(held)} "
                                "sessions open, the most allowed")
        reservation = Reservation(self, session_id, backend, client)
        self._by_id[session_id] = reservation
        if client is not None:
            self._by_client.setdefault(client, set()).add(session_id)
        return reservation

    def add(self, session, reservation: Reservation) -> None:
        """``session`` (with a ``state: SessionState``) is open: it takes over
        ``reservation``, which now lasts until ``remove``."""
        reservation.session = session

    def bind_token(self, session, token: str) -> None:
        session.state.token = token
        self._by_token[token] = session

    def remove(self, session, reservation: Reservation) -> None:
        state = session.state
        reservation.end()
        if state.token is not None and self._by_token.get(state.token) is session:
            del self._by_token[state.token]

    def _forget(self, reservation: Reservation) -> None:
        if self._by_id.get(reservation.session_id) is reservation:
            del self._by_id[reservation.session_id]
        held = self._by_client.get(reservation.client)
        if held is not None:
            held.discard(reservation.session_id)
            if not held:
                del self._by_client[reservation.client]


class Reservation:
    """A session's id and its one count on ``backend``, from its placement until it
    ends: ``release`` when the connection that opened it is done (nothing happens if a
    live session took it over), ``end`` when the session ends."""

    def __init__(self, registry: Registry, session_id: uuid.UUID, backend: Backend,
                 client: object = None):
        self._registry = registry
        self.session_id = session_id
        self.backend = backend
        self.client = client
        self.session = None  # the live session, once open
        self._counted = True
        backend.session_opened()

    def release(self) -> None:
        if self.session is None:
            self.end()

    def end(self) -> None:
        if self._counted:
            self._counted = False
            self.backend.session_closed()
            self._registry._forget(self)


def has_room(backends: Sequence[Backend], limit: int | None) -> bool:
    """Whether a new session could start now, or may soon (no worker online yet)."""
    online = [b for b in backends if b.online]
    return limit is None or not online or any(b.sessions < limit for b in online)


_TOKEN_PATH = re.compile(rb"(?:^|/)session/([0-9a-f]{16,64})/")


def path_token(path: bytes) -> str | None:
    """Shiny's session token in a session-bound path (``session/TOKEN/download/...``,
    ``.../upload/...``, ``.../dataobj/...``), else None."""
    match = _TOKEN_PATH.search(path)
    return match.group(1).decode("ascii") if match else None


def config_token(message: Message) -> str | None:
    """Shiny's session token from its first message, ``{"config":{"sessionId":...}}``."""
    if not isinstance(message, str) or not message.startswith('{"config"'):
        return None
    try:
        token = json.loads(message)["config"]["sessionId"]
    except (ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) else None


def worker_session_id(secret: bytes, client_id: uuid.UUID) -> uuid.UUID:
    """The FAUCET_SESSION_ID R sees for the client's ``sessionId``: a keyed hash with a
    per-process secret, so a client cannot choose it (all zeros gives R no all-zero id)
    nor learn it from its own id, and R's id, in R's logs or pages, does not let anyone
    take the session over. A version 4 UUID in form."""
    digest = hmac.new(secret, client_id.bytes, hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def with_session_id(headers: list[tuple[bytes, bytes]],
                    session_id: uuid.UUID | None) -> list[tuple[bytes, bytes]]:
    """The worker's headers with faucet's FAUCET_SESSION_ID (when there is a session) and
    never the client's own, in any spelling (a client must not choose its session id)."""
    out = [(name, value) for name, value in headers
           if name.lower().replace(b"_", b"-") != _SESSION_HEADER_NAME]
    if session_id is not None:
        out.append((SESSION_HEADER, str(session_id).encode()))
    return out


@frozen
class Placement:
    """Where a request of a Shiny app goes, when not simply by the app's strategy."""

    backend: Backend | None = None  # this worker (None: the strategy chooses)
    session: object | None = None  # the live session it belongs to, or resumes
    session_id: uuid.UUID | None = None  # FAUCET_SESSION_ID for the worker
    key: uuid.UUID | None = None  # the client's sessionId (a new session's registry key)
    opens: bool = False  # a WebSocket opening a new session
    resumable: bool = False  # ... through the reconnect script
    received: int = 0  # a resuming client has this many of the worker's messages
    refusal: str | None = None  # "full" (503) or "gone" (close SESSION_GONE)


BY_STRATEGY = Placement()


def place(registry: Registry, backends: Sequence[Backend], max_sessions: int | None, *,
          websocket: bool, method: str, path: bytes, query: bytes,
          headers: Sequence[tuple[bytes, bytes]],
          preferred: Backend | None = None) -> Placement:
    """Where a request of a Shiny app goes.

    A WebSocket resuming a session faucet holds goes to that session's worker; one that
    names a session faucet no longer holds (attempt > 0) is refused so its page reloads;
    any other opens a new session on ``preferred`` (the worker the client's sticky cookie
    names) when it is online with room, else on the worker with the fewest live sessions
    (503 when all have ``max_sessions``). A request bound to a session by Shiny's token goes to
    its worker; a page load when every worker is full gets the 503 page; the rest go by
    the strategy."""
    if websocket:
        params = resume_params(query)
        if params is not None:
            session = registry.get(params.session_id)
            if session is not None:
                return Placement(session.state.backend, session, session.state.id,
                                 received=params.received)
            if params.attempt > 0:
                return Placement(refusal="gone")
        key = params.session_id if params else uuid.uuid4()
        backend = (preferred if preferred is not None and preferred.online
                   and has_room([preferred], max_sessions)
                   else least_loaded(backends, limit=max_sessions))
        if backend is None and not has_room(backends, max_sessions):
            return Placement(refusal="full")
        return Placement(backend, None, worker_session_id(registry.secret, key), key,
                         opens=True, resumable=params is not None)
    token = path_token(path)
    session = registry.by_token(token) if token else None
    if session is not None:
        return Placement(session.state.backend, session, session.state.id)
    if max_sessions is not None and is_page_load(method, headers) and not has_room(
            backends, max_sessions):
        return Placement(refusal="full")
    return BY_STRATEGY


def full_page(retry_after: int) -> bytes:
    """The 503 page a browser gets when every worker has ``max_sessions`` sessions."""
    return retry_page("Busy: no free session", "All sessions are in use",
                      "This application has as many users as it can serve right now. This "
                      f"page tries again in {retry_after} seconds.", retry_after)
