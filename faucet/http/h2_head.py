"""Checks of an HTTP/2 request head before it may become an HTTP/1.1 request line for a
worker (pure: headers in, a refusal or None out).

The h2 library already refuses, as a connection error, what RFC 9113 8.2 and 8.3 make
malformed at the framing level: upper-case or empty names, CR, LF or NUL in a value,
connection-specific headers, missing or repeated pseudo-headers, an empty ``:path``. It
lets through what only matters once the head is written as HTTP/1.1: a ``:method`` that
is not a token, a ``:path`` with a space, tab, control or non-ASCII byte (it would go
verbatim into the worker's request line), other control bytes in values. Those get 400
here, and a head over the HTTP/1.1 limit gets 431, counted as faucet's HTTP/1.1 path
counts it (the target, then each header's name and value and 4 bytes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from faucet.http.headers import TOKEN

# An origin-form target (RFC 9112 3.2.1): printable ASCII only, from a "/".
_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e]*")
# :authority: host and port as printable ASCII without userinfo (RFC 9113 8.3.1).
_AUTHORITY = re.compile(rb"[\x21-\x3f\x41-\x7e]*")
# A field value as HTTP/1.1 carries it (RFC 9110 5.5): visible bytes, space, tab, obs-text.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def head_refusal(headers: Sequence[tuple[bytes, bytes]],
                 max_head: int) -> tuple[int, str] | None:
    """(status, reason) for a request head that must not reach a worker, else None."""
    pseudo: dict[bytes, bytes] = {}
    size = 0
    for name, value in headers:
        if name.startswith(b":"):
            pseudo[name] = value
        else:
            size += len(name) + len(value) + 4
            if _BAD_VALUE.search(value):
                return 400, f"Bad Request: a control byte in the value of {_show(name)}"
    method = pseudo.get(b":method", b"")
    path = pseudo.get(b":path", b"")
    if not TOKEN.fullmatch(method):
        return 400, "Bad Request: :method is not a token"
    if method == b"CONNECT":  # a WebSocket over HTTP/2 (RFC 8441) carries :protocol
        if b":protocol" not in pseudo:
            return 400, "Bad Request: CONNECT is not served"
    if not (_ORIGIN_FORM.fullmatch(path) or (path == b"*" and method == b"OPTIONS")):
        return 400, ("Bad Request: :path must start with / and hold printable ASCII "
                     "only (no spaces, tabs, controls or non-ASCII bytes)")
    if pseudo.get(b":scheme", b"http") not in (b"http", b"https"):
        return 400, "Bad Request: :scheme must be http or https"
    if not _AUTHORITY.fullmatch(pseudo.get(b":authority", b"")):
        return 400, "Bad Request: :authority must be a host and port"
    size += len(path)
    if size > max_head:
        return 431, f"Request Header Fields Too Large: the head is over {max_head} bytes"
    return None


def _show(name: bytes) -> str:
    return name[:64].decode("ascii", "replace")
