"""A raw WebSocket client (wsproto over a trio socket) for tests where the client must
misbehave: stop reading, reset the connection, pick its own session id."""

from __future__ import annotations

import socket
import struct

import trio
import wsproto
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage


class RawWebSocket:
    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)

    @classmethod
    async def open(cls, url: str, target: str, *, receive_buffer: int | None = None):
        """Connect to faucet at ``url`` (http://host:port) and upgrade at ``target``;
        ``receive_buffer`` shrinks the socket's receive buffer (a client that reads
        little). The handshake's answer: AcceptConnection or RejectConnection."""
        host, port = url.removeprefix("http://").rsplit(":", 1)
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect((host, int(port)))
        client = cls(trio.SocketStream(sock))
        await client.stream.send_all(client.ws.send(Request(host="x", target=target)))
        client.answer = await client.next_event()
        return client

    @property
    def accepted(self) -> bool:
        return isinstance(self.answer, AcceptConnection)

    @property
    def status(self) -> int:
        return 101 if self.accepted else self.answer.status_code

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(text)))

    async def next_event(self):
        with trio.fail_after(10):  # keeps a broken test from hanging
            while True:
                for event in self.ws.events():
                    return event
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.ws.receive_data(data)

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0), as a client that vanishes does."""
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
        self.stream.socket.close()


__all__ = ["RawWebSocket", "RejectConnection"]
