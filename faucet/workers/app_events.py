"""Structured app events: the R package ``faucet``'s marker lines on a worker's stderr,
and faucet's own record of each worker's life, both as ``LogEvent``s.

The R package's ``info()``/``warn()``/``error()``/``debug()``/``trace()`` write one line
``{{ faucet_event }}: {json}`` to stderr; its JSON holds ``target``, ``event_id`` (a UUID),
``parent_event_id`` (a UUID or null), ``event_type``, ``message``, ``level`` (``Info``...)
and ``body`` (any JSON). R's JSON writer wraps scalars in one-element arrays, so each field
may come as ``"x"`` or ``["x"]``. ``parse_line`` is pure; ``WorkerEvents`` stamps the
worker and the time and hands the events to the telemetry recorder.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from faucet.events import Level, LogEvent, faucet_event

MARKER = "{{ faucet_event }}:"
# faucet's own events carry this target (as the Rust server's WebSocket events do).


class MalformedEvent(ValueError):
    """A line with the marker whose JSON is not an event; the message says why."""


def parse_line(
    line: str,
    *,
    namespace: str,
    version: str | None,
    worker_id: int | None,
    worker_route: str | None,
    now: datetime.datetime,
) -> LogEvent | None:
    """The event on ``line``, None when it has no marker (plain output).

    Raises ``MalformedEvent`` (nothing else) when the marker is followed by something
    that is not an event: the caller logs such a line as plain output.
    """
    if not line.startswith(MARKER):
        return None
    try:
        fields = json.loads(line[len(MARKER):])
    except (ValueError, RecursionError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise MalformedEvent(f"expected a JSON object, got {type(fields).__name__}")
    return LogEvent(
        namespace=namespace,
        version=version,
        target=_text(fields, "target"),
        time=now,
        event_id=_uuid(fields, "event_id"),
        parent_event_id=_uuid(fields, "parent_event_id", optional=True),
        level=_level(fields),
        event_type=_text(fields, "event_type"),
        message=_text(fields, "message"),
        body=_body(fields.get("body")),
        worker_route=worker_route,
        worker_id=worker_id,
    )


def _scalar(fields: dict, name: str) -> Any:
    """The field's value, unwrapped from R's one-element array."""
    if name not in fields:
        raise MalformedEvent(f"{name} is missing")
    value = fields[name]
    if isinstance(value, list):
        if len(value) != 1:
            raise MalformedEvent(f"{name}: expected one value, got {len(value)}")
        (value,) = value
    return value


def _text(fields: dict, name: str) -> str:
    value = _scalar(fields, name)
    if not isinstance(value, str):
        raise MalformedEvent(f"{name}: expected a string, got {json.dumps(value)}")
    return value


def _uuid(fields: dict, name: str, optional: bool = False) -> uuid.UUID | None:
    if optional and fields.get(name) in (None, [None]):
        return None
    value = _scalar(fields, name)
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise MalformedEvent(f"{name}: expected a UUID, got {json.dumps(value)}") from None


def _level(fields: dict) -> Level:
    value = _text(fields, "level")
    try:
        return Level(value.lower())
    except ValueError:
        allowed = ", ".join(level.value.capitalize() for level in Level)
        raise MalformedEvent(f"level: {value!r} is not one of {allowed}") from None


def _body(value: Any) -> Any:
    """R's ``NA`` (the package's default body) arrives as ``[null]``: no body."""
    return None if value == [None] else value


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class WorkerEvents:
    """One worker's events for the recorder: its marker lines, and its start, online,
    recycle, exit and restart (each later step's ``parent_event_id`` is that run's start event,
    so one query follows a process from spawn to exit)."""

    def __init__(
        self,
        record: Callable[[LogEvent], None],
        *,
        namespace: str,
        version: str | None,
        worker_id: int,
        worker_route: str | None,
        clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self._record = record
        self._stamp = {
            "namespace": namespace, "version": version,
            "worker_id": worker_id, "worker_route": worker_route,
        }  # fmt: skip
        self._clock = clock
        self._run: uuid.UUID | None = None  # the current process's start event

    def output(self, line: str) -> bool:
        """Record ``line`` if it is an app event; False when it is plain output (or a
        malformed event line, which the caller logs as is)."""
        try:
            event = parse_line(line, now=self._clock(), **self._stamp)
        except MalformedEvent:
            return False
        if event is None:
            return False
        self._record(event)
        return True

    def started(self, argv: Sequence[str], pid: int) -> None:
        self._run = None  # a start has no parent
        self._run = self._own(Level.INFO, "worker_start", f"started (pid {pid})",
                              {"argv": list(argv), "pid": pid})

    def online(self, port: int, pid: int) -> None:
        self._own(Level.INFO, "worker_online", f"online on 127.0.0.1:{port} (pid {pid})",
                  {"port": port, "pid": pid})

    def recycled(self, reason: str, recycles: int) -> None:
        """The process reached a recycle limit: drained, then replaced."""
        self._own(Level.INFO, "worker_recycle", f"recycling: {reason}",
                  {"reason": reason, "recycles": recycles})

    def exited(self, status: str, returncode: int | None, uptime: float,
               stderr_tail: Sequence[str]) -> None:
        self._own(Level.ERROR, "worker_exit", f"exited ({status}) after {uptime:.1f}s",
                  {"status": status, "returncode": returncode, "uptime": round(uptime, 3),
                   "stderr_tail": list(stderr_tail)})

    def restarting(self, delay: float, restarts: int) -> None:
        self._own(Level.INFO, "worker_restart", f"restarting in {delay:.1f}s",
                  {"delay": round(delay, 3), "restarts": restarts})

    def _own(self, level: Level, event_type: str, message: str, body: dict) -> uuid.UUID:
        event = faucet_event(self._stamp, level, event_type, message, body, time=self._clock(),
                             parent_event_id=self._run)
        self._record(event)
        return event.event_id
