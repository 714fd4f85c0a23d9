"""Everything that keeps a client on its worker, in one place (pure: no I/O): the stable
hashes of a client address or cookie, the cookie itself (name, path, reading and
setting it), the key each sticky strategy maps to a worker, and when a client is given
a new cookie."""

from __future__ import annotations

import hashlib
import re
import uuid

from attrs import frozen

from faucet.config.strategy import Strategy
from faucet.http.client_ip import IPAddress

LB_COOKIE = "FAUCET_LB_COOKIE"


def stable_hash(data: bytes) -> int:
    """A hash that is the same in every process and run (Python's ``hash`` is salted), so a
    client keeps its worker across faucet restarts with the same worker count."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def ip_key(ip: IPAddress) -> int:
    return stable_hash(ip.packed)


def cookie_key(value: uuid.UUID) -> int:
    return stable_hash(value.bytes)


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

    def read(self, header: bytes | None) -> uuid.UUID | None:
        """This cookie's UUID from a Cookie header; None if absent or not a UUID."""
        if not header:
            return None
        wanted = self.name.encode()
        for part in header.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == wanted:
                try:
                    return uuid.UUID(value.strip(b'"').decode("ascii"))
                except ValueError:
                    return None
        return None

    def set_header(self, value: uuid.UUID) -> bytes:
        """The Set-Cookie value that gives a client this cookie."""
        return f"{self.name}={value}; Path={self.path}; HttpOnly; SameSite=Lax".encode()


def sticky_key(strategy: Strategy, cookie: uuid.UUID | None, ip: IPAddress | None) -> int | None:
    """The key a sticky strategy maps to a worker; None places the request by load (a
    browser without a cookie yet gets one for the worker chosen)."""
    if strategy == Strategy.COOKIE_HASH:
        return cookie_key(cookie) if cookie is not None else None
    if strategy == Strategy.IP_HASH and ip is not None:
        return ip_key(ip)
    return None


def cookie_to_set(strategy: Strategy, cookie: StickyCookie, had: uuid.UUID | None,
                  moved: bool, index: int, count: int) -> list[tuple[bytes, bytes]]:
    """The Set-Cookie header a cookie-hash response carries: for a client that had no
    cookie yet, or whose worker went away (``moved``), one naming the worker at
    ``index`` of ``count``; nothing otherwise."""
    if strategy != Strategy.COOKIE_HASH or (had is not None and not moved):
        return []
    return [(b"set-cookie", cookie.set_header(cookie_for_index(index, count)))]
