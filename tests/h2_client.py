"""A raw HTTP/2 client for the edge tests (and bench/edge): the h2 library over a trio
socket, sending exactly the frames a test builds, nothing checked on the way out, so
malformed heads and resets reach faucet as an attacker sends them."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import trio

READ_BOUND = 20.0  # seconds: a guard against hanging, not a measure of speed


class H2Client:
    """One cleartext HTTP/2 connection (prior knowledge)."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def connect(cls, port: int, window: int | None = None) -> H2Client:
        """Connected and greeted; ``window``: the INITIAL_WINDOW_SIZE it grants."""
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        client.conn.initiate_connection()
        if window is not None:
            client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        await client.flush()
        return client

    def request(self, path: bytes | str, method: bytes = b"GET", extra=(),
                end: bool = True) -> int:
        """Queue a request's HEADERS (sent by ``flush``); its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        path = path.encode() if isinstance(path, str) else path
        self.conn.send_headers(stream_id, [
            (b":method", method), (b":scheme", b"http"), (b":authority", b"faucet"),
            (b":path", path), *extra], end_stream=end)
        return stream_id

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id)

    async def flush(self) -> None:
        """Everything queued, in one write."""
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def until(self, done) -> list[h2.events.Event]:
        """Read until ``done(events so far)`` or the connection's end; the events."""
        with trio.fail_after(READ_BOUND):
            while not done(self.events) and not self.closed:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    self.closed = True
                    break
                self.events += self.conn.receive_data(data)
                await self.flush()
        return self.events

    async def response(self, stream_id: int) -> tuple[int, bytes]:
        """The status and body of one stream's answer."""
        await self.until(lambda events: _ended(events, stream_id))
        status, body = 0, b""
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
        return status, body

    def resets(self) -> dict[int, int]:
        """Stream id -> error code of each RST_STREAM faucet sent."""
        return {e.stream_id: e.error_code for e in self.events
                if isinstance(e, h2.events.StreamReset)}

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        return next((e for e in self.events if isinstance(e, h2.events.ConnectionTerminated)),
                    None)

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _ended(events, stream_id: int) -> bool:
    return any(getattr(e, "stream_id", None) == stream_id
               and isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset))
               for e in events)
