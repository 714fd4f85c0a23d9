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

Only pages the browser shows get it: not an attachment (a downloadHandler's HTML file is
saved as the app made it), and the tag goes at the real end of the head, not into a
``</head>`` inside a script, a comment or a title. A page with a Content-Security-Policy
gets the tag with the policy's script nonce, or as it is when the policy allows scripts
from its own origin; a policy that allows neither keeps the page untouched (it works
without reconnects). A rewritten page's ETag becomes weak, as nginx makes it when it
changes a body.

The tag's ``src`` is relative, as is the WebSocket URL Shiny derives from the page's
path, so it resolves under a router prefix and behind a proxy that mounts faucet under a
path; faucet answers any path of a shiny or quarto-shiny app that ends in
``SCRIPT_SUFFIX``.
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
# What can hide a "</head>" from the HTML parser: comments, and elements whose content is
# text (the parser looks only for their own end tag in it).
_HEAD_TOKENS = re.compile(rb"<!--|(</head\s*>)|<(script|style|title|textarea|xmp|iframe|"
                          rb"noembed|noframes|noscript)(?=[\s/>])", re.IGNORECASE)
_SCRIPT_DIRECTIVES = (b"script-src-elem", b"script-src", b"default-src")


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
    """An uncompressed HTML page of a known length up to ``MAX_PAGE``, to be shown (not
    an attachment)."""
    if response.status != 200 or response.length is None or response.length > MAX_PAGE:
        return False
    kind = encoding = b""
    for name, value in response.headers:
        if name == b"content-type":
            kind = value.lower()
        elif name == b"content-encoding":
            encoding = value.strip().lower()
        elif name == b"content-disposition" and value.strip().lower().startswith(b"attachment"):
            return False
    return kind.startswith(b"text/html") and encoding in (b"", b"identity")


def head_end(page: bytes) -> int | None:
    """Where the page's head ends: its first ``</head>`` outside comments and elements
    whose content is text; None when it has none."""
    position = 0
    while (match := _HEAD_TOKENS.search(page, position)) is not None:
        if match.group(1):
            return match.start()
        if match.group(2):
            name = re.escape(match.group(2))
            close = re.compile(rb"</" + name + rb"\s*>", re.IGNORECASE).search(page, match.end())
            position = close.end() if close else len(page)
        else:
            close_at = page.find(b"-->", match.end())
            position = close_at + 3 if close_at >= 0 else len(page)
    return None


def script_tag(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The tag this page's Content-Security-Policy lets run: with the policy's script
    nonce if it has one, plain if it restricts no scripts or allows the page's own
    origin; None when it allows neither (the page stays as it is)."""
    nonce = None
    for name, value in headers:
        if name != b"content-security-policy":
            continue
        sources = _script_sources(value)
        if sources is None:
            continue
        found = next((source[7:-1] for source in sources
                      if source.lower().startswith(b"'nonce-") and source.endswith(b"'")), None)
        if found is not None:
            nonce = found
            continue
        lowered = {source.lower() for source in sources}
        if b"'strict-dynamic'" in lowered or not lowered & {b"'self'", b"*"}:
            return None
    if nonce is None:
        return TAG
    return TAG.replace(b"<script ", b'<script nonce="' + nonce + b'" ')


def _script_sources(policy: bytes) -> list[bytes] | None:
    """The sources one policy allows scripts elements from (None: no rule for them)."""
    directives = {}
    for directive in policy.split(b";"):
        words = directive.split()
        if words:
            directives.setdefault(words[0].lower(), words[1:])
    return next((directives[name] for name in _SCRIPT_DIRECTIVES if name in directives), None)


def add_script(page: bytes, tag: bytes = TAG) -> bytes | None:
    """The page with ``tag`` at the end of its head; None when it has none."""
    at = head_end(page)
    if at is None:
        return None
    return page[:at] + tag + page[at:]


def page_headers(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """A rewritten page's headers: its new length, and its ETag made weak (the bytes
    differ from the worker's; the worker still recognises it in If-None-Match, which
    compares weakly)."""
    out = []
    for name, value in headers:
        if name == b"etag" and not value.startswith(b"W/"):
            out.append((name, b"W/" + value))
        elif name != b"content-length":
            out.append((name, value))
    out.append((b"content-length", str(length).encode()))
    return out


async def with_script(response: Response, conn) -> tuple[Response, bytes] | None:
    """For a page that can take the script: the response as the client gets it and its
    whole body, read from ``conn`` (closed if reading fails). None for anything else
    (nothing read)."""
    tag = script_tag(response.headers) if rewritable(response) else None
    if tag is None:
        return None
    try:
        body = await conn.read_body()
    except BaseException:
        conn.close()
        raise
    page = add_script(body, tag)
    if page is None:
        return response, body
    return (Response(200, page_headers(response.headers, len(page)), len(page), False,
                     response.keep_alive), page)
