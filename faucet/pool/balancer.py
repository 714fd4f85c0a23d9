"""Pure load-balancing decisions: which backend for a request, and the client IP the
sticky strategies and telemetry use. No I/O; ``dispatch.py`` does the waiting."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import uuid
from collections.abc import Sequence

from attrs import frozen

from faucet.pool.backend import Backend

LB_COOKIE = "FAUCET_LB_COOKIE"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BadClientIp(ValueError):
    """The header ``--ip-from`` names is missing or malformed (the proxy answers 400)."""


def stable_hash(data: bytes) -> int:
    """A hash that is the same in every process and run (Python's ``hash`` is salted), so a
    client keeps its worker across faucet restarts with the same worker count."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def ip_key(ip: IPAddress) -> int:
    return stable_hash(ip.packed)


def cookie_key(value: uuid.UUID) -> int:
    return stable_hash(value.bytes)


def next_online(backends: Sequence[Backend], start: int) -> Backend | None:
    """The first online backend at or after index ``start`` (wrapping)."""
    count = len(backends)
    for offset in range(count):
        backend = backends[(start + offset) % count]
        if backend.online:
            return backend
    return None


def least_loaded(backends: Sequence[Backend], start: int = 0,
                 limit: int | None = None) -> Backend | None:
    """The emptiest online backend, where a new sticky client or Shiny session goes: the
    fewest live sessions (below ``limit``, None: no limit), then the fewest requests in
    flight; ties go to the first at or after ``start``, so new clients from one address
    (a proxy in front) still spread over the workers."""
    best = None
    count = len(backends)
    for offset in range(count):
        backend = backends[(start + offset) % count]
        if (backend.online and (limit is None or backend.sessions < limit)
                and (best is None or (backend.sessions, backend.inflight)
                     < (best.sessions, best.inflight))):
            best = backend
    return best


def least_busy(backends: Sequence[Backend], start: int, limit: int) -> Backend | None:
    """The online backend with the fewest requests in flight, below ``limit``; ties go to
    the first one at or after ``start`` so idle workers share the load evenly."""
    best = None
    count = len(backends)
    for offset in range(count):
        backend = backends[(start + offset) % count]
        if backend.online and backend.inflight < limit:
            if best is None or backend.inflight < best.inflight:
                best = backend
                if backend.inflight == 0:
                    break
    return best


def pipeline_target(backends: Sequence[Backend], depth: int) -> Backend | None:
    """An online backend busy only with quick work (no slow request in flight) and
    fewer than ``depth`` requests: the next request can wait in its socket briefly."""
    best = None
    for backend in backends:
        if (backend.online and backend.slow_inflight == 0 and backend.inflight < depth
                and (best is None or backend.inflight < best.inflight)):
            best = backend
    return best


def sticky_index(key: int, count: int) -> int:
    return key % count


def cookie_for_index(index: int, count: int) -> uuid.UUID:
    """A fresh cookie value that hashes to backend ``index`` (about ``count`` tries)."""
    while True:
        candidate = uuid.uuid4()
        if cookie_key(candidate) % count == index:
            return candidate


@frozen
class StickyCookie:
    """The cookie that keeps a client on its worker: ``FAUCET_LB_COOKIE`` on ``/`` (the
    Rust server's), and in router mode one per route, named and scoped by the route, so
    a client moved off a worker on one route keeps its place on every other."""

    name: str = LB_COOKIE
    path: str = "/"

    @classmethod
    def for_route(cls, route: str | None) -> StickyCookie:
        mount = (route or "/").rstrip("/")
        if not mount:
            return cls()
        return cls(LB_COOKIE + "_" + re.sub(r"[^A-Za-z0-9]", "_", mount.strip("/")), mount)


def parse_cookie(header: bytes, cookie: StickyCookie = StickyCookie()) -> uuid.UUID | None:
    """The sticky cookie's UUID from a Cookie header; None if absent or not a UUID."""
    wanted = cookie.name.encode()
    for part in header.split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == wanted:
            try:
                return uuid.UUID(value.strip(b'"').decode("ascii"))
            except ValueError:
                return None
    return None


def set_cookie_header(value: uuid.UUID, cookie: StickyCookie = StickyCookie()) -> bytes:
    return f"{cookie.name}={value}; Path={cookie.path}; HttpOnly; SameSite=Lax".encode()


def client_ip(peer: str | None, mode: str, forwarded_for: bytes | None,
              real_ip: bytes | None) -> IPAddress | None:
    """The client's address per ``--ip-from``.

    ``client``: the TCP peer. ``x-forwarded-for``: the rightmost entry, the one the
    trusted proxy in front of faucet appended (entries left of it are whatever the client
    wrote, so they cannot be trusted).
    ``x-real-ip``: the header's single address. Header modes raise BadClientIp when the
    header is missing or not an IP address.
    """
    if mode == "client":
        return _parse_ip(peer) if peer else None
    name = "X-Forwarded-For" if mode == "x-forwarded-for" else "X-Real-IP"
    raw = forwarded_for if mode == "x-forwarded-for" else real_ip
    if raw is None:
        raise BadClientIp(f"missing {name} header (faucet runs with --ip-from {mode})")
    text = raw.decode("latin-1").rsplit(",", 1)[-1].strip()
    address = _parse_ip(text)
    if address is None:
        raise BadClientIp(f"{name} header {text!r} is not an IP address "
                          f"(faucet runs with --ip-from {mode})")
    return address


@functools.lru_cache(maxsize=4096)  # the same few addresses, request after request
def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
