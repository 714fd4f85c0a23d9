"""One client request as faucet sees it, built once where it arrives and carried, typed,
to the worker and into telemetry (pure: no I/O).

Plain HTTP/1.1 requests are built from h11's request on faucet's own fast path; upgrades
and HTTP/2 arrive as hypercorn's ASGI scope and are adapted here, so everything after the
front door reads one record whatever the protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import define, field

from faucet.http.client_cancel import ClientCancel

CANCEL_EXTENSION = "faucet.client_cancel"  # the scope extension the edge puts it under
Headers = list[tuple[bytes, bytes]]


@define(slots=True, eq=False)
class Request:
    """The request line, the headers as received, and who sent it."""

    method: str  # upper case; a WebSocket handshake is the GET it is
    raw_path: bytes  # the target's path, as sent
    query: bytes  # the target after "?", as sent (b"" when none)
    http_version: str  # "1.0", "1.1" or "2"
    scheme: str  # "http" or "https" (a WebSocket's ws/wss likewise)
    client: tuple[str, int] | None  # the TCP peer
    headers: Sequence[tuple[bytes, bytes]]
    websocket: bool = False
    subprotocols: Sequence[str] = ()
    # How the client can give the request up (an HTTP/2 stream reset); None on HTTP/1.1.
    cancel: ClientCancel | None = None
    _path: str | None = field(default=None, init=False)

    @classmethod
    def from_scope(cls, scope: dict) -> Request:
        """A request hypercorn serves (an upgrade, HTTP/2), from its ASGI scope."""
        websocket = scope["type"] == "websocket"
        return cls(
            method="GET" if websocket else scope["method"],
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            query=scope["query_string"],
            http_version=scope["http_version"],
            scheme="https" if scope["scheme"] in ("https", "wss") else "http",
            client=scope.get("client"),
            headers=scope["headers"],
            websocket=websocket,
            subprotocols=scope.get("subprotocols") or (),
            cancel=scope.get("extensions", {}).get(CANCEL_EXTENSION),
        )

    @property
    def path(self) -> str:
        """The path exactly as sent, as text: what faucet's own endpoints (the reserved
        prefix ``/__faucet__/``) match. Never percent-decoded, as routes are matched on
        the raw path too: ``/%5F%5Ffaucet%5F%5F/health`` is not faucet's, it goes to the
        app, so a front proxy's rule on the literal prefix and faucet always agree
        (docs/edge.md)."""
        if self._path is None:
            self._path = self.raw_path.decode("latin-1")
        return self._path

    @property
    def peer(self) -> str | None:
        """The TCP peer's address."""
        return self.client[0] if self.client else None

    @property
    def target(self) -> bytes:
        """Path and query, as the client sent them."""
        return self.raw_path + b"?" + self.query if self.query else self.raw_path


def parse_request_line(head: bytes, client: tuple[str, int] | None) -> Request | None:
    """The request line at the start of ``head`` (a head faucet refused before it could
    parse the rest), or None when not even that parses: what telemetry records of it."""
    line, _, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or not parts[0].isalpha():
        return None
    path, _, query = parts[1].partition(b"?")
    return Request(method=parts[0].decode("ascii").upper(), raw_path=path, query=query,
                   http_version=parts[2][5:].decode("latin-1"), scheme="http", client=client,
                   headers=[])
