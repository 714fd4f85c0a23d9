"""Each Shiny session's ``websocket_connection`` events, as the Rust server writes them
to ``faucet_log_events``: opened, the client back after a drop, and how it ended. The
opening event's id is the session's id (the FAUCET_SESSION_ID R sees) and every later
event names it as its parent, so one query follows a session from start to end."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from faucet.events import Level, LogEvent, faucet_event
from faucet.proxy.shiny.sessions import SessionState

EVENT_TYPE = "websocket_connection"


class SessionEvents:
    def __init__(self, record: Callable[[LogEvent], None], *, namespace: str,
                 version: str | None):
        self._record = record
        self._namespace = namespace
        self._version = version

    def opened(self, state: SessionState) -> None:
        self._event(state, "session opened: WebSocket connected to the worker",
                    {"resumable": state.resumable}, event_id=state.id)

    def reconnected(self, state: SessionState, received: int) -> None:
        self._event(state, "client reconnected to its session",
                    {"received": received}, parent=state.id)

    def ended(self, state: SessionState, why: str) -> None:
        self._event(state, f"session ended: {why}", {"why": why}, parent=state.id)

    def _event(self, state: SessionState, message: str, body: dict, **ids) -> None:
        stamp = {"namespace": self._namespace, "version": self._version,
                 "worker_route": state.backend.route, "worker_id": state.backend.worker_id}
        self._record(faucet_event(stamp, Level.INFO, EVENT_TYPE, message, body,
                                  time=datetime.datetime.now(datetime.UTC),
                                  parent_event_id=ids.get("parent"),
                                  event_id=ids.get("event_id")))
