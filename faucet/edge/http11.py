"""The front door's HTTP/1.1 wire format (pure: no I/O): client requests parsed with
llhttp (through httptools) and responses framed here.

Why not h11, which served here before: parsing a request and framing its response took
h11 ~40 us of Python per request (176 function calls), about a tenth of the front's CPU;
llhttp, Node.js's parser in C, takes ~1.5 us, and the framing below ~5 us. llhttp is
stricter than h11 where it differs: no bare-LF line ends, no obs-fold, only registered
methods, no Content-Length beside Transfer-Encoding, no duplicate Content-Length, and no
transfer coding but a final ``chunked``; each of those gets 400. What llhttp does not
check and h11 did is checked here: exactly one Host on HTTP/1.1.
"""

from __future__ import annotations

import re
from collections import deque

import httptools

from faucet.http.headers import TOKEN
from faucet.http.http1 import LAST_CHUNK, encode_chunk

END = object()  # the event that ends a request's body


class BadRequest(Exception):
    """The client's bytes are not a request faucet may serve; ``status`` is the answer."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


class InvalidResponse(Exception):
    """The app's response cannot be sent as HTTP/1.1 (a bad header, a body that does not
    match its declared length)."""


class RequestHead:
    """A parsed request head. ``headers``: names lower-cased, values as sent."""

    __slots__ = ("method", "target", "http_version", "headers", "keep_alive", "upgrade",
                 "has_body", "expects_continue")

    def __init__(self, method: bytes, target: bytes, http_version: str, headers: list,
                 keep_alive: bool, upgrade: bool):
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.upgrade = upgrade  # the request asks to switch protocols (handled elsewhere)
        self.has_body = False
        self.expects_continue = False


class RequestParser:
    """One client connection's requests: ``feed`` bytes, then take ``events`` in order:
    a RequestHead, its body's bytes pieces, END; then the next request (pipelining).

    After a head that asks for an upgrade, parsing stops: the rest of the bytes belong to
    whoever serves the upgrade.
    """

    def __init__(self):
        self.events: deque = deque()
        self.upgraded = False
        self.upgrade_rest = b""  # the bytes after an upgrade's head (the new protocol's)
        self._parser = httptools.HttpRequestParser(self)
        self._target = b""
        self._headers: list = []

    def feed(self, data: bytes) -> None:
        """Parse ``data``; BadRequest when it is not (part of) a valid request."""
        if self.upgraded:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgraded = True
            self.upgrade_rest = data[exc.args[0]:]
        except httptools.HttpParserError as exc:
            raise BadRequest(400, f"Bad Request: {exc}") from None

    # llhttp's callbacks
    def on_message_begin(self) -> None:
        self._target = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        head = RequestHead(parser.get_method(), self._target, version, self._headers,
                           parser.should_keep_alive(), parser.should_upgrade())
        hosts = 0
        for name, value in self._headers:
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                head.has_body = value != b"0"
            elif name == b"transfer-encoding":
                head.has_body = True
            elif name == b"expect" and value.lower() == b"100-continue":
                head.expects_continue = version == "1.1"
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise BadRequest(400, "Bad Request: an HTTP/1.1 request needs exactly one Host")
        self.events.append(head)

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.events.append(END)


# RFC 9110 5.5: a value has no CR, LF or NUL (nor other controls but tab) and no
# whitespace at either end (a name is a token).
_VALUE = re.compile(rb"(?:[^\x00-\x1f\x7f \t](?:[^\x00-\x08\x0a-\x1f\x7f]*[^\x00-\x1f\x7f \t])?)?")
_NO_BODY_STATUS = frozenset({204, 304})


class ResponseFramer:
    """Frames one response to a request: its head (with the framing headers and
    ``Connection: close`` as needed), its body pieces, its end.

    The body is sent as declared by Content-Length when the app gave one (and checked
    against it), else chunked to an HTTP/1.1 client, else delimited by the close (HTTP/1.0).
    A HEAD, 204 or 304 answer has no body whatever its headers say. An HTTP/1.0 client's
    connection is not kept (its ``keep-alive`` would need one echoed back).
    """

    __slots__ = ("keep_alive", "_left", "_chunked", "_bodyless")

    def __init__(self):
        self.keep_alive = True
        self._left: int | None = None  # bytes still due by Content-Length
        self._chunked = False
        self._bodyless = False

    def head(self, status: int, reason: bytes, headers: list, method: bytes,
             http_version: str, keep_alive: bool) -> bytes:
        """The response head; InvalidResponse for a header that cannot be sent."""
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        length = None
        chunked = False
        connection_close = not keep_alive or http_version != "1.1"  # (1.0: as h11 did)
        for name, value in headers:
            if TOKEN.fullmatch(name) is None or _VALUE.fullmatch(value) is None:
                raise InvalidResponse(f"invalid header {name!r}: {value!r}")
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise InvalidResponse(f"invalid Content-Length {value!r}")
                if length is None:
                    length = int(value)
                continue  # written below
            elif lower == b"transfer-encoding":
                chunked = True
                continue  # framed below
            elif lower == b"connection":
                if b"close" in value.lower():
                    connection_close = True
                continue  # written below
            lines.append(b"%s: %s\r\n" % (name, value))
        self._bodyless = method == b"HEAD" or status in _NO_BODY_STATUS or status < 200
        if chunked or length is None:
            # chunked to HTTP/1.1; to HTTP/1.0 the body ends with the connection (closed)
            if not self._bodyless and http_version == "1.1":
                lines.append(b"transfer-encoding: chunked\r\n")
                self._chunked = True
        elif status >= 200 and status != 204:  # (RFC 9110 8.6: never on a 1xx or 204)
            lines.append(b"content-length: %d\r\n" % length)
            self._left = 0 if self._bodyless else length
        if connection_close:
            lines.append(b"connection: close\r\n")
            self.keep_alive = False
        lines.append(b"\r\n")
        return b"".join(lines)

    def body(self, data: bytes) -> bytes:
        """A piece of the body as it goes on the wire."""
        if not data or self._bodyless:
            return b""
        if self._chunked:
            return encode_chunk(data)
        if self._left is not None:
            self._left -= len(data)
            if self._left < 0:
                raise InvalidResponse("more body than its Content-Length")
        return data

    def end(self) -> bytes:
        """What ends the body on the wire."""
        if self._chunked:
            return LAST_CHUNK
        if self._left:
            raise InvalidResponse(f"the body ended {self._left} bytes short of its "
                                  "Content-Length")
        return b""
