"""HTTP header rules of the proxy (pure: lists of ``(name, value)`` pairs in, out).

Which fields are connection-specific, what faucet reads from a client's request, the
headers a worker receives (the client's end-to-end ones plus faucet's X-Forwarded-* and
request id), the headers a client receives back, and the HTTP Date value.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from email.utils import formatdate

from attrs import define

Headers = list[tuple[bytes, bytes]]

# RFC 9110 5.6.2: token = 1*tchar (a method, a field name).
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# RFC 9110 7.6.1: connection-specific fields never forwarded (plus those that
# Connection names). ``expect`` is answered by the front door on the client side.
HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection te trailer transfer-encoding upgrade expect".split()
)
# Framing is decided by faucet from what the front door parsed, so a Connection header
# naming these never removes them (that would forward a body without its length: the
# worker would read it as another request).
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"host"})
# Fields faucet sets or acts on. A client's field whose name differs from one of these
# only by underscores (X_Forwarded_For) is dropped: CGI-style servers (R's httpuv) map
# both spellings to the same variable, HTTP_X_FORWARDED_FOR (nginx drops them too).
FAUCET_FIELDS = frozenset({
    b"host", b"content-length", b"transfer-encoding", b"connection", b"x-forwarded-for",
    b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix", b"x-real-ip",
    b"faucet-request-uuid",
})


@define(slots=True)
class RequestHeaders:
    """What the proxy reads from the client's request in one pass over its headers."""

    headers: Headers  # the end-to-end ones, forwarded as they are
    has_body: bool
    chunked: bool = False  # body without Content-Length: sent on with chunked framing
    content_length: bytes | None = None  # as the front door validated it
    forwarded_for: bytes | None = None
    real_ip: bytes | None = None
    host: bytes | None = None
    cookies: bytes | None = None  # the Cookie header(s), for the sticky cookie
    user_agent: str | None = None
    proto: bytes | None = None
    forwarded_host: bytes | None = None


# Fields only faucet writes: a client's own would reach the worker beside faucet's.
WRITTEN_BY_FAUCET = frozenset({b"faucet-request-uuid", b"x-forwarded-prefix"})


def hop_by_hop(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The fields of ``headers`` never forwarded: RFC 9110's connection-specific ones
    plus any that a Connection header names (lower-case names expected)."""
    named = [token.strip().lower() for name, value in headers if name == b"connection"
             for token in value.split(b",")]
    return HOP_BY_HOP.union(named).difference(FRAMING) if named else HOP_BY_HOP


def read_request(scope_headers: Sequence[tuple[bytes, bytes]]) -> RequestHeaders:
    """Split the client's headers into those forwarded and those faucet acts on."""
    dropped = hop_by_hop(scope_headers)
    request = RequestHeaders(headers=[], has_body=False)
    forwarded = request.headers
    for name, value in scope_headers:
        if name == b"content-length":
            request.content_length = value.strip()
            request.has_body = request.content_length != b"0"
            continue  # written again by ``upstream_headers``, exactly once
        if name == b"transfer-encoding":
            request.has_body = request.chunked = True
            continue
        if (name in dropped or name in WRITTEN_BY_FAUCET
                or b"_" in name and name.replace(b"_", b"-") in FAUCET_FIELDS):
            continue
        if name == b"x-forwarded-for":
            request.forwarded_for = value
            continue  # rewritten by ``upstream_headers``, with the client appended
        if name == b"x-forwarded-proto":
            request.proto = value
            continue
        if name == b"x-forwarded-host":
            request.forwarded_host = value
            continue
        if name == b"x-real-ip":
            request.real_ip = value
        elif name == b"host":
            request.host = value
        elif name == b"cookie":
            request.cookies = value if request.cookies is None else request.cookies + b"; " + value
        elif name == b"user-agent":
            request.user_agent = value.decode("latin-1")
        forwarded.append((name, value))
    return request


def upstream_headers(request: RequestHeaders, *, scheme: str, peer: str | None,
                     trust_forwarded: bool, prefix: bytes | None,
                     request_uuid: uuid.UUID) -> Headers:
    """The headers a worker receives: the client's end-to-end ones, then X-Forwarded-For
    (with the TCP ``peer`` appended, as every proxy hop does), -Proto and -Host (the
    client's own only when ``trust_forwarded``), -Prefix for a routed app,
    ``faucet-request-uuid``, and one body framing: Content-Length or chunked."""
    headers = list(request.headers)
    if request.forwarded_for is not None and peer is not None:
        headers.append((b"x-forwarded-for", request.forwarded_for + b", " + peer.encode()))
    elif request.forwarded_for is not None:
        headers.append((b"x-forwarded-for", request.forwarded_for))
    elif peer is not None:
        headers.append((b"x-forwarded-for", peer.encode()))
    headers.append((b"x-forwarded-proto", request.proto if trust_forwarded and request.proto
                    else scheme.encode()))
    host = request.forwarded_host if trust_forwarded and request.forwarded_host else request.host
    if host is not None:
        headers.append((b"x-forwarded-host", host))
    else:
        headers.append((b"host", b"localhost"))
    if prefix is not None:
        headers.append((b"x-forwarded-prefix", prefix))
    headers.append((b"faucet-request-uuid", str(request_uuid).encode()))
    if request.chunked:
        headers.append((b"transfer-encoding", b"chunked"))
    elif request.content_length is not None:
        headers.append((b"content-length", request.content_length))
    return headers


def response_headers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """A worker's response headers as the client receives them: the end-to-end ones, and
    a Date when the worker sent none."""
    dropped = hop_by_hop(headers)
    out = [(name, value) for name, value in headers if name not in dropped]
    if not any(name == b"date" for name, _ in out):
        out.append((b"date", http_date()))
    return out


class _Date:
    """The HTTP Date value, formatted once per second."""

    second = -1
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


http_date = _Date.now
