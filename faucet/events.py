"""The telemetry record: one ``HttpEvent`` per finished HTTP exchange, and its request id.

A leaf (no faucet imports), so a sink plugin can take the event type without pulling in
the telemetry pipeline or trio.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import time
import uuid

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

    def to_json(self) -> str:
        """One JSON object; UUID and IP address as strings, time in ISO 8601."""
        return json.dumps(attrs.asdict(self, recurse=False), default=_json_default)


COLUMNS = tuple(field.name for field in attrs.fields(HttpEvent))


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
