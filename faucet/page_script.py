"""faucet's reconnect script in every page of a Shiny app.

Why the proxy adds it rather than the worker: the Rust server sets
``shiny.http.response.filter`` in the worker's R command, which replaces any filter the
app sets itself, needs R code of its own for quarto-shiny (``quarto serve`` starts R its
own way), and misses pages Shiny sends gzip-compressed (its HTML pages are, whenever the
browser accepts gzip). Here the proxy puts one ``<script>`` before the ``</head>`` of the
HTML pages a shiny or quarto-shiny worker answers with 200 (decompressing a gzip page, up
to ``MAX_PAGE``): worker commands stay the Rust server's, and every page gets the script
whatever renders it. It costs one pass over an HTML page; other responses are untouched.

The tag's ``src`` is relative, as is the WebSocket URL Shiny derives from the page's
path, so it resolves under a router prefix and behind a proxy that mounts faucet under a
path; faucet answers any path that ends in ``SCRIPT_SUFFIX``.
"""

from __future__ import annotations

import json
import re
import zlib
from importlib import resources

from faucet.http1 import Response

SCRIPT_SUFFIX = "/__faucet__/reconnect.js"
TAG = b'<script src="__faucet__/reconnect.js"></script>'
MAX_PAGE = 4 * 1024 * 1024  # bytes of HTML faucet rewrites; larger pages pass as they are
_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)
_REWRITTEN = frozenset({b"content-length", b"content-encoding", b"transfer-encoding"})


def script_body(settings: dict) -> bytes:
    """The script as served: its settings (``window.FAUCET_RECONNECT``), then
    faucet/static/reconnect.js."""
    source = resources.files("faucet").joinpath("static/reconnect.js").read_bytes()
    return b"window.FAUCET_RECONNECT = " + json.dumps(settings).encode() + b";\n" + source


def rewritable(response: Response) -> bool:
    """An HTML page, uncompressed or gzip, not known to be over ``MAX_PAGE``."""
    if response.status != 200 or (response.length or 0) > MAX_PAGE:
        return False
    kind = encoding = b""
    for name, value in response.headers:
        if name == b"content-type":
            kind = value.lower()
        elif name == b"content-encoding":
            encoding = value.strip().lower()
    return kind.startswith(b"text/html") and encoding in (b"", b"gzip", b"identity")


def add_script(body: bytes, encoding: bytes | None) -> bytes | None:
    """The page, uncompressed, with the tag before its first ``</head>``; None when it
    has no head, is not valid gzip, or decompresses to more than ``MAX_PAGE``."""
    if encoding == b"gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_PAGE)
        except zlib.error:
            return None
        if not inflater.eof or inflater.unconsumed_tail:
            return None
    match = _HEAD_END.search(body)
    if match is None:
        return None
    return body[:match.start()] + TAG + body[match.start():]


def page_headers(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """A rewritten page's headers: its new length, no longer compressed."""
    out = [(name, value) for name, value in headers if name not in _REWRITTEN]
    out.append((b"content-length", str(length).encode()))
    return out


class _Body:
    """A response body source (``body_chunk()``) that gives ``first``, then the rest of
    ``conn``'s body (None: nothing more)."""

    def __init__(self, first: bytes, conn=None):
        self._first = first
        self._conn = conn

    async def body_chunk(self) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            return first
        return await self._conn.body_chunk() if self._conn is not None else b""


async def with_script(response: Response, conn) -> tuple[Response, object]:
    """``response`` and the source of its body, the script added when it is a page that
    can take it. Reads the whole page from ``conn`` (closed if reading fails)."""
    if not rewritable(response):
        return response, conn
    body = bytearray()
    try:
        while chunk := await conn.body_chunk():
            body += chunk
            if len(body) > MAX_PAGE:
                return response, _Body(bytes(body), conn)
    except BaseException:
        conn.close()
        raise
    encoding = dict(response.headers).get(b"content-encoding", b"").strip().lower()
    page = add_script(bytes(body), encoding)
    if page is None:
        return response, _Body(bytes(body))
    return (Response(200, page_headers(response.headers, len(page)), len(page), False,
                     response.keep_alive), _Body(page))
