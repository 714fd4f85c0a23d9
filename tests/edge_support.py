"""Raw-bytes conformance harness for tests/test_edge.py: a faucet whose one worker is the
recording stand-in (tests/standin/recorder), a raw HTTP/1.1 client that sends exactly the
bytes a test gives it, and a reader for what the worker wrote down."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import trio

from tests.helpers import ROOT, config_for, run_faucet

RECORDER = str(ROOT / "tests" / "standin" / "recorder")
LOG_ENV = "EDGE_RECORDER_LOG"
REPLY_TIMEOUT = 3.0  # a reply faucet owes at once; None after this long


def http(*lines: str, body: bytes = b"") -> bytes:
    """A raw request: ``lines`` (request line, then header lines) joined with CRLF, the
    empty line, then ``body`` -- nothing added, nothing checked."""
    return "".join(line + "\r\n" for line in lines).encode("latin-1") + b"\r\n" + body


# ---------------------------------------------------------------- what the worker got


@attrs.frozen
class Received:
    """One whole request the worker parsed."""

    conn: int  # the worker's connection number (1, 2, ... in accept order)
    method: str
    target: str
    headers: list[tuple[str, str]]
    framing: str  # content-length | chunked | chunked+content-length | none
    body: bytes  # decoded
    raw: bytes  # head + body bytes exactly as they came on the wire

    def values(self, name: str) -> list[str]:
        """The values of every header named ``name`` (case-insensitive)."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def summary(self) -> tuple[str, str, str, bytes]:
        return self.method, self.target, self.framing, self.body


class Recording:
    """The recorder's log file (tests/standin/recorder describes its lines)."""

    def __init__(self, path: Path):
        self.path = path

    def events(self, kind: str | None = None) -> list[dict]:
        if not self.path.exists():
            return []
        events = [json.loads(line) for line in self.path.read_text().splitlines()]
        return [event for event in events if kind is None or event["kind"] == kind]

    def requests(self) -> list[Received]:
        return [Received(event["conn"], event["method"], event["target"],
                         [tuple(header) for header in event["headers"]], event["framing"],
                         base64.b64decode(event["body"]), base64.b64decode(event["raw"]))
                for event in self.events("request")]

    def summaries(self) -> list[tuple[str, str, str, bytes]]:
        return [request.summary() for request in self.requests()]

    def raw(self) -> bytes:
        """Every byte the worker read, all connections in arrival order."""
        return b"".join(base64.b64decode(event["raw"]) for event in self.events("data"))


# ---------------------------------------------------------------- the client side


@attrs.frozen
class Reply:
    """What faucet answered; ``status`` None when no response came (``note`` says why)."""

    status: int | None
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)
    body: bytes = b""
    note: str = ""

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class RawClient:
    """One TCP connection to faucet: raw bytes out, responses parsed back."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False

    async def send(self, data: bytes) -> bool:
        """Send ``data``; False if faucet has already closed the connection."""
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.eof = True
        self.buffer += data
        return bool(data)

    async def _until(self, marker: bytes) -> bytes | None:
        while (end := self.buffer.find(marker)) < 0:
            if not await self._fill():
                return None
        taken = bytes(self.buffer[:end + len(marker)])
        del self.buffer[:end + len(marker)]
        return taken

    async def _exactly(self, count: int) -> bytes | None:
        while len(self.buffer) < count:
            if not await self._fill():
                return None
        taken = bytes(self.buffer[:count])
        del self.buffer[:count]
        return taken

    async def reply(self, *, head: bool = False) -> Reply:
        """The next final response (1xx skipped); ``head``: it answers a HEAD request.
        Faucet owes every case here an answer at once, so waiting is bounded here: after
        REPLY_TIMEOUT the reply is ``status=None``, which the test reports as such."""
        with trio.move_on_after(REPLY_TIMEOUT):
            while True:
                reply = await self._response(head)
                if reply.status is None or not 100 <= reply.status < 200:
                    return reply
        return Reply(None, note=f"no response within {REPLY_TIMEOUT:g}s")

    async def _response(self, head: bool) -> Reply:
        raw_head = await self._until(b"\r\n\r\n")
        if raw_head is None:
            return Reply(None, note=f"connection closed; bytes left: {bytes(self.buffer)!r}")
        lines = raw_head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
        names = {name for name, _ in headers}
        if head or 100 <= status < 200 or status in (204, 304):
            body = b""
        elif b"transfer-encoding" in names:
            body = await self._chunked()
        elif b"content-length" in names:
            length = int(dict(headers)[b"content-length"])
            body = await self._exactly(length)
        else:
            while await self._fill():
                pass
            body = bytes(self.buffer)
            self.buffer.clear()
        if body is None:
            return Reply(status, headers, note="connection closed mid-body")
        return Reply(status, headers, body)

    async def _chunked(self) -> bytes | None:
        body = b""
        while True:
            line = await self._until(b"\r\n")
            if line is None:
                return None
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while await self._until(b"\r\n") not in (b"\r\n", None):
                    pass  # trailers
                return body
            data = await self._exactly(size + 2)
            if data is None:
                return None
            body += data[:-2]


# ---------------------------------------------------------------- faucet + recorder


@attrs.define
class Edge:
    """A running faucet (``faucet``, from run_faucet) in front of one recorder worker."""

    faucet: object
    recording: Recording

    @contextlib.asynccontextmanager
    async def connect(self):
        url = urlsplit(self.faucet.url)
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        try:
            yield RawClient(stream)
        finally:
            await trio.aclose_forcefully(stream)

    async def exchange(self, data: bytes, *, head: bool = False) -> Reply:
        """``data`` on a new connection, in one write; faucet's first response."""
        async with self.connect() as client:
            await client.send(data)
            return await client.reply(head=head)


@contextlib.asynccontextmanager
async def recorded_faucet(tmp_path: Path, monkeypatch, **overrides):
    """faucet with ``overrides`` and one recorder worker, whose log is in ``tmp_path``
    (its path reaches the worker through faucet's environment)."""
    log = tmp_path / "recorded.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    config = config_for(**{"workers": 1, "rscript": RECORDER, **overrides})
    async with run_faucet(config) as faucet:
        yield Edge(faucet, Recording(log))
