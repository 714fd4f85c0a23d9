"""faucet's reconnect script in every page of a Shiny app.

Why the proxy adds it rather than the worker: the Rust server sets
``shiny.http.response.filter`` in the worker's R command, which replaces any filter the
app sets itself, needs R code of its own for quarto-shiny (``quarto serve`` starts R its
own way), and misses pages Shiny sends gzip-compressed (every page, for a browser that
accepts gzip). Here faucet asks a shiny or quarto-shiny worker for a page (a GET that
accepts HTML) uncompressed, and puts one ``<script>`` before the ``</head>`` of the HTML
it answers with 200 (up to ``MAX_PAGE``): worker commands stay the Rust server's, and every
page gets the script whatever renders it. It costs one pass over each page; other
responses are untouched.

The tag's ``src`` is relative, as is the WebSocket URL Shiny derives from the page's
path, so it resolves under a router prefix and behind a proxy that mounts faucet under a
path; faucet answers any path that ends in ``SCRIPT_SUFFIX``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources

from faucet.http.http1 import Response

SCRIPT_SUFFIX = "/__faucet__/reconnect.js"
TAG = b'<script src="__faucet__/reconnect.js"></script>'
MAX_PAGE = 4 * 1024 * 1024  # bytes of HTML faucet rewrites; larger pages pass as they are
_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)


def script_body(settings: dict) -> bytes:
    """The script as served: its settings (``window.FAUCET_RECONNECT``), then
    faucet/static/reconnect.js."""
    source = resources.files("faucet").joinpath("static/reconnect.js").read_bytes()
    return b"window.FAUCET_RECONNECT = " + json.dumps(settings).encode() + b";\n" + source


def is_page_load(method: str, headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """A browser asking for a page."""
    return method == "GET" and any(name == b"accept" and b"text/html" in value
                                   for name, value in headers)


def page_request_headers(headers: list[tuple[bytes, bytes]],
                         method: str) -> list[tuple[bytes, bytes]]:
    """The worker's headers for a request to a Shiny app: a page load without
    Accept-Encoding, so the page comes uncompressed and faucet can add the script."""
    if not is_page_load(method, headers):
        return headers
    return [(name, value) for name, value in headers if name != b"accept-encoding"]


def rewritable(response: Response) -> bool:
    """An uncompressed HTML page of a known length up to ``MAX_PAGE``."""
    if response.status != 200 or response.length is None or response.length > MAX_PAGE:
        return False
    kind = encoding = b""
    for name, value in response.headers:
        if name == b"content-type":
            kind = value.lower()
        elif name == b"content-encoding":
            encoding = value.strip().lower()
    return kind.startswith(b"text/html") and encoding in (b"", b"identity")


def add_script(page: bytes) -> bytes | None:
    """The page with the tag before its first ``</head>``; None when it has none."""
    match = _HEAD_END.search(page)
    if match is None:
        return None
    return page[:match.start()] + TAG + page[match.start():]


def page_headers(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """A rewritten page's headers: its new length."""
    out = [(name, value) for name, value in headers if name != b"content-length"]
    out.append((b"content-length", str(length).encode()))
    return out


async def with_script(response: Response, conn) -> tuple[Response, bytes] | None:
    """For a page that can take the script: the response as the client gets it and its
    whole body, read from ``conn`` (closed if reading fails). None for anything else
    (nothing read)."""
    if not rewritable(response):
        return None
    try:
        body = await conn.read_body()
    except BaseException:
        conn.close()
        raise
    page = add_script(body)
    if page is None:
        return response, body
    return (Response(200, page_headers(response.headers, len(page)), len(page), False,
                     response.keep_alive), page)
