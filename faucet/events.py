"""The telemetry records: one ``HttpEvent`` per finished HTTP exchange, a ``LogEvent``
per structured app event or worker lifecycle step, and the request id.

A leaf (no faucet imports), so a sink plugin can take the event type without pulling in
the telemetry pipeline or trio.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import json
import os
import time
import uuid
from typing import Any, ClassVar

import attrs


@attrs.frozen
class HttpEvent:
    """One finished HTTP exchange; the fields are the ``faucet_http_events`` columns, in order."""

    request_uuid: uuid.UUID
    namespace: str
    version: str | None
    target: str | None  # "Worker::N"
    worker_route: str | None  # the route in router mode, None in start mode
    worker_id: int | None  # 1-based
    ip_addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    method: str
    path: str  # as the worker sees it
    query_params: str | None  # None when empty
    http_version: str  # "HTTP/1.1"
    status: int
    user_agent: str | None
    elapsed: int  # milliseconds
    time: datetime.datetime  # timezone-aware, end of the request

    TYPE: ClassVar[str] = "http"

    def to_json(self) -> str:
        """One JSON object with ``"type": "http"``; UUID and IP address as strings, time
        in ISO 8601."""
        return _to_json(self)


class Level(enum.StrEnum):
    """A log event's level, stored lower-case as the Rust server stores it."""

    ERROR = "error"
    WARN = "warn"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


@attrs.frozen
class LogEvent:
    """One structured event: an R app's ``faucet::info()``-style line, or a step in a
    worker's life recorded by faucet itself; the fields are the ``faucet_log_events``
    columns, in order. The first ten are the Rust server's table; ``worker_route`` and
    ``worker_id`` (the columns ``faucet_http_events`` has) tell which worker it was."""

    namespace: str
    version: str | None
    target: str  # the emitter's own: "shiny" (the R package's default), "faucet" for ours
    time: datetime.datetime  # timezone-aware, when faucet read it
    event_id: uuid.UUID
    parent_event_id: uuid.UUID | None
    level: Level
    event_type: str  # "log" (the R package's default), "worker_start", ...
    message: str
    body: Any  # any JSON value; None is SQL NULL
    worker_route: str | None  # the route in router mode, None in start mode
    worker_id: int | None  # 1-based

    TYPE: ClassVar[str] = "log"

    def to_json(self) -> str:
        """One JSON object with ``"type": "log"``; ids as strings, time in ISO 8601."""
        return _to_json(self)


COLUMNS = tuple(field.name for field in attrs.fields(HttpEvent))
LOG_COLUMNS = tuple(field.name for field in attrs.fields(LogEvent))
Event = HttpEvent | LogEvent


def _to_json(event: Event) -> str:
    return json.dumps(
        {"type": event.TYPE, **attrs.asdict(event, recurse=False)}, default=_json_default
    )


def _json_default(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)  # UUID, IPv4Address, IPv6Address


class _Uuid7:
    """UUIDv7 request ids (RFC 9562: 48-bit Unix milliseconds, version, variant, 74 random
    bits). Hand-written because uuid6.uuid7 makes one getrandom system call per id, ~7% of
    faucet's CPU per proxied request; this draws the random bits from a 4 KiB
    ``os.urandom`` buffer instead."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> uuid.UUID:
        if self._at + 10 > len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        rand = int.from_bytes(self._pool[self._at:self._at + 10])  # 80 bits, 74 used
        self._at += 10
        value = (time.time_ns() // 1_000_000) << 80 | rand & _RANDOM_BITS
        return uuid.UUID(int=value | _VERSION_7 | _VARIANT_RFC)


_RANDOM_BITS = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)
_VERSION_7 = 7 << 76
_VARIANT_RFC = 0x2 << 62
uuid7 = _Uuid7()


FAUCET_TARGET = "faucet"  # the target of the events faucet records itself


def faucet_event(stamp: dict, level: Level, event_type: str, message: str, body: Any, *,
                 time: datetime.datetime, parent_event_id: uuid.UUID | None = None,
                 event_id: uuid.UUID | None = None) -> LogEvent:
    """An event faucet records itself; ``stamp`` holds namespace, version, worker_route
    and worker_id."""
    return LogEvent(target=FAUCET_TARGET, time=time, event_id=event_id or uuid7(),
                    parent_event_id=parent_event_id, level=level, event_type=event_type,
                    message=message, body=body, **stamp)
