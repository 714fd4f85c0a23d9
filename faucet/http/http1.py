"""HTTP/1.1 client framing toward the workers (pure: bytes in, decisions out).

Hand-written instead of h11 for one measured reason: with a fast stand-in worker, h11's
client side took ~16% of faucet's CPU per proxied request (event objects, per-header
validation that hypercorn's h11 already did on the client's leg). This does only what a
proxy to a known local server needs, per RFC 9112: the status line and headers, and the
body framing (Content-Length, chunked, or until close; none for HEAD, 1xx, 204, 304).
Anything it does not understand is an ``UpstreamProtocolError`` (the proxy answers 502).
"""

from __future__ import annotations

MAX_HEAD = 64 * 1024
_NO_BODY_STATUS = (204, 304)


class UpstreamProtocolError(Exception):
    """The worker's response is not valid HTTP/1.1."""


def encode_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """The request line and headers. Names and values come from hypercorn's validated
    request or from faucet itself, so they hold no CR/LF."""
    lines = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


class Response:
    """A parsed response head and how its body is framed."""

    __slots__ = ("status", "headers", "length", "chunked", "keep_alive")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None,
                 chunked: bool, keep_alive: bool):
        self.status = status
        self.headers = headers
        self.length = length  # None with chunked or until-close framing
        self.chunked = chunked
        self.keep_alive = keep_alive


def parse_head(buffer: bytearray, method: str) -> Response | None:
    """Parse and remove one response head from ``buffer``; None if it is not complete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise UpstreamProtocolError(f"response head larger than {MAX_HEAD} bytes")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    del buffer[: end + 4]
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise UpstreamProtocolError(f"bad status line {lines[0][:80]!r}")
    status = int(code)
    headers = []
    length = None
    chunked = False
    close = version == b"HTTP/1.0"
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            raise UpstreamProtocolError(f"bad header line {line[:80]!r}")
        name = name.lower()
        value = value.strip(b" \t")
        headers.append((name, value))
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise UpstreamProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            if not chunked:
                close = True  # framed by the end of the connection
        elif name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            close = close and b"keep-alive" not in tokens or b"close" in tokens
    if method == "HEAD" or 100 <= status < 200 or status in _NO_BODY_STATUS:
        return Response(status, headers, 0, False, not close)
    if chunked:
        return Response(status, headers, None, True, not close)
    if length is None:
        return Response(status, headers, None, False, False)  # until close
    return Response(status, headers, length, False, not close)


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoding."""

    def __init__(self) -> None:
        self._left = 0  # data bytes left in the current chunk
        self._state = "size"  # size | data | data-end | trailers | done
        self.done = False

    def feed(self, buffer: bytearray) -> bytes:
        """Decode what ``buffer`` holds (consuming it as far as possible)."""
        out = bytearray()
        while buffer and not self.done:
            if self._state == "data":
                take = min(self._left, len(buffer))
                out += buffer[:take]
                del buffer[:take]
                self._left -= take
                if self._left == 0:
                    self._state = "data-end"
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise UpstreamProtocolError("chunk line too long")
                break
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self._state == "size":
                size = line.split(b";", 1)[0].strip()
                try:
                    self._left = int(size, 16)
                except ValueError:
                    raise UpstreamProtocolError(f"bad chunk size {size[:20]!r}") from None
                self._state = "data" if self._left else "trailers"
            elif self._state == "data-end":
                if line:
                    raise UpstreamProtocolError("chunk data longer than its size")
                self._state = "size"
            elif not line:  # trailers end with an empty line
                self.done = True
        return bytes(out)
