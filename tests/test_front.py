"""faucet.front on real sockets with small in-process ASGI apps: HTTP/1.1 edge cases
(pipelining, HTTP/1.0, 100-continue, bad heads, app failures), shutdown, and the hand-off
of upgrades and HTTP/2 to hypercorn."""

from __future__ import annotations

from typing import NamedTuple

import h11
import httpx
import pytest
import trio
import wsproto
import wsproto.events

from faucet.edge.front import Limits
from tests.helpers import read_all, start_front


class App:
    """/echo returns the request body; /boom raises; /silent returns without answering;
    /bad-head answers with a header value h11 refuses; /slow sets ``slow_arrived`` and
    answers once ``slow_release`` is set; /linger answers, sets ``linger_sent`` and returns
    once ``linger_release`` is set; /ws echoes one WebSocket message; anything else
    returns its path."""

    def __init__(self) -> None:
        self.slow_arrived = trio.Event()
        self.slow_release = trio.Event()
        self.linger_sent = trio.Event()
        self.linger_release = trio.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(receive, send)
        else:
            await self.http(scope, receive, send)

    @staticmethod
    async def websocket(receive, send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close", "code": 1000})

    async def http(self, scope, receive, send) -> None:
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("app bug")
        if path == "/silent":
            return
        body = path.encode() + b" " + scope["http_version"].encode()
        if path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        if path == "/slow":
            self.slow_arrived.set()
            await self.slow_release.wait()
        headers = [(b"content-length", str(len(body)).encode())]
        if path == "/bad-head":
            headers.append((b"x-bad", b"a\x00b"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if path == "/linger":  # as faucet's proxy, which records the request after answering
            self.linger_sent.set()
            await self.linger_release.wait()


class Served(NamedTuple):
    port: int
    stopping: trio.Event
    app: App


@pytest.fixture
async def front(nursery):
    """A front serving an ``App``: its port, its stopping event and the app."""
    app = App()
    port, stopping = await start_front(nursery, app, max_head=4096)
    yield Served(port, stopping, app)
    stopping.set()


async def responses(stream: trio.SocketStream, count: int) -> list[tuple[h11.Response, bytes]]:
    """Read ``count`` complete responses from a keep-alive connection."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    out = []
    with trio.fail_after(5):
        while len(out) < count:
            head, body = None, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            out.append((head, body))
            if len(out) < count:
                client.start_next_cycle()
                client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
                client.send(h11.EndOfMessage())
    return out


async def test_pipelined_requests_are_answered_in_order(front):
    port = front.port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                          b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
    got = await responses(stream, 3)
    assert [body for _, body in got] == [b"/one 1.1", b"hello", b"/three 1.1"]
    assert all(head.status_code == 200 and head.reason == b"OK" for head, _ in got)


async def test_http_1_0_gets_its_answer_and_the_connection_closes(front):
    port = front.port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /old HTTP/1.0\r\n\r\n")
    data = await read_all(stream)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\n/old 1.0")


async def test_expect_100_continue_is_answered_before_the_body_is_sent(front):
    port = front.port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          b"Expect: 100-continue\r\n\r\n")
    with trio.fail_after(5):
        interim = await stream.receive_some(65536)
    assert interim.startswith(b"HTTP/1.1 100 ")
    await stream.send_all(b"ping")
    (head, body), = await responses(stream, 1)
    assert (head.status_code, body) == (200, b"ping")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000, b"431"),  # head over the limit
])
async def test_unparsable_requests_get_an_error_response(front, request_bytes, status):
    port = front.port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request_bytes)
    data = await read_all(stream)
    assert data.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"connection: close" in data and b"date: " in data


@pytest.mark.parametrize(("path", "status"), [("/boom", 500), ("/silent", 500),
                                              ("/bad-head", 502)])
async def test_app_failures_become_responses(front, path, status):
    port = front.port
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
        assert response.status_code == status
        assert response.headers["connection"] == "close"
        assert (await client.get(f"http://127.0.0.1:{port}/after")).text == "/after 1.1"


async def test_unread_request_body_closes_the_connection_after_the_response(front):
    port = front.port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"POST /ignores-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                          b"\r\npartial")
    data = await read_all(stream)
    assert b"connection: close" in data and data.endswith(b"/ignores-body 1.1")


async def test_shutdown_closes_idle_connections_and_lets_in_flight_ones_finish(front):
    port = front.port
    idle = await trio.open_tcp_stream("127.0.0.1", port)
    busy = await trio.open_tcp_stream("127.0.0.1", port)
    await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        await front.app.slow_arrived.wait()
    front.stopping.set()
    assert await read_all(idle) == b""  # closed while the slow request is still running
    with pytest.raises(OSError):  # and no longer accepting
        await trio.open_tcp_stream("127.0.0.1", port)
    front.app.slow_release.set()
    data = await read_all(busy)
    assert b"connection: close" in data and data.endswith(b"/slow 1.1")


async def test_a_keep_alive_answer_sent_before_closing_keeps_its_connection(nursery):
    """The fleet's lost request (issue 17): the answer left without Connection: close, the
    shutdown began before the app returned, and the front closed the connection at once,
    while the load balancer was reusing it. It now stays open for the next request, whose
    answer says Connection: close."""
    app = App()
    closing = trio.Event()
    port, stopping = await start_front(nursery, app, closing=closing)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /linger HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(5):
        await app.linger_sent.wait()
    closing.set()
    app.linger_release.set()
    await stream.send_all(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")  # reused at once
    first, second = (await read_all(stream)).split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"connection: close" not in first and first.endswith(b"/linger 1.1")
    assert b"connection: close" in second and second.endswith(b"/next 1.1")
    stopping.set()


async def test_shutdown_serves_a_request_whose_head_has_begun(front):
    """Only connections waiting for a request none of whose bytes has arrived are closed;
    one whose head has begun (read, or still unread in the kernel) is answered."""
    idle, begun = [await trio.open_tcp_stream("127.0.0.1", front.port) for _ in range(2)]
    for stream in (idle, begun):  # both accepted and served once
        await stream.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            assert (await stream.receive_some(65536)).endswith(b"/first 1.1")
    await begun.send_all(b"GET /begun HTTP/1.1\r\nHo")
    front.stopping.set()
    assert await read_all(idle) == b""
    await begun.send_all(b"st: x\r\n\r\n")
    data = await read_all(begun)
    assert b"connection: close" in data and data.endswith(b"/begun 1.1")


async def test_websocket_upgrade_on_a_reused_connection_goes_to_hypercorn(front):
    port = front.port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    (_, body), = await responses(stream, 1)
    assert body == b"/first 1.1"
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    await stream.send_all(ws.send(wsproto.events.Request(host="x", target="/ws")))
    received = []
    with trio.fail_after(5):
        while not received:
            ws.receive_data(await stream.receive_some(65536))
            received += list(ws.events())
        await stream.send_all(ws.send(wsproto.events.TextMessage(data="hi")))
        while not any(isinstance(e, wsproto.events.CloseConnection) for e in received):
            ws.receive_data(await stream.receive_some(65536))
            received += list(ws.events())
    assert isinstance(received[0], wsproto.events.AcceptConnection)
    assert [e.data for e in received if isinstance(e, wsproto.events.TextMessage)] == ["echo hi"]


async def test_http2_prior_knowledge_goes_to_hypercorn_when_h2c_is_on(nursery):
    port, _ = await start_front(nursery, App(), Limits(h2c=True), max_head=4096)
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        response = await client.get(f"http://127.0.0.1:{port}/h2")
    assert (response.http_version, response.text) == ("HTTP/2", "/h2 2")


async def test_without_h2c_only_websockets_leave_the_http11_path(front):
    """HTTP/2 is off unless asked for, and an Upgrade other than websocket is served as
    plain HTTP/1.1 here, with this path's limits (hypercorn has no send timeout)."""
    stream = await trio.open_tcp_stream("127.0.0.1", front.port)
    await stream.send_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert (await read_all(stream)).startswith(b"HTTP/1.1 505 ")
    stream = await trio.open_tcp_stream("127.0.0.1", front.port)
    await stream.send_all(b"GET /foo HTTP/1.1\r\nHost: x\r\nConnection: close, upgrade\r\n"
                          b"Upgrade: foo\r\n\r\n")
    reply = await read_all(stream)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"/foo 1.1")
